"""The toolchain rule wrapping one kiln tool binary, and lookup helpers."""

# Tool name -> toolchain type. The binary of tool `t` is called `kiln-<t>`.
TOOLCHAIN_TYPES = {
    "image": Label("//rules/toolchains:image_toolchain_type"),
    "imagetest": Label("//rules/toolchains:imagetest_toolchain_type"),
    "index": Label("//rules/toolchains:index_toolchain_type"),
    "layer": Label("//rules/toolchains:layer_toolchain_type"),
    "load": Label("//rules/toolchains:load_toolchain_type"),
    "pull": Label("//rules/toolchains:pull_toolchain_type"),
    "push": Label("//rules/toolchains:push_toolchain_type"),
}

TOOL_NAMES = sorted(TOOLCHAIN_TYPES.keys())

def _kiln_tool_toolchain_impl(ctx):
    return [platform_common.ToolchainInfo(
        name = ctx.attr.tool_name,
        tool = ctx.executable.tool,
        files_to_run = ctx.attr.tool[DefaultInfo].files_to_run,
    )]

kiln_tool_toolchain = rule(
    implementation = _kiln_tool_toolchain_impl,
    doc = "Provides one kiln tool binary (e.g. `kiln-layer`) as a toolchain.",
    attrs = {
        "tool": attr.label(
            doc = "The tool binary.",
            mandatory = True,
            executable = True,
            allow_single_file = True,
            cfg = "exec",
        ),
        "tool_name": attr.string(
            doc = "Which tool this is: one of " + ", ".join(TOOL_NAMES) + ".",
            mandatory = True,
            values = TOOL_NAMES,
        ),
    },
)

def kiln_tool(ctx, name):
    """Returns the ToolchainInfo of tool `name` resolved for this rule."""
    return ctx.toolchains[TOOLCHAIN_TYPES[name]]

# What `bazel run` executes runs on the machine running Bazel, whatever the
# exec platform of the build's actions: these are the host's binaries.
RUN_TOOL_ATTRS = {
    "_run_" + t: attr.label(
        default = Label("@kiln_toolchains//:run_" + t),
        allow_single_file = True,
    )
    for t in ("load", "pull", "push")
}

def run_tool(ctx, name):
    """Returns the File of tool `name` for the host (for `bazel run` launchers)."""
    return getattr(ctx.file, "_run_" + name)
