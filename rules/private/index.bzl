"""image_index: per-platform images -> one OCI image index."""

load(":providers.bzl", "KilnImageInfo", "KilnLayoutInfo")
load(":toolchain.bzl", "TOOLCHAIN_TYPES", "kiln_tool")
load(":transitions.bzl", "split_by_platforms")
load(":utils.bzl", "display_label")

def _image_index_impl(ctx):
    label = display_label(ctx.label)
    if ctx.attr.images and ctx.attr.image:
        fail("%s: set either `images` or `image` + `platforms`, not both" % label)
    if ctx.attr.image and not ctx.attr.platforms:
        fail("%s: platforms: `image` needs at least one platform to build it for" % label)
    images = [i[KilnImageInfo] for i in ctx.attr.images]
    if ctx.attr.image:
        split = ctx.split_attr.image
        images = [split[str(p.label)][KilnImageInfo] for p in ctx.attr.platforms]
    if not images:
        fail("%s: images: an index needs at least one image" % label)
    seen = {}
    for image in images:
        if image.platform in seen:
            fail("%s: images: two images are for platform %s" % (label, image.platform))
        seen[image.platform] = True

    spec = ctx.actions.declare_file(ctx.label.name + ".index.spec.json")
    ctx.actions.write(spec, json.encode({
        "images": [{"layout": i.layout.path} for i in images],
        "ref_name": "latest",
        "target": label,
    }))
    layout = ctx.actions.declare_directory(ctx.label.name + ".oci")
    digest = ctx.actions.declare_file(ctx.label.name + ".digest")
    args = ctx.actions.args()
    args.add("--spec", spec)
    args.add("--layout", layout.path)
    args.add("--digest", digest)
    ctx.actions.run(
        executable = kiln_tool(ctx, "index").files_to_run,
        arguments = [args],
        inputs = [spec] + [i.layout for i in images],
        outputs = [layout, digest],
        mnemonic = "KilnIndex",
        progress_message = "Building image index %{label}",
        toolchain = TOOLCHAIN_TYPES["index"],
    )
    return [
        DefaultInfo(files = depset([layout, digest])),
        KilnLayoutInfo(digest = digest, layout = layout, shallow = len([i for i in images if getattr(i, "shallow", False) == True]) > 0),
    ]

image_index = rule(
    implementation = _image_index_impl,
    doc = """A multi-platform OCI image index.

Either list single-platform images in `images`, or give one `image` target and
the `platforms` to build it for: the image (and everything it depends on, such
as a Go binary) is then built once per platform through a transition, and each
image takes its architecture from its platform.""",
    attrs = {
        "image": attr.label(
            doc = "A container_image to build once per platform in `platforms`.",
            cfg = split_by_platforms,
            providers = [KilnImageInfo],
        ),
        "images": attr.label_list(
            doc = "Single-platform container_image targets, one per platform.",
            providers = [KilnImageInfo],
        ),
        "platforms": attr.label_list(
            doc = "Target platforms for `image`, e.g. `@rules_kiln//platforms:linux_amd64`.",
        ),
    },
    toolchains = [TOOLCHAIN_TYPES["index"]],
)
