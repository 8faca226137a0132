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
    # value; one check per test, all analysed in one `bazel test`. Every
    # `*_test` target of the BUILD file must report: a test that vanished
    # from Bazel's output (or was never run) fails.
    local aout line name expected=() n=0
    mapfile -t expected < <(sed -nE 's/^[[:space:]]+name = "([a-z0-9_]+_test)",$/\1/p' e2e/basic/analysis/BUILD.bazel)
    declare -A reported=()
    aout=$(cd e2e/basic && kbazel basic test //analysis:all --test_output=errors 2>&1)
    while IFS= read -r line; do
        [[ "$line" =~ ^//analysis:([a-z0-9_]+)[[:space:]]+(\(cached\)[[:space:]]+)?(PASSED|FAILED) ]] || continue
        name=${BASH_REMATCH[1]}
        reported[$name]=1
        n=$((n + 1))
        if [ "${BASH_REMATCH[3]}" = PASSED ]; then
            pass "analysis test: ${name//_/ }"
        else
            fail "analysis test: ${name//_/ }" "$(sed -n "\|Test output for //analysis:$name:|,/^=====/p" <<<"$aout" | grep -v '^=====' | head -8)"
        fi
    done <<<"$aout"
    for name in "${expected[@]}"; do
        [ -n "${reported[$name]:-}" ] || fail "analysis test: ${name//_/ }" "no result for //analysis:$name: $(grep -E 'ERROR' <<<"$aout" | head -5)"
    done
    [ "${#expected[@]}" -gt 0 ] && [ "$n" -eq "${#expected[@]}" ] ||
        fail "analysis tests: every test of e2e/basic/analysis/BUILD.bazel ran once (${#expected[@]}), $n results" "$(grep -E 'ERROR' <<<"$aout" | head -5)"
}
