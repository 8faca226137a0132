# The three toolchain modes give the same tools and so the same image:
# source (cargo build in a repository rule), prebuilt (file:// archive + sha256)
# and local (a directory of binaries). Also checks image config through skopeo.

tc_workspace() { # MODE EXTRA_MODULE_TEXT: a copy of e2e/basic using MODE
    local dir="$KILN_WORK/tc-$1"
    rm -rf "$dir"; cp -r e2e/basic "$dir"
    sed -i "s|path = \"../..\",|path = \"$KILN_ROOT\",|" "$dir/MODULE.bazel"
    printf '\nkiln = use_extension("@rules_kiln//rules:extensions.bzl", "kiln")\n%s\n' "$2" >>"$dir/MODULE.bazel"
    echo "$dir"
}

tc_build() { # DIR OUTPUT_BASE: builds //:app, prints its digest
    (cd "$1" && kbazel "$2" build //:app >"$KILN_WORK/$2.log" 2>&1) || { tail -20 "$KILN_WORK/$2.log" >&2; return 1; }
    cat "$(cd "$1" && kbazel "$2" info bazel-bin 2>/dev/null)/app.digest"
}

tc_mode() { # OUTPUT_BASE: the mode the toolchain repository was made with
    cat "$KILN_WORK"/ob-"$1"/external/*kiln_toolchains/mode.txt 2>/dev/null
}

suite_toolchains() {
    local source_digest dir digest bin config
    if ! source_digest=$(tc_build e2e/basic basic); then
        fail "toolchains: source mode builds //:app"
        return
    fi
    expect_eq "toolchains: source mode was used by default" "source" "$(tc_mode basic)"

    bin=$(cd e2e/basic && kbazel basic info bazel-bin 2>/dev/null)
    (cd e2e/basic && kbazel basic build --output_groups=+oci_layout //:app >/dev/null 2>&1) || fail "build //:app --output_groups=+oci_layout"
    config=$(skopeo inspect --config "oci:$bin/app.oci")
    expect_eq "config: env in order" '["GREETING=hi","PATH=/usr/bin:/bin"]' "$(jq -c .config.Env <<<"$config")"
    expect_eq "config: labels, user, workdir" '{"org.example.team":"kiln"} 65532 /srv' \
        "$(jq -c .config.Labels <<<"$config") $(jq -r .config.User <<<"$config") $(jq -r .config.WorkingDir <<<"$config")"
    expect_eq "config: ports" '{"53/udp":{},"8080/tcp":{}}' "$(jq -c .config.ExposedPorts <<<"$config")"
    expect_eq "config: created at the epoch" "1970-01-01T00:00:00Z" "$(jq -r .created <<<"$config")"
    (cd e2e/basic && kbazel basic build --output_groups=+oci_layout //:child //:portable_index >/dev/null 2>&1) || fail "build //:child //:portable_index"
    config=$(skopeo inspect --config "oci:$bin/child.oci")
    expect_eq "config: child replaces base env in place" '["GREETING=hello","PATH=/usr/bin:/bin"]' "$(jq -c .config.Env <<<"$config")"
    expect_eq "config: child inherits entrypoint, user, labels; adds cmd" '["/srv/hello.txt"] 65532 kiln ["--verbose"]' \
        "$(jq -c .config.Entrypoint <<<"$config") $(jq -r .config.User <<<"$config") $(jq -r '.config.Labels["org.example.team"]' <<<"$config") $(jq -c .config.Cmd <<<"$config")"
    expect_eq "config: child has the base layer then its own" "2" "$(jq '.rootfs.diff_ids | length' <<<"$config")"
    expect_eq "index: one image per platform through the transition" "linux/amd64 linux/arm64" \
        "$(skopeo inspect --raw "oci:$bin/portable_index.oci" | jq -r '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort | join(" ")')"
    expect_eq "index: the arm64 image's config says arm64" "arm64" \
        "$(skopeo --override-arch arm64 inspect --config "oci:$bin/portable_index.oci" | jq -r .architecture)"

    # prebuilt: an archive of the binaries the source mode compiled, by file:// URL.
    local release="$KILN_CARGO_TARGET_DIR/release" archive="$KILN_WORK/kiln-tools-linux_x86_64.tar.gz" sha
    tar -C "$release" -czf "$archive" kiln-layer kiln-image kiln-index kiln-push kiln-load kiln-pull kiln-imagetest
    sha=$(sha256sum <"$archive" | cut -d' ' -f1)
    dir=$(tc_workspace prebuilt "kiln.toolchains(mode = \"prebuilt\", urls = {\"linux_x86_64\": \"file://$archive\"}, sha256 = {\"linux_x86_64\": \"$sha\"})")
    rm -rf "$KILN_WORK/ob-tc-prebuilt"
    if digest=$(tc_build "$dir" tc-prebuilt); then
        expect_eq "toolchains: prebuilt mode gives the same image as source" "$source_digest" "$digest"
        expect_eq "toolchains: prebuilt mode was used" "prebuilt" "$(tc_mode tc-prebuilt)"
    else
        fail "toolchains: prebuilt mode builds //:app"
    fi

    # prebuilt with a wrong checksum is refused.
    dir=$(tc_workspace prebuilt-bad "kiln.toolchains(mode = \"prebuilt\", urls = {\"linux_x86_64\": \"file://$archive\"}, sha256 = {\"linux_x86_64\": \"$(printf '0%.0s' {1..64})\"})")
    rm -rf "$KILN_WORK/ob-tc-prebuilt-bad"
    if tc_build "$dir" tc-prebuilt-bad >/dev/null 2>&1; then
        fail "toolchains: a prebuilt archive with the wrong sha256 is refused"
    else
        check "toolchains: a prebuilt archive with the wrong sha256 is refused, naming platform and URL" \
            grep -q "prebuilt tools for platform linux_x86_64: file://$archive does not have sha256 0000" "$KILN_WORK/tc-prebuilt-bad.log"
    fi

    # local: a directory holding the binaries.
    local tools="$KILN_WORK/local-tools"
    rm -rf "$tools"; mkdir -p "$tools"; tar -C "$tools" -xzf "$archive"
    dir=$(tc_workspace local "kiln.toolchains(mode = \"local\", path = \"$tools\")")
    rm -rf "$KILN_WORK/ob-tc-local"
    if digest=$(tc_build "$dir" tc-local); then
        expect_eq "toolchains: local mode gives the same image as source" "$source_digest" "$digest"
        expect_eq "toolchains: local mode was used" "local" "$(tc_mode tc-local)"
    else
        fail "toolchains: local mode builds //:app"
    fi
}
