# bazel run //build/api:load into the Docker engine, then docker run and /healthz.
suite_load() {
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
