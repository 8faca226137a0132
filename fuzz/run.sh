#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]: runs each cargo-fuzz target (all by default)
# for SECONDS, starting from fuzz/seeds/TARGET (committed) and the corpus
# grown so far in $KILN_FUZZ_WORK/corpus/TARGET (not committed). Prints one
# line per target: runs, coverage, features, corpus size, and the crash files.
# Exits non-zero when any target crashed. See docs/reliability.md.
#
# KILN_FUZZ_JOBS (default 1) targets run at the same time, each on one core.
# Installs cargo-fuzz when missing; on a stable toolchain RUSTC_BOOTSTRAP=1
# lets it pass -Zsanitizer=address.
set -uo pipefail
cd "$(dirname "$0")"
PATH="$PATH:${HOME:-/root}/.cargo/bin"
cargo fuzz --version >/dev/null 2>&1 || cargo install --locked --quiet cargo-fuzz@0.13.2 ||
    { echo "fuzz/run.sh: cargo install cargo-fuzz failed" >&2; exit 1; }
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
work=${KILN_FUZZ_WORK:-${TMPDIR:-/tmp}/kiln-fuzz}
jobs=${KILN_FUZZ_JOBS:-1}
export RUSTC_BOOTSTRAP=1
mkdir -p "$work"
cargo fuzz build -O >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }

# fuzz_one TARGET: runs it, writes its report line(s) to $work/TARGET.report
# and, when it ran clean, $work/TARGET.clean.
fuzz_one() {
    local t=$1 log="$work/$1.log" rc stats crashes
    rm -f "$work/$t.clean"
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    cargo fuzz run -O "$t" "$work/corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=20 \
        -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    stats=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | sed 's/^#\([0-9]*\)\s*[A-Z]*\s*/runs \1 /')
    crashes=$(find "$work/artifacts/$t" -type f | wc -l)
    {
        echo "$t: ${stats:-no stats} | crashes: $crashes (exit $rc)"
        if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
            find "$work/artifacts/$t" -type f | sed 's/^/  crash: /'
            grep -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | head -5 | sed 's/^/  /'
        fi
    } >"$work/$t.report"
    if [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]; then touch "$work/$t.clean"; fi
}

for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    fuzz_one "$t" &
done
wait
status=0
for t in "${targets[@]}"; do
    cat "$work/$t.report" 2>/dev/null || echo "$t: no report"
    [ -f "$work/$t.clean" ] || status=1
done
exit $status
