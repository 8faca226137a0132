# Local development as in the seed: `make oci-load` loads all seven services
# as kiln/<service>:dev, dev/compose.yaml runs them, and the gateway reaches
# the api over the compose network. Checked with docker-compose and curl.
suite_compose() {
    source e2e/lib/monorepo.sh
    if ! docker_available; then
        fail "compose: a Docker engine answers (required: this machine kind has one)" "$(docker info 2>&1 | tail -3)"
        return
    fi
    command -v docker-compose >/dev/null || { fail "compose: docker-compose is installed"; return; }
    local log="$KILN_WORK/compose.log" svc port project="kilne2e$$"
    # The examples' own output base (the examples suite builds there first),
    # under the configuration kbazel uses (KILN_BAZEL_CONFIG).
    local config=${KILN_BAZEL_CONFIG-bazel9}
    if (cd examples && make oci-load BAZEL="bazel --output_base=$KILN_WORK/ob-ex1" BAZEL_CONFIG="${config:+--config=$config}" BAZEL_FLAGS="--repo_env=KILN_CARGO_TARGET_DIR=$KILN_CARGO_TARGET_DIR" >"$log" 2>&1); then
        pass "compose: make oci-load"
    else
        fail "compose: make oci-load" "$(grep -E 'ERROR|rror|kiln' "$log" | head -8)"
        return
    fi
    local missing=""
    for svc in "${MONO_SERVICES[@]}"; do
        docker image inspect "kiln/$svc:dev" >/dev/null 2>&1 || missing="$missing $svc"
    done
    expect_eq "compose: every service is loaded as kiln/<service>:dev" "" "$missing"
    port=$(free_port)
    if ! GATEWAY_PORT=$port docker-compose -p "$project" -f examples/dev/compose.yaml up -d >"$log" 2>&1; then
        fail "compose: docker-compose up -d" "$(tail -8 "$log")"
        docker-compose -p "$project" -f examples/dev/compose.yaml down >/dev/null 2>&1
        return
    fi
    pass "compose: docker-compose up -d runs all seven"
    expect_eq "compose: seven containers are running" "7" \
        "$(docker-compose -p "$project" -f examples/dev/compose.yaml ps -q | xargs docker inspect -f '{{.State.Running}}' | grep -c true)"
    if wait_http "http://127.0.0.1:$port/healthz" 30; then
        local body
        body=$(curl -s "http://127.0.0.1:$port/api/hello")
        expect_eq "compose: the gateway's /api/hello comes from the api over the compose network" "api /api/hello hello from api" \
            "$(jq -r '"\(.service) \(.path) \(.message)"' <<<"$body" 2>/dev/null || echo "$body")"
    else
        fail "compose: the gateway answers /healthz" "$(docker-compose -p "$project" -f examples/dev/compose.yaml logs --tail 5 2>&1)"
    fi
    check "compose: docker-compose down" docker-compose -p "$project" -f examples/dev/compose.yaml down
}
