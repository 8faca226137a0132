"""static_base: a distroless-style base for static binaries, from Debian packages."""

load(":generated.bzl", "BUILD_ARCHITECTURES")
load(":image.bzl", "container_image")
load(":index.bzl", "image_index")
load(":layer.bzl", "build_layer", "layer_mtime")
load(":providers.bzl", "KilnDebInfo")
load(":toolchain.bzl", "TOOLCHAIN_TYPES")
load(":utils.bzl", "display_label")

# As distroless: root, nobody and nonroot (65532), no login shells.
_PASSWD = """root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
"""

_GROUP = """root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
"""

def _static_base_layer_impl(ctx):
    label = display_label(ctx.label)
    passwd = ctx.actions.declare_file(ctx.label.name + ".passwd")
    group = ctx.actions.declare_file(ctx.label.name + ".group")
    ctx.actions.write(passwd, _PASSWD)
    ctx.actions.write(group, _GROUP)
    debs = ctx.files.debs
    entries = [{"attr": "debs", "kind": "deb", "path": "/", "source": f.path} for f in debs]

    # dpkg's status, one file per package as distroless writes it, so that
    # scanners (trivy, grype, syft) find the packages.
    infos = [t[KilnDebInfo] for t in ctx.attr.debs if KilnDebInfo in t]
    status = []
    seen = {}
    for info in infos:
        if info.package in seen:
            fail("%s: debs: package %s is listed twice (%s and %s)" % (label, info.package, seen[info.package], info.version))
        seen[info.package] = info.version
        entries.append({"attr": "debs", "kind": "file", "mode": 420, "path": "/var/lib/dpkg/status.d/" + info.package, "source": info.control.path})
        status.append(info.control)
        if info.md5sums:
            entries.append({"attr": "debs", "kind": "file", "mode": 420, "path": "/var/lib/dpkg/status.d/%s.md5sums" % info.package, "source": info.md5sums.path})
            status.append(info.md5sums)
    ca = [f for f in debs if f.basename.startswith("ca-certificates_")]
    ca += [i.deb for i in infos if i.package == "ca-certificates" and i.deb not in ca]
    if ca:
        # update-ca-certificates (a maintainer script, which we do not run)
        # would write this bundle; build it from the package's certificates.
        entries.append({
            "attr": "debs",
            "kind": "concat",
            "mode": 420,
            "path": "/etc/ssl/certs/ca-certificates.crt",
            "pattern": "usr/share/ca-certificates/**/*.crt",
            "sources": [f.path for f in ca],
        })
    entries += [
        {"attr": "passwd", "kind": "file", "mode": 420, "path": "/etc/passwd", "source": passwd.path},
        {"attr": "group", "kind": "file", "mode": 420, "path": "/etc/group", "source": group.path},
        {"attr": "dirs", "kind": "dir", "mode": 1023, "path": "/tmp"},  # 01777
        {"attr": "dirs", "kind": "dir", "mode": 448, "path": "/root"},  # 0700
        {"attr": "dirs", "kind": "dir", "gid": 65532, "mode": 448, "path": "/home/nonroot", "uid": 65532},
    ]
    layer = build_layer(
        ctx,
        ctx.label.name,
        entries,
        debs + status + [passwd, group],
        mtime = layer_mtime(label, -1, False, False),
        tar = ctx.outputs.layer,
    )
    return [DefaultInfo(files = depset([layer.blob])), layer]

static_base_layer = rule(
    implementation = _static_base_layer_impl,
    doc = "The one layer of static_base: the packages' files, a CA bundle, /etc/passwd and /etc/group, /tmp, /root and /home/nonroot.",
    attrs = {
        "debs": attr.label_list(doc = "Debian packages to unpack (no maintainer scripts run): `kiln.debs` packages (which also get a dpkg status entry) or .deb files.", allow_files = [".deb"]),
    },
    outputs = {"layer": "%{name}-layer.tar"},
    toolchains = [TOOLCHAIN_TYPES["layer"]],
)

def static_base(name, debs = [], arch_debs = {}, user = "", visibility = None, tags = None):
    """A distroless-style base image for static binaries, for linux/amd64 and linux/arm64.

    Declares `<name>_layer_<arch>`, `<name>_<arch>` (one image per
    architecture) and `<name>`, their image_index. Use `<name>` as the `base` of
    container_image or service_image: each image takes the manifest of its own
    platform. The image holds the packages' files, `/etc/ssl/certs/ca-certificates.crt`
    built from the `ca-certificates` package, `/etc/passwd` and `/etc/group`
    with root, nobody and nonroot (65532), `/tmp` (1777), `/root` and
    `/home/nonroot` (owned by 65532), `PATH` and `SSL_CERT_FILE`; for each
    package from `kiln.debs`, `/var/lib/dpkg/status.d/<package>` (its control
    data, and `<package>.md5sums`) as distroless writes them, so that image
    scanners (trivy, grype, syft) find the packages.

    Args:
      name: name of the index target.
      debs: architecture-independent packages (e.g. `@base_debs//:ca-certificates` from `kiln.debs`, or .deb files).
      arch_debs: dict `amd64`/`arm64` -> packages for that architecture only (e.g. base-files).
      user: default user of the image, e.g. `65532` for nonroot; empty: root.
      visibility: visibility of the targets.
      tags: Bazel tags of the targets.
    """
    images = []
    for arch in BUILD_ARCHITECTURES:
        static_base_layer(
            name = "%s_layer_%s" % (name, arch),
            debs = debs + arch_debs.get(arch, []),
            visibility = visibility,
            tags = tags,
        )
        container_image(
            name = "%s_%s" % (name, arch),
            architecture = arch,
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
            },
            layers = [":%s_layer_%s" % (name, arch)],
            user = user,
            visibility = visibility,
            tags = tags,
        )
        images.append(":%s_%s" % (name, arch))
    image_index(
        name = name,
        images = images,
        visibility = visibility,
        tags = tags,
    )
