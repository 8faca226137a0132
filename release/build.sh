#!/bin/sh
# Builds a rules_kiln release:
#
#   release/build.sh OUTDIR BASE_URL
#
# writes
#   OUTDIR/kiln-tools-linux_x86_64.tar.gz   every kiln-* tool, static (glibc crt-static)
#   OUTDIR/kiln-tools-linux_aarch64.tar.gz  the same, cross-compiled for aarch64
#   OUTDIR/rules_kiln-VERSION.tar.gz        the module's source archive; its
#                                           kiln_tools.lock.json names the two
#                                           archives above (BASE_URL/NAME, sha256)
#   OUTDIR/source.json                      the BCR's source.json for it
#
# Every archive is deterministic: the same bytes from two runs (sorted
# entries, owner 0:0, mtime of the last commit, gzip -n).
#
# Needs (Debian package names): rustc, cargo, libstd-rust-dev and
# libstd-rust-dev:arm64 (the same rustc's std for both targets),
# gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (linker and C compiler for
# ring and zstd-sys), git, GNU tar, gzip. KILN_RUSTC / KILN_CARGO choose
# another rustc / cargo (default: Debian's /usr/bin ones, whose sysroot holds
# both std builds). KILN_RELEASE_TARGET_DIR is cargo's target directory
# (default OUTDIR/.cargo-target). KILN_RELEASE_SKIP_BUILD=1 packages the
# binaries already in that directory (a second packaging pass).
set -eu
[ $# = 2 ] || { echo "usage: release/build.sh OUTDIR BASE_URL" >&2; exit 2; }
outdir=$1
base_url=${2%/}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

rustc=${KILN_RUSTC:-/usr/bin/rustc}
cargo=${KILN_CARGO:-/usr/bin/cargo}
target_dir=${KILN_RELEASE_TARGET_DIR:-$outdir/.cargo-target}
tools="image imagetest index layer load pull push"
version=$(sed -n 's/^ *version = "\([^"]*\)",*$/\1/p' "$root/MODULE.bazel" | head -n1)
[ -n "$version" ] || { echo "release: no version in $root/MODULE.bazel" >&2; exit 1; }
# The time every archive entry gets: the last commit's, so a rebuild of the
# same commit gives the same bytes.
epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)

# platform key -> Rust target triple
triple() {
    case $1 in
        linux_x86_64) echo x86_64-unknown-linux-gnu ;;
        linux_aarch64) echo aarch64-unknown-linux-gnu ;;
    esac
}
platforms="linux_x86_64 linux_aarch64"

# tar_gz DIR OUTPUT NAME...: a deterministic .tar.gz of DIR's NAMEs.
tar_gz() {
    dir=$1 out=$2; shift 2
    (cd "$dir" && LC_ALL=C tar --sort=name --format=gnu --owner=0 --group=0 --numeric-owner \
        --mtime="@$epoch" --mode='u+rwX,go+rX,go-w' -cf - "$@") | gzip -9 -n >"$out.tmp"
    mv "$out.tmp" "$out"
}

if [ "${KILN_RELEASE_SKIP_BUILD:-}" != 1 ]; then
    missing=""
    [ -x "$rustc" ] || missing="$missing rustc($rustc)"
    [ -x "$cargo" ] || missing="$missing cargo($cargo)"
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing="$missing gcc-aarch64-linux-gnu"
    sysroot=$("$rustc" --print sysroot 2>/dev/null || true)
    for p in $platforms; do
        [ -d "$sysroot/lib/rustlib/$(triple "$p")/lib" ] || missing="$missing std-for-$(triple "$p")(libstd-rust-dev)"
    done
    [ -z "$missing" ] || { echo "release: missing:$missing" >&2; exit 1; }

    cargo_home=${CARGO_HOME:-${HOME:-/root}/.cargo}
    # No build paths in the binaries: the same bytes whichever directory builds them.
    remap="--remap-path-prefix=$root=/rules_kiln --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$target_dir=/target"
    targets=""
    for p in $platforms; do targets="$targets --target $(triple "$p")"; done
    echo "release: cargo build --release --locked$targets (rustc $("$rustc" --version | cut -d' ' -f2))" >&2
    # shellcheck disable=SC2086
    # SOURCE_DATE_EPOCH: a constant for C compilers (__DATE__); the commit's
    # time would make cargo rebuild the C crates (cc tracks it) every commit.
    env RUSTC="$rustc" CARGO_TARGET_DIR="$target_dir" SOURCE_DATE_EPOCH=0 \
        RUSTFLAGS="-C target-feature=+crt-static $remap" \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
        "$cargo" build --release --locked --manifest-path "$root/Cargo.toml" $targets \
        $(for t in $tools; do printf -- '--bin=kiln-%s ' "$t"; done)
fi

stage="$outdir/.stage"
rm -rf "$stage"
lock_entries=""
for p in $platforms; do
    mkdir -p "$stage/$p"
    for t in $tools; do
        bin="$target_dir/$(triple "$p")/release/kiln-$t"
        [ -x "$bin" ] || { echo "release: $bin was not built" >&2; exit 1; }
        cp "$bin" "$stage/$p/kiln-$t"
        chmod 0755 "$stage/$p/kiln-$t"
    done
    archive="kiln-tools-$p.tar.gz"
    # shellcheck disable=SC2046
    tar_gz "$stage/$p" "$outdir/$archive" $(for t in $tools; do printf 'kiln-%s ' "$t"; done)
    sha=$(sha256sum "$outdir/$archive" | cut -d' ' -f1)
    echo "release: $archive $sha" >&2
    [ -z "$lock_entries" ] || lock_entries="$lock_entries,"
    lock_entries="$lock_entries
    \"$p\": {\"url\": \"$base_url/$archive\", \"sha256\": \"$sha\"}"
done

# The module's source archive: the committed tree (git archive: only tracked
# files) plus the prebuilt lock, under rules_kiln-VERSION/.
src="$stage/rules_kiln-$version"
mkdir -p "$src"
git -C "$root" archive --format=tar HEAD | tar -C "$src" -xf -
# Not part of the module: what only this repository's own tests and CI use.
find "$src/e2e" -mindepth 1 -maxdepth 1 ! -name basic -exec rm -rf {} +
rm -rf "$src/bench" "$src/fuzz" "$src/.ci"
printf '{\n  "version": "%s",\n  "tools": {%s\n  }\n}\n' "$version" "$lock_entries" >"$src/kiln_tools.lock.json"
find "$src" -exec touch -h -d "@$epoch" {} +
module_archive="rules_kiln-$version.tar.gz"
tar_gz "$stage" "$outdir/$module_archive" "rules_kiln-$version"
integrity="sha256-$(openssl dgst -sha256 -binary "$outdir/$module_archive" | openssl base64 -A)"
printf '{\n    "integrity": "%s",\n    "strip_prefix": "rules_kiln-%s",\n    "url": "%s/%s"\n}\n' \
    "$integrity" "$version" "$base_url" "$module_archive" >"$outdir/source.json"
rm -rf "$stage"
echo "release: $module_archive $integrity" >&2
echo "release: wrote $outdir/{kiln-tools-linux_x86_64.tar.gz,kiln-tools-linux_aarch64.tar.gz,$module_archive,source.json}" >&2
