# One end-to-end pass over the examples, for the quick run: build the api
# service's multi-arch index, push it to a registry (skopeo and crane read it
# back), load it into Docker and ask the running container's /healthz. The
# full suites (push, load) run these same checks and many more.
suite_smoke() {
    # shellcheck source=e2e/suites/push.sh
    source e2e/suites/push.sh
    # shellcheck source=e2e/suites/load.sh
    source e2e/suites/load.sh
    suite_push_example
    suite_load_example
}
