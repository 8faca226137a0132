"""image_push: `bazel run` pushes an image or index to a registry."""

load(":blobs.bzl", "runfiles_layout")
load(":launcher.bzl", "write_launcher")
load(":providers.bzl", "KilnLayoutInfo")
load(":stamp.bzl", "STAMP_ATTRS", "stamp_files")
load(":toolchain.bzl", "RUN_TOOL_ATTRS", "TOOLCHAIN_TYPES", "run_tool")
load(":utils.bzl", "check_repository", "check_tag", "display_label")

def _image_push_impl(ctx):
    label = display_label(ctx.label)
    stamp = stamp_files(ctx)

    # A `{KEY}` placeholder is only known once stamped; kiln-push checks the result.
    if ctx.attr.repository and not (stamp and "{" in ctx.attr.repository):
        check_repository(ctx.attr.repository, "%s: repository" % label, require_host = True)
    for tag in ctx.attr.remote_tags:
        if not (stamp and "{" in tag):
            check_tag(tag, "%s: remote_tags" % label)
    image = ctx.attr.image[KilnLayoutInfo]
    tool = run_tool(ctx, "push")
    launcher = ctx.actions.declare_file(ctx.label.name + ".push.sh")

    # A pulled base's layers stay in the registry: kiln-push mounts or copies them.
    layout, files = runfiles_layout(ctx, ctx.label.name, image, fetch = False)
    write_launcher(
        ctx,
        launcher,
        tool,
        [("--stamp", f) for f in stamp],
        {
            "--repository": [ctx.attr.repository] if ctx.attr.repository else [],
            "--tag": ctx.attr.remote_tags,
        },
        layout = layout,
    )
    return [DefaultInfo(
        executable = launcher,
        runfiles = ctx.runfiles(files = files + [image.digest, tool] + stamp),
    )]

image_push = rule(
    implementation = _image_push_impl,
    doc = """`bazel run` pushes `image` (a container_image or image_index) to `repository`.

Blobs the registry already has are not uploaded again; manifests go up by
digest, and tags are set only once everything they point at is there.
`bazel run :push -- --repository HOST/NAME --tag T` overrides the destination.""",
    attrs = dict(dict(STAMP_ATTRS, **RUN_TOOL_ATTRS), **{
        "image": attr.label(
            doc = "The container_image or image_index to push.",
            mandatory = True,
            providers = [KilnLayoutInfo],
        ),
        "remote_tags": attr.string_list(
            doc = "Tags to set after the push. Support stamp variables (`{BUILD_EMBED_LABEL}`) when stamped.",
            default = ["latest"],
        ),
        "repository": attr.string(doc = "Destination `HOST[:PORT]/NAME`; may be given at run time with `--repository` instead. Supports stamp variables when stamped."),
    }),
    executable = True,
    toolchains = [TOOLCHAIN_TYPES["push"], TOOLCHAIN_TYPES["pull"]],
)
