# The container_image / container_layer API, target by target in
# e2e/basic/api. Every check reads the result with a tool we did not write:
# umoci (unpack), skopeo (inspect), tar, zstd, gzip, jq, docker, podman.
# docs/container_image.md names the check that proves each attribute.

api_bazel() { (cd e2e/basic && kbazel basic "$@"); }

# api_build NAME TARGET...: builds, FAIL with the log's errors when it does not.
api_build() {
    local name=$1; shift
    local log="$KILN_WORK/api-build.log"
    # The checks read each image's OCI layout (output group oci_layout).
    if api_bazel build --output_groups=+oci_layout "$@" >"$log" 2>&1; then return 0; fi
    fail "$name: bazel build $*" "$(grep -E 'ERROR|rror:|kiln-' "$log" | head -8)"
    return 1
}

# api_unpack NAME: umoci-unpacks //api:NAME into $KILN_WORK/unpack-NAME; prints the rootfs.
api_unpack() {
    local dir="$KILN_WORK/unpack-$1"
    rm -rf "$dir"
    umoci unpack --image "$API_BIN/$1.oci:latest" "$dir" >/dev/null 2>&1 || return 1
    echo "$dir/rootfs"
}

api_config() { skopeo inspect --config "oci:$API_BIN/$1.oci:latest"; }
api_manifest() { skopeo inspect --raw "oci:$API_BIN/$1.oci:latest"; }

# api_docker_load NAME: docker-loads //api:NAME.tar; prints the loaded tag.
api_docker_load() { docker load -i "$API_BIN/$1.tar" 2>&1 | sed -n 's/^Loaded image: //p' | tail -1; }

# tar_times FILE: "path mtime" per entry, UTC, as GNU tar lists them.
tar_times() { TZ=UTC tar --full-time -tvf "$1" | awk '{print $6 " " $4 "T" $5}' | sort; }

# api_fixtures: what e2e/basic/api needs beside the tree; FAIL when it cannot.
api_fixtures() {
    mkdir -p e2e/basic/api/downloaded
    if [ ! -s e2e/basic/api/downloaded/busybox-static.deb ]; then
        # A real Debian package for `debs`, and a shell to run in the images.
        (cd "$KILN_WORK" && rm -f busybox-static_*.deb && apt-get download busybox-static >/dev/null 2>&1) &&
            cp "$KILN_WORK"/busybox-static_*.deb e2e/basic/api/downloaded/busybox-static.deb ||
            { fail "api: apt-get download busybox-static"; return 1; }
    fi
}

suite_api() {
    api_fixtures || return
    # `<name>-layer.tar` is built only when asked for.
    api_build "api" //api/... //api/naming/... //api:tars_layer-layer.tar //api:misc_layer-layer.tar \
        //api:mtime_layer-layer.tar //api:portable_mtime_layer-layer.tar //api:preserved_mtime_layer-layer.tar || return
    API_BIN=$(api_bazel info bazel-bin 2>/dev/null)/api
    api_layer_contents
    api_layer_times_and_compression
    api_image_config
    api_outputs
    api_run_targets
    api_big_layers
    api_stamping
    api_bases
    api_reuse
}

api_layer_contents() {
    local root
    if ! root=$(api_unpack contents); then fail "layers: umoci unpacks //api:contents"; return; fi
    expect_eq "tars: plain, gzip, zstd and xz tarballs extracted under directory" \
        "plain tar|gzip tar|zstd tar|xz tar" \
        "$(cat "$root/opt/t/a.txt" "$root/opt/t/b.txt" "$root/opt/t/c.txt" "$root/opt/t/d.txt" 2>&1 | paste -sd'|')"
    expect_eq "tars: owner and mode kept" "1000:1000 640" "$(stat -c '%u:%g %a' "$root/opt/t/owned.txt" 2>&1)"
    expect_eq "tars: symlink kept" "a.txt" "$(readlink "$root/opt/t/link")"
    expect_eq "tars: hardlink kept (same inode)" "$(stat -c %i "$root/opt/t/a.txt")" "$(stat -c %i "$root/opt/t/hard.txt" 2>&1)"
    local tars_listing
    tars_listing=$(tar -tf "$API_BIN/tars_layer-layer.tar")
    expect_eq "tars: a path in several tarballs with the same content is written once" "1" "$(grep -c '^opt/t/shared.txt$' <<<"$tars_listing")"
    expect_eq "debs: data.tar.xz and data.tar.gz members extracted" "from a deb" "$(cat "$root/usr/share/kiln-fixture/hello.txt" 2>&1)"
    expect_eq "files + mode: mode 0o640" "640 built by rules_kiln" "$(stat -c %a "$root/description.txt") $(cat "$root/description.txt")"
    expect_eq "files: the same file listed twice is written once" "1" "$(tar -tf "$API_BIN/misc_layer-layer.tar" | grep -c '^description.txt$')"
    expect_eq "empty_files: empty, with mode" "0 640" "$(stat -c '%s %a' "$root/etc/marker" 2>&1)"
    expect_eq "empty_dirs: an empty directory" "directory 0" "$(stat -c %F "$root/var/empty" 2>&1) $(find "$root/var/empty" -mindepth 1 | wc -l)"
    expect_eq "symlinks: link -> target" "/description.txt" "$(readlink "$root/etc/desc")"
    expect_eq "data_path unset: basenames under directory" "one two" "$(cat "$root/d/one.txt" "$root/d/two.txt" 2>&1 | paste -sd' ')"
    expect_eq "data_path '.': paths relative to the package" "two" "$(cat "$root/d/fixtures/tree/sub/two.txt" 2>&1)"
    expect_eq "data_path '/': paths relative to the workspace root" "two" "$(cat "$root/d/api/fixtures/tree/sub/two.txt" 2>&1)"
    expect_eq "data_path './x': relative to x in the package" "two" "$(cat "$root/d/sub/two.txt" 2>&1)"
    expect_eq "data_path '/x': relative to x from the workspace root" "two" "$(cat "$root/d/tree/sub/two.txt" 2>&1)"
    expect_eq "layers: each container_layer is its own layer, in order" "8" "$(api_config contents | jq '.rootfs.diff_ids | length')"
    local tars_diff_id
    tars_diff_id=$(jq -r .diff_id "$API_BIN/tars_layer-layer.json")
    expect_eq "layers: the first layer is the first in \`layers\`" "$tars_diff_id" "$(api_config contents | jq -r '.rootfs.diff_ids[0]')"
}

api_layer_times_and_compression() {
    expect_eq "mtime: every entry at the given time" "2023-11-14T22:13:20" \
        "$(tar_times "$API_BIN/mtime_layer-layer.tar" | awk '{print $2}' | sort -u)"
    expect_eq "portable_mtime: every entry at 2000-01-01" "2000-01-01T00:00:00" \
        "$(tar_times "$API_BIN/portable_mtime_layer-layer.tar" | awk '{print $2}' | sort -u)"
    expect_eq "default mtime: every entry at the epoch" "1970-01-01T00:00:00" \
        "$(tar_times "$API_BIN/misc_layer-layer.tar" | awk '{print $2}' | sort -u)"
    expect_eq "enable_mtime_preservation: tar entries keep their time" "2020-09-13T12:26:40" \
        "$(tar_times "$API_BIN/preserved_mtime_layer-layer.tar" | grep 'b.txt' | awk '{print $2}')"

    local blob descriptor
    blob=$(ls "$API_BIN"/zstd_layer-layer.tar.zst 2>/dev/null)
    descriptor="$API_BIN/zstd_layer-layer.json"
    expect_eq "compression zstd: the blob is zstd (file(1))" "Zstandard" "$(file -b "$blob" | grep -o Zstandard)"
    expect_eq "compression zstd: mediaType" "application/vnd.oci.image.layer.v1.tar+zstd" "$(jq -r .mediaType "$descriptor")"
    expect_eq "compression zstd: zstd -d gives the diff_id" "$(jq -r .diff_id "$descriptor")" "sha256:$(zstd -dc "$blob" | sha256sum | cut -d' ' -f1)"
    expect_eq "compression zstd: digest is the blob's sha256" "$(jq -r .digest "$descriptor")" "sha256:$(sha256sum <"$blob" | cut -d' ' -f1)"
    expect_eq "compression zstd: in the image manifest" "application/vnd.oci.image.layer.v1.tar+zstd" "$(api_manifest zstd | jq -r '.layers[-1].mediaType')"

    local fast best
    fast="$API_BIN/fast_layer-layer.json"; best="$API_BIN/best_layer-layer.json"
    check "compression_options: --fast and -9 give valid gzip" gzip -t "$API_BIN/fast_layer-layer.tar.gz" "$API_BIN/best_layer-layer.tar.gz"
    expect_eq "compression_options: same content (diff_id)" "$(jq -r .diff_id "$fast")" "$(jq -r .diff_id "$best")"
    if [ "$(jq -r .digest "$fast")" != "$(jq -r .digest "$best")" ]; then
        pass "compression_options: different levels give different blobs"
    else
        fail "compression_options: different levels give different blobs" "both $(jq -r .digest "$fast")"
    fi
}

api_image_config() {
    local config
    config=$(api_config config)
    expect_eq "cmd string: /bin/sh -c" '["/bin/sh","-c","echo $GREETING from $HOME"]' "$(jq -c .config.Cmd <<<"$config")"
    expect_eq "env: base, layer env, \$VAR and \${VAR} expansion, make variables" \
        '["PATH=/bin:/opt/bin","HOME=/root","FROM_LAYER=layer","GREETING=hello","LOCATION=/root/k8"]' "$(jq -c .config.Env <<<"$config")"
    expect_eq "labels: plain and @file" "$(jq -cn --arg m "$(cat e2e/basic/api/fixtures/metadata.json)" '{"org.example.metadata":($m + "\n"),"org.example.plain":"plain"}')" \
        "$(jq -c .config.Labels <<<"$config")"
    expect_eq "ports: 80, 8443/tcp, 53/udp, 9000/sctp" '{"53/udp":{},"80/tcp":{},"8443/tcp":{},"9000/sctp":{}}' "$(jq -c .config.ExposedPorts <<<"$config")"
    expect_eq "volumes" '{"/cache":{},"/data":{}}' "$(jq -c .config.Volumes <<<"$config")"
    expect_eq "user, workdir" "1000:1000 /srv" "$(jq -r '"\(.config.User) \(.config.WorkingDir)"' <<<"$config")"
    expect_eq "os_version: in the config" "1.2.3" "$(jq -r '."os.version"' <<<"$config")"
    expect_eq "os_version: in the layout's platform" "1.2.3" "$(jq -r '.manifests[0].platform."os.version"' "$API_BIN/config.oci/index.json")"
    expect_eq "creation_time: RFC 3339 with an offset, written in UTC" "2024-01-02T01:04:05Z" "$(jq -r .created <<<"$config")"
    expect_eq "creation_time: fractional seconds" "2023-11-14T22:13:20.25Z" "$(api_config seconds | jq -r .created)"
    expect_eq "operating_system: linux" "linux" "$(jq -r .os <<<"$config")"
    expect_eq "architecture: arm64 (variant v8)" "arm64 v8" "$(api_config arm | jq -r '"\(.architecture) \(.variant)"')"
    expect_eq "null entrypoint and cmd (None, [])" "null null" "$(api_config nulled | jq -c '"\(.config.Entrypoint) \(.config.Cmd)"' -r)"
    expect_eq "cmd \"\" is null too" "null" "$(api_config empty_string_cmd | jq -c .config.Cmd)"
    expect_eq "null cmd keeps the rest of the base config" "1000:1000" "$(api_config nulled | jq -r .config.User)"
    expect_eq "launcher + launcher_args prefix the entrypoint" '["/launcher.sh","--verbose","/bin/app"]' "$(api_config launched | jq -c .config.Entrypoint)"
    local root
    root=$(api_unpack launched) && expect_eq "launcher: the file is in the image" "launcher: \$*" "$(grep -o 'launcher: \$\*' "$root/launcher.sh")"
}

api_outputs() {
    api_build "outputs" //api:config.tar //api:compressed_tarball.tar //api:seconds-layer.tar //api:config.json.sha256 \
        //api/naming:named.tar //api/naming:legacy_named.tar //api:zstd.tar || return
    local digest
    digest="sha256:$(api_manifest config | sha256sum | cut -d' ' -f1)"
    expect_eq "name.digest: the manifest digest skopeo computes" "$digest" "$(cat "$API_BIN/config.digest")"
    check "name.json: the config blob, byte for byte" cmp "$API_BIN/config.json" <(skopeo inspect --raw --config "oci:$API_BIN/config.oci:latest")
    expect_eq "name.json.sha256: sha256 of name.json" "$(sha256sum <"$API_BIN/config.json" | cut -d' ' -f1)" "$(cat "$API_BIN/config.json.sha256")"
    expect_eq "name-layer.tar: the uncompressed layer (its diff_id)" "$(api_config seconds | jq -r '.rootfs.diff_ids[-1]')" \
        "sha256:$(sha256sum <"$API_BIN/seconds-layer.tar" | cut -d' ' -f1)"
    # Listings are read whole first: `tar | grep -q` fails under pipefail when
    # grep stops reading early.
    local legacy_listing compressed_listing
    legacy_listing=$(tar -tf "$API_BIN/config.tar")
    compressed_listing=$(tar -tf "$API_BIN/compressed_tarball.tar")
    expect_eq "experimental_tarball_format legacy: uncompressed <id>/layer.tar entries, no index.json" "yes 0" \
        "$(grep -q '/layer.tar$' <<<"$legacy_listing" && echo yes) $(grep -c '^index.json$' <<<"$legacy_listing")"
    expect_eq "experimental_tarball_format compressed: OCI blobs and index.json" "yes yes" \
        "$(grep -q '^index.json$' <<<"$compressed_listing" && echo yes) $(grep -q '^blobs/sha256/' <<<"$compressed_listing" && echo yes)"
    expect_eq "name.tar: skopeo reads the legacy tarball" "$(api_config config | jq -c .rootfs)" \
        "$(skopeo inspect --config "docker-archive:$API_BIN/config.tar" | jq -c .rootfs)"
    expect_eq "repository: default tag <repository>/<package>:<name>" '["registry.example/team/api/naming:named"]' \
        "$(tar -xOf "$API_BIN/naming/named.tar" manifest.json | jq -c '.[0].RepoTags')"
    expect_eq "legacy_repository_naming: / in the package becomes _" '["registry.example/team/api_naming:legacy_named"]' \
        "$(tar -xOf "$API_BIN/naming/legacy_named.tar" manifest.json | jq -c '.[0].RepoTags')"
    expect_eq "default tag: bazel/<package>:<name>" '["bazel/api:config"]' "$(tar -xOf "$API_BIN/config.tar" manifest.json | jq -c '.[0].RepoTags')"

    if ! docker_available; then
        fail "name.tar: docker load" "no Docker engine answers: these tests need one"
        return
    fi
    local tag
    tag=$(api_docker_load config)
    expect_eq "ports: docker inspect of the loaded image shows 9000/sctp" '{"53/udp":{},"80/tcp":{},"8443/tcp":{},"9000/sctp":{}}' "$(docker image inspect --format '{{json .Config.ExposedPorts}}' "$tag" 2>&1)"
    expect_eq "name.tar (legacy): docker load, image ID = config digest" "sha256:$(cat "$API_BIN/config.json.sha256")" "$(docker image inspect --format '{{.Id}}' "$tag" 2>&1)"
    expect_eq "docker run: cmd through /bin/sh -c, env expanded" "hello from /root" "$(docker run --rm "$tag" 2>&1)"
    tag=$(api_docker_load compressed_tarball)
    expect_eq "name.tar (compressed): docker load" "bazel/api:compressed_tarball" "$tag"
    tag=$(api_docker_load zstd)
    expect_eq "compression zstd: docker loads and runs the image" "built by rules_kiln" "$(docker run --rm "$tag" /bin/cat /description.txt 2>&1)"
    if command -v podman >/dev/null 2>&1; then
        local out
        out=$(podman load -i "$API_BIN/config.tar" 2>&1)
        expect_eq "name.tar (legacy): podman load" "$(cat "$API_BIN/config.json.sha256")" "$(podman image inspect --format '{{.Id}}' bazel/api:config 2>&1 | tail -1)"
        podman rmi -f bazel/api:config >/dev/null 2>&1 || true
        if grep -q "Loaded image" <<<"$out"; then pass "name.tar (legacy): podman load reports the image loaded"; else fail "name.tar (legacy): podman load reports the image loaded" "$(tail -3 <<<"$out")"; fi
    else
        fail "name.tar: podman load" "podman is not installed (e2e/setup/deps.sh installs it)"
    fi
}

api_run_targets() {
    if ! docker_available; then
        skip "bazel run :name (load, incremental load, run)" "no Docker engine answers"
        return 0
    fi
    local out
    docker rmi -f bazel/api:busybox bazel/api:config >/dev/null 2>&1
    out=$(api_bazel run //api:busybox 2>&1)
    expect_eq "bazel run :name loads the image" "sha256:$(cat "$API_BIN/busybox.json.sha256")" "$(docker image inspect --format '{{.Id}}' bazel/api:busybox 2>&1)"
    out=$(api_bazel run //api:busybox 2>&1)
    if grep -qi "already" <<<"$out"; then pass "bazel run :name again: nothing loaded, only tagged"; else fail "bazel run :name again: nothing loaded, only tagged" "$(tail -3 <<<"$out")"; fi
    docker rmi -f bazel/api:config >/dev/null 2>&1
    out=$(api_bazel run //api:config 2>&1)
    if grep -qiE "skipp(ed|ing) [1-9]" <<<"$out"; then pass "incremental load: layers docker has are not sent"; else fail "incremental load: layers docker has are not sent" "$(tail -3 <<<"$out")"; fi
    expect_eq "incremental load: the image is complete and runs" "hello from /root" "$(docker run --rm bazel/api:config 2>&1)"

    out=$(api_bazel run //api:runner 2>&1)
    if grep -q "ran with RUN_FLAG=from flags" <<<"$out"; then pass "legacy_run_behavior False: docker run with docker_run_flags"; else fail "legacy_run_behavior False: docker run with docker_run_flags" "$(tail -3 <<<"$out")"; fi
    out=$(api_bazel run //api:runner -- --norun 2>&1)
    if ! grep -q "ran with" <<<"$out" && docker image inspect bazel/api:runner >/dev/null 2>&1; then
        pass "--norun: loads without running"
    else
        fail "--norun: loads without running" "$(tail -3 <<<"$out")"
    fi
}

api_stamping() {
    local status="$PWD/e2e/basic/api/status.sh" config log="$KILN_WORK/api-exec.json"
    api_build "stamp" --stamp --workspace_status_command="$status" --embed_label=rel-1 //api:stamped || return
    config=$(api_config stamped)
    expect_eq "stamp: labels ({BUILD_EMBED_LABEL}, custom keys)" '{"org.example.custom":"custom-value","org.example.label":"rel-1"}' "$(jq -c .config.Labels <<<"$config")"
    expect_eq "stamp: env ({BUILD_USER})" "[\"BUILT_BY=$(id -un)\"]" "$(jq -c .config.Env <<<"$config")"
    expect_eq "stamp: entrypoint, cmd, user, workdir" '["kilncmd"] ["--user=4242"] 4242 /custom-value' \
        "$(jq -r '"\(.config.Entrypoint|tojson) \(.config.Cmd|tojson) \(.config.User) \(.config.WorkingDir)"' <<<"$config")"
    local created now
    created=$(date -u -d "$(jq -r .created <<<"$config")" +%s 2>/dev/null || echo 0)
    now=$(date -u +%s)
    if [ $((now - created)) -ge 0 ] && [ $((now - created)) -lt 3600 ]; then pass "stamp: creation_time defaults to {BUILD_TIMESTAMP}"; else fail "stamp: creation_time defaults to {BUILD_TIMESTAMP}" "$(jq -r .created <<<"$config")"; fi

    api_build "stamp" --workspace_status_command="$status" //api:stamped //api:always_stamped || return
    config=$(api_config stamped)
    expect_eq "no --stamp: placeholders stay as written" '{BUILD_EMBED_LABEL} 1970-01-01T00:00:00Z' "$(jq -r '"\(.config.Labels."org.example.label") \(.created)"' <<<"$config")"
    expect_eq "stamp = True: stamped without --stamp" "$(id -un)" "$(api_config always_stamped | jq -r '.config.Labels."org.example.user"')"

    # Unstamped actions do not read the status files: another embed label and
    # status output change nothing, so nothing re-runs.
    local other="$KILN_WORK/status-other.sh"
    printf '#!/bin/sh\necho STABLE_KILN_CUSTOM other-value\necho STABLE_KILN_CMD kilncmd\necho STABLE_KILN_USER 4242\n' >"$other"
    chmod +x "$other"
    api_build "stamp" --workspace_status_command="$other" --embed_label=rel-2 --execution_log_json_file="$log" //api:stamped || return
    expect_eq "unstamped builds stay cached when the status changes" "0" "$(grep -c '"mnemonic": "KilnImage"' "$log")"
    api_build "stamp" --stamp --workspace_status_command="$other" --embed_label=rel-2 --execution_log_json_file="$log" //api:stamped || return
    expect_eq "stamped builds re-run when the status changes" "1" "$(grep -c '"mnemonic": "KilnImage"' "$log")"

    start_registry api || { fail "stamp: docker-registry starts"; return; }
    if api_bazel run --workspace_status_command="$status" //api:stamped_push -- --repository "$REGISTRY/kiln/stamped" >"$KILN_WORK/api-push.log" 2>&1; then
        # sha256-<hex>: the referrers tag of the image's SBOM (docs/supply-chain.md).
        expect_eq "stamp: image_push remote_tags" '["custom-value","fixed"]' "$(skopeo list-tags --tls-verify=false "docker://$REGISTRY/kiln/stamped" | jq -c '[.Tags[] | select(startswith("sha256-") | not)] | sort')"
    else
        fail "stamp: image_push remote_tags" "$(tail -5 "$KILN_WORK/api-push.log")"
    fi
}

api_bases() {
    api_build "bases" //api:on_docker_tar //api:on_oci_layout //api:on_index_arm64 //api:on_docker_tar.tar //api:on_oci_layout.tar || return
    local busybox_diff_id config
    busybox_diff_id=$(api_config busybox | jq -r '.rootfs.diff_ids[0]')
    config=$(api_config on_docker_tar)
    expect_eq "base docker-save tarball: its layer, then ours" "$busybox_diff_id 2" "$(jq -r '"\(.rootfs.diff_ids[0]) \(.rootfs.diff_ids|length)"' <<<"$config")"
    expect_eq "base docker-save tarball: env inherited" '["PATH=/bin","HOME=/root"]' "$(jq -c .config.Env <<<"$config")"
    config=$(api_config on_oci_layout)
    expect_eq "base OCI layout (made by skopeo): its layer, then ours" "$busybox_diff_id 2" "$(jq -r '"\(.rootfs.diff_ids[0]) \(.rootfs.diff_ids|length)"' <<<"$config")"
    local root
    root=$(api_unpack on_index_arm64) && expect_eq "base image_index: the arm64 image takes the arm64 manifest" "arm64" "$(cat "$root/arch.txt" 2>&1)"
    if docker_available; then
        expect_eq "base docker-save tarball: docker run" "built by rules_kiln" "$(docker run --rm "$(api_docker_load on_docker_tar)" 2>&1)"
        expect_eq "base OCI layout: docker run" "built by rules_kiln" "$(docker run --rm "$(api_docker_load on_oci_layout)" 2>&1)"
    else
        skip "base docker-save tarball and OCI layout: docker run" "no Docker engine answers"
    fi
}

api_reuse() {
    api_build "reuse" //api:custom //api:custom.tar || return
    local config
    config=$(api_config custom)
    expect_eq "container.image.implementation: overrides from a custom rule" '["/bin/cat","/etc/greeting"] GREETING=from a custom rule' \
        "$(jq -r '"\(.config.Cmd|tojson) \(.config.Env[-1])"' <<<"$config")"
    expect_eq "container.image.outputs: the custom rule has name.digest" "sha256:$(api_manifest custom | sha256sum | cut -d' ' -f1)" "$(cat "$API_BIN/custom.digest")"
    if docker_available; then
        expect_eq "custom rule image runs" "from a custom rule" "$(docker run --rm "$(api_docker_load custom)" 2>&1)"
    else
        skip "custom rule image runs" "no Docker engine answers"
    fi
}

# A 64 MiB layer of many compression chunks (text and already-compressed
# bytes), once per compression, read by readers we did not write: GNU gzip,
# zstd, GNU tar, umoci (gzip) and skopeo (digests verified, Go's readers),
# Docker (Go's gzip).
api_big_layers() {
    api_build "big layers" //api:big_gzip.tar //api:big_zstd.tar || return
    local size
    size=$(stat -c %s "$API_BIN/big.bin")
    check "big layer: gzip -t reads the multi-chunk gzip blob" gzip -t "$API_BIN/big_gzip_layer-layer.tar.gz"
    check "big layer: zstd -t reads the multi-frame zstd blob" zstd -q -t "$API_BIN/big_zstd_layer-layer.tar.zst"
    check "big layer: GNU tar extracts the file from the gzip blob" \
        bash -c "tar -xzOf '$API_BIN/big_gzip_layer-layer.tar.gz' big.bin | cmp - '$API_BIN/big.bin'"
    local root
    # umoci 0.4.7 reads no zstd layer ("blob is not correct mediatype"): gzip only.
    if root=$(api_unpack big_gzip); then
        check "big layer (gzip): umoci unpack (digests verified) gives the file" cmp "$root/big.bin" "$API_BIN/big.bin"
    else
        fail "big layer (gzip): umoci unpack"
    fi
    local kind copy diff_id
    for kind in gzip zstd; do
        # skopeo (Go's gzip, klauspost's zstd) verifies every digest and
        # decompresses the layer into a file named by its own sha256.
        copy="$KILN_WORK/big-copy-$kind"
        rm -rf "$copy"
        diff_id=$(jq -r .diff_id "$API_BIN/big_${kind}_layer-layer.json" | sed 's/^sha256://')
        check "big layer ($kind): skopeo copy --dest-decompress verifies the digests and gives the diff_id" \
            bash -c "skopeo copy --quiet --dest-decompress 'oci:$API_BIN/big_$kind.oci:latest' 'dir:$copy' && [ \"\$(sha256sum <'$copy/$diff_id' | cut -d' ' -f1)\" = '$diff_id' ]"
        expect_eq "big layer ($kind): KilnLayer writes no -layer.tar; KilnLayerTar only on request" "0 1" \
            "$(api_bazel aquery --output=text "mnemonic('KilnLayer', //api:big_${kind}_layer)" 2>/dev/null | grep -c "big_${kind}_layer-layer.tar[],]") $(api_bazel aquery --output=text "mnemonic('KilnLayerTar', //api:big_${kind}_layer)" 2>/dev/null | grep -c "big_${kind}_layer-layer.tar[],]")"
    done
    expect_eq "big layer: container_layer's default output is the blob alone" "big_gzip_layer-layer.tar.gz" \
        "$(api_bazel cquery --output=files //api:big_gzip_layer 2>/dev/null | xargs -n1 basename)"
    api_big_layers_one_cpu
    docker_available || { skip "big layer: docker load and run" "no Docker engine answers"; return 0; }
    local tag
    # gzip through Go's gzip reader: the compressed tarball holds the blob as built.
    tag=$(api_docker_load big_gzip)
    expect_eq "big layer (gzip): docker load of the blob as built, docker run reads the file" "$size" \
        "$(docker run --rm "$tag" /bin/sh -c '/bin/busybox wc -c < /big.bin' 2>&1)"
    # zstd: Docker 20.10 reads no zstd layer from a docker-save tarball, so
    # kiln-load's legacy tarball carries it uncompressed.
    tag=$(api_docker_load big_zstd)
    expect_eq "big layer (zstd): docker load and docker run read the file" "$size" \
        "$(docker run --rm "$tag" /bin/sh -c '/bin/busybox wc -c < /big.bin' 2>&1)"
    docker rmi -f bazel/api:big_gzip bazel/api:big_zstd >/dev/null 2>&1 || true
}

api_big_layers_one_cpu() {
    # A fresh Bazel server under `taskset -c 0`: kiln-layer then has one CPU
    # and one compressing worker, where the first build had two.
    local ob=basic-1cpu log="$KILN_WORK/basic-1cpu.log" pid bin kind ext
    rm -rf "$KILN_WORK/ob-$ob"
    # The subshell pins itself, so kbazel's client and the server it starts inherit CPU 0.
    if ! (cd e2e/basic && taskset -cp 0 "$BASHPID" && kbazel "$ob" build //api:big_gzip_layer //api:big_zstd_layer) >"$log" 2>&1; then
        fail "big layers: build on one CPU (taskset -c 0)" "$(tail -20 "$log")"
        return
    fi
    pid=$(cd e2e/basic && kbazel "$ob" info server_pid 2>/dev/null)
    expect_eq "big layers: the one-CPU build's Bazel server runs on CPU 0 only" "0" \
        "$(taskset -cp "$pid" 2>&1 | sed 's/.*: //')"
    bin=$(cd e2e/basic && kbazel "$ob" info bazel-bin 2>/dev/null)/api
    for kind in gzip zstd; do
        ext=gz
        [ "$kind" = zstd ] && ext=zst
        check "big layer ($kind): one CPU (taskset -c 0) and two give the same blob" \
            cmp "$API_BIN/big_${kind}_layer-layer.tar.$ext" "$bin/big_${kind}_layer-layer.tar.$ext"
    done
    (cd e2e/basic && kbazel "$ob" shutdown) >/dev/null 2>&1
    rm -rf "$KILN_WORK/ob-$ob"
}
