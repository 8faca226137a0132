# Shared by e2e/suites/load.sh and bench/load.sh. Source it; it defines helpers only.
# shellcheck shell=bash

# write_load_workspace DIR NAME [DATA_MIB]: a Bazel workspace in DIR that uses
# this checkout's rules_kiln, with two images and an image_load for each:
#   :base  one layer: a static Go program (/hello prints "hello from kiln" and
#          /top.txt) and nonce.txt, so that no other run's image shares it;
#   :app   on :base; [a DATA_MIB layer of ../shared/bench/workload.py data,
#          gzip --fast]; a top layer holding top.txt (1 KiB).
# :load_base and :load tag them kiln-load-NAME/base:latest and kiln-load-NAME/app:latest.
# set_top DIR writes new top.txt bytes (a 1 KiB top layer change).
write_load_workspace() {
    local dir=$1 name=$2 data_mib=${3:-0} root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    mkdir -p "$dir/src"
    cat >"$dir/MODULE.bazel" <<MOD
module(name = "kiln_load_workspace")

bazel_dep(name = "rules_kiln")

local_path_override(
    module_name = "rules_kiln",
    path = "$root",
)
MOD
    : >"$dir/REPO.bazel"
    cp "$root/e2e/fixtures/load/main.go" "$dir/src/main.go"
    (cd "$dir/src" && CGO_ENABLED=0 GO111MODULE=off GOCACHE="$dir/.gocache" go build -trimpath -o ../hello main.go) || return 1
    printf '%s %s %s\n' "$name" "$$" "$(date +%s%N)" >"$dir/nonce.txt"
    set_top "$dir"
    local data_layer="" data_ref=""
    if [ "$data_mib" -gt 0 ]; then
        if [ ! -f "$dir/data.tar" ]; then
            python3 "$KILN_ROOT/../shared/bench/workload.py" "$dir/data" "$data_mib" >/dev/null || return 1
            tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir/data" -cf "$dir/data.tar" . || return 1
            rm -rf "$dir/data"
        fi
        data_layer=$'container_layer(\n    name = "data_layer",\n    compression_options = ["--fast"],\n    directory = "/data",\n    tars = ["data.tar"],\n)\n'
        data_ref='":data_layer", '
    fi
    cat >"$dir/BUILD.bazel" <<BUILD
load("@rules_kiln//rules:defs.bzl", "container_image", "container_layer", "image_load")

container_layer(
    name = "base_layer",
    files = [
        "hello",
        "nonce.txt",
    ],
    mode = "0o755",
)

container_image(
    name = "base",
    architecture = "amd64",
    entrypoint = ["/hello"],
    layers = [":base_layer"],
)

image_load(
    name = "load_base",
    image = ":base",
    repo_tags = ["kiln-load-$name/base:latest"],
)

$data_layer
container_layer(
    name = "top_layer",
    files = ["top.txt"],
    mode = "0o644",
)

container_image(
    name = "app",
    base = ":base",
    layers = [${data_ref}":top_layer"],
)

image_load(
    name = "load",
    image = ":app",
    repo_tags = ["kiln-load-$name/app:latest"],
)
BUILD
}

set_top() {
    head -c 1024 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 1024 >"$1/top.txt"
}
