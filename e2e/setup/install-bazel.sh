#!/bin/sh
# Installs Bazel >= 7.1 as /usr/local/bin/bazel when it is missing.
#
# Machines of this project reach Debian's package mirrors but neither
# bazel.build nor GitHub, so bazelisk cannot work. Debian sid packages Bazel
# 7.7.1 (bazel-bootstrap) along with offline copies of the modules rules_kiln
# needs (platforms, bazel_skylib), wired in by --override_module in sid's
# /etc/bazel/bazelrc. sid's Bazel needs a newer glibc than Debian 12 has, so it
# is installed into a sid chroot, and /usr/local/bin/bazel runs it there with
# /root, /tmp, /run and the caller's top-level directory bind-mounted at the same
# paths (so bazel-bin links, ~/.cargo and the Docker socket work unchanged).
# Go (golang-go), crane, skopeo, cosign and go-containerregistry's source (the
# supply_chain suite builds a registry with the Referrers API from it) are
# installed into the chroot as well: build actions run inside it. So do tests:
# image_test runs commands through chroot or bubblewrap, an arm64 image's under
# qemu-user-static.
#
# Idempotent; KILN_BAZEL_ROOT chooses the chroot directory.
set -eu

root="${KILN_BAZEL_ROOT:-/opt/kiln-bazel-sid}"
mirror="http://deb.debian.org/debian"
packages="bazel-bootstrap ca-certificates git golang-go crane skopeo protobuf-compiler bubblewrap qemu-user-static cosign golang-github-google-go-containerregistry-dev"
apt_opts="-o Acquire::Check-Valid-Until=false -o Acquire::Retries=3"

say() { printf 'install-bazel: %s\n' "$*" >&2; }

bazel_ok() {
    command -v bazel >/dev/null 2>&1 || return 1
    v=$(bazel --version 2>/dev/null | sed -n 's/^bazel \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    [ -n "$v" ] || return 1
    set -- $v
    [ "$1" -gt 7 ] || { [ "$1" -eq 7 ] && [ "$2" -ge 1 ]; }
}

# Mounts that the chroot needs; re-done after a reboot.
mount_all() {
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    mountpoint -q "$root/dev" || mount --rbind /dev "$root/dev"
    mountpoint -q "$root/sys" || mount --rbind /sys "$root/sys"
    for d in /root /tmp /run; do
        mkdir -p "$root$d"
        mountpoint -q "$root$d" || mount --rbind "$d" "$root$d"
    done
    cp /etc/resolv.conf "$root/etc/resolv.conf"
}

# sid's /etc/bazel/bazelrc sets `build --host_javabase=@local_jdk//:jdk`, an
# option Bazel 7 deprecated (Java runtimes come from toolchain resolution): it
# prints "Option 'host_javabase' is deprecated" twice at every command of every
# workspace. Nothing here builds Java, so the line is commented out where it is
# (before the early exit below too: for chroots installed before this).
quiet_host_javabase() {
    if [ -w "$root/etc/bazel/bazelrc" ]; then
        sed -i 's|^build --host_javabase=|# rules_kiln install-bazel.sh: deprecated, warns at every command: &|' "$root/etc/bazel/bazelrc"
    fi
}
quiet_host_javabase

# The tests also run crane from the chroot, so a Bazel installed some other
# way is only enough when our chroot is there too.
stamp="$root/etc/kiln-bazel.packages"
if bazel_ok && command -v kiln-chroot >/dev/null 2>&1 && [ "$(cat "$stamp" 2>/dev/null)" = "$packages" ] && [ "${1:-}" != "--force" ]; then
    exit 0
fi
[ "$(id -u)" = 0 ] || { say "must run as root to install Bazel"; exit 1; }

if [ "$(cat "$stamp" 2>/dev/null)" != "$packages" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    if [ ! -x "$root/usr/bin/apt-get" ]; then
        say "bootstrapping Debian sid into $root (a few minutes)"
        rm -rf "$root"
        debootstrap --variant=minbase sid "$root" "$mirror" >/tmp/kiln-debootstrap.log 2>&1 ||
            { tail -20 /tmp/kiln-debootstrap.log >&2; exit 1; }
    fi
    mount_all
    say "installing $packages in the chroot"
    chroot "$root" sh -c "apt-get $apt_opts update -qq && DEBIAN_FRONTEND=noninteractive apt-get $apt_opts install -y -qq --no-install-recommends $packages" \
        >/tmp/kiln-chroot-apt.log 2>&1 || { tail -20 /tmp/kiln-chroot-apt.log >&2; exit 1; }
    printf '%s' "$packages" >"$stamp"
fi
quiet_host_javabase
mount_all

# Bazel 7's bazel_tools asks for modules Debian does not package; nothing in a
# Linux build loads them, so empty modules stand in for them.
stubs="$root/usr/local/share/kiln-bazel-stubs"
for m in buildozer protobuf zlib apple_support; do
    mkdir -p "$stubs/$m"
    printf 'module(name = "%s")\n' "$m" >"$stubs/$m/MODULE.bazel"
    : >"$stubs/$m/BUILD.bazel"
done
cat >"$stubs/buildozer/buildozer_binary.bzl" <<'STARLARK'
def _repo_impl(rctx):
    rctx.file("BUILD.bazel", "")

_repo = repository_rule(implementation = _repo_impl)

buildozer_binary = module_extension(implementation = lambda mctx: _repo(name = "buildozer_binary"))
STARLARK
{
    echo "# Written by rules_kiln's e2e/setup/install-bazel.sh: offline stand-ins."
    for m in buildozer protobuf zlib apple_support; do
        echo "common --override_module=$m=/usr/local/share/kiln-bazel-stubs/$m"
    done
    echo "common --noenable_workspace"
} >"$root/etc/bazel.bazelrc"

# `kiln-chroot CMD...` runs CMD inside the chroot from the caller's directory.
cat >/usr/local/bin/kiln-chroot <<WRAPPER
#!/bin/sh
root="$root"
top="/\$(printf '%s' "\$PWD" | cut -d/ -f2)"
case "\$top" in
    /|/bin|/boot|/dev|/etc|/lib|/lib64|/proc|/sbin|/sys|/usr|/var) ;;
    *) mountpoint -q "\$root\$top" || { mkdir -p "\$root\$top" && mount --rbind "\$top" "\$root\$top"; } ;;
esac
for d in /root /tmp /run; do
    mountpoint -q "\$root\$d" || mount --rbind "\$d" "\$root\$d"
done
mountpoint -q "\$root/proc" || mount -t proc proc "\$root/proc"
if [ -f /etc/ssl/certs/ca-certificates.crt ] && ! mountpoint -q "\$root/etc/ssl/certs/ca-certificates.crt"; then
    mkdir -p "\$root/etc/ssl/certs" && touch "\$root/etc/ssl/certs/ca-certificates.crt" &&
        mount --bind /etc/ssl/certs/ca-certificates.crt "\$root/etc/ssl/certs/ca-certificates.crt"
fi
docker_cli=\$(command -v docker 2>/dev/null || true)
if [ -n "\$docker_cli" ] && ! mountpoint -q "\$root/usr/local/bin/docker"; then
    touch "\$root/usr/local/bin/docker" && mount --bind "\$docker_cli" "\$root/usr/local/bin/docker"
fi
exec chroot "\$root" /usr/bin/env -C "\$PWD" HOME="\${HOME:-/root}" \\
    PATH="\${HOME:-/root}/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "\$@"
WRAPPER
chmod +x /usr/local/bin/kiln-chroot
printf '#!/bin/sh\nexec /usr/local/bin/kiln-chroot bazel "$@"\n' >/usr/local/bin/bazel
chmod +x /usr/local/bin/bazel
bazel_ok || { say "bazel is installed but does not run: $(bazel --version 2>&1 | tail -3)"; exit 1; }
say "ready: $(bazel --version)"
