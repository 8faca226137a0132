# Base images from a registry: kiln.pull by digest, shallow builds,
# push by mount or registry-to-registry copy, load with fetched layers, auth,
# and refusals. The base is the examples' static_base (Debian packages).
# Checked with skopeo, the registries' own logs, find and docker.

pull_bazel() { (cd "$PULL_WS" && kbazel pulled "$@"); }

# base_layers ARCH: the base's layer digests (hex) for ARCH, from its local layout.
base_layers() {
    local manifest
    manifest=$(skopeo inspect --raw "oci:$EX_BASE/base.oci" | jq -r --arg a "$1" '.manifests[] | select(.platform.architecture == $a) | .digest')
    jq -r '.layers[].digest | sub("sha256:"; "")' "$EX_BASE/base.oci/blobs/sha256/${manifest#sha256:}"
}

# pushed_layers REF ARCH: layer digests (hex) of ARCH's manifest in the pushed index REF.
pushed_layers() {
    local repo=${1%:*} manifest
    manifest=$(skopeo inspect --raw --tls-verify=false "docker://$1" | jq -r --arg a "$2" '.manifests[] | select(.platform.architecture == $a) | .digest')
    skopeo inspect --raw --tls-verify=false "docker://$repo@$manifest" | jq -r '.layers[].digest | sub("sha256:"; "")'
}

# pull_workspace: writes the second workspace that pulls the base.
pull_workspace() {
    local digest=$1 arch
    PULL_WS="$KILN_WORK/pulled-ws"
    rm -rf "$PULL_WS"; mkdir -p "$PULL_WS"
    for arch in amd64 arm64; do
        mkdir -p "$PULL_WS/$arch"
        cp "$EX_BIN/api_${arch}_binary/api" "$PULL_WS/$arch/hello"
    done
    cat >"$PULL_WS/MODULE.bazel" <<MODULE
module(name = "kiln_e2e_pulled")

bazel_dep(name = "rules_kiln")
local_path_override(
    module_name = "rules_kiln",
    path = "$KILN_ROOT",
)

kiln = use_extension("@rules_kiln//rules:extensions.bzl", "kiln")
kiln.pull(name = "base", image = "$REG_A/kiln/base", digest = "$digest", platforms = ["linux/amd64", "linux/arm64"])
kiln.pull(name = "base_corrupt", image = "$PROXY/kiln/base", digest = "$digest")
kiln.pull(name = "base_unreachable", image = "127.0.0.1:$CLOSED_PORT/kiln/base", digest = "$digest")
kiln.pull(name = "base_noplatform", image = "$REG_A/kiln/base", digest = "$digest", platforms = ["linux/s390x"])
kiln.pull(name = "base_tag", image = "$REG_A/kiln/base", tag = "v1")
kiln.pull(name = "base_auth", image = "$REG_C/kiln/base", digest = "$digest")
use_repo(kiln, "base", "base_auth", "base_corrupt", "base_noplatform", "base_tag", "base_unreachable")
MODULE
    cp "$KILN_ROOT/e2e/fixtures/pulled/BUILD.bazel" "$KILN_ROOT/e2e/fixtures/pulled/REPO.bazel" "$PULL_WS/"
}

# pull_expect_failure NAME TARGET PATTERN...: the build fails, stderr has every PATTERN.
pull_expect_failure() {
    local name=$1 target=$2 out pattern; shift 2
    if out=$(pull_bazel build "$target" 2>&1); then fail "$name" "the build of $target succeeded"; return; fi
    for pattern in "$@"; do
        grep -qF -- "$pattern" <<<"$out" || { fail "$name" "no '$pattern' in: $(grep -E 'ERROR|kiln' <<<"$out" | head -4)"; return; }
    done
    pass "$name"
}

# blob_puts LOG HEX: how many blob uploads of HEX the registry log records.
blob_puts() { grep -E '"PUT /v2/[^ ]*/blobs/uploads/' "$1" | grep -c "$2"; }

# pull_sbom_checks: the SBOMs of the images on @base list the base's Debian
# packages, read from the registry by KilnBasePackages (network-tagged).
pull_sbom_checks() {
    local bin arch want got spdx=${KILN_SPDX_VENV:-/opt/kiln-spdx}/bin/pyspdxtools
    local lock="$KILN_ROOT/examples/build/base/debs.lock.json"
    if ! pull_bazel build --execution_log_json_file="$KILN_WORK/pull-sbom.exec.json" --output_groups=+sbom //:image >"$KILN_WORK/pull-sbom.log" 2>&1; then
        fail "sbom: bazel build --output_groups=+sbom on the pulled base" "$(grep -E 'ERROR|kiln' "$KILN_WORK/pull-sbom.log" | head -5)"
        return
    fi
    expect_eq "sbom: one KilnBasePackages per pulled platform ran (amd64, arm64)" "2" \
        "$(grep -c '"mnemonic": "KilnBasePackages"' "$KILN_WORK/pull-sbom.exec.json")"
    bin=$(pull_bazel info bazel-bin 2>/dev/null)
    for arch in amd64 arm64; do
        want=$(jq -r --arg a "$arch" '[.packages[] | select(.architecture == $a or .architecture == "all") | "\(.name) \(.version) \(.architecture)"] | sort | join(", ")' "$lock")
        got=$(jq -r '[.packages[] | select((.externalRefs[0].referenceLocator // "") | startswith("pkg:deb/")) | "\(.name) \(.versionInfo) \(.externalRefs[0].referenceLocator | capture("arch=(?<a>.*)").a)"] | sort | join(", ")' "$bin/app_$arch.spdx.json")
        expect_eq "sbom ($arch, pulled base): the four Debian packages of the base, as debs.lock.json pins them" "$want" "$got"
        expect_eq "sbom ($arch, pulled base): four Debian packages, contained by the image" "4 4" \
            "$(jq -r '[.packages[] | select((.externalRefs[0].referenceLocator // "") | startswith("pkg:deb/")) | .SPDXID] as $ids | "\($ids | length) \([.relationships[] | select(.spdxElementId == "SPDXRef-image" and .relationshipType == "CONTAINS" and (.relatedSpdxElement | IN($ids[])))] | length)"' "$bin/app_$arch.spdx.json")"
        expect_eq "sbom ($arch, pulled base): the image's comment is its platform only (no note of unlisted base layers)" "platform linux/$arch" \
            "$(jq -r '.packages[] | select(.SPDXID == "SPDXRef-image") | .comment | sub("/v8$"; "")' "$bin/app_$arch.spdx.json")"
        if [ -x "$spdx" ]; then
            check "sbom ($arch, pulled base): pyspdxtools validates the SPDX document" "$spdx" -i "$bin/app_$arch.spdx.json"
        else
            skip "sbom ($arch, pulled base): pyspdxtools validates the SPDX document" "no $spdx (e2e/setup/deps.sh installs it)"
        fi
    done
    local packages
    packages=$(find "$bin/external" -name 'pulled.linux_amd64.packages.json' -o -name 'base.linux_amd64.packages.json' 2>/dev/null | head -1)
    expect_eq "sbom: the base packages JSON is small (under 4 KiB) and lists the manifest's layers" "small $(base_layers amd64 | wc -l)" \
        "$([ -n "$packages" ] && [ "$(stat -c %s "$packages")" -lt 4096 ] && echo small) $(jq '.layers | length' "$packages" 2>/dev/null)"
    local aq
    aq=$(pull_bazel aquery 'mnemonic(KilnBasePackages, deps(//:image))' 2>/dev/null)
    expect_eq "aquery: KilnBasePackages actions are tagged requires-network and no-remote-exec" "2 2" \
        "$(grep -c 'requires-network' <<<"$aq") $(grep -c 'no-remote-exec' <<<"$aq")"
    local rebuilt
    rebuilt=$(pull_bazel build --execution_log_json_file="$KILN_WORK/pull-sbom2.exec.json" --output_groups=+sbom //:image >/dev/null 2>&1 &&
        grep -c '"mnemonic": "KilnBasePackages"' "$KILN_WORK/pull-sbom2.exec.json")
    expect_eq "sbom: a second build reads no base layer again (KilnBasePackages cached)" "0" "$rebuilt"
}

suite_pull() {
    rm -rf "$KILN_BLOB_CACHE"  # the first load below fetches, the second takes from it
    # shellcheck source=/dev/null
    source e2e/suites/examples.sh
    ensure_examples_built || { fail "pull: the examples build"; return; }
    (cd examples && kbazel ex1 build --output_groups=+oci_layout //build/base) >/dev/null 2>&1 || { fail "pull: bazel build //build/base"; return; }
    EX_BASE="$(cd examples && kbazel ex1 info bazel-bin 2>/dev/null)/build/base"
    local digest
    digest=$(cat "$EX_BASE/base.digest")

    start_registry pull-a || { fail "pull: registry A starts"; return; }
    REG_A=$REGISTRY; LOG_A=$REGISTRY_LOG
    start_registry pull-b || { fail "pull: registry B starts"; return; }
    REG_B=$REGISTRY; LOG_B=$REGISTRY_LOG
    local htpasswd="$KILN_WORK/pull-htpasswd" auth_config="$KILN_WORK/pull-docker-config"
    htpasswd -Bbn kiln s3cret >"$htpasswd"
    start_registry pull-c "$htpasswd" || { fail "pull: registry C (htpasswd) starts"; return; }
    REG_C=$REGISTRY
    mkdir -p "$auth_config"
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$REG_C" "$(printf 'kiln:s3cret' | base64)" >"$auth_config/config.json"
    CLOSED_PORT=$(free_port)
    local proxy_port
    proxy_port=$(free_port)
    python3 e2e/lib/corrupt_proxy.py "$proxy_port" "$REG_A" >/dev/null 2>&1 &
    PROXY_PID=$!
    PROXY="127.0.0.1:$proxy_port"
    wait_http "http://$PROXY/v2/" 10 || { fail "pull: corrupting proxy starts"; return; }

    # The base goes to registries A and C (C needs the credentials).
    (cd examples && kbazel ex1 run //build/base:push -- --repository "$REG_A/kiln/base" --tag v1) >"$KILN_WORK/pull-push-base.log" 2>&1 ||
        { fail "pull: push the base to registry A" "$(tail -5 "$KILN_WORK/pull-push-base.log")"; return; }
    if (cd examples && DOCKER_CONFIG="$auth_config" kbazel ex1 run //build/base:push -- --repository "$REG_C/kiln/base" --tag v1) >"$KILN_WORK/pull-push-auth.log" 2>&1; then
        pass "registry auth: push the base with auths from DOCKER_CONFIG"
    else
        fail "registry auth: push the base with auths from DOCKER_CONFIG" "$(tail -5 "$KILN_WORK/pull-push-auth.log")"
    fi

    pull_workspace "$digest"
    rm -rf "$KILN_WORK/ob-pulled"
    if ! pull_bazel build --execution_log_json_file="$KILN_WORK/pull-build.exec.json" //:image >"$KILN_WORK/pull-build.log" 2>&1; then
        fail "pull: bazel build //:image on the pulled base" "$(grep -E 'ERROR|kiln' "$KILN_WORK/pull-build.log" | head -5)"
        kill "$PROXY_PID" 2>/dev/null
        return
    fi
    pass "pull: bazel build //:image on kiln.pull(digest = ...) for two platforms"
    local ob="$KILN_WORK/ob-pulled" hex found=0 all_layers
    all_layers=$( (base_layers amd64; base_layers arm64) | sort -u)
    local n_layers
    n_layers=$(grep -c . <<<"$all_layers")
    [ "$n_layers" -ge 1 ] || { fail "pull: the base has layers" "none found in $EX_BASE/base.oci"; return; }
    for hex in $all_layers; do
        [ -n "$(find "$ob" -name "$hex" 2>/dev/null | head -1)" ] && found=$((found + 1))
    done
    expect_eq "shallow: building the image downloaded no base layer (find in the output base)" "0" "$found"
    expect_eq "shallow: the pulled repository lists the absent layers" "$n_layers" \
        "$(jq '.blobs | length' "$ob"/external/*[~+]base/layout/kiln-source.json 2>/dev/null)"
    expect_eq "shallow: building the image ran no KilnBasePackages (only SBOMs need the base's packages)" "0" \
        "$(grep -c '"mnemonic": "KilnBasePackages"' "$KILN_WORK/pull-build.exec.json")"
    pull_sbom_checks

    # Asking for the layout fetches the base's layers (KilnFetchBlobs).
    if pull_bazel build --output_groups=+oci_layout //:image >"$KILN_WORK/pull-layout.log" 2>&1; then
        rm -rf "$KILN_WORK/pull-layout-copy"
        check "shallow: the oci_layout of an image on a pulled base holds every blob (fetched; skopeo copy --all)" \
            skopeo copy --all --quiet "oci:$(pull_bazel info bazel-bin 2>/dev/null)/image.oci" "oci:$KILN_WORK/pull-layout-copy:x"
        expect_eq "shallow: the layout is complete (no kiln-source.json left)" "absent" \
            "$([ -e "$(pull_bazel info bazel-bin 2>/dev/null)/image.oci/kiln-source.json" ] && echo present || echo absent)"
    else
        fail "shallow: bazel build --output_groups=+oci_layout on a pulled base" "$(grep -E 'ERROR|kiln' "$KILN_WORK/pull-layout.log" | head -5)"
    fi

    # Same registry: base layers are mounted, never uploaded again.
    local out
    out=$(pull_bazel run //:push -- --repository "$REG_A/kiln/app" --tag v1 2>&1)
    expect_eq "push (same registry): every base layer mounted from kiln/base" "$n_layers" "$(grep -c 'mounted blob' <<<"$out")"
    local twice=""
    for hex in $all_layers; do
        [ "$(blob_puts "$LOG_A" "$hex")" = "1" ] || twice="$twice $hex:$(blob_puts "$LOG_A" "$hex")"
    done
    expect_eq "registry A's log: each base layer uploaded exactly once (by the base's own push)" "" "$twice"
    for arch in amd64 arm64; do
        expect_eq "skopeo: $arch manifest of the pushed index starts with the $arch base layers" \
            "$(base_layers "$arch" | paste -sd' ')" \
            "$(pushed_layers "$REG_A/kiln/app:v1" "$arch" | head -n "$(base_layers "$arch" | wc -l)" | paste -sd' ')"
    done
    out=$(pull_bazel run //:push -- --repository "$REG_A/kiln/app" --tag v1 2>&1)
    expect_eq "push again: nothing uploaded or mounted" "0 0" "$(grep -c 'pushed blob' <<<"$out") $(grep -c 'mounted blob' <<<"$out")"

    # Another registry: base layers are copied from A, registry to registry.
    out=$(pull_bazel run //:push -- --repository "$REG_B/kiln/app" --tag v1 2>&1)
    expect_eq "push (other registry): every base layer copied from the source registry" "$n_layers" "$(grep -c 'copied blob' <<<"$out")"
    check "skopeo copy --all of the pushed index (every blob present)" \
        skopeo copy --all --quiet --src-tls-verify=false "docker://$REG_B/kiln/app:v1" "oci:$KILN_WORK/pull-copy:v1"

    # Loading needs the layers: only now are they fetched, and verified.
    if docker_available; then
        if pull_bazel run //:load >"$KILN_WORK/pull-load.log" 2>&1; then
            local cid port whoami
            cid=$(docker run -d -p 127.0.0.1::8080 kiln-e2e/pulled:dev)
            port=$(docker port "$cid" 8080/tcp | sed -n '1s/.*://p')
            if wait_http "http://127.0.0.1:$port/whoami" 30; then
                whoami=$(curl -s "http://127.0.0.1:$port/whoami")
                expect_eq "load: the service on the pulled base runs as nonroot" "uid=65532" "$(cut -d' ' -f1 <<<"$whoami")"
            else
                fail "load: the service on the pulled base runs" "$(docker logs "$cid" 2>&1 | tail -3)"
            fi
            docker rm -f "$cid" >/dev/null 2>&1
            # The same search as the shallow check above, in the same output
            # base: after the load it finds the host's base layers (fetched
            # for it), so finding none before meant something.
            local host_layers
            host_layers=$(base_layers "$(host_arch)")
            found=0
            for hex in $host_layers; do
                [ -n "$(find "$ob" -name "$hex" 2>/dev/null | head -1)" ] && found=$((found + 1))
            done
            expect_eq "shallow check is able to fail: after the load the output base holds the $(host_arch) base layers" "$(grep -c . <<<"$host_layers")" "$found"
            # A second load downloads nothing: the fetched layers are in the
            # launcher's blob cache, and Docker has the image.
            if pull_bazel run //:load >"$KILN_WORK/pull-load2.log" 2>&1; then
                check "load: a second load of the pulled-base image fetches 0 blobs (the blob cache has them)" \
                    grep -q "fetched 0 blobs (0 bytes) from .*; [1-9][0-9]* from the cache" "$KILN_WORK/pull-load2.log"
                check "load: a second load of the pulled-base image is tag only" grep -q "kiln-load: tag only" "$KILN_WORK/pull-load2.log"
            else
                fail "load: a second bazel run //:load on the pulled base" "$(grep -E 'ERROR|kiln' "$KILN_WORK/pull-load2.log" | head -5)"
            fi
        else
            fail "load: bazel run //:load on the pulled base" "$(grep -E 'ERROR|kiln' "$KILN_WORK/pull-load.log" | head -5)"
        fi
    else
        skip "load: the pulled base runs, layers fetched only then" "no Docker engine answers"
    fi

    # Refusals, each with a clear error; nothing is cached after a failure.
    pull_expect_failure "pull: bytes that do not match the digest are refused" //:on_corrupt "base_corrupt" "is corrupt"
    if ls -d "$ob"/external/*[~+]base_corrupt/layout >/dev/null 2>&1; then
        fail "pull: nothing of a corrupt pull is cached"
    else
        pull_expect_failure "pull: nothing of a corrupt pull is cached (it fails again)" //:on_corrupt "is corrupt"
    fi
    pull_expect_failure "pull: an unreachable registry" //:on_unreachable "base_unreachable" "cannot reach" "127.0.0.1:$CLOSED_PORT"
    pull_expect_failure "pull: a platform the base lacks" //:on_noplatform "base_noplatform" "linux/s390x" "linux/amd64"
    pull_expect_failure "pull: a tag without a digest is refused" //:on_tag "base_tag" "digest" "allow_tag"
    pull_expect_failure "registry auth: no credentials for an htpasswd registry" //:on_auth "base_auth" "$REG_C" "401"
    if DOCKER_CONFIG="$auth_config" pull_bazel build //:on_auth >"$KILN_WORK/pull-auth.log" 2>&1; then
        pass "registry auth: kiln.pull with auths from DOCKER_CONFIG"
    else
        fail "registry auth: kiln.pull with auths from DOCKER_CONFIG" "$(grep -E 'ERROR|kiln' "$KILN_WORK/pull-auth.log" | head -4)"
    fi
    kill "$PROXY_PID" 2>/dev/null
    pull_bazel shutdown >/dev/null 2>&1
}
