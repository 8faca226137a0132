#!/bin/sh
# Downloads the Debian packages static_base is made of into debs/ (not
# committed): ca-certificates, tzdata and netbase (architecture: all) and
# base-files for amd64 and arm64. apt verifies them against Debian's signed
# package indexes. Run by e2e/setup/deps.sh; does nothing when they are there.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
debs="$here/debs"
if [ -f "$debs/.complete" ]; then exit 0; fi
rm -rf "$debs"; mkdir -p "$debs/all" "$debs/amd64" "$debs/arm64"
apt_multi="-o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root"
# shellcheck disable=SC2086
apt-get $apt_multi update -qq >/dev/null
# shellcheck disable=SC2086
(cd "$debs/all" && apt-get $apt_multi download -qq ca-certificates tzdata netbase >/dev/null)
# shellcheck disable=SC2086
(cd "$debs/amd64" && apt-get $apt_multi download -qq base-files:amd64 >/dev/null)
# shellcheck disable=SC2086
(cd "$debs/arm64" && apt-get $apt_multi download -qq base-files:arm64 >/dev/null)
touch "$debs/.complete"
ls "$debs"/*/ >&2
