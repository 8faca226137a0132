#!/usr/bin/env bash
# Benchmark: `bazel run :load` (image_load, incremental) of a ~1 GiB image into
# Docker, in one run: the first load (Docker lacks the image), an unchanged
# load, and a load after a 1 KiB top layer change; side by side with the plain
# full stream (`docker load -i` of the image's tarball, what a loader without
# the incremental path does every time) and the floor (`docker tag`).
# Prints seconds and ratios to the first load.
#
#   bench/load.sh [DATA_MIB]      default 1024
#
# KILN_BENCH_LOAD_DIR=DIR keeps the workspace (and its data.tar) there for the
# next run instead of in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN_ROOT=$(pwd)
# shellcheck source=e2e/lib/load_workspace.sh
source e2e/lib/load_workspace.sh
data_mib=${1:-1024}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-load.XXXXXX")
ws="${KILN_BENCH_LOAD_DIR:-$work/ws}"
ob="${KILN_BENCH_LOAD_DIR:+$KILN_BENCH_LOAD_DIR-ob}"
ob="${ob:-$work/ob}"
app=kiln-load-bench/app:latest
base=kiln-load-bench/base:latest
# The Rust tools are compiled once into this directory, shared with e2e runs.
export KILN_CARGO_TARGET_DIR=${KILN_CARGO_TARGET_DIR:-${KILN_WORK:-${TMPDIR:-/tmp}/kiln-e2e}/cargo-target}
kb() {
    local cmd=$1; shift
    case "$cmd" in
        build | run) (cd "$ws" && bazel --output_base="$ob" "$cmd" --repo_env=KILN_CARGO_TARGET_DIR="$KILN_CARGO_TARGET_DIR" "$@") ;;
        *) (cd "$ws" && bazel --output_base="$ob" "$cmd" "$@") ;;
    esac
}
cleanup() {
    docker rmi --force "$app" "$base" kiln-load-bench/plain:latest "${loaded_ids[@]}" >/dev/null 2>&1 || true
    kb shutdown >/dev/null 2>&1 || true
    if [ -d "$work/ob-examples" ]; then (cd "$work/examples" && bazel --output_base="$work/ob-examples" shutdown >/dev/null 2>&1) || true; fi
    rm -rf "$work"
}
loaded_ids=()
trap cleanup EXIT

write_load_workspace "$ws" bench "$data_mib"
s=$(date +%s.%N)
kb build //:app //:base //:load //:load_base >/dev/null 2>&1
echo "build of the ${data_mib} MiB image: $(echo "$(date +%s.%N) - $s" | bc -l | xargs printf '%.1f') s (not part of the figures)"

# seconds CMD...: wall time; the last kiln-load line CMD printed goes to $work/said.
seconds() {
    local s e
    s=$(date +%s.%N)
    "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }
    e=$(date +%s.%N)
    { grep '^kiln-load: ' "$work/log" || true; } | tail -1 | cut -c1-100 >"$work/said"
    echo "$e - $s" | bc -l
}
said() { cat "$work/said"; }
row() { printf '%-58s %6.2f s  %5.2fx   %s\n' "$1" "$2" "$(echo "$2 / $first" | bc -l)" "${3:-}"; }

first=$(seconds kb run //:load)
# Every image this run loads: the plain row below must start without them
# (an untagged older version still holds the layers it shares).
loaded_ids=("$(docker image inspect --format '{{.Id}}' "$app")")
row "bazel run :load, first (Docker lacks the image)" "$first" "$(said)"
t=$(seconds kb run //:load)
row "bazel run :load, unchanged" "$t" "$(said)"
t2=$(seconds kb run //:load)
row "bazel run :load, unchanged (again)" "$t2" "$(said)"
set_top "$ws"
t=$(seconds kb run //:load)
loaded_ids+=("$(docker image inspect --format '{{.Id}}' "$app")")
row "bazel run :load, after a 1 KiB top layer change" "$t" "$(said)"

# What the same loads cost without Bazel in front (the launcher alone).
kb run --script_path="$work/launcher.sh" //:load >/dev/null 2>&1
# The launcher runs where Bazel does (kiln-chroot: Bazel from e2e/setup/install-bazel.sh).
in_bazel_root=()
if command -v kiln-chroot >/dev/null 2>&1 && grep -q kiln-chroot "$(command -v bazel)" 2>/dev/null; then in_bazel_root=(kiln-chroot); fi
t=$(seconds "${in_bazel_root[@]}" "$work/launcher.sh")
row "  the launcher alone (kiln-load), unchanged" "$t" "$(said)"

kb build //:app.tar >/dev/null 2>&1
tarball="$(kb info bazel-bin 2>/dev/null)/app.tar"
docker rmi --force "$app" "${loaded_ids[@]}" >/dev/null 2>&1 || true
t=$(seconds docker load -i "$tarball")
row "plain: docker load -i app.tar (every layer, every time)" "$t" "$(stat -c %s "$tarball" | numfmt --to=iec) tarball"
# The image `docker load -i` just loaded ("Loaded image: NAME" or "Loaded image ID: ID").
loaded=$(grep -m1 '^Loaded image' "$work/log" | sed 's/^Loaded image[^:]*: //')
t=$(seconds docker tag "$loaded" kiln-load-bench/plain:latest)
row "limit: docker tag (what an unchanged load must do)" "$t"

# `make oci-load` of the seven example services (examples/: one `bazel run
# //dev:oci_load`), the first time and then unchanged.
# shellcheck source=e2e/lib/monorepo.sh
source e2e/lib/monorepo.sh
mono_workspace "$work/examples"
make_oci_load() {
    (cd "$work/examples" && make -s oci-load BAZEL="bazel --output_base=$work/ob-examples" \
        BAZEL_FLAGS="--repo_env=KILN_CARGO_TARGET_DIR=$KILN_CARGO_TARGET_DIR")
}
make_oci_load >/dev/null 2>&1
for run in 1 2 3; do
    t=$(seconds make_oci_load)
    printf '%-58s %6.2f s            %s\n' "make oci-load, seven services unchanged (run $run)" "$t" "$(said)"
done
