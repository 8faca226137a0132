# Fuzz regression (`e2e/run.sh fuzz`, not in the default list): the committed
# seeds replayed and each target fuzzed a few seconds. It needs an ASan build
# of fuzz/ (several minutes), so CI's run leaves it out; docs/reliability.md
# has the long runs.
suite_fuzz() {
    local fuzz_out
    if fuzz_out=$(KILN_FUZZ_WORK="$KILN_WORK/fuzz" fuzz/run.sh "${KILN_FUZZ_SECONDS:-30}" 2>&1); then
        pass "fuzz: seeds and ${KILN_FUZZ_SECONDS:-30} s of every target, no crash ($(wc -l <<<"$fuzz_out") targets)"
    else
        fail "fuzz: seeds and ${KILN_FUZZ_SECONDS:-30} s of every target, no crash" "$fuzz_out"
    fi
}
