#!/usr/bin/env bash
# Remote execution of the seven-service monorepo (examples/) on the REAPI
# cluster of e2e/lib/remote.sh (BuildGrid + one buildbox worker, all on this
# machine):
#   1. cold local build of every :image (fresh output base): actions, wall;
#   2. cold remote build (fresh output base, empty cluster,
#      --spawn_strategy=remote): actions, bytes uploaded to the CAS, wall;
#   3. warm remote build from a fresh output base with --remote_download_minimal:
#      actions executed, bytes downloaded, wall.
# Bytes uploaded: every unique input blob of the build's spawns that no spawn
# produced (sources, the Go SDK, the kiln tools), from Bazel's execution log:
# what Bazel must upload to an empty CAS (plus the Action and Command
# messages, a few KiB). Bytes downloaded: the regular files the build
# materialised in its output base (with --remote_download_minimal Bazel
# downloads only what a local step needs).
# On one machine the worker competes with Bazel for the same cores: these
# figures show the overhead and the bytes moved, not a speed-up.
#
#   bench/remote.sh        (KILN_WORK: scratch directory, default /tmp/kiln-e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/lib/common.sh
source e2e/lib/common.sh
# shellcheck source=e2e/lib/monorepo.sh
source e2e/lib/monorepo.sh
# shellcheck source=e2e/lib/remote.sh
source e2e/lib/remote.sh
e2e/setup/deps.sh

ws="$KILN_WORK/bench-remote-ws"
mono_workspace "$ws"
obs=(brl brr brw)
trap 'for ob in "${obs[@]}"; do bazel --output_base="$KILN_WORK/ob-$ob" shutdown >/dev/null 2>&1 || true; done; stop_remote_cluster' EXIT
images=()
for svc in "${MONO_SERVICES[@]}"; do images+=("//build/$svc:image"); done
for ob in "${obs[@]}"; do rm -rf "$KILN_WORK/ob-$ob"; done
start_remote_cluster >"$KILN_WORK/bench-remote-cluster.log" 2>&1 || { tail -20 "$KILN_WORK/bench-remote-cluster.log"; exit 1; }
remote=(--remote_executor="$REMOTE_EXECUTOR" --spawn_strategy=remote
    --extra_execution_platforms=@rules_kiln//platforms:remote_linux_x86_64 --jobs=8)

# timed OB LOG ARGS...: a bazel command in the workspace; prints its wall seconds.
timed() {
    local ob=$1 log=$2 start end
    shift 2
    # Analysis and fetching are not what is measured: fetch first.
    (cd "$ws" && kbazel "$ob" build --nobuild "$@") >"$log.fetch" 2>&1
    start=$(date +%s.%N)
    (cd "$ws" && kbazel "$ob" build "$@") >"$log" 2>&1
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }'
}

# uploaded EXECLOG: bytes of the unique input blobs no spawn of the build produced.
uploaded() {
    jq -rs '
        ([.[] | (.actualOutputs // [])[] | .digest.hash] | unique) as $produced
        | [.[] | (.inputs // [])[] | select(.digest != null) | .digest]
        | unique_by(.hash) | map(select(.hash as $h | $produced | index($h) | not))
        | map(.sizeBytes | tonumber) | add // 0' "$1"
}

# materialised OB: bytes of the regular files under the output base's bazel-out.
materialised() {
    local out="$KILN_WORK/ob-$1/execroot/_main/bazel-out"
    find "$out" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }'
}

local_wall=$(timed brl "$KILN_WORK/brl.log" "${images[@]}")
local_actions=$(executed_actions "$KILN_WORK/brl.log")

remote_wall=$(timed brr "$KILN_WORK/brr.log" "${remote[@]}" --execution_log_json_file="$KILN_WORK/brr.exec.json" "${images[@]}")
remote_actions=$(executed_actions "$KILN_WORK/brr.log")
remote_up=$(uploaded "$KILN_WORK/brr.exec.json")

warm_wall=$(timed brw "$KILN_WORK/brw.log" "${remote[@]}" --remote_download_minimal "${images[@]}")
warm_actions=$(executed_actions "$KILN_WORK/brw.log")
warm_down=$(materialised brw)

for svc in "${MONO_SERVICES[@]}"; do
    for ob in brl brr; do
        cat "$(cd "$ws" && kbazel "$ob" info bazel-bin 2>/dev/null)/build/$svc/image.digest" >>"$KILN_WORK/bench-remote-$ob.digests"
    done
done
same=$(cmp -s "$KILN_WORK/bench-remote-brl.digests" "$KILN_WORK/bench-remote-brr.digests" && echo yes || echo NO)
rm -f "$KILN_WORK"/bench-remote-br?.digests

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
echo "seven services, 2 architectures each (examples/), one machine: BuildGrid + one buildbox worker (4 concurrent jobs)"
printf '%-52s %8s %14s %8s\n' "" actions bytes "wall s"
printf '%-52s %8s %14s %8s\n' "cold local build" "$local_actions" "-" "$local_wall"
printf '%-52s %8s %14s %8s\n' "cold remote build: uploaded to the CAS" "$remote_actions" "$(mib "$remote_up")" "$remote_wall"
printf '%-52s %8s %14s %8s\n' "warm remote, fresh output base, minimal: downloaded" "$warm_actions" "$(kib "$warm_down")" "$warm_wall"
echo "remote digests equal the local build's: $same"
echo "$(grep -E '^INFO: [0-9]+ process' "$KILN_WORK/brr.log" | tail -1) (cold remote)"
echo "$(grep -E '^INFO: [0-9]+ process' "$KILN_WORK/brw.log" | tail -1) (warm remote)"
