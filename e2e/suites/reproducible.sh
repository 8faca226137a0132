# The second build: a clean clone of the repository (another path), a fresh
# output base, another umask, TZ and locale. It proves two things at once:
# the README's `cd examples && bazel build //build/api:image` needs no other
# step on a clean clone (the base's .debs are fetched by Bazel from the lock),
# and the two builds give byte-identical layouts: every blob, every digest.
suite_reproducible() {
    source e2e/suites/examples.sh
    ensure_examples_built || { fail "reproducible: first build"; return; }
    local clone="$KILN_WORK/clean-clone" log="$KILN_WORK/clean-clone.log"
    rm -rf "$clone" "$KILN_WORK/ob-clone"
    if ! git clone -q "$KILN_ROOT" "$clone" 2>"$log"; then
        fail "reproducible: git clone of the repository" "$(cat "$log")"
        return
    fi
    if ! (cd "$clone/examples" && umask 077 && TZ=Pacific/Chatham LC_ALL=C.UTF-8 \
        kbazel clone build --output_groups=+oci_layout //build/api:image //build/api:api_amd64 //build/api:api_arm64 >>"$log" 2>&1); then
        fail "examples: a clean clone builds //build/api:image with no other step" "$(tail -20 "$log")"
        return
    fi
    local bin2 f
    bin2="$(cd "$clone/examples" && kbazel clone info bazel-bin 2>/dev/null)/build/api"
    expect_eq "examples: a clean clone builds //build/api:image with no other step, to the same digest" \
        "$(cat "$EX_BIN/image.digest")" "$(cat "$bin2/image.digest")"
    for f in image.digest api_amd64.digest api_arm64.digest api_amd64.json api_arm64.json; do
        check "reproducible: $f identical" cmp "$EX_BIN/$f" "$bin2/$f"
    done
    for f in image.oci api_amd64.oci api_arm64.oci; do
        check "reproducible: every blob of $f identical" diff -r "$EX_BIN/$f" "$bin2/$f"
    done
    check "reproducible: layer blobs identical" cmp "$EX_BIN/api_arm64_layer-layer.tar.gz" "$bin2/api_arm64_layer-layer.tar.gz"
    (cd "$clone/examples" && kbazel clone shutdown >/dev/null 2>&1)
}
