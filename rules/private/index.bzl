"""image_index: per-platform images -> one OCI image index."""

load(":blobs.bzl", "blob_entry", "oci_layout")
load(":providers.bzl", "KilnImageInfo", "blob_set_info")
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

    # Manifest descriptors only: the images' blobs reach push and load
    # through the providers.
    name = ctx.label.name
    spec = ctx.actions.declare_file(name + ".index.spec.json")
    ctx.actions.write(spec, json.encode({
        "images": [{"descriptor": i.descriptor.path} for i in images],
        "target": label,
    }))
    index = ctx.actions.declare_file(name + ".index.json")
    descriptor = ctx.actions.declare_file(name + ".index.descriptor.json")
    digest = ctx.actions.declare_file(name + ".digest")
    args = ctx.actions.args()
    args.add("--spec", spec)
    args.add("--index", index)
    args.add("--descriptor", descriptor)
    args.add("--digest", digest)
    ctx.actions.run(
        executable = kiln_tool(ctx, "index").files_to_run,
        arguments = [args],
        inputs = [spec] + [i.descriptor for i in images],
        outputs = [index, descriptor, digest],
        mnemonic = "KilnIndex",
        progress_message = "Building image index %{label}",
        toolchain = TOOLCHAIN_TYPES["index"],
    )
    info = blob_set_info(
        top = blob_entry(index, descriptor),
        digest = digest,
        blobs = depset(transitive = [i.blobs for i in images]),
        metadata = depset([i.top for i in images], transitive = [i.metadata for i in images]),
        shallow = len([i for i in images if i.shallow]) > 0,
        images = {i.platform: i for i in images},
        sboms = [struct(descriptor = i.descriptor, sbom = i.sbom) for i in images],
    )
    return [
        DefaultInfo(files = depset([index, digest])),
        info,
        OutputGroupInfo(
            oci_layout = depset([oci_layout(ctx, name, info)]),
            sbom = depset([i.sbom for i in images]),
        ),
    ]

image_index = rule(
    implementation = _image_index_impl,
    doc = """A multi-platform OCI image index.

Either list single-platform images in `images`, or give one `image` target and
the `platforms` to build it for: the image (and everything it depends on, such
as a Go binary) is then built once per platform through a transition, and each
image takes its architecture from its platform.

Default outputs: `<name>.index.json` (the index) and `<name>.digest`, a few
hundred bytes: the index action reads only the images' manifest descriptors.
The OCI layout is the output group `oci_layout`:
`bazel build :name --output_groups=+oci_layout` writes `<name>.oci`, which
skopeo (`oci:<path>`) and umoci read. The output group `sbom` holds each
image's SPDX SBOM (`<image>.spdx.json`).""",
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
    toolchains = [TOOLCHAIN_TYPES["index"], TOOLCHAIN_TYPES["pull"]],
)
