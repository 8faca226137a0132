# The example service: build the multi-arch index with real Bazel, then check it
# with skopeo, umoci, sha256sum, gzip and file (not with our own code).

# Builds the examples once into output base ex1; sets EX_BIN.
ensure_examples_built() {
    [ -n "${EX_BIN:-}" ] && return 0
    (cd examples && kbazel ex1 build --output_groups=+oci_layout //build/api:image //build/api:api_amd64 //build/api:api_arm64) || return 1
    EX_BIN="$(cd examples && kbazel ex1 info bazel-bin 2>/dev/null)/build/api"
}

# layer_checks ARCH LAYOUT: every layer digest and diff_id verifies.
layer_checks() {
    local arch=$1 layout=$2 manifest config i n digest diff_id got
    manifest=$(skopeo inspect --raw "oci:$layout") || return 1
    config=$(skopeo inspect --config "oci:$layout") || return 1
    n=$(jq '.layers | length' <<<"$manifest")
    [ "$n" -ge 1 ] || { echo "$arch: no layers"; return 1; }
    [ "$n" = "$(jq '.rootfs.diff_ids | length' <<<"$config")" ] || { echo "$arch: layer count != diff_id count"; return 1; }
    for ((i = 0; i < n; i++)); do
        digest=$(jq -r ".layers[$i].digest" <<<"$manifest")
        diff_id=$(jq -r ".rootfs.diff_ids[$i]" <<<"$config")
        got="sha256:$(sha256sum <"$layout/blobs/sha256/${digest#sha256:}" | cut -d' ' -f1)"
        [ "$got" = "$digest" ] || { echo "$arch layer $i: blob hashes to $got, manifest says $digest"; return 1; }
        got="sha256:$(gzip -dc <"$layout/blobs/sha256/${digest#sha256:}" | sha256sum | cut -d' ' -f1)"
        [ "$got" = "$diff_id" ] || { echo "$arch layer $i: uncompressed hashes to $got, config says $diff_id"; return 1; }
        [ "$(stat -c %s "$layout/blobs/sha256/${digest#sha256:}")" = "$(jq -r ".layers[$i].size" <<<"$manifest")" ] ||
            { echo "$arch layer $i: size differs from the manifest"; return 1; }
    done
}

suite_examples() {
    if ! ensure_examples_built; then
        fail "bazel build //build/api:image (examples)"
        return
    fi
    pass "bazel build //build/api:image (examples)"
    local name digest
    while read -r name digest; do
        [ -n "$name" ] && [ "${name#\#}" = "$name" ] || continue
        expect_eq "examples: $name.digest is the recorded one (e2e/expected/examples-api.digests)" "$digest" "$(cat "$EX_BIN/$name.digest")"
    done <e2e/expected/examples-api.digests
    local index="$EX_BIN/image.oci" raw
    raw=$(skopeo inspect --raw "oci:$index")
    expect_eq "index: media type is an OCI image index" "application/vnd.oci.image.index.v1+json" "$(jq -r .mediaType <<<"$raw")"
    expect_eq "index: platforms are exactly linux/amd64 and linux/arm64" "linux/amd64 linux/arm64" \
        "$(jq -r '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort | join(" ")' <<<"$raw")"
    expect_eq "index: image.digest is the sha256 of the index skopeo reads" \
        "$(cat "$EX_BIN/image.digest")" "sha256:$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)"

    local arch want_file bundle config port pid
    for arch in amd64 arm64; do
        config=$(skopeo --override-arch "$arch" inspect --config "oci:$index")
        expect_eq "$arch: config architecture via the index" "$arch" "$(jq -r .architecture <<<"$config")"
        expect_eq "$arch: entrypoint is the binary at /" '["/api"]' "$(jq -c .config.Entrypoint <<<"$config")"
        expect_eq "$arch: port 8080/tcp exposed" '{"8080/tcp":{}}' "$(jq -c .config.ExposedPorts <<<"$config")"
        check "$arch: every layer's digest, size and diff_id verify (sha256sum, gzip)" layer_checks "$arch" "$EX_BIN/api_$arch.oci"

        # umoci verifies blob digests while unpacking; it needs a writable layout.
        bundle="$KILN_WORK/bundle-$arch"
        rm -rf "$bundle" "$KILN_WORK/layout-$arch"
        cp -r "$EX_BIN/api_$arch.oci" "$KILN_WORK/layout-$arch" && chmod -R u+w "$KILN_WORK/layout-$arch"
        check "$arch: umoci unpack" umoci unpack --rootless --image "$KILN_WORK/layout-$arch:latest" "$bundle"
        want_file=$([ "$arch" = amd64 ] && echo "x86-64" || echo "ARM aarch64")
        check "$arch: /api is a static $want_file ELF" \
            bash -c "file '$bundle/rootfs/api' | grep 'ELF 64-bit.*$want_file.*statically linked' >/dev/null"
        # GNU tar's own listing: explicit mode, owner 0/0, mtime at the epoch.
        local blob
        blob=$(skopeo inspect --raw "oci:$EX_BIN/api_$arch.oci" | jq -r '.layers[-1].digest | sub("sha256:"; "")')
        expect_eq "$arch: layer tar lists -rwxr-xr-x 0/0 1970-01-01 00:00 api" "-rwxr-xr-x 0/0 1970-01-01 00:00 api" \
            "$(TZ=UTC tar -tvzf "$EX_BIN/api_$arch.oci/blobs/sha256/$blob" --numeric-owner | awk '{print $1, $2, $4, $5, $6}')"
    done

    # static_base: what the services run on, read with GNU tar from the base layer.
    local base_blob listing
    base_blob=$(skopeo inspect --raw "oci:$EX_BIN/api_arm64.oci" | jq -r '.layers[0].digest | sub("sha256:"; "")')
    listing=$(TZ=UTC tar -tvzf "$EX_BIN/api_arm64.oci/blobs/sha256/$base_blob" --numeric-owner 2>&1)
    expect_eq "static_base: /tmp is drwxrwxrwt root" "drwxrwxrwt 0/0" "$(awk '$6 == "tmp/" {print $1, $2}' <<<"$listing")"
    expect_eq "static_base: /home/nonroot belongs to 65532" "drwx------ 65532/65532" "$(awk '$6 == "home/nonroot/" {print $1, $2}' <<<"$listing")"
    expect_eq "static_base: /etc/passwd has root and nonroot" "root:x:0:0 nonroot:x:65532:65532" \
        "$(tar -xOzf "$EX_BIN/api_arm64.oci/blobs/sha256/$base_blob" etc/passwd | grep -E '^(root|nonroot):' | cut -d: -f1-4 | paste -sd' ')"
    expect_eq "static_base: /etc/group has nonroot" "nonroot:x:65532:" \
        "$(tar -xOzf "$EX_BIN/api_arm64.oci/blobs/sha256/$base_blob" etc/group | grep '^nonroot:')"
    local path missing=""
    for path in etc/ssl/certs/ca-certificates.crt usr/share/zoneinfo/UTC etc/services etc/os-release; do
        grep -q " $path\( \|$\)" <<<"$listing" || missing="$missing $path"
    done
    expect_eq "static_base: CA bundle, tzdata, netbase and base-files are in the layer" "" "$missing"
    # dpkg status for scanners, one file per package as distroless has them,
    # each naming the version the lock pins.
    local lock=examples/build/base/debs.lock.json want got
    want=$(jq -r '.packages[] | select(.architecture == "all" or .architecture == "arm64") | "\(.name) \(.version) \(.architecture)"' "$lock" | sort | paste -sd,)
    got=$(for p in $(grep -o ' var/lib/dpkg/status.d/[^ .]*$' <<<"$listing" | sed 's|.*/||'); do
        tar -xOzf "$EX_BIN/api_arm64.oci/blobs/sha256/$base_blob" "var/lib/dpkg/status.d/$p" |
            awk -v f="$p" '/^Package:/ {n=$2} /^Version:/ {v=$2} /^Architecture:/ {a=$2} END {if (n == f) print n, v, a; else print "file " f " says " n}'
    done | sort | paste -sd,)
    expect_eq "static_base: /var/lib/dpkg/status.d/<package> for each pinned package (arm64)" "$want" "$got"
    # md5sums lists the package's files (conffiles aside), as md5sum(1) sees them in the layer.
    expect_eq "static_base: status.d/<package>.md5sums matches the files in the layer (md5sum)" \
        "$(tar -xOzf "$EX_BIN/api_arm64.oci/blobs/sha256/$base_blob" usr/share/doc/netbase/copyright | md5sum | cut -d' ' -f1)" \
        "$(tar -xOzf "$EX_BIN/api_arm64.oci/blobs/sha256/$base_blob" var/lib/dpkg/status.d/netbase.md5sums | awk '$2 == "usr/share/doc/netbase/copyright" {print $1}')"
    expect_eq "static_base: the CA bundle holds the package's certificates" "yes" \
        "$([ "$(tar -xOzf "$EX_BIN/api_arm64.oci/blobs/sha256/$base_blob" etc/ssl/certs/ca-certificates.crt | grep -c 'BEGIN CERTIFICATE')" -gt 100 ] && echo yes)"

    # The arm64 binary really runs (under qemu-user) and serves /healthz.
    port=$(free_port)
    qemu-aarch64-static "$KILN_WORK/bundle-arm64/rootfs/api" -listen "127.0.0.1:$port" >"$KILN_WORK/qemu-api.log" 2>&1 &
    pid=$!
    if wait_http "http://127.0.0.1:$port/healthz" 30; then
        expect_eq "arm64: binary under qemu answers /healthz" "200 ok api linux/arm64" \
            "$(curl -s -w '%{http_code} ' -o "$KILN_WORK/qemu-body" "http://127.0.0.1:$port/healthz")$(cat "$KILN_WORK/qemu-body")"
    else
        fail "arm64: binary under qemu answers /healthz" "$(cat "$KILN_WORK/qemu-api.log")"
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}
