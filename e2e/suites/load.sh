# bazel run //build/api:load into the Docker engine, then docker run and /healthz;
# then incremental loads (tag only / only the missing layers / full) into Docker
# and podman, from a generated workspace (e2e/lib/load_workspace.sh).
# shellcheck source=e2e/lib/load_workspace.sh
source e2e/lib/load_workspace.sh
# shellcheck source=e2e/lib/launch_workspace.sh
source e2e/lib/launch_workspace.sh

suite_load() {
    suite_load_launchers
    suite_load_example
    suite_load_incremental
    suite_load_podman
    suite_load_containerd
}

suite_load_example() {
    source e2e/suites/examples.sh
    if ! docker_available; then
        fail "load: a Docker engine answers (required: this machine kind has one)" "$(docker info 2>&1 | tail -3)"
        return
    fi
    ensure_examples_built || { fail "load: examples do not build"; return; }
    local tag="kiln-e2e/api:$$" out id config_digest cid port
    if out=$(cd examples && kbazel ex1 run //build/api:load -- --tag "$tag" 2>&1); then
        pass "bazel run :load -- --tag $tag"
    else
        fail "bazel run :load -- --tag $tag" "$(tail -20 <<<"$out")"
        return
    fi
    local arch
    arch=$(host_arch)
    expect_eq "load: docker sees the host-arch image with entrypoint /api" "$arch [\"/api\"]" \
        "$(docker image inspect "$tag" --format '{{.Architecture}} {{json .Config.Entrypoint}}')"
    config_digest="sha256:$(sha256sum <"$EX_BIN/api_$arch.json" | cut -d' ' -f1)"
    expect_eq "load: docker's image ID is the built config digest" "$config_digest" "$(docker image inspect "$tag" --format '{{.Id}}')"
    # service_image's :load is incremental: docker has the image now, so it is only tagged.
    if out=$(cd examples && kbazel ex1 run //build/api:load -- --tag "$tag-again" 2>&1) && grep -q "kiln-load: tag only: " <<<"$out"; then
        pass "load: service_image :load of an image docker has only tags it"
    else
        fail "load: service_image :load of an image docker has only tags it" "$(tail -5 <<<"$out")"
    fi
    docker rmi "$tag-again" >/dev/null 2>&1

    cid=$(docker run -d -p 127.0.0.1::8080 "$tag")
    port=$(docker port "$cid" 8080/tcp | sed -n '1s/.*://p')
    if [ -n "$port" ] && wait_http "http://127.0.0.1:$port/healthz" 30; then
        expect_eq "load: docker run serves 200 on /healthz" "200" \
            "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")"
        # static_base: the service runs as nonroot and Go finds the CA bundle.
        local whoami
        whoami=$(curl -s "http://127.0.0.1:$port/whoami")
        expect_eq "static_base: the service runs as nonroot (65532)" "uid=65532 gid=65532" "$(cut -d' ' -f1,2 <<<"$whoami")"
        if [ "$(sed -n 's/.*ca_roots=\([0-9]*\).*/\1/p' <<<"$whoami")" -gt 100 ] 2>/dev/null; then
            pass "static_base: Go's TLS trusts the CA bundle (>100 roots)"
        else
            fail "static_base: Go's TLS trusts the CA bundle (>100 roots)" "$whoami"
        fi
    else
        fail "load: docker run serves 200 on /healthz" "$(docker logs "$cid" 2>&1 | tail -5)"
    fi
    docker rm -f "$cid" >/dev/null 2>&1
    docker rmi -f "$tag" >/dev/null 2>&1

    # The default tag (service_image's local_tag) is used without --tag.
    if (cd examples && kbazel ex1 run //build/api:load >/dev/null 2>&1); then
        check "load: default tag kiln/api:dev present" docker image inspect kiln/api:dev
        docker rmi -f kiln/api:dev >/dev/null 2>&1
    else
        fail "load: default tag kiln/api:dev present" "bazel run :load failed"
    fi
}

# LOAD_WS: the generated workspace of the incremental checks (one per run).
load_ws() {
    [ -n "${LOAD_WS:-}" ] && return 0
    LOAD_NAME="e2e-$$"
    LOAD_WS="$KILN_WORK/load-ws"
    rm -rf "$LOAD_WS"
    write_load_workspace "$LOAD_WS" "$LOAD_NAME" || { unset LOAD_WS; return 1; }
}

# lrun TARGET [ARGS...]: bazel run in the generated workspace; output in $out.
lrun() {
    local target=$1; shift
    out=$(cd "$LOAD_WS" && kbazel load run "$target" -- "$@" 2>&1)
}

# expect_load NAME KIND TARGET [ARGS...]: the load succeeds and reports KIND
# ("tag only", "incremental load: sending 1 layer", "full load").
expect_load() {
    local name=$1 kind=$2; shift 2
    if lrun "$@" && grep -q "^kiln-load: $kind" <<<"$out"; then
        pass "$name"
    else
        fail "$name" "$(grep -E '^kiln-load|ERROR' <<<"$out" | tail -5)"
    fi
}

suite_load_incremental() {
    if ! docker_available; then
        fail "load: a Docker engine answers (required: this machine kind has one)"
        return
    fi
    load_ws || { fail "load: the incremental-load workspace is written (go build)"; return; }
    local base="kiln-load-$LOAD_NAME/base:latest" app="kiln-load-$LOAD_NAME/app:latest" bin config first again full
    bin="$(cd "$LOAD_WS" && kbazel load info bazel-bin 2>/dev/null)"
    expect_load "load: incremental: base image, docker lacks it: full load" "full load: all 1 layers" //:load_base
    expect_load "load: incremental: app on it: only its top layer is sent" \
        "incremental load: sending 1 layer file(s) of 2 layers" //:load
    config="sha256:$(sha256sum <"$bin/app.json" | cut -d' ' -f1)"
    first=$(docker image inspect "$app" --format '{{.Id}} {{json .RepoTags}} {{json .RootFS.Layers}} {{json .Config}}')
    expect_eq "load: incremental: image ID is the config digest, RepoTags the tag" "$config [\"$app\"]" "$(cut -d' ' -f1,2 <<<"$first")"
    expect_eq "load: incremental: docker run works" "hello from kiln|$(head -c 16 "$LOAD_WS/top.txt")" \
        "$(docker run --rm --network none "$app" | paste -sd'|')"
    expect_load "load: incremental: unchanged: tag only" "tag only: docker already has image $config" //:load
    again=$(docker image inspect "$app" --format '{{.Id}} {{json .RepoTags}} {{json .RootFS.Layers}} {{json .Config}}')
    expect_eq "load: incremental: tag only leaves the image as it was" "$first" "$again"

    # docker rmi of the base image (and of the app, which holds its layer
    # too): the engine lost the base layer, the next load is a full one.
    docker rmi "$app" "$base" >/dev/null 2>&1
    expect_load "load: incremental: after docker rmi of the base: full load" "full load: all 2 layers" //:load
    full=$(docker image inspect "$app" --format '{{.Id}} {{json .RepoTags}} {{json .RootFS.Layers}} {{json .Config}}')
    expect_eq "load: incremental: docker inspect equals a full load's (ID, RepoTags, layers, config)" "$first" "$full"

    # A 1 KiB change of the top layer: only it is sent.
    set_top "$LOAD_WS"
    expect_load "load: incremental: top layer changed: only it is sent" \
        "incremental load: sending 1 layer file(s) of 2 layers" //:load
    expect_eq "load: incremental: docker runs the changed image" "hello from kiln|$(head -c 16 "$LOAD_WS/top.txt")" \
        "$(docker run --rm --network none "$app" | paste -sd'|')"
    docker rmi "$app" "$base" >/dev/null 2>&1
}

# host_kiln_load WHAT: builds //:app's layout in the load workspace and kiln-load
# with cargo on the host (podman and ctr are not in the chroot Bazel runs in);
# sets kiln_load (the binary) and bin (bazel-bin). Fails "load: WHAT: ..." otherwise.
host_kiln_load() {
    load_ws || { fail "load: the incremental-load workspace is written (go build)"; return 1; }
    if ! (cd "$LOAD_WS" && kbazel load build --output_groups=+oci_layout //:app >/dev/null 2>&1) || ! cargo build -q -p kiln-load 2>/dev/null; then
        fail "load: $1: kiln-load and the image build"
        return 1
    fi
    kiln_load="${CARGO_TARGET_DIR:-$KILN_ROOT/target}/debug/kiln-load"
    bin="$(cd "$LOAD_WS" && kbazel load info bazel-bin 2>/dev/null)"
}

# podman is not in the chroot Bazel runs in (e2e/setup/install-bazel.sh: `bazel run`
# starts kiln-load there), so these checks run kiln-load built by cargo on the host
# with the launcher's arguments, on the layout Bazel built.
suite_load_podman() {
    if ! command -v podman >/dev/null 2>&1; then
        skip "load: podman: incremental loads" "podman is not installed (e2e/setup/deps.sh installs it)"
        return
    fi
    local app="kiln-load-$LOAD_NAME/app" bin config tags_inc tags_full kiln_load
    host_kiln_load podman || return
    config="$(sha256sum <"$bin/app.json" | cut -d' ' -f1)"
    prun() { out=$(KILN_CONTAINER_CLI=podman "$kiln_load" --layout "$bin/app.oci" --incremental "$@" 2>&1); }
    expect_podman() {
        local name=$1 kind=$2; shift 2
        if prun "$@" && grep -q "^kiln-load: $kind" <<<"$out"; then pass "$name"; else fail "$name" "$(tail -5 <<<"$out")"; fi
    }
    podman rmi --force "$config" >/dev/null 2>&1
    expect_podman "load: podman: image it lacks: full load" "full load: all 2 layers (podman does not have image" --tag "$app:a"
    expect_podman "load: podman: image it has: tag only" "tag only: podman already has image" --tag "$app:b"
    expect_eq "load: podman: image ID is the config digest" "$config" "$(podman image inspect "$app:b" --format '{{.Id}}')"
    tags_inc=$(podman image inspect "$config" --format '{{range .RepoTags}}{{.}} {{end}}' | tr ' ' '\n' | sort | paste -sd' ')
    # podman run cannot start containers on this machine (its sandbox refuses
    # runc's setrlimit), so the image's filesystem is checked through a created
    # container's export instead.
    local cid
    cid=$(podman create --network none "$app:b" 2>&1) &&
        expect_eq "load: podman: the loaded image's filesystem has the built top.txt (podman create + export)" \
            "$(cat "$LOAD_WS/top.txt")" "$(podman export "$cid" | tar -xOf - top.txt)" ||
        fail "load: podman: the loaded image's filesystem has the built top.txt (podman create + export)" "$cid"
    podman rm "$cid" >/dev/null 2>&1
    # The same two tags from one full load:
    podman rmi --force "$config" >/dev/null 2>&1
    prun --tag "$app:a" --tag "$app:b"
    tags_full=$(podman image inspect "$config" --format '{{range .RepoTags}}{{.}} {{end}}' 2>&1 | tr ' ' '\n' | sort | paste -sd' ')
    expect_eq "load: podman: RepoTags equal a full load's" "$tags_full" "$tags_inc"
    podman rmi --force "$config" >/dev/null 2>&1
}

# containerd's content API (what Docker's containerd image store gets, and
# `--containerd SOCKET` for containerd itself): Docker 20.10 here has the
# classic store, so these checks load into the containerd that runs under
# Docker, in a namespace of their own, and check the result with ctr.
suite_load_containerd() {
    local socket="" s
    for s in /run/containerd/containerd.sock /var/run/docker/containerd/containerd.sock; do
        [ -S "$s" ] && { socket=$s; break; }
    done
    if ! command -v ctr >/dev/null 2>&1 || [ -z "$socket" ]; then
        skip "load: containerd: content API import" "no ctr or no containerd socket (Docker's containerd package has both)"
        return
    fi
    local ns="kiln-e2e-$LOAD_NAME" app="kiln-load-$LOAD_NAME/app" bin manifest kiln_load out total
    host_kiln_load containerd || return
    ctrd() { ctr -a "$socket" -n "$ns" "$@"; }
    cimport() { out=$("$kiln_load" --layout "$bin/app.oci" --containerd "$socket" --namespace "$ns" "$@" 2>&1); }
    manifest=$(jq -r '.manifests[0].digest' "$bin/app.oci/index.json")
    total=$(($(jq '.layers | length' "$bin/app.oci/blobs/sha256/${manifest#sha256:}") + 2))

    if cimport --tag "$app:ctrd"; then
        expect_eq "load: containerd: a first import writes every blob (manifest, config, layers)" \
            "wrote $total blob(s), 0 already present" "$(grep -o 'wrote [0-9]* blob(s) ([0-9]* bytes), [0-9]* already present' <<<"$out" | sed -E 's/ \([0-9]+ bytes\)//')"
    else
        fail "load: containerd: a first import" "$out"
    fi
    expect_eq "load: containerd: ctr images ls: the tag names the built manifest" "$manifest" \
        "$(ctrd images ls | awk -v n="docker.io/$app:ctrd" '$1 == n { print $3 }')"
    # ctr counts the config and the layers.
    check "load: containerd: ctr images check: complete" \
        bash -c "ctr -a '$socket' -n '$ns' images check | grep -F 'docker.io/$app:ctrd' | grep -q 'complete ($((total - 1))/$((total - 1)))'"
    expect_eq "load: containerd: no lease is left behind" "" "$(ctrd leases ls -q | grep kiln-load || true)"
    if cimport --tag "$app:ctrd2"; then
        expect_eq "load: containerd: an unchanged image writes nothing" \
            "wrote 0 blob(s), $total already present" "$(grep -o 'wrote [0-9]* blob(s) ([0-9]* bytes), [0-9]* already present' <<<"$out" | sed -E 's/ \([0-9]+ bytes\)//')"
    else
        fail "load: containerd: an unchanged image" "$out"
    fi
    set_top "$LOAD_WS"
    if (cd "$LOAD_WS" && kbazel load build --output_groups=+oci_layout //:app >/dev/null 2>&1) && cimport --tag "$app:ctrd"; then
        # The new top layer, the config and the manifest; the bottom layers are there.
        expect_eq "load: containerd: after a top layer change only the new blobs are written" \
            "wrote 3 blob(s)" "$(grep -o 'wrote [0-9]* blob(s)' <<<"$out")"
        manifest=$(jq -r '.manifests[0].digest' "$bin/app.oci/index.json")
        expect_eq "load: containerd: the tag moved to the new manifest" "$manifest" \
            "$(ctrd images ls | awk -v n="docker.io/$app:ctrd" '$1 == n { print $3 }')"
    else
        fail "load: containerd: import after a top layer change" "$out"
    fi
    # containerd unpacks and runs it (native snapshotter: no overlay needed).
    out=$(timeout 120 ctr -a "$socket" -n "$ns" run --rm --snapshotter native "docker.io/$app:ctrd" "kiln-$LOAD_NAME" 2>&1)
    expect_eq "load: containerd: ctr run of the imported image prints the built top.txt" \
        "hello from kiln $(head -c 16 "$LOAD_WS/top.txt")" "$(tr '\n' ' ' <<<"$out" | sed 's/ $//')"
    ctrd images rm "docker.io/$app:ctrd" "docker.io/$app:ctrd2" >/dev/null 2>&1
}

# A two-platform image_index(image = ...) loaded through `bazel run`, and
# image_load and container_image targets whose names are shell code (a
# generated workspace: e2e/lib/launch_workspace.sh).
suite_load_launchers() {
    local out bin code i=0 tag arch
    if ! docker_available; then
        fail "load launchers: a Docker engine answers (required: this machine kind has one)" "$(docker info 2>&1 | tail -3)"
        return
    fi
    rm -f "$LAUNCH_MARK"
    write_launch_workspace || { fail "load launchers: the workspace is written"; return; }
    if ! out=$(launch_bazel build //... 2>&1); then
        fail "load launchers: bazel build //... (index, hostile names)" "$(tail -20 <<<"$out")"
        return
    fi
    bin="$LAUNCH_DIR/ws/bazel-bin"
    arch=$(host_arch)

    tag=kiln-e2e-launch/index:latest
    docker rmi -f "$tag" >/dev/null 2>&1
    check "index load: bazel run :load_index" launch_bazel run //:load_index
    # The host platform's manifest, and its config, as the built index names them.
    local manifest config
    manifest=$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' "$bin/index.index.json")
    config=$(find "$LAUNCH_DIR/ws/bazel-out/" -name portable.manifest.json -exec sh -c 'for f; do [ "sha256:$(sha256sum <"$f" | cut -d" " -f1)" = "$0" ] && jq -r .config.digest "$f"; done' "$manifest" {} + | sort -u)
    expect_eq "index load: docker's image ID is the $arch config digest the index names" "${config:-no $arch manifest}" \
        "$(docker image inspect "$tag" --format '{{.Id}}' 2>&1)"
    expect_eq "index load: docker's image is $arch" "$arch" "$(docker image inspect "$tag" --format '{{.Architecture}}' 2>&1)"
    docker rmi -f "$tag" >/dev/null 2>&1

    # Targets named with $(), backquotes, quotes, spaces. Docker's image ID
    # is the config digest the build wrote.
    local want
    want=$(jq -r .config.digest "$bin/one.manifest.json")
    while IFS= read -r code; do
        i=$((i + 1))
        tag="kiln-e2e-launch/name$i:latest"
        docker rmi -f "$tag" >/dev/null 2>&1
        check "hostile name $i: bazel run of image_load $(printf %q "load_$code")" launch_bazel run "//:load_$code"
        expect_eq "hostile name $i: the image_load loaded the built image" "$want" "$(docker image inspect "$tag" --format '{{.Id}}' 2>&1)"
        docker rmi -f "$tag" >/dev/null 2>&1
        tag="kiln-e2e-launch/image$i:latest"
        check "hostile name $i: bazel run of container_image $(printf %q "image_$code") -- --norun" \
            launch_bazel run "//:image_$code" -- --norun --tag "$tag"
        expect_eq "hostile name $i: the container_image loader loaded the built image" "$(jq -r .config.digest "$bin/image_$code.manifest.json" 2>&1)" \
            "$(docker image inspect "$tag" --format '{{.Id}}' 2>&1)"
        docker rmi -f "$tag" >/dev/null 2>&1
    done < <(launch_name_codes)
    if [ -e "$LAUNCH_MARK" ]; then
        fail "hostile names: no load launcher ran a command of its name" "$LAUNCH_MARK exists: a target name ran as shell"
    else
        pass "hostile names: no load launcher ran a command of its name"
    fi
}
