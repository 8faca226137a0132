#!/usr/bin/env bash
# The main job: build every service of the monorepo, push each multi-arch
# index to a local docker-registry that this script starts, load the host-arch
# image into Docker and ask its /healthz, then print one table:
# service, index digest, per-arch digests, pushed reference, /healthz answer.
#
#   examples/run.sh [--keep-registry]
#
# Installs what is missing first (e2e/setup/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/lib/common.sh
source e2e/lib/common.sh
keep_registry=false
[ "${1:-}" = "--keep-registry" ] && keep_registry=true

e2e/setup/deps.sh
start_registry main
$keep_registry || trap stop_registries EXIT
log "docker-registry listening on $REGISTRY"

cd examples
services=()
for build in build/*/BUILD.bazel; do
    grep -q '^service_image(' "$build" && services+=("$(basename "$(dirname "$build")")")
done
targets=()
for svc in "${services[@]}"; do targets+=("//build/$svc:image"); done
# Under Bazel 8 and 9's defaults (.bazelrc: --config=bazel9), which 7.x accepts.
log "bazel build --config=bazel9 ${targets[*]}"
bazel build --config=bazel9 "${targets[@]}"
bin=$(bazel info --config=bazel9 bazel-bin 2>/dev/null)

declare -A pushed=() health=()
for svc in "${services[@]}"; do
    log "push $svc"
    bazel run --config=bazel9 "//build/$svc:push" -- --repository "$REGISTRY/kiln/$svc" --tag latest
    pushed[$svc]="$REGISTRY/kiln/$svc:latest@$(cat "$bin/build/$svc/image.digest")"
done
if docker_available; then
    for svc in "${services[@]}"; do
        log "load $svc into Docker as kiln/$svc:dev"
        bazel run --config=bazel9 "//build/$svc:load"
        cid=$(docker run -d -p 127.0.0.1::8080 "kiln/$svc:dev")
        port=$(docker port "$cid" 8080/tcp | sed -n '1s/.*://p')
        if wait_http "http://127.0.0.1:$port/healthz" 30; then
            health[$svc]=$(curl -s -w ' (%{http_code})' "http://127.0.0.1:$port/healthz" | tr -d '\n')
        else
            health[$svc]="did not answer"
        fi
        docker rm -f "$cid" >/dev/null
    done
else
    for svc in "${services[@]}"; do health[$svc]="not loaded: no Docker engine answers"; done
fi

digest_of() { if [ -f "$1" ]; then cut -c1-19 "$1"; else echo "-"; fi; }
echo
printf '%-10s %-20s %-20s %-20s %-58s %s\n' service index linux/amd64 linux/arm64 pushed /healthz
for svc in "${services[@]}"; do
    printf '%-10s %-20s %-20s %-20s %-58s %s\n' "$svc" \
        "$(digest_of "$bin/build/$svc/image.digest")" \
        "$(digest_of "$bin/build/$svc/${svc}_amd64.digest")" \
        "$(digest_of "$bin/build/$svc/${svc}_arm64.digest")" \
        "$REGISTRY/kiln/$svc:latest" "${health[$svc]}"
done
echo
echo "full digests:"
for svc in "${services[@]}"; do echo "  ${pushed[$svc]}"; done
$keep_registry && echo "registry left running at $REGISTRY (pid $(cat "$KILN_WORK/registry-main/pid"))"
exit 0
