# Fuzz regression: the committed seeds replayed and each target fuzzed for
# KILN_FUZZ_SECONDS (10 by default: a short, fixed budget on every run), two
# targets at a time (one per core). One check per target. The long budget is
# its own command, `fuzz/run.sh 600` (docs/reliability.md has its runs).
suite_fuzz() {
    local seconds=${KILN_FUZZ_SECONDS:-10} fuzz_out line target n=0
    fuzz_out=$(KILN_FUZZ_WORK="$KILN_WORK/fuzz" KILN_FUZZ_JOBS=${KILN_FUZZ_JOBS:-2} fuzz/run.sh "$seconds" 2>&1)
    while IFS= read -r line; do
        [[ "$line" =~ ^([a-z_]+):\ (.*)$ ]] || continue
        target=${BASH_REMATCH[1]}
        n=$((n + 1))
        if [[ "$line" == *"| crashes: 0 (exit 0)" ]]; then
            pass "fuzz: $target, seeds and $seconds s, no crash (${BASH_REMATCH[2]%% | crashes*})"
        else
            fail "fuzz: $target, seeds and $seconds s, no crash" "$(grep -A6 "^$target:" <<<"$fuzz_out")"
        fi
    done <<<"$fuzz_out"
    [ "$n" -ge 7 ] || fail "fuzz: every target ran (7)" "$fuzz_out"
}
