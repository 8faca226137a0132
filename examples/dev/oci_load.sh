#!/usr/bin/env bash
# Runs each :load launcher given as a runfiles path, in order. The launchers'
# runfiles are this binary's, so each finds its tools and blobs through
# RUNFILES_DIR.
set -euo pipefail
if [[ -n "${RUNFILES_DIR:-}" ]]; then runfiles="$RUNFILES_DIR"
elif [[ -d "$0.runfiles" ]]; then runfiles="$0.runfiles"
else echo "//dev:oci_load: cannot find runfiles next to $0" >&2; exit 1; fi
export RUNFILES_DIR="$runfiles"
for launcher in "$@"; do
    "$runfiles/$launcher"
done
