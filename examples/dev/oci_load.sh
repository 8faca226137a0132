#!/usr/bin/env bash
# Runs every :load launcher (runfiles paths filled in by oci_load.bzl) at
# once: each is a few docker CLI calls when its image is unchanged, and
# Docker serialises what must be. The launchers' runfiles are this binary's,
# so each finds its tools and blobs through RUNFILES_DIR. Exits non-zero if
# any failed.
set -euo pipefail
if [[ -n "${RUNFILES_DIR:-}" ]]; then runfiles="$RUNFILES_DIR"
elif [[ -d "$0.runfiles" ]]; then runfiles="$0.runfiles"
else echo "//dev:oci_load: cannot find runfiles next to $0" >&2; exit 1; fi
export RUNFILES_DIR="$runfiles"
pids=()
launchers=(@@LAUNCHERS@@)
for launcher in "${launchers[@]}"; do
    "$runfiles/$launcher" &
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "//dev:oci_load: ${launchers[$i]} failed" >&2; status=1; }
done
exit $status
