#!/usr/bin/env bash
# Releasing the seven services of examples/, cold and again with nothing
# changed (no-op), counted by a pass-through proxy (e2e/lib/fault_proxy.py
# --faults off) in front of Debian's docker-registry:
#   - bazel run //:release (one kiln-push run: each blob once, mounts, tags last);
#   - the plain alternative: a loop of `skopeo copy --all` over the same
#     OCI layouts (the :image targets' oci_layout output group);
#   - lazy mode from a fresh output base (--remote_download_minimal,
#     --@rules_kiln//settings:push=lazy): bytes read from the remote cache
#     (nginx's log), cold and no-op.
# Requests and uploaded bytes are what the proxy forwarded; wall times are
# whole commands (bazel run includes Bazel's own start-up and analysis).
#
#   bench/release.sh      (KILN_WORK: scratch directory, default /tmp/kiln-e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/lib/common.sh
source e2e/lib/common.sh
# shellcheck source=e2e/lib/monorepo.sh
source e2e/lib/monorepo.sh
e2e/setup/deps.sh >/dev/null

ws="$KILN_WORK/bench-release-ws"
mono_workspace "$ws"
start_cache bench-release
proxies=()
trap 'stop_cache bench-release; stop_registries; for p in "${proxies[@]}"; do kill "$p" 2>/dev/null || true; done;
      for ob in brel1 brel2; do bazel --output_base="$KILN_WORK/ob-$ob" shutdown >/dev/null 2>&1 || true; done' EXIT
run() { local ob=$1 log=$2; shift 2; (cd "$ws" && kbazel "$ob" "$@") >"$log" 2>&1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# proxy NAME: a registry behind a counting proxy; sets PROXY and PLOG.
proxy() {
    start_registry "$1" >/dev/null
    PLOG="$KILN_WORK/bench-release-$1.proxy.log"
    local portfile="$KILN_WORK/bench-release-$1.port"
    rm -f "$portfile"; : >"$PLOG"
    python3 e2e/lib/fault_proxy.py --upstream "$REGISTRY" --port-file "$portfile" --log "$PLOG" --faults off &
    proxies+=($!)
    until [ -s "$portfile" ]; do sleep 0.1; done
    PROXY="127.0.0.1:$(cat "$portfile")"
}
# traffic LOG FROM: "<requests> <bytes sent to the registry>" after line FROM.
traffic() { tail -n +"$(($2 + 1))" "$1" | awk '$1 == "PASS" { n++; b += $5 } END { print n + 0, b + 0 }'; }

images=()
for svc in "${MONO_SERVICES[@]}"; do images+=("//build/$svc:image"); done
rm -rf "$KILN_WORK"/ob-brel1 "$KILN_WORK"/ob-brel2
run brel1 "$KILN_WORK/brel-build.log" build --remote_cache="$CACHE_URL" --output_groups=+oci_layout //... "${images[@]}"
bin=$(cd "$ws" && kbazel brel1 info bazel-bin 2>/dev/null)
# Bazel's server is up and the launcher built: the timings below are the pushes.
run brel1 "$KILN_WORK/brel-warm.log" build //:release

declare -A req bytes wall
proxy bench-kiln
for pass in cold noop; do
    n0=$(wc -l <"$PLOG"); t=$(now)
    run brel1 "$KILN_WORK/brel-$pass.log" run //:release -- --registry "$PROXY" --tag bench
    wall[kiln-$pass]=$(since "$t"); read -r "req[kiln-$pass]" "bytes[kiln-$pass]" < <(traffic "$PLOG" "$n0")
done
proxy bench-skopeo
for pass in cold noop; do
    n0=$(wc -l <"$PLOG"); t=$(now)
    for svc in "${MONO_SERVICES[@]}"; do
        skopeo copy --all --quiet --dest-tls-verify=false "oci:$bin/build/$svc/image.oci" "docker://$PROXY/kiln/$svc:bench"
    done
    wall[skopeo-$pass]=$(since "$t"); read -r "req[skopeo-$pass]" "bytes[skopeo-$pass]" < <(traffic "$PLOG" "$n0")
done

# Lazy: a fresh output base that downloads only what the run needs.
lazy=(--remote_cache="$CACHE_URL" --remote_download_minimal --@rules_kiln//settings:push=lazy --@rules_kiln//settings:remote_cache="$CACHE_URL")
blob_hexes=$(for svc in "${MONO_SERVICES[@]}"; do for a in amd64 arm64; do
    jq -r '.config.digest[7:], .layers[].digest[7:]' "$bin/build/$svc/${svc}_$a.manifest.json"; done; done | sort -u | tr '\n' ' ')
cas_blob_bytes() {
    tail -n +"$(($2 + 1))" "$1" | awk -v list="$3" 'BEGIN { n = split(list, h, " "); for (i = 1; i <= n; i++) want["/cas/" h[i]] = 1 }
        $1 == "GET" && $3 < 300 && ($2 in want) { b += $4 } END { print b + 0 }'
}
proxy bench-lazy
declare -A cas_all cas_blobs
for pass in cold noop; do
    n0=$(wc -l <"$CACHE_LOG"); p0=$(wc -l <"$PLOG"); t=$(now)
    run brel2 "$KILN_WORK/brel-lazy-$pass.log" run "${lazy[@]}" //:release -- --registry "$PROXY" --tag bench
    wall[lazy-$pass]=$(since "$t"); read -r "req[lazy-$pass]" "bytes[lazy-$pass]" < <(traffic "$PLOG" "$p0")
    cas_all[$pass]=$(cache_bytes "$CACHE_LOG" "$n0" GET)
    cas_blobs[$pass]=$(cas_blob_bytes "$CACHE_LOG" "$n0" "$blob_hexes")
done

printf '%-44s %10s %14s %9s\n' "seven services" requests "bytes uploaded" "wall (s)"
for k in kiln-cold skopeo-cold kiln-noop skopeo-noop lazy-cold lazy-noop; do
    case $k in
        kiln-*) what="bazel run //:release" ;; skopeo-*) what="skopeo copy --all, one per service" ;; lazy-*) what="bazel run //:release, lazy, fresh output base" ;;
    esac
    printf '%-44s %10s %14s %9s\n' "$what (${k#*-})" "${req[$k]}" "${bytes[$k]}" "${wall[$k]}"
done
echo
printf 'ratios (skopeo / kiln): cold requests %.1fx, no-op requests %.1fx, cold wall %.1fx, no-op wall %.1fx\n' \
    "$(awk -v a="${req[skopeo-cold]}" -v b="${req[kiln-cold]}" 'BEGIN { print a / b }')" \
    "$(awk -v a="${req[skopeo-noop]}" -v b="${req[kiln-noop]}" 'BEGIN { print a / b }')" \
    "$(awk -v a="${wall[skopeo-cold]}" -v b="${wall[kiln-cold]}" 'BEGIN { print a / b }')" \
    "$(awk -v a="${wall[skopeo-noop]}" -v b="${wall[kiln-noop]}" 'BEGIN { print a / b }')"
echo "no-op writes: kiln $(tail -n +1 "$KILN_WORK/bench-release-bench-kiln.proxy.log" | tail -n "${req[kiln-noop]}" | grep -cE '^PASS (PUT|POST|PATCH)' || true)," \
    "skopeo $(tail -n "${req[skopeo-noop]}" "$KILN_WORK/bench-release-bench-skopeo.proxy.log" | grep -cE '^PASS (PUT|POST|PATCH)' || true)"
echo "lazy, remote cache GET bytes: cold ${cas_all[cold]} in all, ${cas_blobs[cold]} of them blobs; no-op ${cas_all[noop]} in all, ${cas_blobs[noop]} of them blobs"
