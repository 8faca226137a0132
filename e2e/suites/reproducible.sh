# Two builds in two fresh output bases, with another umask, TZ and locale,
# give byte-identical layouts: every blob, every digest.
suite_reproducible() {
    source e2e/suites/examples.sh
    ensure_examples_built || { fail "reproducible: first build"; return; }
    rm -rf "$KILN_WORK/ob-ex2"
    if ! (cd examples && umask 077 && TZ=Pacific/Chatham LC_ALL=C.UTF-8 \
        kbazel ex2 build --output_groups=+oci_layout //build/api:image //build/api:api_amd64 //build/api:api_arm64 >"$KILN_WORK/ex2.log" 2>&1); then
        fail "reproducible: second build in a fresh output base" "$(tail -20 "$KILN_WORK/ex2.log")"
        return
    fi
    local bin2 f
    bin2="$(cd examples && kbazel ex2 info bazel-bin 2>/dev/null)/build/api"
    for f in image.digest api_amd64.digest api_arm64.digest api_amd64.json api_arm64.json; do
        check "reproducible: $f identical" cmp "$EX_BIN/$f" "$bin2/$f"
    done
    for f in image.oci api_amd64.oci api_arm64.oci; do
        check "reproducible: every blob of $f identical" diff -r "$EX_BIN/$f" "$bin2/$f"
    done
    check "reproducible: layer blobs identical" cmp "$EX_BIN/api_arm64_layer-layer.tar.gz" "$bin2/api_arm64_layer-layer.tar.gz"
}
