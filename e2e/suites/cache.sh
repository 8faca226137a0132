# The seven-service monorepo through a real remote cache (Debian's nginx,
# WebDAV PUT): what a cold build stores, what a fresh machine downloads,
# push from the cache, incremental rebuilds to the action, and a cache that
# goes away mid-build. Truth from nginx's access log, Bazel's own summary and
# its execution log.

# mono_bazel OB LOG ARGS...: bazel in the monorepo copy, output to LOG.
mono_bazel() {
    local ob=$1 log=$2; shift 2
    (cd "$MONO_WS" && kbazel "$ob" "$@") >"$log" 2>&1
}

# digests OB: "<file> <digest>" for every image and index of the services.
mono_digests() {
    local bin
    bin=$(cd "$MONO_WS" && kbazel "$1" info bazel-bin 2>/dev/null)
    (cd "$bin" && for svc in "${MONO_SERVICES[@]}"; do
        for f in build/$svc/image.digest build/$svc/${svc}_amd64.digest build/$svc/${svc}_arm64.digest; do
            echo "$f $(cat "$f" 2>/dev/null)"
        done
    done)
}

# mono_consistent OB: each service's index, manifests and layer blobs hash to
# the digests their descriptors and .digest files give.
mono_consistent() {
    local bin svc arch d
    bin=$(cd "$MONO_WS" && kbazel "$1" info bazel-bin 2>/dev/null) || return 1
    for svc in "${MONO_SERVICES[@]}"; do
        d="$bin/build/$svc"
        [ "sha256:$(sha256sum <"$d/image.index.json" | cut -d' ' -f1)" = "$(cat "$d/image.digest")" ] || { echo "$svc: index"; return 1; }
        for arch in amd64 arm64; do
            [ "sha256:$(sha256sum <"$d/${svc}_$arch.manifest.json" | cut -d' ' -f1)" = "$(cat "$d/${svc}_$arch.digest")" ] || { echo "$svc $arch: manifest"; return 1; }
            [ "sha256:$(sha256sum <"$d/${svc}_${arch}_layer-layer.tar.gz" | cut -d' ' -f1)" = "$(jq -r .digest "$d/${svc}_${arch}_layer-layer.json")" ] || { echo "$svc $arch: layer"; return 1; }
        done
    done
}

# spawn_labels EXECLOG: the target labels of the spawns Bazel executed.
spawn_labels() {
    jq -r 'select(.remoteCacheHit != true) | .targetLabel // empty' "$1" | sort -u
}

suite_cache() {
    source e2e/lib/monorepo.sh
    command -v nginx >/dev/null || { fail "cache: nginx is installed (e2e/setup/deps.sh)"; return; }
    MONO_WS="$KILN_WORK/mono-ws"
    mono_workspace "$MONO_WS" || { fail "cache: copy of examples/"; return; }
    start_cache suite || { fail "cache: nginx starts as a Bazel HTTP cache"; return; }
    pass "cache: nginx serves as a Bazel HTTP cache at $CACHE_URL"
    local remote=(--remote_cache="$CACHE_URL") log="$KILN_WORK/cache-build.log" n0 n1 images=() svc
    for svc in "${MONO_SERVICES[@]}"; do images+=("//build/$svc:image"); done

    # A cold build of everything (CI), uploading to the cache.
    rm -rf "$KILN_WORK/ob-mono1"
    if ! mono_bazel mono1 "$log" build "${remote[@]}" //...; then
        fail "cache: cold bazel build //... with the remote cache" "$(grep -E 'ERROR|rror' "$log" | head -8)"
        stop_cache suite; return
    fi
    pass "cache: cold bazel build //... of seven services with the remote cache ($(cache_bytes "$CACHE_LOG" 0 PUT) bytes uploaded, $(executed_actions "$log") actions)"
    local big_tars="" f
    while IFS= read -r f; do
        # ustar magic at offset 257: an uncompressed tar.
        [ "$(dd if="$f" bs=1 skip=257 count=5 2>/dev/null)" = ustar ] && big_tars="$big_tars $(basename "$f")"
    done < <(find "$CACHE_DIR" -type f -size +63k)
    expect_eq "cache: no uncompressed tar of 64 KiB or more in the cache" "" "$big_tars"
    local bin cache_size payload
    bin=$(cd "$MONO_WS" && kbazel mono1 info bazel-bin 2>/dev/null)
    cache_size=$(du -sb --apparent-size "$CACHE_DIR" | cut -f1)
    # Binaries plus unique blobs (layers, configs, manifests, indexes), by content,
    # plus the examples' Go build caches of the standard library (go_stdlib: one
    # per architecture, outputs the binaries' actions start from).
    payload=$(cd "$bin" && {
        find -L build -type f \( -path '*_binary/*' -o -name '*-layer.tar.gz' -o -name '*.manifest.json' \
            -o -name '*.index.json' -o -regex '.*/[a-z]+_\(amd64\|arm64\)\.json' \) -exec sha256sum {} +
        find -L "$(cd -P "$bin/../.." && pwd)" -type f -path '*/build/util/*.gocache/*' -exec sha256sum {} +
    } | sort -u -k1,1 | while read -r _ f; do stat -L -c %s "$f"; done | awk '{ n += $1 } END { print n + 0 }')
    if [ "$payload" -gt 0 ] && [ "$cache_size" -le $((payload * 11 / 10)) ]; then
        pass "cache: holds $cache_size bytes <= 1.1 x $payload (binaries + unique blobs + go_stdlib caches)"
    else
        fail "cache: holds <= 1.1 x binaries + unique blobs + go_stdlib caches" "cache $cache_size bytes, binaries + blobs + go_stdlib caches $payload"
    fi
    local want
    want=$(mono_digests mono1)

    # A fresh machine: every :image from the cache, nothing run, kilobytes down.
    rm -rf "$KILN_WORK/ob-mono2"
    n0=$(wc -l <"$CACHE_LOG")
    if mono_bazel mono2 "$log" build "${remote[@]}" --remote_download_toplevel "${images[@]}"; then
        n1=$(wc -l <"$CACHE_LOG")
        expect_eq "cache: a fresh build of every :image runs 0 actions" "0" "$(executed_actions "$log")"
        local down
        down=$(cache_bytes "$CACHE_LOG" "$n0" GET)
        if [ "$down" -lt 1048576 ]; then
            pass "cache: a fresh build of every :image downloads $down bytes (< 1 MiB, $((n1 - n0)) requests)"
        else
            fail "cache: a fresh build of every :image downloads < 1 MiB" "$down bytes"
        fi
        # Only the top-level outputs (index JSON and image.digest) are downloaded.
        expect_eq "cache: the fresh build has the same index digests" "$(grep image.digest <<<"$want")" "$(mono_digests mono2 | grep image.digest)"
    else
        fail "cache: fresh bazel build of every :image" "$(grep -E 'ERROR|rror' "$log" | head -8)"
    fi

    # Push from a build that downloaded nothing but what the push runs with.
    if start_registry cache; then
        if mono_bazel mono2 "$log" run "${remote[@]}" --remote_download_minimal //build/gateway:push -- --repository "$REGISTRY/kiln/gateway" --tag cache; then
            expect_eq "cache: bazel run :push with --remote_download_minimal pushes the built digest" \
                "$(grep '^build/gateway/image.digest ' <<<"$want" | cut -d' ' -f2)" \
                "sha256:$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/kiln/gateway:cache" | sha256sum | cut -d' ' -f1)"
        else
            fail "cache: bazel run :push with --remote_download_minimal" "$(grep -E 'ERROR|rror|kiln' "$log" | head -8)"
        fi
    else
        fail "cache: docker-registry starts"
    fi

    # Incremental to the action: one service's main.go.
    local exec_log="$KILN_WORK/cache-exec.json" labels before after ran
    before=$(mono_digests mono1)
    sed -i 's/hello from api/hello from the changed api/' "$MONO_WS/build/api/main.go"
    if mono_bazel mono1 "$log" build "${remote[@]}" --execution_log_json_file="$exec_log" //...; then
        ran=$(executed_actions "$log")
        if [ "$ran" -ge 1 ] && [ "$ran" -le 12 ]; then pass "cache: a change to api/main.go runs $ran actions (1..12)"; else fail "cache: a change to api/main.go runs 1..12 actions" "$ran ($(grep -E '^INFO: [0-9]+ process' "$log"))"; fi
        labels=$(spawn_labels "$exec_log" | grep -v '^//build/api:' | tr '\n' ' ')
        expect_eq "cache: only //build/api targets ran (execution log)" "" "$labels"
        after=$(mono_digests mono1)
        expect_eq "cache: every other service's digests are unchanged" "$(grep -v '^build/api/' <<<"$before")" "$(grep -v '^build/api/' <<<"$after")"
        expect_eq "cache: api's three digests changed" "3" "$(diff <(grep '^build/api/' <<<"$before") <(grep '^build/api/' <<<"$after") | grep -c '^>')"
    else
        fail "cache: rebuild after a change to api/main.go" "$(grep -E 'ERROR|rror' "$log" | head -8)"
    fi

    # build/util: every service, never the base.
    before=$(mono_digests mono1)
    sed -i 's/"ok %s %s\/%s\\n"/"ok %s %s\/%s (util changed)\\n"/' "$MONO_WS/build/util/util.go"
    if mono_bazel mono1 "$log" build "${remote[@]}" --execution_log_json_file="$exec_log" //...; then
        labels=$(spawn_labels "$exec_log" | sed -n 's|^//build/\([a-z]*\):.*|\1|p' | sort -u | tr '\n' ' ')
        expect_eq "cache: a change to build/util rebuilds every service and not the base" \
            "$(printf '%s\n' "${MONO_SERVICES[@]}" | sort | tr '\n' ' ')" "$labels"
        after=$(mono_digests mono1)
        expect_eq "cache: every service's index digest changed" "0" \
            "$(comm -12 <(grep 'image.digest' <<<"$before" | sort) <(grep 'image.digest' <<<"$after" | sort) | wc -l)"
    else
        fail "cache: rebuild after a change to build/util" "$(grep -E 'ERROR|rror' "$log" | head -8)"
    fi

    # The cache goes away mid-build: Bazel builds locally, outputs stay right.
    sed -i 's/hello from the changed api/hello from api, third version/' "$MONO_WS/build/api/main.go"
    n0=$(wc -l <"$CACHE_LOG")
    mono_bazel mono1 "$log" build "${remote[@]}" //... &
    local build_pid=$! waited=0
    # The build's first cache request is the moment to pull the plug.
    until [ "$(wc -l <"$CACHE_LOG")" -gt "$n0" ] || ! kill -0 "$build_pid" 2>/dev/null || [ $waited -ge 600 ]; do
        sleep 0.1; waited=$((waited + 1))
    done
    stop_cache suite
    if wait "$build_pid"; then
        pass "cache: a build whose cache stops mid-build succeeds (local execution)"
        # Nothing corrupt: every blob hashes to what its descriptor says.
        check "cache: after the interrupted build every manifest, index and layer matches its digest" mono_consistent mono1
    else
        fail "cache: a build whose cache stops mid-build succeeds" "$(grep -E 'ERROR|rror|WARN' "$log" | head -8)"
    fi
    for ob in mono1 mono2; do bazel --output_base="$KILN_WORK/ob-$ob" shutdown >/dev/null 2>&1; done
}
