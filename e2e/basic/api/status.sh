#!/bin/sh
# --workspace_status_command of the stamping tests (e2e/suites/api.sh).
echo "STABLE_KILN_CUSTOM custom-value"
echo "STABLE_KILN_CMD kilncmd"
echo "STABLE_KILN_USER 4242"
