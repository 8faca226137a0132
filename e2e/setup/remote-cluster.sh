#!/bin/sh
# Prepares what the remote suite's REAPI cluster is made of, once per machine,
# under KILN_REMOTE_CACHE (default /var/cache/kiln-remote), so that re-runs only
# start processes:
#   buildgrid-venv/   BuildGrid 0.4.4 (`buildgrid[database]`, PyPI) in a venv: the server
#   worker-root/      Debian sid, `debootstrap --variant=minbase` plus `buildbox`
#                     (buildbox-casd, buildbox-worker, buildbox-run-hosttools): the
#                     worker runs chrooted there, so it sees none of this machine's
#                     tools (no Go, no cargo, no /root of the host, no Docker)
# PostgreSQL 15 (BuildGrid's scheduler database) comes from deps.sh.
# e2e/lib/remote.sh starts and stops the cluster's processes.
#
# Idempotent: each part has a stamp naming what it holds; a part whose stamp
# differs is rebuilt. The two parts are prepared in parallel (about 3 minutes
# on a fresh machine, most of it debootstrap).
set -eu

cache="${KILN_REMOTE_CACHE:-/var/cache/kiln-remote}"
mirror="http://deb.debian.org/debian"
buildgrid="buildgrid[database]==0.4.4"
worker_packages="buildbox ca-certificates"
apt_opts="-o Acquire::Check-Valid-Until=false -o Acquire::Retries=3"

say() { printf 'remote-cluster: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "must run as root (debootstrap, chroot, PostgreSQL as user postgres)"; exit 1; }
mkdir -p "$cache"

prepare_venv() {
    venv="$cache/buildgrid-venv"
    [ "$(cat "$venv/kiln.stamp" 2>/dev/null)" = "$buildgrid" ] && [ -x "$venv/bin/bgd" ] && return 0
    say "installing $buildgrid into $venv"
    rm -rf "$venv"
    # /usr/bin/python3: Debian's, whatever else is first on PATH.
    python=/usr/bin/python3
    [ -x "$python" ] || python=python3
    "$python" -m venv "$venv" >"$cache/venv.log" 2>&1 &&
        "$venv/bin/pip" install -q --disable-pip-version-check "$buildgrid" >>"$cache/venv.log" 2>&1 ||
        { tail -20 "$cache/venv.log" >&2; return 1; }
    printf '%s' "$buildgrid" >"$venv/kiln.stamp"
}

prepare_worker_root() {
    root="$cache/worker-root"
    stamp="sid minbase + $worker_packages"
    [ "$(cat "$root/etc/kiln-worker.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$root/usr/bin/buildbox-worker" ] && return 0
    say "bootstrapping the worker's Debian sid root into $root"
    for m in proc dev; do
        if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m"; fi
    done
    rm -rf "$root"
    debootstrap --variant=minbase sid "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        { tail -20 "$cache/debootstrap.log" >&2; return 1; }
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    chroot "$root" sh -c "apt-get $apt_opts update -qq && DEBIAN_FRONTEND=noninteractive apt-get $apt_opts install -y -qq --no-install-recommends $worker_packages && apt-get clean" \
        >"$cache/worker-apt.log" 2>&1 || { tail -20 "$cache/worker-apt.log" >&2; return 1; }
    printf '%s' "$stamp" >"$root/etc/kiln-worker.stamp"
}

prepare_venv &
venv_pid=$!
prepare_worker_root || { wait "$venv_pid" || true; exit 1; }
wait "$venv_pid"
