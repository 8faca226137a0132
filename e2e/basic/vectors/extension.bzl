"""@kiln_vectors: tools/testdata/validation.json as a .bzl, for the Starlark side of the shared validation vectors."""

def _vectors_repo_impl(rctx):
    text = rctx.read(rctx.attr.src)
    rctx.file("BUILD.bazel", "")
    rctx.file("vectors.bzl", "\"\"\"Generated from %s.\"\"\"\n\nVECTORS = json.decode(%r)\n" % (rctx.attr.src, text))

_vectors_repo = repository_rule(
    implementation = _vectors_repo_impl,
    attrs = {"src": attr.label(allow_single_file = True)},
    doc = "Writes vectors.bzl holding the decoded validation vectors.",
)

def _vectors_impl(mctx):
    _vectors_repo(name = "kiln_vectors", src = Label("@rules_kiln//:tools/testdata/validation.json"))

    # Derived from a source file of the module: a lockfile need not record it.
    return mctx.extension_metadata(reproducible = True)

vectors = module_extension(
    implementation = _vectors_impl,
    doc = "Provides @kiln_vectors (the shared validation vectors).",
)
