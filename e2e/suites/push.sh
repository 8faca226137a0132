# bazel run //build/api:push to Debian's docker-registry, checked with skopeo and crane.

# Then, on a generated workspace (e2e/lib/launch_workspace.sh): a two-platform
# image_index(image = ...) pushed eagerly and lazily, and push, release and
# image_test targets whose names are shell code, which must stay names.
# shellcheck source=e2e/lib/launch_workspace.sh
source e2e/lib/launch_workspace.sh

run_push() { (cd examples && kbazel ex1 run //build/api:push -- "$@"); }
suite_push() {
    suite_push_example
    suite_push_launchers
}

suite_push_example() {
    source e2e/suites/examples.sh
    ensure_examples_built || { fail "push: examples do not build"; return; }
    start_registry push || { fail "push: docker-registry starts"; return; }
    local repo="$REGISTRY/kiln/api" want got uploads_before uploads_after out
    want=$(cat "$EX_BIN/image.digest")

    check "bazel run :push -- --repository $repo --tag e2e --tag second" run_push --repository "$repo" --tag e2e --tag second
    got="sha256:$(skopeo inspect --raw --tls-verify=false "docker://$repo:e2e" | sha256sum | cut -d' ' -f1)"
    expect_eq "push: skopeo reads the pushed index with the built digest" "$want" "$got"
    expect_eq "push: crane digest of :second matches" "$want" "$(crane digest --insecure "$repo:second" 2>&1)"
    expect_eq "push: arm64 manifest reachable through the index" "arm64" \
        "$(skopeo --override-arch arm64 inspect --tls-verify=false --config "docker://$repo:e2e" | jq -r .architecture)"
    check "push: crane validates the remote index and its blobs" crane validate --insecure --remote "$repo:e2e"

    # An unchanged image pushes no blob the second time.
    uploads_before=$(grep -c 'POST /v2/kiln/api/blobs/uploads/' "$REGISTRY_LOG")
    out=$(run_push --repository "$repo" --tag e2e 2>&1)
    uploads_after=$(grep -c 'POST /v2/kiln/api/blobs/uploads/' "$REGISTRY_LOG")
    expect_eq "push: a second push of an unchanged image uploads no blob" "$uploads_before" "$uploads_after"
    [ "$uploads_before" -gt 0 ] && pass "push: the first push did upload blobs ($uploads_before)" || fail "push: the first push did upload blobs" "log has no upload"

    # A registry that does not answer: a clear error naming it, and no tag anywhere.
    local closed
    closed=$(free_port)
    out=$(run_push --repository "127.0.0.1:$closed/kiln/api" --tag never 2>&1)
    if [ $? -ne 0 ] && grep -q "127.0.0.1:$closed" <<<"$out"; then
        pass "push: an unreachable registry fails with an error naming it"
    else
        fail "push: an unreachable registry fails with an error naming it" "$(tail -5 <<<"$out")"
    fi

    # A bad tag at run time is refused before anything is sent.
    out=$(run_push --repository "$repo" --tag 'bad tag!' 2>&1)
    if [ $? -ne 0 ] && grep -q 'bad tag!' <<<"$out"; then
        pass "push: an invalid --tag is refused, naming it"
    else
        fail "push: an invalid --tag is refused, naming it" "$(tail -5 <<<"$out")"
    fi
    # Besides ours, the referrers tags (sha256-<hex>) of the two platform
    # manifests' SBOMs (docs/supply-chain.md).
    expect_eq "push: the registry has only the tags we pushed, and the SBOMs' referrers tags" "e2e second sha256- sha256-" \
        "$(skopeo list-tags --tls-verify=false "docker://$repo" | jq -r '[.Tags[] | if startswith("sha256-") then "sha256-" else . end] | sort | join(" ")')"
}

# expect_pushed_index NAME REF BUILT_INDEX: the index at REF has the bytes of
# BUILT_INDEX (raw, per skopeo and per crane), and each manifest it names is in
# the registry with its digest (crane validates the blobs).
expect_pushed_index() {
    local name=$1 ref=$2 built=$3 want raw digest n=0
    want=$(sha256sum <"$built" | cut -d' ' -f1)
    raw=$(skopeo inspect --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)
    expect_eq "$name: skopeo reads the built index's bytes (sha256)" "$want" "$raw"
    if cmp -s "$built" <(crane manifest --insecure "$ref"); then
        pass "$name: crane manifest is byte-identical to the built index"
    else
        fail "$name: crane manifest is byte-identical to the built index" "$(crane manifest --insecure "$ref" 2>&1 | head -c 300)"
    fi
    for digest in $(jq -r '.manifests[].digest' "$built"); do
        n=$((n + 1))
        expect_eq "$name: manifest $digest is in the registry with its digest" "${digest#sha256:}" \
            "$(crane manifest --insecure "${ref%:*}@$digest" | sha256sum | cut -d' ' -f1)"
    done
    expect_eq "$name: the built index names two manifests" 2 "$n"
    check "$name: crane validates the remote index and its blobs" crane validate --insecure --remote "$ref"
}

# expect_no_mark NAME: no launcher ran the command a target name holds.
expect_no_mark() {
    if [ -e "$LAUNCH_MARK" ]; then fail "$1" "$LAUNCH_MARK exists: a target name ran as shell"; else pass "$1"; fi
}

suite_push_launchers() {
    local out bin repo code i=0 want
    rm -f "$LAUNCH_MARK"
    write_launch_workspace || { fail "push launchers: the workspace is written"; return; }
    start_registry launch || { fail "push launchers: docker-registry starts"; return; }
    if ! out=$(launch_bazel build //... 2>&1); then
        fail "push launchers: bazel build //... (index, hostile names)" "$(tail -20 <<<"$out")"
        return
    fi
    pass "push launchers: bazel build //... (index, hostile names)"
    bin="$LAUNCH_DIR/ws/bazel-bin"

    # A two-platform image_index(image = ...): both platforms' Files reach the launcher.
    repo="$REGISTRY/kiln/index"
    check "index push: bazel run :push_index (eager)" launch_bazel run //:push_index -- --repository "$repo" --tag eager
    expect_pushed_index "index push (eager)" "$repo:eager" "$bin/index.index.json"
    repo="$REGISTRY/kiln/index-lazy"
    check "index push: bazel run :push_index (lazy)" \
        launch_bazel run --@rules_kiln//settings:push=lazy //:push_index -- --repository "$repo" --tag lazy
    expect_pushed_index "index push (lazy)" "$repo:lazy" "$bin/index.index.json"

    # Targets named with $(), backquotes, quotes, backslashes, spaces. One
    # loop per configuration (eager, lazy, test): no re-analysis between names.
    want=$(cat "$bin/one.digest")
    while IFS= read -r code; do
        i=$((i + 1))
        check "hostile name $i: bazel run of image_push $(printf %q "push_$code")" \
            launch_bazel run "//:push_$code" -- --repository "$REGISTRY/kiln/names" --tag "push$i"
        expect_eq "hostile name $i: the image_push pushed the built image" "$want" "$(crane digest --insecure "$REGISTRY/kiln/names:push$i" 2>&1)"
    done < <(launch_name_codes)
    i=0
    while IFS= read -r code; do
        i=$((i + 1))
        check "hostile name $i: bazel run of image_release $(printf %q "release_$code") (lazy)" \
            launch_bazel run --@rules_kiln//settings:push=lazy "//:release_$code" -- --registry "$REGISTRY" --tag "release$i"
        expect_eq "hostile name $i: the image_release pushed the built image" "$want" "$(crane digest --insecure "$REGISTRY/kiln/names:release$i" 2>&1)"
    done < <(launch_name_codes)
    i=0
    while IFS= read -r code; do
        i=$((i + 1))
        if [[ "$code" == *" "* ]]; then
            # Bazel's own test runner (test-setup.sh) fails on a test whose
            # name has a space, before the test's executable starts (`bazel
            # run` of a test too): the launcher is run as Bazel would.
            check "hostile name $i: the image_test launcher of $(printf %q "test_$code") passes (run directly: Bazel's test-setup.sh cannot run a test named with a space)" \
                launch_run_built "test_$code" "test_$code.image_test.sh"
        else
            check "hostile name $i: bazel test of image_test $(printf %q "test_$code")" \
                launch_bazel test --nocache_test_results "//:test_$code"
        fi
    done < <(launch_name_codes)
    expect_no_mark "hostile names: no push, release or image_test launcher ran a command of its name"
    launch_refused_names
}

# launch_run_built TARGET FILE: builds //:TARGET and runs bazel-bin/FILE.
launch_run_built() {
    local bin
    launch_bazel build "//:$1" || return 1
    bin=$(launch_bazel info bazel-bin 2>/dev/null) || return 1
    launch_exec "$bin/$2"
}

# launch_refused_names: target names with a backslash, a line break or a
# tab. Bazel refuses them when it loads the BUILD file, so no launcher sees one.
launch_refused_names() {
    local out code rc what
    while IFS= read -r -d '' code; do
        case "$code" in *\\*) what="a backslash" ;; *$'\n'*) what="a line break" ;; *) what="a tab" ;; esac
        write_launch_workspace "$code" || { fail "refused name: the workspace is written"; return; }
        out=$(launch_bazel build //... 2>&1)
        rc=$?
        if [ "$rc" -ne 0 ] && grep -q "target names may not contain" <<<"$out"; then
            pass "refused name: Bazel refuses a target name with $what ($(grep -m1 -o "target names may not contain.*" <<<"$out" | cut -c1-80))"
        elif [ "$rc" -ne 0 ]; then
            fail "refused name: Bazel refuses a target name with $what, saying why" "$(tail -10 <<<"$out")"
        else
            check "refused name: bazel run of image_push $(printf %q "push_$code")" \
                launch_bazel run "//:push_$code" -- --repository "$REGISTRY/kiln/names" --tag refused
            expect_no_mark "refused name: the push launcher ran no command of its name with $what"
        fi
    done < <(launch_refused_codes)
    write_launch_workspace
}
