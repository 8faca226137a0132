# bazel run //:release: the seven services of examples/ in one kiln-push run,
# through a fault-injecting proxy (e2e/lib/fault_proxy.py: 503, 429 and 500
# answers, Retry-After, connection resets mid-upload and after the registry
# completed it, slow answers past the deadline) in front of Debian's
# docker-registry; then a no-op release, a read-only registry, htpasswd auth,
# and lazy pushes from a fresh output base through nginx as the remote cache.
# Truth from the registry's own access log, nginx's log, and skopeo.

# rel_bazel OB LOG ARGS...: bazel in the workspace copy, output to LOG.
rel_bazel() {
    local ob=$1 log=$2; shift 2
    (cd "$REL_WS" && kbazel "$ob" "$@") >"$log" 2>&1
}

# start_fault_proxy UPSTREAM LOG FAULTS: sets PROXY (host:port) and PROXY_PID.
start_fault_proxy() {
    local portfile="$KILN_WORK/release-proxy.port"
    rm -f "$portfile"; : >"$2"
    python3 e2e/lib/fault_proxy.py --upstream "$1" --port-file "$portfile" --log "$2" --faults "$3" &
    PROXY_PID=$!
    local start=$SECONDS
    until [ -s "$portfile" ]; do
        kill -0 "$PROXY_PID" 2>/dev/null || return 1
        [ $((SECONDS - start)) -lt 30 ] || return 1
        sleep 0.1
    done
    PROXY="127.0.0.1:$(cat "$portfile")"
}

# registry_requests LOG FROM_LINE: "METHOD PATH STATUS" of each request after line FROM_LINE.
registry_requests() {
    tail -n +"$(($2 + 1))" "$1" | sed -nE 's/.*"(GET|HEAD|PUT|POST|PATCH|DELETE) ([^ ]*) HTTP[^"]*" ([0-9]+) .*/\1 \2 \3/p'
}

# writes_and_requests LOG FROM_LINE: "<writes> <requests>" after line FROM_LINE.
writes_and_requests() {
    registry_requests "$1" "$2" | awk '$1 ~ /^(POST|PUT|PATCH|DELETE)$/ { w++ } { n++ } END { print w + 0, n + 0 }'
}

# service_blobs SVC: "<hex> <size>" of each config and layer of SVC's images.
service_blobs() {
    local arch
    for arch in amd64 arm64; do
        jq -r '.config, .layers[] | "\(.digest[7:]) \(.size)"' "$REL_BIN/build/$1/$1_$arch.manifest.json"
    done | sort -u
}

# tag_digest REPO:TAG: the digest of what skopeo reads at the tag.
tag_digest() {
    echo "sha256:$(skopeo inspect --raw --tls-verify=false "docker://$1" 2>/dev/null | sha256sum | cut -d' ' -f1)"
}

release_fault_checks() {
    local svc log="$KILN_WORK/release-faults.log" plog="$KILN_WORK/release-proxy.log" out
    start_registry release-faults || { fail "release: docker-registry starts"; return; }
    local reg=$REGISTRY reglog=$REGISTRY_LOG
    start_fault_proxy "$reg" "$plog" on || { fail "release: the fault proxy starts"; return; }
    # A short deadline: the proxy's slow answer (4 s) must time out and be retried.
    if KILN_REGISTRY_TIMEOUT=2 rel_bazel rel-ci "$log" run //:release -- --registry "$PROXY" --tag v1; then
        pass "release: bazel run //:release through the fault proxy exits 0"
    else
        fail "release: bazel run //:release through the fault proxy exits 0" "$(grep -E 'kiln-push|ERROR' "$log" | tail -8)"
    fi
    kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null
    local kind
    for kind in "FAULT 503 HEAD" "FAULT 429 POST" "FAULT 502 POST" "FAULT 500 PUT" "FAULT reset HEAD" \
        "FAULT reset-mid-upload PUT" "FAULT reset-after-upstream-201 PUT" "FAULT slow-4s HEAD" "FAULT slow-1s PUT"; do
        if grep -q "^$kind " "$plog"; then pass "release: the proxy injected $kind"; else fail "release: the proxy injected $kind" "$(grep -c FAULT "$plog") faults logged"; fi
    done
    expect_eq "release: kiln-push said it retried (Retry-After honoured, 1.0 s)" "yes" \
        "$(grep -q 'kiln-push: retrying .* in 1.0 s .*HTTP 429' "$log" && echo yes || echo no)"
    expect_eq "release: one output line per service (target, repository@digest, tags)" "7" \
        "$(grep -cE "^//build/[a-z]+:push $PROXY/kiln/[a-z]+@sha256:[0-9a-f]{64} tags: latest, v1$" "$log")"
    local wrong=""
    for svc in "${MONO_SERVICES[@]}"; do
        for tag in v1 latest; do
            [ "$(tag_digest "$reg/kiln/$svc:$tag")" = "$(cat "$REL_BIN/build/$svc/image.digest")" ] || wrong="$wrong $svc:$tag"
        done
    done
    expect_eq "release: skopeo inspect --raw of every tag (7 services x 2) gives the built index digest" "" "$wrong"

    # The registry's own log: every blob completed exactly once across all
    # repositories; every other (repository, blob) pair mounted.
    local all pairs=0 unique=0 twice="" hex completed mounts
    all=$(for svc in "${MONO_SERVICES[@]}"; do service_blobs "$svc" | sed "s/^/$svc /"; done)
    pairs=$(wc -l <<<"$all")
    for hex in $(awk '{ print $2 }' <<<"$all" | sort -u); do
        unique=$((unique + 1))
        completed=$(registry_requests "$reglog" 0 | grep -cE "^PUT /v2/[^ ]*/blobs/uploads/[^ ]*$hex[^ ]* 201$")
        [ "$completed" = 1 ] || twice="$twice ${hex:0:12}:$completed"
    done
    expect_eq "release: registry log: each of the $unique blob digests has exactly one completed upload" "" "$twice"
    mounts=$(registry_requests "$reglog" 0 | grep -cE '^POST /v2/[^ ]*/blobs/uploads/\?[^ ]*mount=[^ ]* 201$')
    expect_eq "release: registry log: the other (repository, blob) pairs were mounted ($pairs pairs, $unique uploads)" \
        "$((pairs - unique))" "$mounts"
    local first_tag last_manifest
    first_tag=$(registry_requests "$reglog" 0 | grep -nE '^PUT /v2/[^ ]*/manifests/(v1|latest) 201$' | head -1 | cut -d: -f1)
    last_manifest=$(registry_requests "$reglog" 0 | grep -nE '^PUT /v2/[^ ]*/manifests/sha256:[0-9a-f]+ 201$' | tail -1 | cut -d: -f1)
    if [ -n "$first_tag" ] && [ -n "$last_manifest" ] && [ "$first_tag" -gt "$last_manifest" ]; then
        pass "release: registry log: the first tag PUT comes after the last manifest PUT of every service"
    else
        fail "release: registry log: tags come after every manifest" "first tag at $first_tag, last manifest at $last_manifest"
    fi

    local log2="$KILN_WORK/release-after.log"
    # Again, straight to the registry: nothing to do.
    local n0 wr
    n0=$(wc -l <"$reglog")
    rel_bazel rel-ci "$log2" run //:release -- --registry "$reg" --tag v1 ||
        fail "release: the second release exits 0" "$(grep -E 'kiln-push|ERROR' "$log2" | tail -5)"
    wr=$(writes_and_requests "$reglog" "$n0")
    expect_eq "release: the second release makes 0 writes (registry log)" "0" "${wr% *}"
    if [ "${wr#* }" -le 28 ]; then pass "release: the second release makes ${wr#* } requests (<= 4 per service)"; else fail "release: the second release makes <= 28 requests" "${wr#* }"; fi
    check "release: the second release says nothing was to do" grep -q 'nothing to do: everything was in place' "$log2"
    n0=$(wc -l <"$reglog")
    rel_bazel rel-ci "$log2" run //build/api:push -- --repository "$reg/kiln/api" --tag v1 ||
        fail "release: a single :push of unchanged content exits 0" "$(tail -5 "$log2")"
    wr=$(writes_and_requests "$reglog" "$n0")
    expect_eq "release: a :push whose tag holds the digest makes 0 writes (no tag PUT)" "0" "${wr% *}"
    if [ "${wr#* }" -le 4 ]; then pass "release: ... and ${wr#* } requests (<= 4)"; else fail "release: a no-op :push makes <= 4 requests" "${wr#* }"; fi

    # Stamped remote_tags of a push work in a release as they do for image_push.
    sed -i 's|load("@rules_kiln//rules:defs.bzl", "image_release")|load("@rules_kiln//rules:defs.bzl", "image_push", "image_release")|' "$REL_WS/BUILD.bazel"
    { echo; cat "$KILN_ROOT/e2e/fixtures/release_stamped/targets.bzl.txt"; } >>"$REL_WS/BUILD.bazel"
    if rel_bazel rel-ci "$log2" run --embed_label=42 //:stamped_release -- --registry "$reg" --tag v1; then
        expect_eq "release: a stamped remote_tags ({BUILD_EMBED_LABEL}) plus --tag, at --registry (ghcr.io/acme/stamped moved)" "r42 v1" \
            "$(skopeo list-tags --tls-verify=false "docker://$reg/acme/stamped" | jq -r '[.Tags[] | select(startswith("sha256-") | not)] | sort | join(" ")')"
    else
        fail "release: a release of a stamped push" "$(grep -E 'kiln-push|ERROR' "$log2" | tail -5)"
    fi

    # A refusal: the read-only registry answers 405 to the first upload.
    local ro
    KILN_REGISTRY_STORAGE="maintenance: {readonly: {enabled: true}}" start_registry release-ro ||
        { fail "release: read-only docker-registry starts"; return; }
    ro=$REGISTRY
    out=$(rel_bazel rel-ci "$log2" run //:release -- --registry "$ro" --tag v1; echo "rc=$?"; cat "$log2")
    if grep -qE '^rc=[1-9]' <<<"$out"; then pass "release: against a read-only registry the release exits non-zero"; else fail "release: against a read-only registry the release exits non-zero" "$(grep '^rc=' <<<"$out")"; fi
    if grep -qE "kiln-push: //build/[a-z]+:push: .*registry $ro, repository kiln/[a-z]+: .*HTTP 405 Method Not Allowed from http://$ro/v2/kiln/[a-z]+/blobs/uploads/: Method not allowed" <<<"$out"; then
        pass "release: the read-only refusal names the target, the repository and the registry's message (405)"
    else
        fail "release: the read-only refusal names target, repository and message" "$(grep 'kiln-push:' <<<"$out" | tail -3)"
    fi
    expect_eq "release: a refusal is not retried" "0" "$(grep -c 'retrying' <<<"$out")"
    expect_eq "release: the read-only registry has no repository" '[]' "$(curl -s "http://$ro/v2/_catalog" | jq -c '.repositories // []')"

    # htpasswd: Basic auth from Docker's config; wrong credentials are a clear error.
    local htpasswd="$KILN_WORK/release-htpasswd" good="$KILN_WORK/release-auth-good" bad="$KILN_WORK/release-auth-bad" auth
    htpasswd -Bbn kiln s3cret-rel >"$htpasswd"
    start_registry release-auth "$htpasswd" || { fail "release: htpasswd docker-registry starts"; return; }
    auth=$REGISTRY
    mkdir -p "$good" "$bad"
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$auth" "$(printf 'kiln:s3cret-rel' | base64)" >"$good/config.json"
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$auth" "$(printf 'kiln:wr0ng-pass' | base64)" >"$bad/config.json"
    if DOCKER_CONFIG="$good" rel_bazel rel-ci "$log2" run //:release -- --registry "$auth" --tag v1; then
        expect_eq "release: with htpasswd (Basic) credentials every service is pushed" "$(cat "$REL_BIN/build/vault/image.digest")" \
            "$(skopeo inspect --raw --creds kiln:s3cret-rel --tls-verify=false "docker://$auth/kiln/vault:v1" | sha256sum | sed 's/^/sha256:/; s/ .*//')"
    else
        fail "release: with htpasswd credentials" "$(grep 'kiln-push' "$log2" | tail -5)"
    fi
    out=$(DOCKER_CONFIG="$bad" rel_bazel rel-ci "$log2" run //:release -- --registry "$auth" --tag v2; echo "rc=$?"; cat "$log2")
    if grep -q '^rc=0' <<<"$out"; then
        fail "release: wrong credentials fail the release" "exit 0"
    elif grep -qE "kiln-push: //build/[a-z]+:push: registry $auth, repository kiln/[a-z]+: .*HTTP 401.*accessed using credentials for user \"kiln\" from auths" <<<"$out"; then
        pass "release: wrong credentials fail with HTTP 401, naming the target and where the credentials came from"
    else
        fail "release: wrong credentials give a clear error" "$(grep 'kiln-push' <<<"$out" | tail -3)"
    fi
    expect_eq "release: no password in any output" "0" "$(grep -c -e 's3cret-rel' -e 'wr0ng-pass' <<<"$out")"
    expect_eq "release: wrong credentials set no v2 tag" "" "$(skopeo list-tags --creds kiln:s3cret-rel --tls-verify=false "docker://$auth/kiln/api" | jq -r '.Tags[] | select(. == "v2")')"
}

# cas_blob_bytes LOG FROM_LINE HEXES: bytes of GET /cas/<hex> hits after FROM_LINE, for the given blob hexes.
cas_blob_bytes() {
    tail -n +"$(($2 + 1))" "$1" | awk -v list="$3" '
        BEGIN { n = split(list, h, " "); for (i = 1; i <= n; i++) want["/cas/" h[i]] = 1 }
        $1 == "GET" && $3 < 300 && ($2 in want) { b += $4 } END { print b + 0 }'
}

release_lazy_checks() {
    local log="$KILN_WORK/release-lazy.log" lazy reg n0 bytes all_hexes worker_new want
    start_registry release-lazy || { fail "release: docker-registry starts (lazy)"; return; }
    reg=$REGISTRY
    lazy=(--remote_cache="$CACHE_URL" --@rules_kiln//settings:push=lazy --@rules_kiln//settings:remote_cache="$CACHE_URL")
    # Six services first (worker is "added" below), from CI's own outputs.
    sed -i '/"\/\/build\/worker:push",/d' "$REL_WS/BUILD.bazel"
    n0=$(wc -l <"$CACHE_LOG")
    if rel_bazel rel-ci "$log" run "${lazy[@]}" //:release -- --registry "$reg" --tag v1; then
        all_hexes=$(for svc in "${MONO_SERVICES[@]}"; do service_blobs "$svc"; done | awk '{ print $1 }' | sort -u | tr '\n' ' ')
        expect_eq "release (lazy): a release from CI's output base reads its blobs locally (0 blob bytes from the cache)" "0" \
            "$(cas_blob_bytes "$CACHE_LOG" "$n0" "$all_hexes")"
    else
        fail "release (lazy): six services from CI's output base" "$(grep -E 'kiln-push|ERROR' "$log" | tail -5)"
    fi

    # A fresh machine, --remote_download_minimal: a no-op release downloads no blob.
    rm -rf "$KILN_WORK/ob-rel-fresh"
    n0=$(wc -l <"$CACHE_LOG")
    if rel_bazel rel-fresh "$log" run "${lazy[@]}" --remote_download_minimal //:release -- --registry "$reg" --tag v1; then
        expect_eq "release (lazy): the fresh output base runs no action (every output from the cache)" "0" "$(executed_actions "$log")"
        expect_eq "release (lazy): a no-op release from a fresh output base downloads 0 blob bytes (nginx log)" "0" \
            "$(cas_blob_bytes "$CACHE_LOG" "$n0" "$all_hexes")"
        bytes=$(cache_bytes "$CACHE_LOG" "$n0" GET)
        if [ "$bytes" -lt 1048576 ]; then
            pass "release (lazy): ... all it downloaded from the cache: $bytes bytes (< 1 MiB: manifests, descriptors, specs)"
        else
            fail "release (lazy): a no-op lazy release downloads < 1 MiB in all" "$bytes bytes"
        fi
    else
        fail "release (lazy): no-op release from a fresh output base" "$(grep -E 'kiln-push|ERROR' "$log" | tail -5)"
    fi

    # Adding worker: only its new blobs come from the cache (the base layer is mounted).
    (cd "$KILN_ROOT/examples" && cp BUILD.bazel "$REL_WS/BUILD.bazel")
    worker_new=$(comm -23 <(service_blobs worker) <(for svc in api gateway ctrl vault krane dashboard; do service_blobs "$svc"; done | sort -u))
    want=$(awk '{ n += $2 } END { print n + 0 }' <<<"$worker_new")
    rm -rf "$KILN_WORK/ob-rel-fresh2"
    n0=$(wc -l <"$CACHE_LOG")
    if rel_bazel rel-fresh2 "$log" run "${lazy[@]}" --remote_download_minimal //:release -- --registry "$reg" --tag v1; then
        bytes=$(cas_blob_bytes "$CACHE_LOG" "$n0" "$all_hexes")
        expect_eq "release (lazy): adding worker downloads exactly its $(wc -l <<<"$worker_new") new blobs ($want bytes) from the cache" "$want" "$bytes"
        expect_eq "release (lazy): ... and nothing of the six others" "$want" \
            "$(cas_blob_bytes "$CACHE_LOG" "$n0" "$(awk '{ print $1 }' <<<"$worker_new" | tr '\n' ' ')")"
        expect_eq "release (lazy): worker:v1 holds the built digest" "$(cat "$REL_BIN/build/worker/image.digest")" "$(tag_digest "$reg/kiln/worker:v1")"
        check "release (lazy): the summary names the blobs uploaded from the cache" grep -q 'pushed (from the remote cache) blob' "$log"
    else
        fail "release (lazy): adding a service from a fresh output base" "$(grep -E 'kiln-push|ERROR' "$log" | tail -5)"
    fi

    # A blob in neither the cache nor the local outputs: the error names it.
    local gone
    gone=$(awk 'NR == 1 { print $1 }' <<<"$worker_new")
    rm -f "$CACHE_DIR/cas/$gone"
    local out
    out=$(rel_bazel rel-fresh2 "$log" run "${lazy[@]}" --remote_download_minimal //build/worker:push -- --repository "$reg/kiln/elsewhere" --tag v1; echo "rc=$?"; cat "$log")
    if ! grep -q '^rc=0' <<<"$out" && grep -q "//build/worker:push: blob sha256:$gone: neither in the local outputs (.*) nor in the remote cache ($CACHE_URL/cas/$gone)" <<<"$out"; then
        pass "release (lazy): a blob in neither the cache nor the outputs is an error naming it"
    else
        fail "release (lazy): a blob in neither the cache nor the outputs is an error naming it" "$(grep 'kiln-push' <<<"$out" | tail -3)"
    fi
    expect_eq "release (lazy): ... and no tag was set" "" "$(skopeo list-tags --tls-verify=false "docker://$reg/kiln/elsewhere" 2>/dev/null | jq -r '.Tags // [] | .[]')"
    # The same blob missing in a release of all seven to an empty registry:
    # the six others' content may be uploaded, but no service gets a tag.
    start_registry release-partial || { fail "release: docker-registry starts (partial)"; return; }
    out=$(rel_bazel rel-fresh2 "$log" run "${lazy[@]}" --remote_download_minimal //:release -- --registry "$REGISTRY" --tag v1; echo "rc=$?"; cat "$log")
    local tagged="" svc
    for svc in "${MONO_SERVICES[@]}"; do
        [ -n "$(skopeo list-tags --tls-verify=false "docker://$REGISTRY/kiln/$svc" 2>/dev/null | jq -r '.Tags // [] | .[]')" ] && tagged="$tagged $svc"
    done
    if ! grep -q '^rc=0' <<<"$out" && grep -q "sha256:$gone" <<<"$out"; then
        expect_eq "release: a release failing on one service's blob leaves no tag on any of the seven" "" "$tagged"
    else
        fail "release: a release with a blob missing everywhere fails naming it" "$(grep 'kiln-push' <<<"$out" | tail -3)"
    fi
    stop_cache release
    for ob in rel-fresh rel-fresh2; do bazel --output_base="$KILN_WORK/ob-$ob" shutdown >/dev/null 2>&1; done
}

suite_release() {
    source e2e/lib/monorepo.sh
    command -v nginx >/dev/null || { fail "release: nginx is installed (e2e/setup/deps.sh)"; return; }
    command -v htpasswd >/dev/null || { fail "release: htpasswd is installed (e2e/setup/deps.sh)"; return; }
    REL_WS="$KILN_WORK/release-ws"
    mono_workspace "$REL_WS" || { fail "release: copy of examples/"; return; }
    local log="$KILN_WORK/release-build.log"
    start_cache release || { fail "release: nginx starts as the remote cache"; return; }
    # CI: a cold build that fills the remote cache (the lazy checks read it).
    rm -rf "$KILN_WORK/ob-rel-ci"
    if ! rel_bazel rel-ci "$log" build --remote_cache="$CACHE_URL" //...; then
        fail "release: bazel build //... of the monorepo" "$(grep ERROR "$log" | head -5)"; return
    fi
    REL_BIN=$(cd "$REL_WS" && kbazel rel-ci info bazel-bin 2>/dev/null)
    release_fault_checks
    release_lazy_checks
    bazel --output_base="$KILN_WORK/ob-rel-ci" shutdown >/dev/null 2>&1
}
