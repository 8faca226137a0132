"""An OCI layout made by skopeo (a tool we did not write), to use as a base."""

def _skopeo_oci_layout_impl(ctx):
    layout = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run_shell(
        command = 'skopeo --insecure-policy copy --quiet "docker-archive:$1" "oci:$2:imported"',
        arguments = [ctx.file.docker_archive.path, layout.path],
        inputs = [ctx.file.docker_archive],
        outputs = [layout],
        use_default_shell_env = True,
        mnemonic = "SkopeoCopy",
    )
    return [DefaultInfo(files = depset([layout]))]

skopeo_oci_layout = rule(
    implementation = _skopeo_oci_layout_impl,
    doc = "Converts a docker-save tarball into an OCI layout directory with skopeo.",
    attrs = {"docker_archive": attr.label(doc = "A docker-save tarball.", allow_single_file = [".tar"])},
)
