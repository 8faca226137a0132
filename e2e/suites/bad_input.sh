# Bad input fails with an error naming the target, the attribute and the value,
# and leaves no output behind.

# expect_failure NAME TARGET PATTERN...: the build fails and stderr matches every PATTERN.
expect_failure() {
    local name=$1 target=$2; shift 2
    local out pattern
    if out=$(cd e2e/basic && kbazel basic build "$target" 2>&1); then
        fail "$name" "the build of $target succeeded"
        return
    fi
    for pattern in "$@"; do
        if ! grep -qF -- "$pattern" <<<"$out"; then
            fail "$name" "error does not mention '$pattern': $(grep -E 'ERROR|error' <<<"$out" | head -5)"
            return
        fi
    done
    pass "$name"
}

# check_binaries (e2e/basic/binaries): programs that cannot run in their
# image fail the build; the host's dynamically linked `true` stands in for a
# cgo Go binary.
binaries_checks() {
    if [ "$(host_arch)" != amd64 ] || [ ! -e /usr/bin/true ]; then
        skip "check_binaries: the fixtures copy an x86-64 host's /usr/bin/true and C library"
        return
    fi
    expect_failure "check_binaries: a dynamically linked binary on a base without its loader fails" \
        //binaries:dynamic_without_loader "//binaries:dynamic_without_loader" "/true" \
        "program interpreter /lib64/ld-linux-x86-64.so.2 is not in the image" \
        'build it static (rules_go: `pure = "on"`, or `static = "on"`), or use a base with a C library (e.g. static_base with libc6)' \
        "check_binaries = False"
    expect_failure "check_binaries: an x86-64 binary in an arm64 image fails naming both" \
        //binaries:wrong_architecture "//binaries:wrong_architecture" "/true" "x86-64 (64-bit, little-endian)" \
        "linux/arm64" "AArch64 (64-bit, little-endian)"
    expect_failure "check_binaries: a #!/bin/sh script on a base without a shell fails" \
        //binaries:script_without_shell "//binaries:script_without_shell" "/run.sh" \
        "\`#!\` interpreter /bin/sh is not in the image"
    local out
    if out=$(cd e2e/basic && kbazel basic build //binaries:dynamic_with_libc 2>&1); then
        pass "check_binaries: the same binary with its loader and C library in the image builds"
    else
        fail "check_binaries: the same binary with its loader and C library in the image builds" "$(grep -E 'ERROR|error|check_binaries' <<<"$out" | head -8)"
    fi
    if out=$(cd e2e/basic && kbazel basic build //binaries:unchecked 2>&1); then
        pass "check_binaries: check_binaries = False builds the unrunnable image"
    else
        fail "check_binaries: check_binaries = False builds the unrunnable image" "$(grep -E 'ERROR|error' <<<"$out" | head -5)"
    fi
}

suite_bad_input() {
    expect_failure "bad input: entrypoint not in the image" //bad:entrypoint_missing \
        "//bad:entrypoint_missing" "entrypoint" "/usr/bin/nope"
    local bin
    bin=$(cd e2e/basic && kbazel basic info bazel-bin 2>/dev/null)
    # Bazel creates a tree artifact's directory before the action runs; what
    # matters is that nothing of a layout (index.json, blobs) is left in it.
    if [ -e "$bin/bad/entrypoint_missing.digest" ] || [ -n "$(find "$bin/bad/entrypoint_missing.oci" -mindepth 1 2>/dev/null)" ]; then
        fail "bad input: a failed image leaves no layout or digest" "$(find "$bin/bad/entrypoint_missing.oci" "$bin/bad/entrypoint_missing.digest" 2>&1 | tr '\n' ' ')"
    else
        pass "bad input: a failed image leaves no layout or digest"
    fi
    binaries_checks
    expect_failure "bad input: '..' in a layer path" //bad:dotdot "//bad:dotdot" "symlinks" "/etc/../../escape"
    expect_failure "bad input: two files claim one path" //bad:conflict "//bad:conflict" "x.txt" "bad/a/x.txt" "bad/b/x.txt"
    expect_failure "bad input: unsupported architecture" //bad:unsupported_arch "//bad:unsupported_arch" "architecture" "s390x"
    expect_failure "bad input: invalid port" //bad:bad_port "//bad:bad_port" "ports" "99999/tcp"
    expect_failure "bad input: missing file" //bad:missing_file "//bad:not_there.bin"
    expect_failure "bad input: invalid push tag" //bad:bad_tag "//bad:bad_tag" "remote_tags" "no spaces allowed"
    expect_failure "bad input: invalid push repository" //bad:bad_repository "//bad:bad_repository" "repository" "127.0.0.1:70000/Kiln/Bad"
    expect_failure "bad input: '..' in a push repository, at analysis" //bad:dotdot_repository "//bad:dotdot_repository: repository" "registry.example/a..b/x" "\"a..b\""

    # container_image / container_layer API (issue 3)
    expect_failure "bad input: data_path with .." //bad:data_path_up "//bad:data_path_up" "data_path" "../elsewhere"
    expect_failure "bad input: a tar entry escaping the root" //bad:tar_escape "//bad:tar_escape" "tars" "escape.tar" "sub/../../escape.txt"
    expect_failure "bad input: two tarballs, different contents at one path" //bad:tar_conflict "//bad:tar_conflict" "a.txt" "plain.tar" "conflict.tar"
    expect_failure "bad input: unknown compression" //bad:unknown_compression "//bad:unknown_compression" "compression" "bzip2"
    expect_failure "bad input: unknown compression option" //bad:bad_compression_option "//bad:bad_compression_option" "compression_options" "-42"
    expect_failure "bad input: env name with a space" //bad:bad_env_name "//bad:bad_env_name" "env" "MY VAR"
    expect_failure "bad input: env name with =" //bad:env_name_with_equals "//bad:env_name_with_equals" "env" "A=B"
    expect_failure "bad input: creation_time that is no time" //bad:bad_creation_time "//bad:bad_creation_time" "creation_time" "yesterday"
    expect_failure "bad input: unknown stamp variable" //bad:unknown_stamp_key "//bad:unknown_stamp_key" "labels" "NO_SUCH_KEY"
    expect_failure "bad input: launcher_args without launcher" //bad:launcher_args_alone "//bad:launcher_args_alone" "launcher_args"
    expect_failure "bad input: rules_docker tool override" //bad:tool_override "//bad:tool_override" "build_layer"
    expect_failure "bad input: base lacks the image's platform" //bad:platform_missing_in_base "//bad:platform_missing_in_base" "arm64" "linux/amd64"
    expect_failure "bad input: base that is no image" //bad:bad_base "//bad:bad_base" "base" "x.txt"

    # issue 14: hostile and inconsistent input.
    expect_failure "bad input: a corrupt base layout fails at build time naming the blob and file" //bad:corrupt_base \
        "Verifying the base layout" "blob sha256:aa4dd4fbd7a6883118009f73ca1d86e44dbc9f1eff896442cddc3282c6e3cbc5" \
        "corrupt_layout/blobs/sha256/aa4dd4fbd7a6883118009f73ca1d86e44dbc9f1eff896442cddc3282c6e3cbc5" "is corrupt"
    expect_failure "bad input: NUL in an absolute entrypoint" //bad:nul_entrypoint "//bad:nul_entrypoint" "entrypoint" "NUL byte"
    expect_failure "bad input: NUL in a label" //bad:nul_label "//bad:nul_label" "labels" "NUL byte"
    expect_failure "bad input: relative workdir" //bad:relative_workdir "//bad:relative_workdir" "workdir" "not an absolute path"
    expect_failure "bad input: relative volume" //bad:relative_volume "//bad:relative_volume" "volumes" "not an absolute path"
    expect_failure "bad input: unknown operating_system" //bad:bad_os "//bad:bad_os" "operating_system" "linuxx"
}
