#!/usr/bin/env bash
# The test command: every rules_kiln test, end to end, through real Bazel.
#
#   e2e/run.sh            all suites
#   e2e/run.sh SUITE...   some of: rust docs examples push supply_chain load reproducible bazel_versions toolchains api pull bad_input hostile cache compose release ship image_test fuzz remote
#
# Installs what is missing first (e2e/setup/deps.sh). Results are checked with
# tools we did not write: skopeo, umoci, crane, docker, sha256sum, gzip, file.
# Prints "N passed, N failed, N skipped" and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/lib/common.sh
source e2e/lib/common.sh

cleanup() {
    stop_registries
    for ob in "$KILN_WORK"/ob-*; do
        [ -d "$ob" ] && bazel --output_base="$ob" shutdown >/dev/null 2>&1
    done
    return 0
}
trap cleanup EXIT

log "setup: installing what is missing"
if ! e2e/setup/deps.sh; then
    echo "setup failed: the tests cannot run"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
fi

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(rust docs examples push supply_chain load reproducible bazel_versions toolchains api pull bad_input hostile cache compose release ship image_test fuzz remote)
timings=()
for suite in "${suites[@]}"; do
    # shellcheck source=/dev/null
    source "e2e/suites/$suite.sh" || { fail "suite $suite: cannot load"; continue; }
    log "suite: $suite"
    started=$SECONDS
    "suite_$suite"
    timings+=("$suite $((SECONDS - started)) s")
done
log "wall time per suite:$(printf " %s;" "${timings[@]}")"
summary
