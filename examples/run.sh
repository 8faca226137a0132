#!/usr/bin/env bash
# The main job: build every example service, push each multi-arch index to a
# local docker-registry that this script starts, load the host-arch image into
# Docker and check it serves /healthz when an engine answers, print the digests.
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
    grep -q 'service_image(' "$build" && services+=("$(basename "$(dirname "$build")")")
done
targets=()
for svc in "${services[@]}"; do targets+=("//build/$svc:image"); done
log "bazel build ${targets[*]}"
bazel build "${targets[@]}"
bin=$(bazel info bazel-bin 2>/dev/null)

declare -A pushed=() loaded=()
for svc in "${services[@]}"; do
    log "push $svc"
    bazel run "//build/$svc:push" -- --repository "$REGISTRY/kiln/$svc" --tag latest
    pushed[$svc]="$REGISTRY/kiln/$svc:latest"
    if docker_available; then
        log "load $svc into Docker"
        bazel run "//build/$svc:load" -- --tag "kiln/$svc:dev"
        cid=$(docker run -d -p 127.0.0.1::8080 "kiln/$svc:dev")
        port=$(docker port "$cid" 8080/tcp | sed -n '1s/.*://p')
        if wait_http "http://127.0.0.1:$port/healthz" 30; then
            loaded[$svc]="kiln/$svc:dev (docker run: /healthz $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz"); /whoami $(curl -s "http://127.0.0.1:$port/whoami" 2>/dev/null || true))"
        else
            loaded[$svc]="kiln/$svc:dev (docker run: /healthz did not answer)"
        fi
        docker rm -f "$cid" >/dev/null
    else
        loaded[$svc]="(no Docker engine answers: not loaded)"
    fi
done

echo
for svc in "${services[@]}"; do
    echo "$svc"
    echo "  index        $(cat "$bin/build/$svc/image.digest")"
    for arch in amd64 arm64; do
        [ -f "$bin/build/$svc/${svc}_$arch.digest" ] && echo "  linux/$arch  $(cat "$bin/build/$svc/${svc}_$arch.digest")"
    done
    echo "  pushed       ${pushed[$svc]}"
    echo "  loaded       ${loaded[$svc]}"
done
$keep_registry && echo "registry left running at $REGISTRY (pid $(cat "$KILN_WORK/registry-main/pid"))"
exit 0
