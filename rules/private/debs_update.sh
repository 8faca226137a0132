#!/bin/sh
# Re-pins the packages of a kiln.debs repository from apt's index: for each
# of `packages` below
# the candidate version apt would install, its architecture, its .deb's sha256
# (from Debian's signed index) and the pool URL apt would fetch it from, into
# the lock file `lock_rel` (under the root module's directory).
# Run as `bazel run @<name>//:update`. With `sources` set in kiln.debs, apt
# reads those (in a state directory of its own); without, the machine's apt
# (run as root, so that it can refresh its index with every architecture
# listed; KILN_DEBS_NO_APT_UPDATE=1 uses the index as it is).
set -eu
# Each value is one single-quoted word (shell_quote): never shell code.
packages=@@PACKAGES@@
archs=@@ARCHS@@
lock_rel=@@LOCK@@
root=${BUILD_WORKSPACE_DIRECTORY:?run this through bazel run}
lock="$root/$lock_rel"

sources=@@SOURCES@@
host_arch=$(dpkg --print-architecture)
apt_opts="-o APT::Architecture=$host_arch -o APT::Architectures::=$host_arch -o APT::Sandbox::User=root"
for a in $archs; do
    [ "$a" = all ] || apt_opts="$apt_opts -o APT::Architectures::=$a"
done
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
if [ -n "$sources" ]; then
    # The `sources` of kiln.debs, in apt state of our own: the pins do not
    # depend on this machine's apt configuration, and no root is needed.
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/parts"
    printf '%s\n' "$sources" | tr '|' '\n' >"$state/sources.list"
    : >"$state/status"
    apt_opts="$apt_opts -o Dir::Etc::SourceList=$state/sources.list -o Dir::Etc::SourceParts=$state/parts"
    apt_opts="$apt_opts -o Dir::State::Lists=$state/lists -o Dir::Cache=$state/cache -o Dir::State::status=$state/status -o Debug::NoLocking=1"
fi
# KILN_APT_OPTS: more apt options, e.g. "-o Acquire::Check-Valid-Until=false"
# for a mirror that serves a dated snapshot.
apt_opts="$apt_opts ${KILN_APT_OPTS:-}"
if [ -n "$sources" ] || [ "${KILN_DEBS_NO_APT_UPDATE:-}" != 1 ]; then
    echo "apt-get update ($host_arch $archs)" >&2
    # shellcheck disable=SC2086
    apt-get $apt_opts update -qq >&2 || { echo "update: apt-get update failed" >&2; exit 1; }
fi

tmp="$state/lock.json"
first=1
printf '{\n  "packages": [' >"$tmp"
for spec in $packages; do
    # shellcheck disable=SC2086
    uri=$(apt-get $apt_opts --print-uris download "$spec" 2>&1) ||
        { echo "update: apt-get --print-uris download $spec: $uri" >&2; exit 1; }
    # 'URL' FILENAME SIZE SHA256:HEX
    url=$(printf '%s\n' "$uri" | sed -n "s/^'\([^']*\)' .*/\1/p" | head -n1)
    sha=$(printf '%s\n' "$uri" | sed -n 's/.* SHA256:\([0-9a-f]\{64\}\)$/\1/p' | head -n1)
    [ -n "$url" ] && [ -n "$sha" ] || { echo "update: $spec: no URL and SHA256 in apt's answer: $uri" >&2; exit 1; }
    # shellcheck disable=SC2086
    show=$(apt-cache $apt_opts show --no-all-versions "$spec")
    version=$(printf '%s\n' "$show" | sed -n 's/^Version: //p' | head -n1)
    arch=$(printf '%s\n' "$show" | sed -n 's/^Architecture: //p' | head -n1)
    name=${spec%%:*}
    [ $first = 1 ] || printf ',' >>"$tmp"
    first=0
    printf '\n    {\n      "name": "%s",\n      "version": "%s",\n      "architecture": "%s",\n      "sha256": "%s",\n      "urls": ["%s"]\n    }' \
        "$name" "$version" "$arch" "$sha" "$url" >>"$tmp"
    echo "pinned $name $version ($arch) $sha" >&2
done
printf '\n  ]\n}\n' >>"$tmp"
cp "$tmp" "$lock"
echo "wrote $lock" >&2
