# Rust workspace: formatting, lints and unit tests (in addition to e2e, never instead).
suite_rust() {
    check "cargo fmt --check" cargo fmt --all --check
    check "cargo clippy -D warnings" cargo clippy --locked --all-targets -- -D warnings
    local out
    # A test whose tool is missing fails here (it prints SKIP elsewhere). Not
    # in KILN_CARGO_TARGET_DIR: Bazel builds the tools there inside its chroot
    # (another C library), and the CLI tests run the binaries on this host.
    if out=$(KILN_REQUIRE_TOOLS=1 cargo test --locked 2>&1); then
        pass "cargo test ($(grep -o '[0-9]* passed' <<<"$out" | awk '{s+=$1} END {print s}') unit tests)"
    else
        fail "cargo test" "$(grep -E 'FAILED|panicked|error' <<<"$out" | head -20)"
    fi
    # No package registry reachable here ships buildifier: it comes from PATH or
    # from the shared tools folder beside the clone (CI has it there).
    local buildifier
    buildifier=$(command -v buildifier 2>/dev/null || true)
    [ -n "$buildifier" ] || { [ -x "$KILN_ROOT/../shared/bin/buildifier" ] && buildifier="$KILN_ROOT/../shared/bin/buildifier"; }
    if [ -n "$buildifier" ]; then
        echo "buildifier: $buildifier"
        check "buildifier: Starlark formatted and lint-clean" \
            "$buildifier" -mode=check -lint=warn -r "$KILN_ROOT/rules" "$KILN_ROOT/examples" "$KILN_ROOT/e2e" "$KILN_ROOT/platforms" "$KILN_ROOT/MODULE.bazel" "$KILN_ROOT/BUILD.bazel"
    else
        skip "buildifier: Starlark formatted and lint-clean" "no buildifier on PATH nor at $KILN_ROOT/../shared/bin/buildifier"
    fi
}
