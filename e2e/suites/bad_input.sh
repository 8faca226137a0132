# Bad input that only an action can judge (a kiln tool refuses it) fails the
# build with an error naming the target and what is wrong, and leaves no
# output behind. Every case is built by one `bazel build --keep_going`; each
# target's errors are found in that output by its label and checked on their
# own, one result per case. Values refused at analysis are Starlark analysis
# tests (e2e/basic/analysis, suite analysis).

# bad_case NAME TARGET PATTERN...: TARGET must fail to build, with errors
# naming it that hold every PATTERN (fixed strings).
bad_case() {
    local IFS=$'\x1f'
    bad_cases+=("$*")
}

# target_errors LABEL: the blocks of the build output ($bad_out) whose ERROR
# line names LABEL (not a longer label starting with it), with the lines that
# follow each (the failed action's stderr) up to Bazel's next message.
target_errors() {
    awk -v label="$1" '
        function names(line,   rest, at, next_char) {
            rest = line
            while ((at = index(rest, label)) > 0) {
                next_char = substr(rest, at + length(label), 1)
                if (next_char !~ /[A-Za-z0-9_.+=,@~-]/) return 1
                rest = substr(rest, at + length(label))
            }
            return 0
        }
        /^ERROR: / { keep = names($0); if (keep) print; next }
        /^(INFO|WARNING|DEBUG|FAILED|Target |Use --|Loading|Analyzing|Executed |Build |Elapsed )/ || /^\[[0-9,]+ \/ [0-9,]+\]/ { keep = 0; next }
        keep { print }
    ' <<<"$bad_out"
}

# check_bad_case NAME TARGET PATTERN...: one result for the case, from $bad_out.
check_bad_case() {
    local name=$1 target=$2; shift 2
    local errors pattern
    if grep -qF -- "Target $target up-to-date" <<<"$bad_out"; then
        fail "$name" "the build of $target succeeded"
        return
    fi
    errors=$(target_errors "$target")
    if [ -z "$errors" ]; then
        fail "$name" "no error names $target: $(grep -E '^ERROR' <<<"$bad_out" | head -5)"
        return
    fi
    for pattern in "$@"; do
        if ! grep -qF -- "$pattern" <<<"$errors"; then
            fail "$name" "the errors of $target do not mention '$pattern': $(head -8 <<<"$errors")"
            return
        fi
    done
    pass "$name"
}

# check_binaries (e2e/basic/binaries): programs that cannot run in their
# image fail the build; the host's dynamically linked `true` stands in for a
# cgo Go binary. The fixtures copy an x86-64 host's /usr/bin/true.
binaries_runnable() {
    [ "$(host_arch)" = amd64 ] && [ -e /usr/bin/true ]
}

binaries_cases() {
    bad_case "check_binaries: a dynamically linked binary on a base without its loader fails" \
        //binaries:dynamic_without_loader "//binaries:dynamic_without_loader" "/true" \
        "program interpreter /lib64/ld-linux-x86-64.so.2 is not in the image" \
        'build it static (rules_go: `pure = "on"`, or `static = "on"`), or use a base with a C library (e.g. static_base with libc6)' \
        "check_binaries = False"
    bad_case "check_binaries: an x86-64 binary in an arm64 image fails naming both" \
        //binaries:wrong_architecture "//binaries:wrong_architecture" "/true" "x86-64 (64-bit, little-endian)" \
        "linux/arm64" "AArch64 (64-bit, little-endian)"
    bad_case "check_binaries: a #!/bin/sh script on a base without a shell fails" \
        //binaries:script_without_shell "//binaries:script_without_shell" "/run.sh" \
        "\`#!\` interpreter /bin/sh is not in the image"
}

# Images of e2e/basic/binaries that must build: check_binaries passes them.
BINARIES_GOOD=(
    "//binaries:dynamic_with_libc|check_binaries: the same binary with its loader and C library in the image builds"
    "//binaries:unchecked|check_binaries: check_binaries = False builds the unrunnable image"
)

suite_bad_input() {
    bad_cases=()
    bad_case "bad input: entrypoint not in the image" //bad:entrypoint_missing \
        "//bad:entrypoint_missing" "entrypoint" "/usr/bin/nope"
    bad_case "bad input: '..' in a layer path" //bad:dotdot "//bad:dotdot" "symlinks" "/etc/../../escape"
    bad_case "bad input: two files claim one path" //bad:conflict "//bad:conflict" "x.txt" "bad/a/x.txt" "bad/b/x.txt"
    bad_case "bad input: missing file" //bad:missing_file "//bad:not_there.bin"
    bad_case "bad input: a tar entry escaping the root" //bad:tar_escape "//bad:tar_escape" "tars" "escape.tar" "sub/../../escape.txt"
    bad_case "bad input: two tarballs, different contents at one path" //bad:tar_conflict "//bad:tar_conflict" "a.txt" "plain.tar" "conflict.tar"
    bad_case "bad input: creation_time that is no time" //bad:bad_creation_time "//bad:bad_creation_time" "creation_time" "yesterday"
    bad_case "bad input: unknown stamp variable" //bad:unknown_stamp_key "//bad:unknown_stamp_key" "labels" "NO_SUCH_KEY"
    bad_case "bad input: base lacks the image's platform" //bad:platform_missing_in_base "//bad:platform_missing_in_base" "arm64" "linux/amd64"
    bad_case "bad input: a corrupt base layout fails at build time naming the blob and file" //bad:corrupt_base \
        "Verifying the base layout" "blob sha256:aa4dd4fbd7a6883118009f73ca1d86e44dbc9f1eff896442cddc3282c6e3cbc5" \
        "corrupt_layout/blobs/sha256/aa4dd4fbd7a6883118009f73ca1d86e44dbc9f1eff896442cddc3282c6e3cbc5" "is corrupt"
    local targets=() good
    if binaries_runnable; then
        binaries_cases
        for good in "${BINARIES_GOOD[@]}"; do targets+=("${good%%|*}"); done
    else
        skip "check_binaries: the fixtures copy an x86-64 host's /usr/bin/true and C library" "this host is $(host_arch)"
    fi

    local c fields
    for c in "${bad_cases[@]}"; do
        IFS=$'\x1f' read -r -a fields <<<"$c"
        targets+=("${fields[1]}")
    done
    # One build of every case; --show_result lists each target that built.
    bad_out=$(cd e2e/basic && kbazel basic build --keep_going --show_result=1000 "${targets[@]}" 2>&1)

    for c in "${bad_cases[@]}"; do
        IFS=$'\x1f' read -r -a fields <<<"$c"
        check_bad_case "${fields[@]}"
    done
    if binaries_runnable; then
        for good in "${BINARIES_GOOD[@]}"; do
            if grep -qF -- "Target ${good%%|*} up-to-date" <<<"$bad_out"; then
                pass "${good#*|}"
            else
                fail "${good#*|}" "$(target_errors "${good%%|*}" | head -8)"
            fi
        done
    fi

    local bin
    bin=$(cd e2e/basic && kbazel basic info bazel-bin 2>/dev/null)
    # Bazel creates a tree artifact's directory before the action runs; what
    # matters is that nothing of a layout (index.json, blobs) is left in it.
    if [ -e "$bin/bad/entrypoint_missing.digest" ] || [ -n "$(find "$bin/bad/entrypoint_missing.oci" -mindepth 1 2>/dev/null)" ]; then
        fail "bad input: a failed image leaves no layout or digest" "$(find "$bin/bad/entrypoint_missing.oci" "$bin/bad/entrypoint_missing.digest" 2>&1 | tr '\n' ' ')"
    else
        pass "bad input: a failed image leaves no layout or digest"
    fi
}
