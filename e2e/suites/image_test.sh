# image_test: container-structure-test configs through `bazel test`, no Docker.
# The images are made of tarballs GNU tar writes and a probe binary Go builds
# (amd64 and arm64); commands run in the unpacked image through chroot or
# bubblewrap, the arm64 one under qemu-user. Then the examples' image_tests:
# every service's `:image_test` (binary, user 65532, CA bundle, no /bin/sh,
# `--version` for amd64 and, under qemu, arm64).

# it_workspace: a copy of e2e/imagetest with its probe binaries and tarballs; prints its path.
it_workspace() {
    local ws="$KILN_WORK/imagetest-ws" stage="$KILN_WORK/imagetest-stage" arch
    rm -rf "$ws" "$stage"
    cp -r e2e/imagetest "$ws" || return 1
    sed -i "s|path = \"../..\",|path = \"$KILN_ROOT\",|" "$ws/MODULE.bazel"
    for arch in amd64 arm64; do
        (cd "$ws/probe" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch GO111MODULE=off \
            go build -trimpath -o "$ws/probe-$arch" main.go) || return 1
        # The lower layer: the probe (setuid copy too), files with owners
        # and modes, a sticky /tmp, a symlink, files the upper layer hides.
        mkdir -p "$stage/$arch/usr/bin" "$stage/$arch/srv" "$stage/$arch/tmp" "$stage/$arch/etc" "$stage/$arch/opt/dir"
        cp "$ws/probe-$arch" "$stage/$arch/usr/bin/probe"
        cp "$ws/probe-$arch" "$stage/$arch/usr/bin/su-ish"
        chmod 0755 "$stage/$arch/usr/bin/probe" && chmod 4755 "$stage/$arch/usr/bin/su-ish"
        printf 'data for 1000' >"$stage/$arch/srv/data.txt" && chmod 0640 "$stage/$arch/srv/data.txt"
        chmod 1777 "$stage/$arch/tmp"
        ln -s usr/bin "$stage/$arch/bin"
        echo gone >"$stage/$arch/etc/gone.txt"
        echo kept >"$stage/$arch/etc/kept.txt"
        echo old >"$stage/$arch/opt/dir/old.txt"
        chmod 0644 "$stage/$arch"/etc/*.txt "$stage/$arch/opt/dir/old.txt"
        tar -C "$stage/$arch" --format=gnu --numeric-owner --owner=0 --group=0 -cf "$ws/lower-$arch.tar" \
            usr bin tmp etc opt || return 1
        tar -C "$stage/$arch" --format=gnu --numeric-owner --owner=1000 --group=1000 -rf "$ws/lower-$arch.tar" srv || return 1
    done
    # The upper layer: a whiteout and an opaque directory with a file of its own.
    mkdir -p "$stage/upper/etc" "$stage/upper/opt/dir"
    : >"$stage/upper/etc/.wh.gone.txt"
    : >"$stage/upper/opt/dir/.wh..wh..opq"
    echo new >"$stage/upper/opt/dir/new.txt"
    chmod 0644 "$stage/upper/etc/.wh.gone.txt" "$stage/upper/opt/dir/.wh..wh..opq" "$stage/upper/opt/dir/new.txt"
    tar -C "$stage/upper" --format=gnu --numeric-owner --owner=0 --group=0 -cf "$ws/upper.tar" etc opt || return 1
    echo "$ws"
}

# it_log WS TARGET: the test.log of //:TARGET.
it_log() {
    cat "$1/bazel-testlogs/$2/test.log" 2>/dev/null
}

# it_expect_log NAME WS TARGET PATTERN...: the test.log matches every PATTERN (grep -E).
it_expect_log() {
    local name=$1 ws=$2 target=$3 log pattern; shift 3
    log=$(it_log "$ws" "$target")
    for pattern in "$@"; do
        if ! grep -Eq -- "$pattern" <<<"$log"; then
            fail "$name" "test.log of //:$target does not match /$pattern/: $(tail -30 <<<"$log")"
            return
        fi
    done
    pass "$name"
}

suite_image_test() {
    local started=$SECONDS ws out
    if ! command -v go >/dev/null 2>&1; then
        skip "image_test: the suite" "no go to build the probe binary (golang-go)"
        return
    fi
    if ! ws=$(it_workspace 2>"$KILN_WORK/imagetest-setup.log"); then
        fail "image_test: workspace with probe binaries (go build) and layers (GNU tar)" "$(tail -20 "$KILN_WORK/imagetest-setup.log")"
        return
    fi

    # Passing configs: YAML on the host's image of the index, JSON on an image.
    if out=$(cd "$ws" && kbazel imagetest test //:good_yaml //:good_json //:arm64 2>&1); then
        pass "image_test: bazel test of the passing configs (YAML, JSON, arm64) succeeds"
    else
        fail "image_test: bazel test of the passing configs (YAML, JSON, arm64) succeeds" \
            "$(tail -30 <<<"$out"; tail -40 "$ws/bazel-testlogs/good_yaml/test.log" 2>/dev/null)"
    fi
    it_expect_log "image_test: YAML: every check kind ran and passed (whiteouts, owners, modes, env, user, workdir)" "$ws" good_yaml \
        '^--- PASS: commandTests: probe runs as the image user in its workdir$' \
        '^--- PASS: commandTests: exit code and stderr$' \
        '^--- PASS: fileExistenceTests: whiteout removed gone.txt$' \
        '^--- PASS: fileExistenceTests: opaque dir lost the lower file$' \
        '^--- PASS: fileExistenceTests: opaque dir keeps its own layer.s file$' \
        '^--- PASS: fileExistenceTests: setuid tool$' \
        '^--- PASS: fileExistenceTests: data owned by 1000$' \
        '^--- PASS: fileContentTests: data file$' \
        '^--- PASS: metadataTest: metadata$' \
        ': 16 passed, 0 failed$'
    it_expect_log "image_test: JSON config: its checks ran and passed" "$ws" good_json \
        '^--- PASS: commandTests: probe from JSON$' '^--- PASS: fileExistenceTests: no shell$' ': 5 passed, 0 failed$'
    # How: kiln-imagetest says (binfmt_misc's F-flag entry where the test
    # sees one, else qemu-aarch64-static copied into the image's root).
    local how="binfmt_misc"
    grep -q 'under /.kiln-imagetest/qemu-aarch64-static' <<<"$(it_log "$ws" arm64)" && how="a copied qemu-aarch64-static"
    it_expect_log "image_test: the arm64 image's command runs under qemu-user ($how)" "$ws" arm64 \
        'image sha256:[0-9a-f]{64} \(linux/arm64\)' \
        '^--- PASS: commandTests: the arm64 probe runs \(qemu-user\)$' ': 2 passed, 0 failed$'

    # Configs that must fail: one test per kind, and corrupt configs.
    out=$(cd "$ws" && kbazel imagetest test --keep_going //:fail_existence //:fail_content //:fail_metadata //:fail_command \
        //:corrupt_key //:corrupt_version //:corrupt_json 2>&1)
    local failed_count
    failed_count=$(grep -cE '^//:(fail_[a-z]+|corrupt_[a-z]+) +FAILED' <<<"$out")
    expect_eq "image_test: bazel test fails every failing and corrupt config (7 FAILED)" 7 "$failed_count"
    it_expect_log "image_test: fileExistenceTests failure: names the check, expected vs actual mode, uid, existence; the passing one still passes" "$ws" fail_existence \
        '^--- PASS: fileExistenceTests: probe binary is there$' \
        '^--- FAIL: fileExistenceTests: wrong mode and owner$' \
        'expected: -rw-r--r--$' 'actual  : -rw-r-----$' 'expected: 0$' 'actual  : 1000$' \
        '^--- FAIL: fileExistenceTests: a missing file$' 'actual  : does not exist$' ': 1 passed, 2 failed$'
    it_expect_log "image_test: fileContentTests failure: expected and excluded regexes against the content" "$ws" fail_content \
        '^--- FAIL: fileContentTests: data has a secret$' 'expected to match /password=\\w\+/' 'excluded /data/ matches' \
        'actual  : data for 1000$'
    it_expect_log "image_test: metadataTest failure: user, entrypoint, env expected vs actual" "$ws" fail_metadata \
        '^--- FAIL: metadataTest: metadata$' 'expected: 65532$' 'actual  : 1000:1000$' \
        'expected: \["/app"\]$' 'actual  : \["/usr/bin/probe"\]$' 'expected: bonjour$' 'actual  : hello$'
    it_expect_log "image_test: commandTests failure: exit code and output expected vs actual" "$ws" fail_command \
        '^--- FAIL: commandTests: probe exits 0 but says uid 1000$' 'exit code of /usr/bin/probe exit=3' \
        'expected: 0$' 'actual  : 3$' 'stdout: expected to match /uid=0 /' 'actual  : probe linux/.* uid=1000'
    it_expect_log "image_test: an unknown key fails at the start, naming the key and the file" "$ws" corrupt_key \
        'configs/corrupt_key.yaml' 'unknown field `shouldexist`'
    it_expect_log "image_test: a wrong schemaVersion fails at the start, naming it and the file" "$ws" corrupt_version \
        'configs/corrupt_version.yaml' 'schemaVersion: "1.0.0" is not supported'
    it_expect_log "image_test: a JSON config with an unknown key fails, naming the key and the file" "$ws" corrupt_json \
        'configs/corrupt.json' 'unknown field `metadataTests`'
    local corrupt
    corrupt=$(it_log "$ws" corrupt_key)
    if grep -q -- '=== RUN' <<<"$corrupt"; then
        fail "image_test: a corrupt config runs no check at all" "$corrupt"
    else
        pass "image_test: a corrupt config runs no check at all"
    fi

    # The examples: every service's image_test, both architectures.
    if out=$(cd examples && kbazel ex1 test --build_tests_only //build/... 2>&1); then
        pass "image_test: bazel test //build/... in examples passes"
    else
        fail "image_test: bazel test //build/... in examples passes" "$(grep -E 'FAILED|ERROR' <<<"$out" | head -20)"
    fi
    local svc tests
    tests=$(grep -cE '^//build/[a-z]+:image_test_(amd64|arm64) +(\(cached\) )?PASSED' <<<"$out")
    expect_eq "image_test: the seven services' image_tests (amd64 and arm64) pass" 14 "$tests"
    local exlogs
    exlogs=$(cd examples && kbazel ex1 info bazel-testlogs 2>/dev/null)
    for svc in api worker; do
        if grep -Eq "^--- PASS: commandTests: $svc --version$" "$exlogs/build/$svc/image_test_arm64/test.log" 2>/dev/null &&
            grep -Eq '^--- PASS: fileExistenceTests: no shell$' "$exlogs/build/$svc/image_test_amd64/test.log" 2>/dev/null; then
            pass "image_test: examples: $svc --version runs (arm64 under qemu) and there is no /bin/sh"
        else
            fail "image_test: examples: $svc --version runs (arm64 under qemu) and there is no /bin/sh" \
                "$(tail -20 "$exlogs/build/$svc/image_test_arm64/test.log" 2>&1)"
        fi
    done
    log "image_test: $((SECONDS - started)) s"
}
