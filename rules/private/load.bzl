"""image_load: `bazel run` loads an image into Docker (or podman)."""

load(":blobs.bzl", "runfiles_layout")
load(":launcher.bzl", "write_launcher")
load(":providers.bzl", "KilnBlobSetInfo")
load(":stamp.bzl", "STAMP_ATTRS", "stamp_files")
load(":toolchain.bzl", "RUN_TOOL_ATTRS", "TOOLCHAIN_TYPES", "run_tool")
load(":utils.bzl", "check_reference", "display_label", "launcher_runfiles")

def _image_load_impl(ctx):
    label = display_label(ctx.label)
    tags = ctx.attr.repo_tags or ["bazel/%s:%s" % (ctx.label.package, ctx.label.name) if ctx.label.package else "bazel/%s:latest" % ctx.label.name]
    stamp = stamp_files(ctx)
    for tag in tags:
        # A `{KEY}` placeholder is only known once stamped; kiln-load checks the result.
        if not (stamp and "{" in tag):
            check_reference(tag, "%s: repo_tags" % label)
    image = ctx.attr.image[KilnBlobSetInfo]
    tool = run_tool(ctx, "load")
    launcher = ctx.actions.declare_file(ctx.label.name + ".load.sh")

    # The image's blob Files (runfiles) become a layout of symlinks at run
    # time; a pulled base's layers are fetched into it.
    layout, files = runfiles_layout(ctx, ctx.label.name, image, fetch = True)
    write_launcher(ctx, launcher, tool, [("--incremental", None)] + [("--stamp", f) for f in stamp], {"--tag": tags}, layout = layout)
    return [DefaultInfo(
        executable = launcher,
        runfiles = launcher_runfiles(ctx, files + [image.digest, tool] + stamp),
    )]

image_load = rule(
    implementation = _image_load_impl,
    doc = """`bazel run` loads `image` into the local Docker daemon (podman when there is no docker).

For an image_index, the image for the machine's own platform is loaded
(`-- --platform linux/arm64` picks another). `-- --tag REPO:TAG` replaces `repo_tags`.

The load is incremental and says which it did:
- **tag only**: the engine already has the image (Docker: an image whose ID is the
  config digest; podman: `podman image exists`), so only `repo_tags` are set;
- **incremental**: Docker's classic image store has the bottom layers (by chain ID),
  so only the layers above them are sent, in a docker-save tarball that leaves out
  the others' `layer.tar` (rules_docker's incremental loader);
- **containerd import**: Docker's containerd image store, when the containerd socket
  that `docker info` names is reachable: only the blobs containerd lacks are written
  through its content API, and each tag becomes an image record in Docker's namespace;
- **full**: every layer is sent. This is also what happens when an incremental load
  fails because the engine dropped a layer meanwhile, and on Docker's containerd
  image store when its socket is not reachable (with a one-line notice).

`-- --containerd SOCKET [--namespace NAME]` loads into containerd itself instead
(e.g. `/run/containerd/containerd.sock` and `k8s.io` for a local Kubernetes), the same
way: only the blobs it lacks.

The result is the same as a full load: the same image ID (the config digest) and tags.""",
    attrs = dict(dict(STAMP_ATTRS, **RUN_TOOL_ATTRS), **{
        "image": attr.label(
            doc = "The container_image or image_index to load.",
            mandatory = True,
            providers = [KilnBlobSetInfo],
        ),
        "repo_tags": attr.string_list(doc = "Tags (`repo:tag`) for the loaded image. Default: `bazel/<package>:<name>`. Support stamp variables when stamped."),
    }),
    executable = True,
    toolchains = [TOOLCHAIN_TYPES["load"], TOOLCHAIN_TYPES["pull"]],
)
