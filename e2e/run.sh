#!/usr/bin/env bash
# The test command: every rules_kiln test, end to end, through real Bazel.
#
#   e2e/run.sh                   every suite (what CI runs)
#   e2e/run.sh quick             the quick run: Rust lint and tests, the docs check,
#                                the analysis tests, one build, push and load of the
#                                examples (suites: rust docs analysis smoke)
#   e2e/run.sh SUITE...          some suites (names below)
#   e2e/run.sh -j N ...          at most N lanes at once (default: the CPU count)
#
# Suites that share an output base or a workspace run one after another in a
# lane; lanes run at once, each in its own shell (no state crosses lanes), its
# output printed whole when it ends. A suite can always run alone.
#
# Installs what is missing first (e2e/setup/deps.sh). Results are checked with
# tools we did not write: skopeo, umoci, crane, docker, sha256sum, gzip, file.
# Prints a table of wall time per suite, the slowest checks, then
# "N passed, N failed, N skipped"; exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/lib/common.sh
source e2e/lib/common.sh

# The lanes, longest first (the order lanes start in; ship's two release
# builds are the longest step of a run). A lane's suites share an output base
# (ex1: the examples; basic: e2e/basic), so they run in order.
LANES=(
    "ship"
    "examples push supply_chain load reproducible pull image_test compose bazel_versions"
    "rust docs analysis fuzz"
    "remote"
    "cache release"
    "api bad_input toolchains hostile"
)
QUICK=(rust docs analysis smoke)

cleanup() {
    local pid
    for pid in $(jobs -p); do kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null; done
    stop_registries
    for ob in "$KILN_WORK"/ob-*; do
        [ -d "$ob" ] && bazel --output_base="$ob" shutdown >/dev/null 2>&1
    done
    return 0
}
trap cleanup EXIT

jobs_max=$(nproc 2>/dev/null || echo 2)
if [ "${1:-}" = -j ]; then
    jobs_max=${2:?"-j needs a number"}
    shift 2
fi
[[ "$jobs_max" =~ ^[1-9][0-9]*$ ]] || { echo "e2e/run.sh: -j takes a positive number, not '$jobs_max'" >&2; exit 2; }

wanted=("$@")
[ "${wanted[0]:-}" = quick ] && wanted=("${QUICK[@]}")
lanes=()
if [ ${#wanted[@]} -eq 0 ]; then
    lanes=("${LANES[@]}")
else
    # Keep each named suite in its lane (in the lane's order); a suite no
    # lane names runs in a lane of its own.
    declare -A want=()
    for s in "${wanted[@]}"; do
        [ -f "e2e/suites/$s.sh" ] || { echo "e2e/run.sh: no suite '$s' (e2e/suites/$s.sh)" >&2; exit 2; }
        want[$s]=1
    done
    for lane in "${LANES[@]}"; do
        picked=""
        for s in $lane; do
            [ -n "${want[$s]:-}" ] && { picked="$picked $s"; unset "want[$s]"; }
        done
        [ -n "$picked" ] && lanes+=("${picked# }")
    done
    for s in "${wanted[@]}"; do
        [ -n "${want[$s]:-}" ] && { lanes+=("$s"); unset "want[$s]"; }
    done
fi

log "setup: installing what is missing"
if ! e2e/setup/deps.sh; then
    echo "setup failed: the tests cannot run"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

results="$KILN_WORK/results"
rm -rf "$results"; mkdir -p "$results"

# run_lane N SUITE...: runs the suites in order in this (sub)shell, output to
# $results/lane-N.log; writes its totals, failures, skips and per-suite times.
run_lane() {
    local n=$1 suite started; shift
    exec >"$results/lane-$n.log" 2>&1
    export KILN_STEP_LOG="$results/steps-$n.tsv"
    for suite in "$@"; do
        # shellcheck source=/dev/null
        source "e2e/suites/$suite.sh" || { fail "suite $suite: cannot load"; continue; }
        log "suite: $suite"
        export KILN_SUITE=$suite
        started=$SECONDS; step_mark=$SECONDS
        before=("$passed" "$failed" "$skipped")
        "suite_$suite"
        printf '%s\t%s\t%s\t%s\t%s\n' "$suite" "$((SECONDS - started))" "$((passed - before[0]))" \
            "$((failed - before[1]))" "$((skipped - before[2]))" >>"$results/suites-$n.tsv"
    done
    printf '%s %s %s\n' "$passed" "$failed" "$skipped" >"$results/totals-$n"
    [ ${#failures[@]} -eq 0 ] || printf '%s\n' "${failures[@]}" >"$results/failures-$n"
    [ ${#skips[@]} -eq 0 ] || printf '%s\n' "${skips[@]}" >"$results/skips-$n"
}

declare -A lane_of_pid=()
running=0
started_all=$SECONDS
finish_one() {
    local pid n
    wait -n -p pid
    n=${lane_of_pid[$pid]}
    unset "lane_of_pid[$pid]"
    running=$((running - 1))
    log "lane $n done (${lanes[$n]}): $((SECONDS - started_all)) s into the run"
    cat "$results/lane-$n.log"
}
for n in "${!lanes[@]}"; do
    while [ "$running" -ge "$jobs_max" ]; do finish_one; done
    log "lane $n starts: ${lanes[$n]}"
    # set -m: each lane is its own process group, so cleanup can stop it whole.
    set -m
    # shellcheck disable=SC2086
    run_lane "$n" ${lanes[$n]} &
    set +m
    lane_of_pid[$!]=$n
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do finish_one; done

# Totals over the lanes; a lane that ended without writing them (its shell
# died) is a failure, never a silent pass.
for n in "${!lanes[@]}"; do
    if [ -f "$results/totals-$n" ]; then
        read -r p f s <"$results/totals-$n"
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
        [ -f "$results/failures-$n" ] && mapfile -t -O "${#failures[@]}" failures <"$results/failures-$n"
        [ -f "$results/skips-$n" ] && mapfile -t -O "${#skips[@]}" skips <"$results/skips-$n"
    else
        fail "lane $n (${lanes[$n]}) ended before its totals (see $results/lane-$n.log)"
    fi
done

echo
echo "wall time: $((SECONDS - started_all)) s, $jobs_max lanes at once"
printf '%-16s %7s %7s %7s %7s\n' suite seconds passed failed skipped
cat "$results"/suites-*.tsv 2>/dev/null | sort -t$'\t' -k2,2nr | awk -F'\t' '{ printf "%-16s %7s %7s %7s %7s\n", $1, $2, $3, $4, $5 }'
echo
echo "slowest checks (seconds since the suite's previous check):"
cat "$results"/steps-*.tsv 2>/dev/null | sort -t$'\t' -k1,1nr | head -15 | awk -F'\t' '{ printf "%6s  %-14s %s\n", $1, $2, $3 }'
summary
