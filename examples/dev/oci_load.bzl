"""`oci_load`: every service's `:load` launcher behind one `bazel run`."""

def _oci_load_impl(ctx):
    launchers = [t[DefaultInfo].files_to_run.executable for t in ctx.attr.loads]
    script = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.expand_template(
        template = ctx.file._template,
        output = script,
        is_executable = True,
        substitutions = {
            "@@LAUNCHERS@@": " ".join([
                # One single-quoted shell word each: a name is never code.
                "'%s'" % ctx.expand_location("$(rlocationpath %s)" % t.label, [t]).replace("'", "'\\''")
                for t in ctx.attr.loads
            ]),
        },
    )
    runfiles = ctx.runfiles(files = launchers).merge_all(
        [t[DefaultInfo].default_runfiles for t in ctx.attr.loads],
    )
    return [DefaultInfo(executable = script, runfiles = runfiles)]

oci_load = rule(
    implementation = _oci_load_impl,
    doc = "`bazel run` runs every launcher in `loads` at once (dev/oci_load.sh); fails if any fails.",
    attrs = {
        "loads": attr.label_list(doc = "The `:load` targets (image_load launchers).", mandatory = True),
        "_template": attr.label(default = "oci_load.sh", allow_single_file = True),
    },
    executable = True,
)
