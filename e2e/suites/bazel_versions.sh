# Bazel 8 and 9: the Starlark uses nothing Bazel 9 removes (e2e/check_starlark.py),
# and the images built under Bazel 8 and 9's defaults (--config=bazel9, what
# kbazel passes to every suite) are the images built under Bazel 7's, byte for
# byte. docs/bazel-versions.md says what each switch checks.

# digests_of DIR TARGET_LABEL...: "label digest" lines, from each image's
# .digest file (rules/private/image.bzl) under bazel-bin DIR.
digests_of() {
    local bin=$1 label pkg name; shift
    for label in "$@"; do
        pkg=${label#//}; pkg=${pkg%%:*}; name=${label##*:}
        printf '%s %s\n' "$label" "$(cat "$bin/${pkg:+$pkg/}$name.digest" 2>/dev/null || echo missing)"
    done
}

# compare_configs NAME WORKSPACE OB_WITH OB_WITHOUT TARGET...: builds TARGETS
# with and without --config=bazel9 in two output bases; PASS when every digest
# is there and equal.
compare_configs() {
    local name=$1 ws=$2 ob_with=$3 ob_without=$4; shift 4
    local with without bin log="$KILN_WORK/bazel-versions-$ob_without.log"
    if ! (cd "$ws" && kbazel "$ob_with" build "$@" >"$log" 2>&1); then
        fail "$name: build with --config=bazel9" "$(grep -E 'ERROR' "$log" | head -8)"; return
    fi
    # Quiet: Bazel's progress and nothing else (no warning of the packaged
    # Bazel's, see e2e/setup/install-bazel.sh; no print() of ours; no cargo
    # output from a source build of the tools).
    check "$name: the build prints no WARNING or DEBUG line, nor cargo's" \
        bash -c "! grep -E '^(WARNING|DEBUG):|^ +(Compiling [A-Za-z0-9_-]+ v[0-9]|Finished .[a-z]+. profile)' '$log'"
    bin=$(cd "$ws" && kbazel "$ob_with" info bazel-bin 2>/dev/null)
    with=$(digests_of "$bin" "$@")
    if ! (cd "$ws" && KILN_BAZEL_CONFIG='' kbazel "$ob_without" build "$@" >"$log" 2>&1); then
        fail "$name: build with Bazel 7's defaults" "$(grep -E 'ERROR' "$log" | head -8)"; return
    fi
    bin=$(cd "$ws" && KILN_BAZEL_CONFIG='' kbazel "$ob_without" info bazel-bin 2>/dev/null)
    without=$(digests_of "$bin" "$@")
    if grep -q ' missing$' <<<"$with$without"; then
        fail "$name: every image has a digest" "$(grep ' missing$' <<<"$with$without" | head -5)"
    elif [ "$with" = "$without" ]; then
        pass "$name: $# images, the same digests with and without --config=bazel9"
    else
        fail "$name: the same digests with and without --config=bazel9" "$(diff <(echo "$without") <(echo "$with") | head -10)"
    fi
}

suite_bazel_versions() {
    local out
    if out=$(python3 e2e/check_starlark.py 2>&1); then
        pass "bazel9: $out"
    else
        fail "bazel9: no native language rule, language module or canonical-name parsing in the Starlark" "$out"
    fi

    # The check can fail: a copy of the tree with a native sh_binary in a
    # generated BUILD file and a split on "~".
    local tree="$KILN_WORK/check-starlark-tree"
    rm -rf "$tree"; mkdir -p "$tree"
    git ls-files -z rules examples e2e platforms settings BUILD.bazel MODULE.bazel .bazelrc bazel9.bazelrc |
        xargs -0 cp --parents -t "$tree"
    sed -i 's|"kiln_deb_missing", "kiln_debs_update")|"kiln_deb_missing")|; s|^kiln_debs_update(|sh_binary(|' "$tree/rules/private/debs.bzl"
    printf 'def _repo_of(label):\n    return str(label).split("~")[0]\n' >>"$tree/rules/private/utils.bzl"
    out=$(python3 e2e/check_starlark.py "$tree" 2>&1)
    if grep -q 'debs.bzl.*sh_binary is called but not load()ed' <<<"$out" && grep -q 'utils.bzl.*canonical repository name' <<<"$out"; then
        pass "bazel9: the check fails on a native sh_binary and on a split on \"~\""
    else
        fail "bazel9: the check fails on a native sh_binary and on a split on \"~\"" "$out"
    fi

    # Every image and index of e2e/basic that builds (the top package and the
    # API's; bad/, analysis/ and binaries/ are refused on purpose), but those
    # always stamped: their `created` is the build's time.
    source e2e/suites/api.sh
    local basic_targets
    if api_fixtures && basic_targets=$(cd e2e/basic && kbazel basic query \
        'kind("container_image_ rule|image_index rule", //:all + //api/...) except attr(tags, manual, //...) except attr(stamp, "^1$", //...)' 2>"$KILN_WORK/bazel-versions-query.log"); then
        # shellcheck disable=SC2086
        compare_configs "bazel9: e2e/basic" e2e/basic basic basic-bazel7 $basic_targets
    else
        fail "bazel9: e2e/basic: the images to compare" "$(tail -5 "$KILN_WORK/bazel-versions-query.log")"
    fi

    local svc targets=()
    for svc in examples/build/*/BUILD.bazel; do
        grep -q '^service_image(' "$svc" && targets+=("//build/$(basename "$(dirname "$svc")"):image")
    done
    compare_configs "bazel9: examples" examples ex1 ex-bazel7 "${targets[@]}"

    # e2e/imagetest, in the copy the image_test suite builds (with its probe
    # binaries and tarballs).
    source e2e/suites/image_test.sh
    local it_ws
    if it_ws=$(it_workspace 2>"$KILN_WORK/bazel-versions-imagetest.log"); then
        compare_configs "bazel9: e2e/imagetest" "$it_ws" imagetest imagetest-bazel7 //:probe_amd64 //:probe_arm64 //:probe
    else
        fail "bazel9: e2e/imagetest: its probe binaries and tarballs" "$(tail -5 "$KILN_WORK/bazel-versions-imagetest.log")"
    fi

    # `@<kiln.debs repo>//:update` (a generated repository's rule) builds and
    # runs under the configuration: in a copy of examples/, as it rewrites the lock.
    source e2e/lib/monorepo.sh
    local ws="$KILN_WORK/debs-update-ws" lock=build/base/debs.lock.json
    mono_workspace "$ws" || { fail "bazel9: @base_debs//:update: copy of examples/"; return; }
    if (cd "$ws" && kbazel debs-update run @base_debs//:update >"$KILN_WORK/debs-update.log" 2>&1); then
        expect_eq "bazel9: bazel run @base_debs//:update re-pins the same packages under --config=bazel9" \
            "$(jq -c '[.packages[] | .name + ":" + .architecture] | sort' "examples/$lock")" \
            "$(jq -c '[.packages[] | .name + ":" + .architecture] | sort' "$ws/$lock" 2>&1)"
    else
        fail "bazel9: bazel run @base_debs//:update under --config=bazel9" "$(grep -E 'ERROR|rror' "$KILN_WORK/debs-update.log" | head -8)"
    fi
}
