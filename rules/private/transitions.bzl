"""Platform transitions: build one target for several target platforms."""

def _split_by_platforms_impl(_settings, attr):
    return {str(p): {"//command_line_option:platforms": str(p)} for p in attr.platforms}

# 1:N transition over the rule's `platforms` attribute.
split_by_platforms = transition(
    implementation = _split_by_platforms_impl,
    inputs = [],
    outputs = ["//command_line_option:platforms"],
)

def _to_platform_impl(_settings, attr):
    return {"//command_line_option:platforms": str(attr.platform)}

# 1:1 transition onto the rule's `platform` attribute.
to_platform = transition(
    implementation = _to_platform_impl,
    inputs = [],
    outputs = ["//command_line_option:platforms"],
)

def _platform_binary_impl(ctx):
    files = ctx.attr.binary[0][DefaultInfo].files.to_list()
    if len(files) != 1:
        fail("%s: binary: %s must provide exactly one file, it provides %d" % (ctx.label, ctx.attr.binary[0].label, len(files)))
    out = ctx.actions.declare_file(ctx.label.name + "/" + (ctx.attr.out or files[0].basename))
    ctx.actions.symlink(output = out, target_file = files[0])
    return [DefaultInfo(files = depset([out]))]

platform_binary = rule(
    implementation = _platform_binary_impl,
    doc = "The single file of `binary`, built for `platform`, optionally renamed to `out`.",
    attrs = {
        "binary": attr.label(doc = "A target providing one file (e.g. a static binary).", mandatory = True, cfg = to_platform),
        "out": attr.string(doc = "Basename of the file; default: the binary's own basename."),
        "platform": attr.label(doc = "The target platform to build `binary` for.", mandatory = True),
    },
)
