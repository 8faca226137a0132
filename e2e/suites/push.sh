# bazel run //build/api:push to Debian's docker-registry, checked with skopeo and crane.

run_push() { (cd examples && kbazel ex1 run //build/api:push -- "$@"); }
suite_push() {
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
