"""image_push: `bazel run` pushes an image or index to a registry."""

load(":launcher.bzl", "write_launcher")
load(":providers.bzl", "KilnLayoutInfo")
load(":toolchain.bzl", "TOOLCHAIN_TYPES", "kiln_tool")
load(":utils.bzl", "check_repository", "check_tag", "display_label")

def _image_push_impl(ctx):
    label = display_label(ctx.label)
    if ctx.attr.repository:
        check_repository(ctx.attr.repository, "%s: repository" % label)
    for tag in ctx.attr.remote_tags:
        check_tag(tag, "%s: remote_tags" % label)
    image = ctx.attr.image[KilnLayoutInfo]
    tool = kiln_tool(ctx, "push")
    launcher = ctx.actions.declare_file(ctx.label.name + ".push.sh")
    write_launcher(
        ctx,
        launcher,
        tool.tool,
        [("--layout", image.layout)],
        {
            "--repository": [ctx.attr.repository] if ctx.attr.repository else [],
            "--tag": ctx.attr.remote_tags,
        },
    )
    return [DefaultInfo(
        executable = launcher,
        runfiles = ctx.runfiles(files = [image.layout, image.digest, tool.tool]),
    )]

image_push = rule(
    implementation = _image_push_impl,
    doc = """`bazel run` pushes `image` (a container_image or image_index) to `repository`.

Blobs the registry already has are not uploaded again; manifests go up by
digest, and tags are set only once everything they point at is there.
`bazel run :push -- --repository HOST/NAME --tag T` overrides the destination.""",
    attrs = {
        "image": attr.label(
            doc = "The container_image or image_index to push.",
            mandatory = True,
            providers = [KilnLayoutInfo],
        ),
        "remote_tags": attr.string_list(
            doc = "Tags to set after the push.",
            default = ["latest"],
        ),
        "repository": attr.string(doc = "Destination `HOST[:PORT]/NAME`; may be given at run time with `--repository` instead."),
    },
    executable = True,
    toolchains = [TOOLCHAIN_TYPES["push"]],
)
