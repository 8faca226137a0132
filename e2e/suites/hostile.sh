# kiln-push and kiln-pull against a hostile registry (e2e/lib/hostile_registry.py):
# credentials stay on their origin, downgrades are refused, drip-feeding hits the
# deadline, huge bodies are not read, echoed credentials are redacted. The truth
# is the hostile registry's own request log and /usr/bin/time -v of the tool.

# hostile_layout DIR: a one-layer OCI image layout (what kiln-push pushes).
hostile_layout() {
    python3 - "$1" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
d = sys.argv[1]
os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
def blob(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{d}/blobs/sha256/{h}", "wb").write(b)
    return {"digest": "sha256:" + h, "size": len(b)}
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
    info = tarfile.TarInfo("hello.txt"); data = b"hostile\n"; info.size = len(data); info.mtime = 0
    t.addfile(info, io.BytesIO(data))
layer = blob(gzip.compress(raw.getvalue(), mtime=0))
layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
config = blob(json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
    "config": {}}).encode())
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": [layer]}).encode())
manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
json.dump({"schemaVersion": 2, "manifests": [manifest]}, open(f"{d}/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(f"{d}/oci-layout", "w"))
EOF
}

# hostile_run NAME CMD...: runs CMD under /usr/bin/time -v with the suite's Docker
# config and CA; sets OUT (stderr and stdout), RC, RSS_KB (max RSS) and ELAPSED (s).
hostile_run() {
    local name=$1; shift
    local start=$SECONDS
    DOCKER_CONFIG="$H_DIR/docker" SSL_CERT_FILE="$H_DIR/ca.pem" \
        /usr/bin/time -v -o "$H_DIR/$name.time" "$@" >"$H_DIR/$name.out" 2>&1
    RC=$?
    ELAPSED=$((SECONDS - start))
    OUT=$(cat "$H_DIR/$name.out")
    RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$H_DIR/$name.time")
}

# hostile_log_count JQ_FILTER: how many logged requests match.
hostile_log_count() { jq -c "select($1)" "$H_DIR/requests.log" 2>/dev/null | wc -l; }

# expect_fail_with NAME PATTERN: the last hostile_run failed and said PATTERN.
expect_fail_with() {
    if [ "$RC" -ne 0 ] && grep -qF -- "$2" <<<"$OUT"; then pass "$1"; else fail "$1" "exit $RC: $(tail -5 <<<"$OUT")"; fi
}

# expect_rss_below NAME MIB
expect_rss_below() {
    if [ -n "$RSS_KB" ] && [ "$RSS_KB" -lt $(($2 * 1024)) ]; then
        pass "$1 (max RSS $((RSS_KB / 1024)) MiB < $2 MiB)"
    else
        fail "$1" "max RSS ${RSS_KB:-?} KiB"
    fi
}

suite_hostile() {
    H_DIR="$KILN_WORK/hostile"
    rm -rf "$H_DIR"; mkdir -p "$H_DIR/docker"
    local push pull
    if ! cargo build -q --locked -p kiln-push -p kiln-pull 2>"$H_DIR/build.log"; then
        fail "hostile: cargo build kiln-push kiln-pull" "$(tail -20 "$H_DIR/build.log")"
        return
    fi
    push="$KILN_ROOT/target/debug/kiln-push"
    pull="$KILN_ROOT/target/debug/kiln-pull"

    # A CA trusted for the test only (SSL_CERT_FILE), and a certificate for 127.0.0.2.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kiln-hostile-ca \
        -keyout "$H_DIR/ca.key" -out "$H_DIR/ca.pem" 2>/dev/null &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.2 \
            -keyout "$H_DIR/server.key" -out "$H_DIR/server.csr" 2>/dev/null &&
        printf 'subjectAltName=IP:127.0.0.2\nbasicConstraints=CA:FALSE\n' >"$H_DIR/ext" &&
        openssl x509 -req -in "$H_DIR/server.csr" -CA "$H_DIR/ca.pem" -CAkey "$H_DIR/ca.key" \
            -CAcreateserial -days 2 -extfile "$H_DIR/ext" -out "$H_DIR/server.pem" 2>/dev/null ||
        { fail "hostile: openssl makes a test CA"; return; }

    python3 "$KILN_ROOT/e2e/lib/hostile_registry.py" --log "$H_DIR/requests.log" \
        --ports-file "$H_DIR/ports" --cert "$H_DIR/server.pem" --key "$H_DIR/server.key" \
        >"$H_DIR/server.log" 2>&1 &
    local server=$!
    local waited=0
    until [ -s "$H_DIR/ports" ] || [ $waited -ge 100 ]; do sleep 0.1; waited=$((waited + 1)); done
    if [ ! -s "$H_DIR/ports" ]; then
        fail "hostile: the hostile registry starts" "$(cat "$H_DIR/server.log")"
        kill "$server" 2>/dev/null
        return
    fi
    local main else tlsrealm tlsloc
    main=$(awk '$1 == "main" {print $2}' "$H_DIR/ports")
    else=$(awk '$1 == "else" {print $2}' "$H_DIR/ports")
    tlsrealm=$(awk '$1 == "tlsrealm" {print $2}' "$H_DIR/ports")
    tlsloc=$(awk '$1 == "tlsloc" {print $2}' "$H_DIR/ports")
    local password="hostile-s3cret-pass" auth
    auth=$(printf 'kiln:%s' "$password" | base64 -w0)
    printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"},"127.0.0.2:%s":{"auth":"%s"}}}\n' \
        "$main" "$auth" "$tlsloc" "$auth" >"$H_DIR/docker/config.json"
    hostile_layout "$H_DIR/layout"

    # Upload Locations on another host get no Authorization.
    hostile_run loc "$push" --layout "$H_DIR/layout" --repository "127.0.0.1:$main/loc/app" --tag t
    local elsewhere with_auth bearer
    elsewhere=$(hostile_log_count '.listener == "else" and .method == "PUT"')
    with_auth=$(hostile_log_count '.listener == "else" and .authorization != null')
    bearer=$(hostile_log_count '.listener == "main" and ((.authorization // "") | startswith("Bearer "))')
    if [ "$elsewhere" -ge 1 ] && [ "$with_auth" -eq 0 ] && [ "$bearer" -ge 1 ]; then
        pass "hostile: uploads sent to 127.0.0.2 carry no Authorization ($elsewhere PUTs there; $bearer authorized requests to the registry itself)"
    else
        fail "hostile: uploads sent to 127.0.0.2 carry no Authorization" \
            "PUTs at 127.0.0.2: $elsewhere, with Authorization: $with_auth, bearer requests at the registry: $bearer; $(tail -3 <<<"$OUT")"
    fi
    local basic_realm
    basic_realm=$(hostile_log_count ".listener == \"main\" and (.path | startswith(\"/token\")) and .authorization == \"Basic $auth\"")
    [ "$basic_realm" -ge 1 ] && pass "hostile: the credentials went to the token service of the registry ($basic_realm requests)" ||
        fail "hostile: the credentials went to the token service of the registry" "none logged"

    # https registry naming an http realm: refused, the realm never contacted.
    hostile_run tlsrealm "$push" --layout "$H_DIR/layout" --repository "127.0.0.2:$tlsrealm/x/app" --tag t
    expect_fail_with "hostile: an http token realm named by an https registry is refused as a downgrade" "downgrade"
    expect_eq "hostile: the http realm got no request" 0 "$(hostile_log_count '.path | startswith("/token-downgrade")')"

    # https registry naming an http upload Location: refused, nothing sent there.
    hostile_run tlsloc "$push" --layout "$H_DIR/layout" --repository "127.0.0.2:$tlsloc/x/app" --tag t
    expect_fail_with "hostile: an http upload Location named by an https registry is refused as a downgrade" "downgrade"
    expect_eq "hostile: the http upload Location got no request" 0 "$(hostile_log_count '.path | contains("_state=downgraded")')"
    local tls_basic
    tls_basic=$(hostile_log_count ".listener == \"tlsloc\" and .authorization == \"Basic $auth\"")
    [ "$tls_basic" -ge 1 ] && pass "hostile: the https registry (test CA via SSL_CERT_FILE) got its credentials" ||
        fail "hostile: the https registry (test CA via SSL_CERT_FILE) got its credentials" "$(tail -3 <<<"$OUT")"

    # A plain-HTTP registry at an address that is not loopback-by-name.
    hostile_run plain "$push" --layout "$H_DIR/layout" --repository "127.0.0.2:$else/x/app" --tag t
    expect_fail_with "hostile: a plain-HTTP non-loopback registry is named as such" "this registry speaks plain HTTP; only loopback registries may"

    # Drip-feeding: the overall deadline ends it, naming registry and operation.
    KILN_REGISTRY_TIMEOUT=3 hostile_run drip "$push" --layout "$H_DIR/layout" --repository "127.0.0.1:$main/drip/app" --tag t
    if [ "$RC" -ne 0 ] && [ "$ELAPSED" -lt 30 ] && grep -q "registry 127.0.0.1:$main" <<<"$OUT" &&
        grep -q "checking for blob" <<<"$OUT" && grep -q "deadline of 3 s" <<<"$OUT"; then
        pass "hostile: a drip-fed push fails within its deadline (${ELAPSED}s, KILN_REGISTRY_TIMEOUT=3), naming registry and operation"
    else
        fail "hostile: a drip-fed push fails within its deadline" "exit $RC after ${ELAPSED}s: $(tail -3 <<<"$OUT")"
    fi

    # Huge bodies: an error body, a manifest and a token answer, each 4 GiB.
    hostile_run huge "$push" --layout "$H_DIR/layout" --repository "127.0.0.1:$main/huge/app" --tag t
    expect_fail_with "hostile: a 4 GiB error body is quoted, not read" "HTTP 500"
    expect_rss_below "hostile: memory stays bounded reading a 4 GiB error body" 64
    hostile_run hugemanifest "$pull" --image "127.0.0.1:$main/huge/app" --digest "sha256:$(printf '0%.0s' {1..64})" \
        --platform linux/amd64 --output "$H_DIR/pulled"
    expect_fail_with "hostile: a 4 GiB manifest is refused by its announced size" "manifests are limited to"
    expect_rss_below "hostile: memory stays bounded facing a 4 GiB manifest" 64
    [ -e "$H_DIR/pulled" ] && fail "hostile: a refused pull leaves no output" "$H_DIR/pulled exists" ||
        pass "hostile: a refused pull leaves no output"
    hostile_run bigtoken "$push" --layout "$H_DIR/layout" --repository "127.0.0.1:$main/bigtoken/app" --tag t
    expect_fail_with "hostile: a 4 GiB token answer is refused" "the token answer"
    expect_rss_below "hostile: memory stays bounded reading a 4 GiB token answer" 64

    # A 401 body echoing the Authorization header: the credential is redacted.
    hostile_run echo "$push" --layout "$H_DIR/layout" --repository "127.0.0.1:$main/echo/app" --tag t
    expect_fail_with "hostile: a 401 body echoing the credential is quoted redacted" "[redacted]"
    if grep -qE "hostile-token-|$password|$auth" <<<"$OUT"; then
        fail "hostile: no credential or token appears in the error" "$(grep -E "hostile-token-|$password|$auth" <<<"$OUT" | head -3)"
    else
        pass "hostile: no credential or token appears in the error"
    fi

    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    return 0
}
