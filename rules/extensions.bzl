"""Module extension `kiln`: how the kiln tools are provided.

In MODULE.bazel:

    kiln = use_extension("@rules_kiln//rules:extensions.bzl", "kiln")
    kiln.toolchains(mode = "prebuilt", urls = {...}, sha256 = {...})

The root module's `kiln.toolchains` tag wins; otherwise rules_kiln's own
(mode `source`) applies. The repository is always `@kiln_toolchains`, and
rules_kiln registers its toolchains itself.
"""

load("//rules/private:toolchains_repo.bzl", "kiln_toolchains_repo")

_toolchains_tag = tag_class(
    doc = "Chooses how the kiln-* tools are provided.",
    attrs = {
        "mode": attr.string(
            doc = "`source` (cargo build of rules_kiln's own workspace), `prebuilt` (archives by URL + sha256) or `local` (a directory of binaries).",
            default = "source",
            values = ["source", "prebuilt", "local"],
        ),
        "path": attr.string(doc = "`local` mode: absolute path of a directory holding kiln-layer, kiln-image, kiln-index, kiln-push and kiln-load."),
        "sha256": attr.string_dict(doc = "`prebuilt` mode: platform key -> sha256 of its archive."),
        "urls": attr.string_dict(doc = "`prebuilt` mode: platform key (`linux_x86_64`, `linux_aarch64`) -> URL of a .tar.gz holding the kiln-* binaries at its top level."),
    },
)

def _kiln_impl(mctx):
    chosen = None
    for mod in mctx.modules:
        tags = mod.tags.toolchains
        if len(tags) > 1:
            fail("rules_kiln: module %s declares kiln.toolchains %d times; declare it once" % (mod.name, len(tags)))
        if tags and (chosen == None or mod.is_root):
            chosen = tags[0]
        if mod.is_root and tags:
            break
    kiln_toolchains_repo(
        name = "kiln_toolchains",
        mode = chosen.mode if chosen else "source",
        path = chosen.path if chosen else "",
        sha256 = chosen.sha256 if chosen else {},
        urls = chosen.urls if chosen else {},
    )

kiln = module_extension(
    implementation = _kiln_impl,
    doc = "Provides the kiln tool toolchains (see `toolchains`).",
    tag_classes = {"toolchains": _toolchains_tag},
)
