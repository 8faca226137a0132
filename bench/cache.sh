#!/usr/bin/env bash
# Remote-cache traffic of the seven-service monorepo (examples/) through
# Debian's nginx as a Bazel HTTP cache, counted from nginx's access log:
#   1. bytes uploaded by a cold build of //... (CI);
#   2. bytes downloaded and actions run by a fresh build of every :image
#      (a developer's machine, --remote_download_toplevel);
#   3. the same after a change to one service (CI rebuild, then a fresh build).
# Side by side: the blobs a full OCI layout of every :image holds (what a
# layout default output would download) and the binaries + unique blobs.
#
#   bench/cache.sh        (KILN_WORK: scratch directory, default /tmp/kiln-e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/lib/common.sh
source e2e/lib/common.sh
# shellcheck source=e2e/lib/monorepo.sh
source e2e/lib/monorepo.sh
e2e/setup/deps.sh

ws="$KILN_WORK/bench-cache-ws"
mono_workspace "$ws"
start_cache bench
trap 'stop_cache bench; for ob in bc1 bc2 bc3; do bazel --output_base="$KILN_WORK/ob-$ob" shutdown >/dev/null 2>&1 || true; done' EXIT
images=()
for svc in "${MONO_SERVICES[@]}"; do images+=("//build/$svc:image"); done
run() { local ob=$1 log=$2; shift 2; (cd "$ws" && kbazel "$ob" "$@" --remote_cache="$CACHE_URL") >"$log" 2>&1; }
rm -rf "$KILN_WORK"/ob-bc{1,2,3}

n0=$(wc -l <"$CACHE_LOG")
run bc1 "$KILN_WORK/bc1.log" build //...
cold_up=$(cache_bytes "$CACHE_LOG" "$n0" PUT)
cold_actions=$(executed_actions "$KILN_WORK/bc1.log")

n0=$(wc -l <"$CACHE_LOG")
run bc2 "$KILN_WORK/bc2.log" build --remote_download_toplevel "${images[@]}"
fresh_down=$(cache_bytes "$CACHE_LOG" "$n0" GET)
fresh_actions=$(executed_actions "$KILN_WORK/bc2.log")

sed -i 's/hello from api/hello from the benchmark/' "$ws/build/api/main.go"
n0=$(wc -l <"$CACHE_LOG")
run bc1 "$KILN_WORK/bc1b.log" build //...
change_up=$(cache_bytes "$CACHE_LOG" "$n0" PUT)
change_actions=$(executed_actions "$KILN_WORK/bc1b.log")
n0=$(wc -l <"$CACHE_LOG")
run bc2 "$KILN_WORK/bc2b.log" build --remote_download_toplevel "${images[@]}"
change_down=$(cache_bytes "$CACHE_LOG" "$n0" GET)
change_fresh_actions=$(executed_actions "$KILN_WORK/bc2b.log")

# The comparison: every blob of every :image's OCI layout (built locally).
(cd "$ws" && kbazel bc1 build --output_groups=+oci_layout "${images[@]}") >"$KILN_WORK/bc1c.log" 2>&1
bin=$(cd "$ws" && kbazel bc1 info bazel-bin 2>/dev/null)
layouts=0
for svc in "${MONO_SERVICES[@]}"; do
    layouts=$((layouts + $(du -sbL --apparent-size "$bin/build/$svc/image.oci/blobs" | cut -f1)))
done
cache_size=$(du -sb --apparent-size "$CACHE_DIR" | cut -f1)

kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
echo "seven services, 2 architectures each (examples/), nginx remote cache"
printf '%-58s %14s %8s\n' "" bytes actions
printf '%-58s %14s %8s\n' "cold build //... (CI): uploaded" "$(kib "$cold_up")" "$cold_actions"
printf '%-58s %14s %8s\n' "fresh build of every :image: downloaded" "$(kib "$fresh_down")" "$fresh_actions"
printf '%-58s %14s %8s\n' "one service changed, CI rebuild: uploaded" "$(kib "$change_up")" "$change_actions"
printf '%-58s %14s %8s\n' "one service changed, fresh build of every :image: downloaded" "$(kib "$change_down")" "$change_fresh_actions"
printf '%-58s %14s\n' "for comparison: blobs of the 7 OCI layouts" "$(kib "$layouts")"
printf '%-58s %14s\n' "cache size after both builds" "$(kib "$cache_size")"
awk -v d="$fresh_down" -v l="$layouts" 'BEGIN { if (l > 0) printf "fresh download / layout bytes: %.4f\n", d / l }'
