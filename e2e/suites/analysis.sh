# Analysis-time refusals, without building anything: the shared validation
# vectors (the Starlark checks accept exactly what the tools accept) and the
# Starlark analysis tests of e2e/basic/analysis (bazel_skylib analysistest),
# one check per test, all run by one `bazel test`.
suite_analysis() {
    # The shared validation vectors (tools/testdata/validation.json; the Rust
    # side is in cargo test): the analysis-time checks agree with the tools.
    local vout
    if vout=$(cd e2e/basic && kbazel basic test //vectors:vectors_test --test_output=all 2>&1); then
        pass "validation vectors: the Starlark checks accept exactly what the tools accept ($(grep -o '[0-9]* validation vectors' <<<"$vout"))"
    else
        fail "validation vectors: the Starlark checks accept exactly what the tools accept" "$(grep -A8 'disagree' <<<"$vout" | head -20)"
    fi
    # Analysis tests (bazel_skylib analysistest, e2e/basic/analysis): config
    # values refused at analysis, the message naming target, attribute and
    # value; one check per test, all analysed in one `bazel test`.
    local aout line n=0
    aout=$(cd e2e/basic && kbazel basic test //analysis:all 2>&1)
    while IFS= read -r line; do
        [[ "$line" =~ ^//analysis:([a-z_]+)[[:space:]]+(\(cached\)[[:space:]]+)?(PASSED|FAILED) ]] || continue
        n=$((n + 1))
        if [ "${BASH_REMATCH[3]}" = PASSED ]; then
            pass "analysis test: ${BASH_REMATCH[1]//_/ }"
        else
            fail "analysis test: ${BASH_REMATCH[1]//_/ }" "$(grep -A3 'Expected failure' <<<"$aout" | head -8)"
        fi
    done <<<"$aout"
    [ "$n" -ge 5 ] || fail "analysis tests: every test of //analysis ran (5)" "$(grep -E 'ERROR' <<<"$aout" | head -5)"
}
