"""service_image: the seed's one-call macro for a static service binary."""

load(":generated.bzl", "BUILD_ARCHITECTURES")
load(":image.bzl", "container_image")
load(":index.bzl", "image_index")
load(":layer.bzl", "container_layer")
load(":load.bzl", "image_load")
load(":push.bzl", "image_push")
load(":transitions.bzl", "platform_binary")

_PLATFORMS = {
    arch: Label("//platforms:linux_" + arch)
    for arch in BUILD_ARCHITECTURES
}

def service_image(
        name,
        binary,
        base = None,
        repository = None,
        remote_tags = ["latest"],
        local_tag = None,
        architectures = ["amd64", "arm64"],
        env = None,
        labels = None,
        ports = None,
        user = None,
        cmd = None,
        check_binaries = True,
        visibility = None,
        tags = None):
    """Packages one service binary as a multi-arch image with push and load targets.

    For each architecture A this declares `<name>_<A>_binary` (the binary built
    for linux/A), `<name>_<A>_layer` (the binary at `/<name>`) and `<name>_<A>`
    (the image, entrypoint `/<name>`). Then, as in the seed, one service per
    package: `:image` (the OCI index of all architectures), `:push` and `:load`
    (the image for the host's architecture into Docker). `bazel build :image`
    writes only the index JSON and `image.digest`;
    `--output_groups=+oci_layout` adds the layout `image.oci`.

    Args:
      name: the service name; the binary lands at `/<name>`.
      binary: a target producing one static binary; it is built once per
        architecture through a platform transition, so its rule must read the
        target platform (e.g. GOARCH from the CPU constraint).
      base: the image to build on (default: empty): a container_image, or a
        multi-platform one (static_base, image_index, a `kiln.pull` repository)
        from which each architecture takes its own manifest.
      repository: registry repository for `:push` (`HOST[:PORT]/NAME`); can be
        given at run time with `-- --repository`.
      remote_tags: tags `:push` sets.
      local_tag: `repo:tag` that `:load` gives the image (default `<name>:dev`).
      architectures: subset of `amd64`, `arm64`.
      env: environment variables of the image.
      labels: labels of the image.
      ports: exposed ports.
      user: user the service runs as.
      cmd: arguments passed to the binary.
      check_binaries: check at build time that each architecture's binary
        can run in its image: its ELF machine is the image's, and a
        dynamically linked one finds its loader and libraries in the base
        (see container_image's `check_binaries`). A Go binary built with
        cgo (rules_go's default on the host's architecture) is dynamically
        linked: build it with `pure = "on"` or `static = "on"`.
      visibility: visibility of the generated targets.
      tags: Bazel tags of the generated targets.
    """
    if not architectures:
        fail("service_image %s: architectures: give at least one of %s" % (name, ", ".join(_PLATFORMS)))
    images = []
    for arch in architectures:
        if arch not in _PLATFORMS:
            fail("service_image %s: architectures: %r is not supported (supported: %s)" % (name, arch, ", ".join(_PLATFORMS)))
        prefix = "%s_%s" % (name, arch)
        platform_binary(
            name = prefix + "_binary",
            binary = binary,
            platform = _PLATFORMS[arch],
            out = name,
            visibility = visibility,
            tags = tags,
        )
        container_layer(
            name = prefix + "_layer",
            files = [":%s_binary" % prefix],
            directory = "/",
            mode = "0o755",
            visibility = visibility,
            tags = tags,
        )
        image_kwargs = {}
        if cmd != None:
            image_kwargs["cmd"] = cmd
        container_image(
            name = prefix,
            base = base,
            layers = [":%s_layer" % prefix],
            entrypoint = ["/" + name],
            architecture = arch,
            env = env or {},
            labels = labels or {},
            ports = ports or [],
            user = user or "",
            check_binaries = check_binaries,
            visibility = visibility,
            tags = tags,
            **image_kwargs
        )
        images.append(":" + prefix)

    image_index(
        name = "image",
        images = images,
        visibility = visibility,
        tags = tags,
    )
    image_push(
        name = "push",
        image = ":image",
        repository = repository,
        remote_tags = remote_tags,
        visibility = visibility,
        tags = tags,
    )
    image_load(
        name = "load",
        image = ":image",
        repo_tags = [local_tag or "%s:dev" % name],
        visibility = visibility,
        tags = tags,
    )
