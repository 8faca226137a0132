# The release: release/build.sh builds static tools for linux x86_64 and
# aarch64 and the module's source archive; a user workspace takes rules_kiln
# from that file:// archive (archive_override, integrity from source.json)
# with no cargo anywhere, builds an image and docker-loads it. Tampered tool
# archives and .debs are refused, naming what they are.
#
# Determinism: the suite builds once and packages a second time from the same
# binaries (KILN_RELEASE_SKIP_BUILD=1); the archives must be byte-identical.
# Two full builds (docs/releasing.md, "Checking determinism") are left to a
# manual run: they double the suite's longest step.

# The release's build tools (Debian packages, in Bazel's sid chroot): Debian's
# rustc with its std for both targets and the aarch64 cross compiler.
rel_install() {
    kiln-chroot sh -c 'command -v aarch64-linux-gnu-gcc >/dev/null && [ -x /usr/bin/cargo ] &&
        [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/aarch64-unknown-linux-gnu/lib" ]' 2>/dev/null && return 0
    log "ship: installing rustc, cargo, libstd-rust-dev (amd64, arm64), gcc-aarch64-linux-gnu in the sid chroot"
    kiln-chroot sh -c 'O="-o Acquire::Check-Valid-Until=false -o Acquire::Retries=3"
        dpkg --add-architecture arm64 && apt-get $O update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get $O install -y -qq --no-install-recommends rustc cargo \
            libstd-rust-dev libstd-rust-dev:arm64 gcc gcc-aarch64-linux-gnu libc6-dev libc6-dev-arm64-cross >/dev/null'
}

# A PATH of the chroot's commands without cargo, rustc or rustup (a directory
# of symlinks), for a user who has no Rust toolchain.
rel_nocargo_path() {
    local dir="$KILN_WORK/nocargo-bin" d f
    rm -rf "$dir"; mkdir -p "$dir"
    for d in /usr/local/bin /usr/bin /bin /usr/sbin /sbin; do
        for f in /opt/kiln-bazel-sid$d/*; do
            case ${f##*/} in cargo* | rustc* | rustup* | rustdoc* | rust-*) continue ;; esac
            [ -L "$dir/${f##*/}" ] || ln -s "$d/${f##*/}" "$dir/${f##*/}"
        done
    done
    echo "$dir"
}

# rel_workspace DIR SOURCE_JSON LOCK: a user workspace on the release archive.
rel_workspace() {
    local dir=$1 src=$2 lock=$3
    rm -rf "$dir"; mkdir -p "$dir"
    cat >"$dir/MODULE.bazel" <<EOF
module(name = "kiln_release_user")

bazel_dep(name = "rules_kiln", version = "$(jq -r .strip_prefix "$src" | sed 's/^rules_kiln-//')")
archive_override(
    module_name = "rules_kiln",
    integrity = "$(jq -r .integrity "$src")",
    strip_prefix = "$(jq -r .strip_prefix "$src")",
    urls = ["$(jq -r .url "$src")"],
)

kiln = use_extension("@rules_kiln//rules:extensions.bzl", "kiln")
kiln.debs(
    name = "debs",
    lock = "//:debs.lock.json",
    packages = ["netbase"],
)
use_repo(kiln, "debs")
EOF
    cp "$lock" "$dir/debs.lock.json"
    # Bazel 8 and 9's defaults as a configuration (rel_cmd passes --config=bazel9).
    grep '^common:bazel9 ' bazel9.bazelrc >"$dir/.bazelrc"
    echo "hello from a release" >"$dir/hello.txt"
    cat >"$dir/BUILD.bazel" <<'EOF'
load("@rules_kiln//rules:defs.bzl", "container_image", "image_load")

exports_files(["debs.lock.json"])

container_image(
    name = "app",
    debs = ["@debs//:netbase"],
    entrypoint = ["/hello.txt"],
    files = ["hello.txt"],
)

image_load(
    name = "load",
    image = ":app",
    repo_tags = ["kiln-release/app:e2e"],
)
EOF
}

# rel_cmd NAME DIR COMMAND ARGS...: bazel COMMAND in DIR with no cargo on PATH
# or in HOME, NAME's output base and repository cache, under Bazel 8 and 9's
# defaults as kbazel builds (KILN_BAZEL_CONFIG); REL_ENV: more VAR=VALUE.
rel_cmd() {
    local name=$1 dir=$2 cmd=$3 config=${KILN_BAZEL_CONFIG-bazel9}
    shift 3
    # shellcheck disable=SC2086
    (cd "$dir" && kiln-chroot env PATH="$REL_PATH" HOME="$KILN_WORK/home-$name" ${REL_ENV:-} /usr/bin/bazel \
        --output_base="$KILN_WORK/ob-$name" "$cmd" ${config:+--config=$config} --repository_cache="$KILN_WORK/rc-$name" "$@")
}

# rel_bazel NAME DIR ARGS...: rel_cmd with a fresh output base, repository
# cache and HOME; log in KILN_WORK/NAME.log.
rel_bazel() {
    local name=$1 dir=$2; shift 2
    rm -rf "$KILN_WORK/ob-$name" "$KILN_WORK/rc-$name" "$KILN_WORK/home-$name"
    mkdir -p "$KILN_WORK/home-$name"
    rel_cmd "$name" "$dir" "$@" >"$KILN_WORK/$name.log" 2>&1
}

rel_shutdown() { # NAME: stops the Bazel server of rel_bazel NAME
    kiln-chroot env HOME="$KILN_WORK/home-$1" /usr/bin/bazel --output_base="$KILN_WORK/ob-$1" shutdown >/dev/null 2>&1
    return 0
}

suite_ship() {
    local out="$KILN_WORK/ship-release" again="$KILN_WORK/ship-release-again" f
    if ! command -v kiln-chroot >/dev/null 2>&1; then
        skip "ship: every check" "needs kiln-chroot (Bazel's sid chroot, e2e/setup/install-bazel.sh)"
        return
    fi
    rel_install || { fail "ship: install the release's build tools in the sid chroot"; return; }
    rm -rf "$out" "$again"
    local start=$SECONDS
    if ! kiln-chroot env KILN_RELEASE_TARGET_DIR="${KILN_RELEASE_TARGET_DIR:-$KILN_WORK/ship-release-target}" release/build.sh "$out" "file://$out" \
        >"$KILN_WORK/ship-release-build.log" 2>&1; then
        fail "ship: release/build.sh OUTDIR BASE_URL" "$(tail -20 "$KILN_WORK/ship-release-build.log")"
        return
    fi
    pass "ship: release/build.sh OUTDIR BASE_URL ($((SECONDS - start)) s)"
    local version
    version=$(sed -n 's/^ *version = "\([^"]*\)",*$/\1/p' MODULE.bazel | head -n1)
    expect_eq "ship: OUTDIR holds both tool archives, the module archive and source.json" \
        "kiln-tools-linux_aarch64.tar.gz kiln-tools-linux_x86_64.tar.gz rules_kiln-$version.tar.gz source.json" \
        "$(cd "$out" && ls -- *.tar.gz *.json | sort | paste -sd' ')"

    # Static binaries for each platform, as file(1) sees them.
    local p want t bad
    for p in x86_64 aarch64; do
        want=$([ $p = x86_64 ] && echo "x86-64" || echo "ARM aarch64")
        rm -rf "$KILN_WORK/tools-$p"; mkdir -p "$KILN_WORK/tools-$p"
        tar -C "$KILN_WORK/tools-$p" -xzf "$out/kiln-tools-linux_$p.tar.gz"
        bad=""
        for t in image imagetest index layer load pull push; do
            file -L "$KILN_WORK/tools-$p/kiln-$t" | grep -Eq "ELF 64-bit.*$want.*(statically|static-pie) linked" || bad="$bad kiln-$t"
        done
        expect_eq "ship: linux_$p archive holds the seven kiln tools, static $want ELF (file)" "" "$bad"
    done

    # The lock inside the module archive names the archives by BASE_URL and sha256.
    local lock
    lock=$(tar -xOzf "$out/rules_kiln-$version.tar.gz" "rules_kiln-$version/kiln_tools.lock.json")
    for p in x86_64 aarch64; do
        expect_eq "ship: the module's lock pins linux_$p by URL under BASE_URL and sha256" \
            "file://$out/kiln-tools-linux_$p.tar.gz $(sha256sum <"$out/kiln-tools-linux_$p.tar.gz" | cut -d' ' -f1)" \
            "$(jq -r ".tools.linux_$p | \"\(.url) \(.sha256)\"" <<<"$lock")"
    done
    expect_eq "ship: source.json integrity is the module archive's sha256 (SRI)" \
        "sha256-$(openssl dgst -sha256 -binary "$out/rules_kiln-$version.tar.gz" | openssl base64 -A)" \
        "$(jq -r .integrity "$out/source.json")"
    expect_eq "ship: source.json url and strip_prefix" "file://$out/rules_kiln-$version.tar.gz rules_kiln-$version" \
        "$(jq -r '"\(.url) \(.strip_prefix)"' "$out/source.json")"

    # Determinism: a second packaging pass from the same binaries.
    if kiln-chroot env KILN_RELEASE_TARGET_DIR="${KILN_RELEASE_TARGET_DIR:-$KILN_WORK/ship-release-target}" KILN_RELEASE_SKIP_BUILD=1 \
        release/build.sh "$again" "file://$out" >"$KILN_WORK/ship-release-again.log" 2>&1; then
        for f in kiln-tools-linux_x86_64.tar.gz kiln-tools-linux_aarch64.tar.gz "rules_kiln-$version.tar.gz" source.json; do
            check "ship: $f is byte-identical from a second run" cmp "$out/$f" "$again/$f"
        done
    else
        fail "ship: second packaging pass" "$(tail -20 "$KILN_WORK/ship-release-again.log")"
    fi

    # The aarch64 kiln-layer (under qemu-user) writes the layer the x86_64 one does.
    local spec="$KILN_WORK/rel-layer" d
    rm -rf "$spec"; mkdir -p "$spec"
    printf 'same bytes on every machine\n' >"$spec/hello.txt"
    printf '{"compression": "gzip", "compression_options": [], "mtime": {"preserve": false, "seconds": 0}, "target": "//e2e:release", "entries": [{"attr": "files", "kind": "file", "path": "/srv/hello.txt", "source": "%s", "mode": 420}, {"attr": "dirs", "kind": "dir", "path": "/tmp", "mode": 1023}]}' \
        "$spec/hello.txt" >"$spec/spec.json"
    "$KILN_WORK/tools-x86_64/kiln-layer" --spec "$spec/spec.json" --blob "$spec/x86.tar.gz" --descriptor "$spec/x86.json" --listing "$spec/x86.listing.json" ||
        fail "ship: x86_64 kiln-layer writes a layer"
    if qemu-aarch64-static "$KILN_WORK/tools-aarch64/kiln-layer" --spec "$spec/spec.json" --blob "$spec/arm.tar.gz" \
        --descriptor "$spec/arm.json" --listing "$spec/arm.listing.json" 2>"$spec/arm.err"; then
        d=$(jq -r .digest "$spec/x86.json")
        expect_eq "ship: aarch64 kiln-layer under qemu-aarch64-static writes the x86_64 one's layer digest" "$d" "$(jq -r .digest "$spec/arm.json")"
        expect_eq "ship: and that digest is the blob's sha256 (sha256sum)" "$d" "sha256:$(sha256sum <"$spec/arm.tar.gz" | cut -d' ' -f1)"
    else
        fail "ship: aarch64 kiln-layer runs under qemu-aarch64-static" "$(cat "$spec/arm.err")"
    fi

    # A user workspace on the release: no cargo on PATH or in HOME.
    REL_PATH=$(rel_nocargo_path)
    expect_eq "ship: the user's environment has no cargo" "none" \
        "$(kiln-chroot env PATH="$REL_PATH" HOME="$KILN_WORK/home-none" sh -c 'command -v cargo || ls "$HOME/.cargo/bin/cargo" 2>/dev/null || echo none')"
    local debs_lock="$KILN_WORK/rel-debs.lock.json"
    jq '{packages: [.packages[] | select(.name == "netbase")]}' examples/build/base/debs.lock.json >"$debs_lock"
    local ws="$KILN_WORK/rel-user"
    rel_workspace "$ws" "$out/source.json" "$debs_lock"
    start=$SECONDS
    if rel_bazel rel-user "$ws" build //:app; then
        pass "ship: a user workspace builds an image from the file:// release archive (cold: $((SECONDS - start)) s)"
        log "ship: cold build from the release archive took $((SECONDS - start)) s"
        expect_eq "ship: the user got prebuilt tools" "prebuilt" "$(cat "$KILN_WORK"/ob-rel-user/external/*kiln_toolchains/mode.txt)"
        # By the repositories' own names: the canonical prefix is Bazel's.
        expect_eq "ship: and only the host's archive was fetched" "kiln_tools_linux_x86_64" \
            "$(cd "$KILN_WORK/ob-rel-user/external" && ls -d -- *kiln_tools_linux_*/ | grep -o 'kiln_tools_linux_[a-z0-9_]*' | paste -sd' ')"
        check "ship: no cargo ran" bash -c "! grep -q 'cargo build' '$KILN_WORK/rel-user.log'"

        # An aarch64 executor (listed first) gets the aarch64 binaries for
        # actions; what `bazel run` executes stays the host's.
        local arm_exec=--extra_execution_platforms=@rules_kiln//platforms:linux_arm64 q
        q=$(rel_cmd rel-user "$ws" aquery "$arm_exec" 'mnemonic("KilnLayer", deps(//:app))' 2>&1)
        expect_eq "ship: on an aarch64 exec platform, KilnLayer runs the aarch64 kiln-layer" "kiln_tools_linux_aarch64/bin/kiln-layer" \
            "$(grep -o 'kiln_tools_linux_[a-z0-9_]*/bin/kiln-layer' <<<"$q" | sort -u | paste -sd' ')"
        q=$(rel_cmd rel-user "$ws" aquery "$arm_exec" --include_file_write_contents 'mnemonic("FileWrite", //:load)' 2>&1)
        expect_eq "ship: and bazel run :load still runs the host's kiln-load and kiln-pull" \
            "kiln_tools_linux_x86_64/bin/kiln-load kiln_tools_linux_x86_64/bin/kiln-pull" \
            "$(grep -o 'FileWriteContents: \[[^]]*\]' <<<"$q" | sed 's/^[^[]*\[//; s/\]$//' | while read -r b; do base64 -d <<<"$b"; echo; done |
                grep -o 'kiln_tools_linux_[a-z0-9_]*/bin/kiln-[a-z]*' | sort -u | paste -sd' ')"
        if docker info >/dev/null 2>&1; then
            docker rmi -f kiln-release/app:e2e >/dev/null 2>&1
            rel_cmd rel-user "$ws" run //:load >"$KILN_WORK/rel-user-load.log" 2>&1 || fail "ship: bazel run //:load" "$(tail -20 "$KILN_WORK/rel-user-load.log")"
            expect_eq "ship: docker has the loaded image, its ID the config digest" \
                "$(jq -r .config.digest "$(rel_cmd rel-user "$ws" info bazel-bin 2>/dev/null)/app.manifest.json")" \
                "$(docker image inspect --format '{{.Id}}' kiln-release/app:e2e 2>&1)"
            expect_eq "ship: the image holds the file and the pinned netbase" "hello from a release|yes" \
                "$(docker create --name kiln-rel-e2e kiln-release/app:e2e >/dev/null 2>&1; docker cp kiln-rel-e2e:/hello.txt - | tar -xO)|$(docker cp kiln-rel-e2e:/etc/services - >/dev/null 2>&1 && echo yes)"
            docker rm -f kiln-rel-e2e >/dev/null 2>&1
        else
            skip "ship: docker load of the image" "no docker daemon"
        fi
    else
        fail "ship: a user workspace builds an image from the file:// release archive" "$(tail -30 "$KILN_WORK/rel-user.log")"
    fi

    # The lock's refresh command and fetch = "apt", on the machine's own apt
    # (Bazel's sid chroot): an empty lock names what to run; `:update` pins
    # netbase from apt's index; `apt-get download NAME:ARCH=VERSION` fetches it.
    local apt_ws="$KILN_WORK/rel-apt"
    rel_workspace "$apt_ws" "$out/source.json" "$debs_lock"
    sed -i 's|    packages = \["netbase"\],|    fetch = "apt",\n    packages = ["netbase"],|' "$apt_ws/MODULE.bazel"
    echo '{"packages": []}' >"$apt_ws/debs.lock.json"
    if rel_bazel rel-apt "$apt_ws" build //:app; then
        fail "ship: a package listed but not in the lock is an error"
    else
        check "ship: a package listed but not in the lock names the command that pins it" \
            grep -q 'netbase is listed in `packages` but not pinned in .*; run `bazel run @debs//:update`' "$KILN_WORK/rel-apt.log"
    fi
    if REL_ENV=KILN_DEBS_NO_APT_UPDATE=1 rel_cmd rel-apt "$apt_ws" run @debs//:update >"$KILN_WORK/rel-apt-update.log" 2>&1; then
        expect_eq "ship: bazel run @debs//:update pins apt's candidate (version, architecture, sha256)" \
            "$(kiln-chroot apt-cache show --no-all-versions netbase | awk '/^Version:/ {v=$2} /^Architecture:/ {a=$2} /^SHA256:/ {s=$2} END {print v, a, s}')" \
            "$(jq -r '.packages[] | select(.name == "netbase") | "\(.version) \(.architecture) \(.sha256)"' "$apt_ws/debs.lock.json")"
        if rel_cmd rel-apt "$apt_ws" build //:app >"$KILN_WORK/rel-apt-build.log" 2>&1; then
            pass "ship: fetch = \"apt\" builds with the package apt-get download fetched and the lock verified"
        else
            fail "ship: fetch = \"apt\" builds" "$(tail -20 "$KILN_WORK/rel-apt-build.log")"
        fi
    else
        fail "ship: bazel run @debs//:update" "$(tail -20 "$KILN_WORK/rel-apt-update.log")"
    fi

    rel_shutdown rel-apt
    rel_shutdown rel-user

    # A tampered tool archive at the lock's URL is refused (a repository cache
    # of its own, so the good archive is not found there by checksum).
    local archive="$out/kiln-tools-linux_x86_64.tar.gz"
    cp "$archive" "$archive.good"
    printf 'x' >>"$archive"
    if rel_bazel rel-tampered-tools "$ws" build //:app; then
        fail "ship: a tampered tool archive is refused"
    else
        check "ship: a tampered tool archive is refused, naming platform and URL" \
            grep -q "prebuilt tools for platform linux_x86_64: file://$archive does not have sha256" "$KILN_WORK/rel-tampered-tools.log"
    fi
    mv "$archive.good" "$archive"
    rel_shutdown rel-tampered-tools

    # A tampered .deb (the lock's sha256, other bytes) is refused, naming the package.
    local deb="$KILN_WORK/netbase-tampered.deb" url
    url=$(jq -r '.packages[0].urls[0]' "$debs_lock")
    if curl -sf -o "$deb" "$url"; then
        printf 'x' >>"$deb"
        jq --arg u "file://$deb" '.packages[0].urls = [$u]' "$debs_lock" >"$ws/debs.lock.json"
        if rel_bazel rel-tampered-deb "$ws" build //:app; then
            fail "ship: a tampered .deb is refused"
        else
            check "ship: a tampered .deb is refused, naming the package" \
                grep -q "kiln.debs debs: package netbase $(jq -r '.packages[0].version' "$debs_lock") (all): cannot fetch a .deb with sha256" "$KILN_WORK/rel-tampered-deb.log"
        fi
        cp "$debs_lock" "$ws/debs.lock.json"
        rel_shutdown rel-tampered-deb
    else
        fail "ship: download $url for the tampered-.deb check"
    fi
}
