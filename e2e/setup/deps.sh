#!/bin/sh
# Installs what the main job and the tests need, when missing: Debian packages
# (docker-registry, skopeo, umoci, jq, Go, qemu-user-static, bubblewrap, curl, file, nginx,
# zstd, pigz for bench/layer.sh, PostgreSQL, debootstrap and python3-venv for the
# remote suite), spdx-tools (a Python venv) and
# Bazel >= 7.1 (install-bazel.sh). Safe to run again: it only checks then.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need docker-registry docker-registry
need skopeo skopeo
need umoci umoci
need jq jq
need curl curl
need file file
need htpasswd apache2-utils
need qemu-aarch64-static qemu-user-static
# image_test's commands when not root (bubblewrap); Bazel's own tests run in the
# chroot of install-bazel.sh, which has it too.
need bwrap bubblewrap
need go golang-go
need python3 python3
need zstd zstd
need pigz pigz
need gzip gzip
need xz xz-utils
need dpkg-deb dpkg
need podman podman
# The remote-cache suite and bench/cache.sh: nginx as a Bazel HTTP cache (WebDAV PUT).
need nginx nginx
# The hostile suite: a test CA, and the tools' maximum RSS.
need openssl openssl
need /usr/bin/time time
# kiln-load's containerd client compiles containerd's .proto files (cargo build).
need protoc protobuf-compiler
# The remote suite's REAPI cluster (e2e/setup/remote-cluster.sh, e2e/lib/remote.sh):
# PostgreSQL 15 for BuildGrid, a venv for BuildGrid from PyPI, debootstrap for
# the worker's own Debian root.
need /usr/lib/postgresql/15/bin/postgres postgresql-15
need debootstrap debootstrap
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || { echo "deps: missing:$missing (run as root to install them)" >&2; exit 1; }
    echo "deps: installing$missing" >&2
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/tmp/kiln-deps-apt.log 2>&1 ||
        { tail -20 /tmp/kiln-deps-apt.log >&2; exit 1; }
fi
command -v cargo >/dev/null 2>&1 || [ -x "${HOME:-/root}/.cargo/bin/cargo" ] ||
    { echo "deps: no cargo; install a Rust toolchain (rustup) first" >&2; exit 1; }
# The supply_chain suite validates SBOMs with pyspdxtools (PyPI spdx-tools),
# in a virtual environment of its own (KILN_SPDX_VENV, default /opt/kiln-spdx).
spdx_venv=${KILN_SPDX_VENV:-/opt/kiln-spdx}
if [ ! -x "$spdx_venv/bin/pyspdxtools" ]; then
    echo "deps: installing spdx-tools in $spdx_venv" >&2
    { python3 -m venv "$spdx_venv" && "$spdx_venv/bin/pip" install -q spdx-tools; } >/tmp/kiln-deps-spdx.log 2>&1 ||
        { tail -20 /tmp/kiln-deps-spdx.log >&2; exit 1; }
fi
"$here/install-bazel.sh"
