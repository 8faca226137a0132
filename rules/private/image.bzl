"""container_image: base + layers + config -> an OCI image layout."""

load(":launcher.bzl", "write_launcher")
load(":layer.bzl", "LAYER_ATTRS", "build_layer", "layer_entries")
load(":providers.bzl", "KilnImageInfo", "KilnLayerInfo", "KilnLayoutInfo")
load(":toolchain.bzl", "TOOLCHAIN_TYPES", "kiln_tool")
load(":utils.bzl", "CPU_CONSTRAINT_ATTRS", "display_label", "platform_string", "target_platform")

def default_tag(ctx):
    """rules_docker's default tag: `<repository>/<package>:<name>`.

    Args:
      ctx: the container_image rule context.

    Returns:
      The tag as a string.
    """
    package = ctx.label.package
    if ctx.attr.legacy_repository_naming:
        package = package.replace("/", "_")
    repository = ctx.attr.repository
    return "%s/%s:%s" % (repository, package, ctx.label.name) if package else "%s:%s" % (repository, ctx.label.name)

def _config(ctx, entrypoint, cmd, null_entrypoint, null_cmd, env, workdir):
    config = {}
    if null_entrypoint:
        config["entrypoint"] = None
    elif entrypoint:
        config["entrypoint"] = entrypoint
    if null_cmd:
        config["cmd"] = None
    elif cmd:
        config["cmd"] = cmd
    if env:
        config["env"] = [[k, ctx.expand_make_variables("env", v, {})] for k, v in env.items()]
    if ctx.attr.labels:
        config["labels"] = ctx.attr.labels
    if workdir:
        config["workdir"] = workdir
    if ctx.attr.user:
        config["user"] = ctx.attr.user
    if ctx.attr.ports:
        config["ports"] = ctx.attr.ports
    if ctx.attr.volumes:
        config["volumes"] = ctx.attr.volumes
    config["created"] = "1970-01-01T00:00:00Z"
    return config

def image_implementation(
        ctx,
        name = None,
        files = None,
        file_map = None,
        empty_files = None,
        empty_dirs = None,
        directory = None,
        symlinks = None,
        entrypoint = None,
        cmd = None,
        env = None,
        layers = None,
        workdir = None,
        null_cmd = None,
        null_entrypoint = None):
    """The container_image implementation; keyword arguments override attributes.

    Exposed as `container.image.implementation` so that custom rules can reuse it,
    as rules_docker's is. Each argument left as None takes the attribute's value.

    Args:
      ctx: the rule context; its rule must have `container.image.attrs`,
        `.outputs` and `.toolchains`.
      name: overrides ctx.label.name as the prefix of declared files.
      files: File list, overrides ctx.files.files.
      file_map: dict of image path -> File, added to this rule's own layer.
      empty_files: overrides ctx.attr.empty_files.
      empty_dirs: overrides ctx.attr.empty_dirs.
      directory: overrides ctx.attr.directory.
      symlinks: overrides ctx.attr.symlinks.
      entrypoint: overrides ctx.attr.entrypoint.
      cmd: overrides ctx.attr.cmd.
      env: overrides ctx.attr.env.
      layers: target list, overrides ctx.attr.layers.
      workdir: overrides ctx.attr.workdir.
      null_cmd: overrides ctx.attr.null_cmd.
      null_entrypoint: overrides ctx.attr.null_entrypoint.

    Returns:
      The providers of a container_image target.
    """
    name = name or ctx.label.name
    files = files if files != None else ctx.files.files
    file_map = file_map or {}
    entrypoint = entrypoint if entrypoint != None else ctx.attr.entrypoint
    cmd = cmd if cmd != None else ctx.attr.cmd
    null_cmd = null_cmd if null_cmd != None else ctx.attr.null_cmd
    null_entrypoint = null_entrypoint if null_entrypoint != None else ctx.attr.null_entrypoint
    layers = layers if layers != None else ctx.attr.layers
    label = display_label(ctx.label)

    layer_infos = [layer[KilnLayerInfo] for layer in layers]
    entries = layer_entries(
        ctx,
        files = files,
        directory = directory if directory != None else ctx.attr.directory,
        mode = ctx.attr.mode,
        symlinks = symlinks if symlinks != None else ctx.attr.symlinks,
        empty_files = empty_files if empty_files != None else ctx.attr.empty_files,
        empty_dirs = empty_dirs if empty_dirs != None else ctx.attr.empty_dirs,
        data_path = ctx.attr.data_path,
        file_map = file_map,
    )
    if entries:
        layer_infos.append(build_layer(ctx, name, entries, files + file_map.values()))

    os, arch, variant = target_platform(ctx, label)
    base = ctx.attr.base[KilnImageInfo] if ctx.attr.base else None
    spec = ctx.actions.declare_file(name + ".image.spec.json")
    ctx.actions.write(spec, json.encode({
        "base": {"layout": base.layout.path, "listing": base.listing.path} if base else None,
        "config": _config(ctx, entrypoint, cmd, null_entrypoint, null_cmd, env if env != None else ctx.attr.env, workdir if workdir != None else ctx.attr.workdir),
        "layers": [{"blob": layer.blob.path, "descriptor": layer.descriptor.path, "listing": layer.listing.path} for layer in layer_infos],
        "platform": {"architecture": arch, "os": os, "variant": variant} if variant else {"architecture": arch, "os": os},
        "ref_name": "latest",
        "target": label,
    }))

    layout = ctx.actions.declare_directory(name + ".oci")
    digest = ctx.outputs.digest
    config = ctx.outputs.config
    descriptor = ctx.actions.declare_file(name + ".descriptor.json")
    listing = ctx.actions.declare_file(name + ".listing.json")
    inputs = [spec] + [f for layer in layer_infos for f in (layer.blob, layer.descriptor, layer.listing)]
    if base:
        inputs += [base.layout, base.listing]
    args = ctx.actions.args()
    args.add("--spec", spec)
    args.add("--layout", layout.path)
    args.add("--config", config)
    args.add("--digest", digest)
    args.add("--descriptor", descriptor)
    args.add("--listing", listing)
    ctx.actions.run(
        executable = kiln_tool(ctx, "image").files_to_run,
        arguments = [args],
        inputs = inputs,
        outputs = [layout, config, digest, descriptor, listing],
        mnemonic = "KilnImage",
        progress_message = "Building image %{label}",
        toolchain = TOOLCHAIN_TYPES["image"],
    )

    # name.tar: a docker-save tarball, built only when asked for.
    load_tool = kiln_tool(ctx, "load")
    tag = default_tag(ctx)
    tar_args = ctx.actions.args()
    tar_args.add("--layout", layout.path)
    tar_args.add("--tag", tag)
    tar_args.add("--output", ctx.outputs.out)
    ctx.actions.run(
        executable = load_tool.files_to_run,
        arguments = [tar_args],
        inputs = [layout],
        outputs = [ctx.outputs.out],
        mnemonic = "KilnImageTar",
        progress_message = "Writing docker-save tarball of %{label}",
        toolchain = TOOLCHAIN_TYPES["load"],
    )

    # `bazel run :name` loads the image into the local Docker daemon.
    loader = ctx.actions.declare_file(name + ".load.sh")
    write_launcher(ctx, loader, load_tool.tool, [("--layout", layout)], {"--tag": [tag]})

    return [
        DefaultInfo(
            files = depset([layout, digest]),
            executable = loader,
            runfiles = ctx.runfiles(files = [layout, load_tool.tool]),
        ),
        KilnImageInfo(
            config = config,
            descriptor = descriptor,
            digest = digest,
            layout = layout,
            listing = listing,
            platform = platform_string(os, arch, variant),
        ),
        KilnLayoutInfo(digest = digest, layout = layout),
        OutputGroupInfo(
            layers = depset([layer.blob for layer in layer_infos]),
            tarball = depset([ctx.outputs.out]),
        ),
    ]

IMAGE_ATTRS = dict(LAYER_ATTRS, **dict({
    "architecture": attr.string(
        doc = "CPU architecture of the image (`amd64` or `arm64`). Unset: taken from the target platform, which is how image_index builds one image per platform.",
    ),
    "base": attr.label(
        doc = "The image to build on top of (FROM): another container_image. Unset: an empty base (scratch).",
        providers = [KilnImageInfo],
    ),
    "cmd": attr.string_list(doc = "Cmd of the image (exec form). The container_image macro turns a string into `/bin/sh -c`."),
    "entrypoint": attr.string_list(doc = "Entrypoint of the image (exec form). Unset: inherited from the base."),
    "env": attr.string_dict(doc = "Environment variables; values support make variables. A base variable with the same name is replaced."),
    "labels": attr.string_dict(doc = "Labels of the image config."),
    "layers": attr.label_list(
        doc = "container_layer targets, each added as its own layer, in order, before this rule's own layer.",
        providers = [KilnLayerInfo],
    ),
    "legacy_repository_naming": attr.bool(
        doc = "Default tag uses `bazel/<package with / replaced by _>:<name>` instead of `bazel/<package>:<name>`.",
        default = False,
    ),
    "null_cmd": attr.bool(doc = "Set Cmd to null (what `cmd = None`, `[]` or `\"\"` does in the macro).", default = False),
    "null_entrypoint": attr.bool(doc = "Set Entrypoint to null (what `entrypoint = None`, `[]` or `\"\"` does in the macro).", default = False),
    "operating_system": attr.string(doc = "Operating system of the image.", default = "linux"),
    "ports": attr.string_list(doc = "Ports to expose: `80`, `80/tcp` or `53/udp`."),
    "repository": attr.string(
        doc = "Repository of the default tag: `<repository>/<package>:<name>`.",
        default = "bazel",
    ),
    "user": attr.string(doc = "User (and group) the container runs as, e.g. `65532` or `nonroot:nonroot`."),
    "volumes": attr.string_list(doc = "Volumes (mount points) of the image."),
    "workdir": attr.string(doc = "Working directory of the container."),
}, **CPU_CONSTRAINT_ATTRS))

IMAGE_OUTPUTS = {
    "config": "%{name}.json",
    "digest": "%{name}.digest",
    "out": "%{name}.tar",
}

IMAGE_TOOLCHAINS = [TOOLCHAIN_TYPES["layer"], TOOLCHAIN_TYPES["image"], TOOLCHAIN_TYPES["load"]]

def _container_image_impl(ctx):
    return image_implementation(ctx)

container_image_ = rule(
    implementation = _container_image_impl,
    doc = "Builds a single-platform OCI image. `bazel run` loads it into Docker. Use the `container_image` macro.",
    attrs = IMAGE_ATTRS,
    outputs = IMAGE_OUTPUTS,
    executable = True,
    toolchains = IMAGE_TOOLCHAINS,
)

def _exec_form(value):
    """Returns (list, is_null) for a rules_docker-style entrypoint/cmd value."""
    if value == None or value == "" or value == []:
        return [], True
    if type(value) == "string":
        return ["/bin/sh", "-c", value], False
    return value, False

def container_image(name, **kwargs):
    """Builds a container image (rules_docker API).

    `entrypoint` and `cmd` accept a list (exec form) or a string (run through
    `/bin/sh -c`); passing None, [] or "" sets the field to null. Leaving them out
    inherits the base's.

    Args:
      name: target name.
      **kwargs: attributes of container_image_.
    """
    for field in ("entrypoint", "cmd"):
        if field in kwargs:
            value, is_null = _exec_form(kwargs.pop(field))
            if is_null:
                kwargs["null_" + field] = True
            else:
                kwargs[field] = value
    container_image_(name = name, **kwargs)
