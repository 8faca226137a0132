# Supply chain: the SPDX SBOM of the examples' api image (validated by
# pyspdxtools, checked with jq against the pinned debs and the binary GNU tar
# extracts from the layer), SBOMs attached as OCI referrers by :push (the
# referrers tag schema on Debian's docker-registry 2.8, read by skopeo and
# curl; a referrer someone else put there survives), and --sign-key
# signatures that Debian's cosign verifies, with both key kinds. Truth from
# the registry's own access log.

sc_push() { (cd examples && kbazel ex1 run "$@"); }

# sc_writes LOG: the registry's write requests (POST, PUT, PATCH, DELETE) so far.
sc_writes() { grep -cE '"(POST|PUT|PATCH|DELETE) /v2/' "$1"; }

# sc_cosign ARGS...: cosign from the sid chroot, run in the suite's directory.
sc_cosign() {
    local dir=$SC_DIR
    if command -v kiln-chroot >/dev/null 2>&1; then
        kiln-chroot sh -c 'cd "$1" && shift && exec cosign "$@"' sh "$dir" "$@"
    else
        (cd "$dir" && sid cosign "$@")
    fi
}

# sc_chroot CMD...: CMD in the sid chroot (where Go and go-containerregistry's source are).
sc_chroot() {
    if command -v kiln-chroot >/dev/null 2>&1; then kiln-chroot "$@"; else sid "$@"; fi
}

# sc_start_referrers_registry: go-containerregistry's registry with the
# Referrers API (e2e/lib/referrers_registry), built once into $KILN_WORK;
# sets RR (host:port) and RR_LOG.
sc_start_referrers_registry() {
    local bin="$KILN_WORK/referrers-registry" src="$KILN_ROOT/e2e/lib/referrers_registry"
    if [ ! -x "$bin" ] || [ "$src/main.go" -nt "$bin" ]; then
        sc_chroot sh -c 'cd "$1" && CGO_ENABLED=0 GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$3/gocache" go build -o "$2" main.go' \
            sh "$src" "$bin" "$KILN_WORK" >"$KILN_WORK/referrers-registry.build.log" 2>&1 || return 1
    fi
    local port
    port=$(free_port)
    RR="127.0.0.1:$port"
    RR_LOG="$KILN_WORK/referrers-registry.log"
    "$bin" --address "$RR" >"$RR_LOG" 2>&1 &
    echo $! >"$KILN_WORK/referrers-registry.pid"
    wait_http "http://$RR/v2/" 30
}

sc_verify() {
    sc_cosign verify --key "$1" --insecure-ignore-tlog=true --allow-http-registry --allow-insecure-registry "$2"
}

# sc_go_without_module_info: a Go binary linked as rules_go links it (go tool
# compile + go tool link, no go command, so it records no module and no
# import path) in a container_image of a scratch workspace; its SBOM names
# the binary's package without an empty name or purl, and pyspdxtools
# validates it.
sc_go_without_module_info() {
    local ws="$SC_DIR/nomod" spdx=${KILN_SPDX_VENV:-/opt/kiln-spdx}/bin/pyspdxtools sbom out
    mkdir -p "$ws/src"
    printf 'package main\n\nfunc main() { println("no module") }\n' >"$ws/src/main.go"
    # shellcheck disable=SC2016
    if ! sc_chroot sh -c 'cd "$1" && export GOCACHE="$1/gocache" GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0 &&
        go list -export -deps -f "{{if .Export}}packagefile {{.ImportPath}}={{.Export}}{{end}}" runtime >importcfg &&
        go tool compile -p main -importcfg importcfg -o main.a main.go &&
        go tool link -importcfg importcfg -buildmode=exe -o ../svc main.a' sh "$ws/src" >"$ws/go.log" 2>&1; then
        fail "sbom: a Go binary linked without the go command" "$(tail -5 "$ws/go.log")"
        return
    fi
    if sc_chroot go version -m "$ws/svc" 2>&1 | grep -qE '^\s(path|mod)\s'; then
        fail "sbom: the fixture binary records no module" "$(sc_chroot go version -m "$ws/svc" 2>&1)"
        return
    fi
    printf '%s\n' 'module(name = "kiln_e2e_go_without_module_info")' '' \
        'bazel_dep(name = "rules_kiln")' '' 'local_path_override(' '    module_name = "rules_kiln",' \
        "    path = \"$KILN_ROOT\"," ')' >"$ws/MODULE.bazel"
    printf '%s\n' 'load("@rules_kiln//rules:defs.bzl", "container_image")' '' 'container_image(' \
        '    name = "nomod",' '    architecture = "amd64",' '    entrypoint = ["/svc"],' \
        '    files = ["svc"],' ')' >"$ws/BUILD.bazel"
    if ! (cd "$ws" && kbazel sc-nomod build --output_groups=+sbom //:nomod) >"$ws/build.log" 2>&1; then
        fail "sbom: an image of a Go binary without module information builds" "$(tail -10 "$ws/build.log")"
        return
    fi
    sbom="$(cd "$ws" && kbazel sc-nomod info bazel-bin 2>/dev/null)/nomod.spdx.json"
    expect_eq "sbom: a Go binary without module information is a package named by its path in the image, with no purl" \
        "/svc none" "$(jq -r '.packages[] | select(.SPDXID | endswith("-main")) | "\(.name) \(.externalRefs // "none")"' "$sbom" 2>&1)"
    expect_eq "sbom: every purl has a type and a non-empty name (no pkg:golang/@...)" "" \
        "$(jq -r '.packages[].externalRefs[]? | .referenceLocator | select(test("^pkg:[a-z][a-z0-9.+-]*/([^/@?#]+/)*[^/@?#]+(@[^@?#/]+)?([?#].*)?$") | not)' "$sbom" 2>&1)"
    if [ -x "$spdx" ]; then
        if out=$("$spdx" -i "$sbom" 2>&1) && ! grep -qi "invalid\|error" <<<"$out"; then
            pass "sbom: pyspdxtools validates the SBOM of a Go binary without module information"
        else
            fail "sbom: pyspdxtools validates the SBOM of a Go binary without module information" "$out"
        fi
    else
        skip "sbom: pyspdxtools validates the SBOM of a Go binary without module information" "no $spdx"
    fi
    (cd "$ws" && kbazel sc-nomod shutdown) >/dev/null 2>&1
}

suite_supply_chain() {
    source e2e/suites/examples.sh
    ensure_examples_built || { fail "supply_chain: examples build"; return; }
    if ! (cd examples && kbazel ex1 build --output_groups=+sbom //build/api:image) >"$KILN_WORK/sc-build.log" 2>&1; then
        fail "supply_chain: bazel build --output_groups=+sbom //build/api:image" "$(tail -20 "$KILN_WORK/sc-build.log")"
        return
    fi
    pass "supply_chain: bazel build --output_groups=+sbom //build/api:image"
    SC_DIR="$KILN_WORK/supply_chain"
    rm -rf "$SC_DIR"; mkdir -p "$SC_DIR"
    local sbom="$EX_BIN/api_amd64.spdx.json" layout="$EX_BIN/image.oci" lock=examples/build/base/debs.lock.json

    # --- SBOM -----------------------------------------------------------
    local spdx=${KILN_SPDX_VENV:-/opt/kiln-spdx}/bin/pyspdxtools out
    if [ -x "$spdx" ]; then
        if out=$("$spdx" -i "$sbom" 2>&1) && ! grep -qi "invalid\|error" <<<"$out"; then
            pass "sbom: pyspdxtools validates the amd64 SPDX document"
        else
            fail "sbom: pyspdxtools validates the amd64 SPDX document" "$out"
        fi
        check "sbom: pyspdxtools validates the arm64 SPDX document" "$spdx" -i "$EX_BIN/api_arm64.spdx.json"
    else
        skip "sbom: pyspdxtools validates the SPDX documents" "no $spdx (e2e/setup/deps.sh installs it)"
    fi
    expect_eq "sbom: SPDX 2.3, created at the epoch (unstamped)" "SPDX-2.3 1970-01-01T00:00:00Z" \
        "$(jq -r '"\(.spdxVersion) \(.creationInfo.created)"' "$sbom")"
    local arch want got
    for arch in amd64 arm64; do
        want=$(jq -r --arg a "$arch" '[.packages[] | select(.architecture == $a or .architecture == "all") | "\(.name) \(.version) \(.architecture)"] | sort | join(", ")' "$lock")
        got=$(jq -r '[.packages[] | select((.externalRefs[0].referenceLocator // "") | startswith("pkg:deb/")) | "\(.name) \(.versionInfo) \(.externalRefs[0].referenceLocator | capture("arch=(?<a>.*)").a)"] | sort | join(", ")' "$EX_BIN/api_$arch.spdx.json")
        expect_eq "sbom ($arch): the Debian packages of the base, with version and architecture" "$want" "$got"
    done
    [ "$(jq '[.packages[] | select((.externalRefs[0].referenceLocator // "") | startswith("pkg:deb/"))] | length' "$sbom")" = 4 ] &&
        pass "sbom: four Debian packages" || fail "sbom: four Debian packages" "$(jq -c '[.packages[].name]' "$sbom")"
    expect_eq "sbom: every purl of the api image has a type and a non-empty name" "" \
        "$(jq -r '.packages[].externalRefs[]? | .referenceLocator | select(test("^pkg:[a-z][a-z0-9.+-]*/([^/@?#]+/)*[^/@?#]+(@[^@?#/]+)?([?#].*)?$") | not)' "$sbom" 2>&1)"

    # The binary as GNU tar extracts it from the image's own (last) layer.
    local manifest_digest manifest layer
    manifest_digest=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$layout/blobs/sha256/$(jq -r '.manifests[0].digest' "$layout/index.json" | cut -d: -f2)")
    manifest="$layout/blobs/sha256/${manifest_digest#sha256:}"
    layer="$layout/blobs/sha256/$(jq -r '.layers[-1].digest' "$manifest" | cut -d: -f2)"
    mkdir -p "$SC_DIR/rootfs"
    tar -xzf "$layer" -C "$SC_DIR/rootfs"
    want=$(sha256sum <"$SC_DIR/rootfs/api" | cut -d' ' -f1)
    expect_eq "sbom: the binary's sha256 is that of /api in the layer" "$want" \
        "$(jq -r '.files[] | select(.fileName == "./api") | .checksums[] | select(.algorithm == "SHA256") | .checksumValue' "$sbom")"
    expect_eq "sbom: the image is described by its manifest digest" "$manifest_digest" \
        "$(jq -r '.packages[] | select(.SPDXID == "SPDXRef-image") | .versionInfo' "$sbom")"
    expect_eq "sbom: the base is named by digest (//build/base's amd64 manifest)" "$(cat "$EX_BIN/../base/base_amd64.digest")" \
        "$(jq -r '.packages[] | select(.SPDXID == "SPDXRef-base") | .versionInfo' "$sbom")"
    if command -v go >/dev/null 2>&1; then
        expect_eq "sbom: the Go version is the one go version reads from the binary" \
            "$(go version "$SC_DIR/rootfs/api" | awk '{print $2}')" \
            "$(jq -r '.packages[] | select(.name == "stdlib") | .versionInfo' "$sbom")"
    else
        skip "sbom: the Go version" "no go on PATH"
    fi
    sc_go_without_module_info

    # The same bytes elsewhere: the action's command again, by hand, in
    # another time zone, locale and umask.
    local execroot tool again="$SC_DIR/again.spdx.json"
    execroot=$(cd examples && kbazel ex1 info execution_root 2>/dev/null)
    tool="$KILN_CARGO_TARGET_DIR/release/kiln-image"
    if [ -x "$tool" ] && [ -n "$execroot" ]; then
        (cd "$execroot" && umask 077 && TZ=Asia/Kathmandu LC_ALL=C.UTF-8 "$tool" sbom \
            --spec "${EX_BIN#"$execroot"/}/api_amd64.sbom.spec.json" --output "$again") >"$SC_DIR/again.log" 2>&1
        expect_eq "sbom: the same bytes when written again in another time zone, locale and umask" \
            "$(sha256sum <"$sbom" | cut -d' ' -f1)" "$(sha256sum <"$again" 2>/dev/null | cut -d' ' -f1)"
    else
        fail "sbom: the same bytes when written again" "no $tool or execution root"
    fi

    # --- keys -----------------------------------------------------------
    start_registry supply_chain || { fail "supply_chain: docker-registry starts"; return; }
    local repo="$REGISTRY/kiln/sc-api" index_digest writes
    index_digest=$(cat "$EX_BIN/image.digest")
    (cd "$SC_DIR" && COSIGN_PASSWORD=sc-secret sc_cosign generate-key-pair) >"$SC_DIR/keygen.log" 2>&1
    [ -s "$SC_DIR/cosign.key" ] || { fail "supply_chain: cosign generate-key-pair" "$(cat "$SC_DIR/keygen.log")"; return; }
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$SC_DIR/p8.pem" 2>/dev/null &&
        openssl pkey -in "$SC_DIR/p8.pem" -pubout -out "$SC_DIR/p8.pub" 2>/dev/null ||
        { fail "supply_chain: openssl makes a PKCS#8 P-256 key"; return; }

    # A bad key or password: a clear error, nothing written, no key printed.
    writes=$(sc_writes "$REGISTRY_LOG")
    out=$(COSIGN_PASSWORD=wrong sc_push //build/api:push -- --repository "$repo" --tag sc --sign-key "$SC_DIR/cosign.key" 2>&1)
    if [ $? -ne 0 ] && grep -q "wrong password" <<<"$out" && ! grep -q "$(sed -n 2p "$SC_DIR/cosign.key")" <<<"$out"; then
        pass "sign: a wrong COSIGN_PASSWORD is a clear error that does not print the key"
    else
        fail "sign: a wrong COSIGN_PASSWORD is a clear error that does not print the key" "$(tail -5 <<<"$out")"
    fi
    out=$(sc_push //build/api:push -- --repository "$repo" --tag sc --sign-key "$SC_DIR/missing.key" 2>&1)
    if [ $? -ne 0 ] && grep -q "missing.key: cannot read" <<<"$out"; then
        pass "sign: an unreadable key is a clear error naming it"
    else
        fail "sign: an unreadable key is a clear error naming it" "$(tail -5 <<<"$out")"
    fi
    expect_eq "sign: after a bad key or password the registry log shows no write" "$writes" "$(sc_writes "$REGISTRY_LOG")"

    # --- a referrer someone else attached first survives ------------------
    local arm64 theirs empty='{}' fallback
    arm64=$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$layout/blobs/sha256/${index_digest#sha256:}")
    local arm64_size
    arm64_size=$(stat -c %s "$layout/blobs/sha256/${arm64#sha256:}")
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "$empty" \
        "http://$REGISTRY$(curl -fsSi -X POST "http://$REGISTRY/v2/kiln/sc-api/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p' | sed 's|^http://[^/]*||')&digest=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" >/dev/null ||
        fail "supply_chain: upload the empty blob by hand"
    theirs=$(jq -cn --arg d "$arm64" --argjson s "$arm64_size" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", artifactType: "application/vnd.example.scan+json",
        config: {mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2},
        layers: [{mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2}],
        subject: {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s}}')
    local theirs_digest="sha256:$(printf '%s' "$theirs" | sha256sum | cut -d' ' -f1)"
    curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$theirs" \
        "http://$REGISTRY/v2/kiln/sc-api/manifests/$theirs_digest" >/dev/null || fail "supply_chain: push someone else's referrer by hand"
    fallback=$(jq -cn --arg d "$theirs_digest" --argjson s "${#theirs}" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s, artifactType: "application/vnd.example.scan+json"}]}')
    curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary "$fallback" \
        "http://$REGISTRY/v2/kiln/sc-api/manifests/sha256-${arm64#sha256:}" >/dev/null || fail "supply_chain: put their fallback index by hand"

    # --- push, signed with cosign's encrypted key ------------------------
    if out=$(COSIGN_PASSWORD=sc-secret sc_push //build/api:push -- --repository "$repo" --tag sc --sign-key "$SC_DIR/cosign.key" 2>&1); then
        pass "push: bazel run :push -- --sign-key cosign.key (COSIGN_PASSWORD)"
    else
        fail "push: bazel run :push -- --sign-key cosign.key (COSIGN_PASSWORD)" "$(tail -10 <<<"$out")"
    fi
    check "sign: cosign verify accepts the index signed with cosign's key" sc_verify cosign.pub "$repo@$index_digest"
    if sc_verify p8.pub "$repo@$index_digest" >/dev/null 2>&1; then
        fail "sign: cosign verify refuses another public key"
    else
        pass "sign: cosign verify refuses another public key"
    fi

    # The referrers tag schema, read by skopeo.
    local amd64_hex=${manifest_digest#sha256:} referrer sbom_layer
    out=$(skopeo inspect --raw --tls-verify=false "docker://$repo:sha256-$amd64_hex")
    expect_eq "referrers: skopeo reads the fallback index of the amd64 manifest, one SPDX referrer" "application/vnd.oci.image.index.v1+json application/spdx+json" \
        "$(jq -r '"\(.mediaType) \([.manifests[].artifactType] | join(","))"' <<<"$out")"
    referrer=$(jq -r '.manifests[0].digest' <<<"$out")
    out=$(skopeo inspect --raw --tls-verify=false "docker://$repo@$referrer")
    expect_eq "referrers: the referrer's subject is the amd64 manifest, its config the empty descriptor" \
        "application/spdx+json $manifest_digest application/vnd.oci.empty.v1+json" \
        "$(jq -r '"\(.artifactType) \(.subject.digest) \(.config.mediaType)"' <<<"$out")"
    sbom_layer=$(jq -r '.layers[0].digest' <<<"$out")
    expect_eq "referrers: curl reads the attached SBOM, byte for byte the built one" "sha256:$(sha256sum <"$sbom" | cut -d' ' -f1)" \
        "sha256:$(curl -fsS "http://$REGISTRY/v2/kiln/sc-api/blobs/$sbom_layer" | sha256sum | cut -d' ' -f1)"
    out=$(skopeo inspect --raw --tls-verify=false "docker://$repo:sha256-${arm64#sha256:}")
    expect_eq "referrers: the referrer someone else put in the arm64 fallback index survives, next to ours" \
        "application/spdx+json,application/vnd.example.scan+json" \
        "$(jq -r '[.manifests[].artifactType] | sort | join(",")' <<<"$out")"
    out=$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/kiln/sc-api/referrers/$manifest_digest")
    expect_eq "referrers: docker-registry 2.8 has no Referrers API (404), hence the tag schema" "404" "$out"

    # A second, unchanged push (same key: deterministic signature) writes nothing.
    writes=$(sc_writes "$REGISTRY_LOG")
    local lines_before
    lines_before=$(wc -l <"$REGISTRY_LOG")
    if COSIGN_PASSWORD=sc-secret sc_push //build/api:push -- --repository "$repo" --tag sc --sign-key "$SC_DIR/cosign.key" >"$SC_DIR/noop.log" 2>&1; then
        expect_eq "push: a second signed push of unchanged content writes nothing" "$writes" "$(sc_writes "$REGISTRY_LOG")"
        pass "push: the no-op push made $(( $(wc -l <"$REGISTRY_LOG") - lines_before )) registry log lines"
    else
        fail "push: a second signed push of unchanged content" "$(tail -10 "$SC_DIR/noop.log")"
    fi

    # --- the PKCS#8 key, through the release path (lazy push) -------------
    if out=$(sc_push --@rules_kiln//settings:push=lazy //build/api:push -- --repository "$repo" --tag sc --sign-key "$SC_DIR/p8.pem" 2>&1); then
        pass "push (release spec): --sign-key with a PKCS#8 P-256 PEM"
    else
        fail "push (release spec): --sign-key with a PKCS#8 P-256 PEM" "$(tail -10 <<<"$out")"
    fi
    check "sign: cosign verify accepts the PKCS#8 key's signature" sc_verify p8.pub "$repo@$index_digest"
    check "sign: the cosign key's signature was kept next to it" sc_verify cosign.pub "$repo@$index_digest"
    expect_eq "sign: the signature manifest holds both signatures" "2" \
        "$(skopeo inspect --raw --tls-verify=false "docker://$repo:sha256-${index_digest#sha256:}.sig" | jq '.layers | length')"

    # --- a registry with the Referrers API --------------------------------
    if sc_start_referrers_registry; then
        if out=$(sc_push //build/api:push -- --repository "$RR/kiln/sc-api" --tag sc 2>&1); then
            pass "referrers API: bazel run :push to go-containerregistry's registry"
            # The same SBOM makes the same referrer manifest as on docker-registry.
            out=$(curl -fsS "http://$RR/v2/kiln/sc-api/referrers/$manifest_digest")
            expect_eq "referrers API: curl GET /v2/.../referrers/<amd64 manifest> lists our referrer" "$referrer" \
                "$(jq -r '[.manifests[].digest] | join(",")' <<<"$out")"
            expect_eq "referrers API: the listed manifest is the SPDX artifact" "application/spdx+json" \
                "$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$RR/v2/kiln/sc-api/manifests/$referrer" | jq -r .artifactType)"
            if grep -q "manifests/sha256-" "$RR_LOG"; then
                fail "referrers API: no fallback tag is written where the API exists" "$(grep "manifests/sha256-" "$RR_LOG" | head -3)"
            else
                pass "referrers API: no fallback tag is written where the API exists"
            fi
        else
            fail "referrers API: bazel run :push to go-containerregistry's registry" "$(tail -10 <<<"$out")"
        fi
        kill "$(cat "$KILN_WORK/referrers-registry.pid")" 2>/dev/null
    else
        fail "referrers API: go-containerregistry's registry builds and starts" "$(tail -10 "$KILN_WORK/referrers-registry.build.log" "$RR_LOG" 2>/dev/null)"
    fi
}
