"""container_image: base + layers + config -> an OCI image layout (rules_docker's API)."""

load(":blobs.bzl", "blob_entry", "layout_entry", "oci_layout", "runfiles_layout", "write_blob_set")
load(":launcher.bzl", "write_launcher")
load(":layer.bzl", "LAYER_ATTRS", "build_layer", "layer_entries", "layer_mtime")
load(":providers.bzl", "KilnBlobSetInfo", "KilnImageInfo", "KilnLayerInfo", "blob_set_info")
load(":stamp.bzl", "STAMP_ATTRS", "stamp_files")
load(":toolchain.bzl", "RUN_TOOL_ATTRS", "TOOLCHAIN_TYPES", "kiln_tool", "run_tool")
load(":utils.bzl", "CPU_CONSTRAINT_ATTRS", "check_config_values", "check_port", "check_repository", "display_label", "env_name_error", "expand_make_variables", "launcher_runfiles", "platform_key", "platform_string", "target_platform")

TARBALL_FORMATS = ["legacy", "compressed"]

# rules_docker let users swap the Python/Go helpers behind container_image
# through these attributes. Our tools come from toolchains instead; the
# attributes exist so BUILD files keep parsing, and setting one is an error
# that says what to do.
_TOOL_ATTRS = ["build_layer", "create_image_config", "extract_config", "incremental_load_template", "sha256"]

def default_tag(ctx, name = None):
    """rules_docker's default tag: `<repository>/<package>:<name>`.

    Args:
      ctx: the container_image rule context.
      name: overrides the target name.

    Returns:
      The tag as a string.
    """
    package = ctx.label.package
    if ctx.attr.legacy_repository_naming:
        package = package.replace("/", "_")
    repository = ctx.attr.repository
    name = name or ctx.label.name
    return "%s/%s:%s" % (repository, package, name) if package else "%s:%s" % (repository, name)

def _check_env_name(label, name):
    if env_name_error(name):
        fail("%s: env: %s" % (label, env_name_error(name)))

def _env_pairs(ctx, label, layer_infos, env):
    """Layers' env (in layer order), then the image's env; make variables expanded."""
    pairs = []
    for layer in layer_infos:
        for k, v in (getattr(layer, "env", None) or {}).items():
            pairs.append((k, v))
    for k, v in env.items():
        pairs.append((expand_make_variables(ctx, k, "%s: env" % label), expand_make_variables(ctx, v, "%s: env[%s]" % (label, k))))
    for k, _ in pairs:
        _check_env_name(label, k)
    return [[k, v] for k, v in pairs]

def _labels(ctx, label):
    """Splits `labels` into plain values and values read from files (`@file`)."""
    files_by_string = {}
    for i, string in enumerate(ctx.attr.label_file_strings):
        if i >= len(ctx.attr.label_files):
            fail("%s: label_file_strings: %r has no matching entry in label_files" % (label, string))
        files = ctx.attr.label_files[i].files.to_list()
        if len(files) != 1:
            fail("%s: label_files: %s must be exactly one file, it has %d" % (label, ctx.attr.label_files[i].label, len(files)))
        files_by_string[string] = files[0]
    plain = {}
    from_files = {}
    for key, value in ctx.attr.labels.items():
        if value.startswith("@"):
            f = files_by_string.get(value[1:])
            if not f:
                fail("%s: labels: %r = %r reads a file, but %r is not in label_files (the container_image macro adds it)" % (label, key, value, value[1:]))
            from_files[key] = f
        else:
            plain[key] = value
    return plain, from_files

def _base_result(spec = None, inputs = [], shallow = False, metadata = depset(), blobs = depset(), foreign = False, digest = None, name = None, base_packages = None, listing_complete = True):
    # What `_base` returns, with the defaults of "no base".
    return struct(spec = spec, inputs = inputs, shallow = shallow, metadata = metadata, blobs = blobs, foreign = foreign, digest = digest, name = name, base_packages = base_packages, listing_complete = listing_complete)

def _foreign(files, spec, shallow = False):
    # A base not built by kiln: kiln-image writes its layers to --base-blobs.
    return _base_result(spec = spec, inputs = files, shallow = shallow, foreign = True, listing_complete = False)

def _base(ctx, name, label, base, platform):
    """The spec's `base` object and what the image gets from it.

    Args:
      ctx: the rule context.
      name: prefix of declared files.
      label: the target, for errors.
      base: None, a Target (container_image, image_index, pulled image, OCI
        layout directory, filegroup of a layout, docker-save tarball) or a File.
      platform: the image's `os/arch[/variant]`, to take an index's image.

    Returns:
      struct(spec, inputs, shallow, metadata, blobs, foreign, digest, name,
      base_packages):
      the spec dict (or None), the action's input Files, whether the base is
      shallow, the base's metadata and blob entry depsets, whether kiln-image
      must write the base's layers to `--base-blobs` (a base not built by
      kiln), and for a kiln or pulled base the File of its digest, its
      label and the File of a pulled base's Debian packages or None (for
      the SBOM), and whether the base's listing holds all its files.
    """
    if base == None:
        return _base_result()
    info = None
    if type(base) != "File":
        if KilnImageInfo in base:
            info = base[KilnImageInfo]
        elif KilnBlobSetInfo in base:
            info = base[KilnBlobSetInfo]

            # An index of kiln images: this platform's image, with its listing.
            info = info.images.get(platform, info)
    if info:
        # Only manifests and configs: the layers reach push and load through
        # the providers, never this action.
        spec_file, files = write_blob_set(ctx, name + ".base", info, metadata_only = True)
        spec = {"blob_set": spec_file.path}
        listing = getattr(info, "listing", None)
        listing_complete = bool(listing) and getattr(info, "listing_complete", True)
        if listing:
            spec["listing"] = listing.path
            if not listing_complete:
                # A kiln image on a pulled or foreign base lists only its own
                # layers: the entrypoint check must not call the rest missing.
                spec["listing_complete"] = False

        return _base_result(
            # A pulled layout's, or a kiln image's (its own base's).
            base_packages = info.base_packages.get(platform_key(platform)),
            spec = spec,
            inputs = [spec_file] + files + ([listing] if listing else []),
            shallow = info.shallow,
            metadata = info.metadata,
            blobs = info.blobs,
            digest = info.digest,
            name = display_label(base.label),
            listing_complete = listing_complete,
        )
    files = [base] if type(base) == "File" else base.files.to_list()
    if len(files) == 1 and files[0].is_directory:
        return _foreign(files, {"layout": files[0].path})
    if len(files) == 1 and (files[0].basename.endswith(".tar") or files[0].basename.endswith(".tar.gz")):
        return _foreign(files, {"docker_tar": files[0].path})
    markers = [f for f in files if f.basename == "oci-layout"]
    if len(markers) == 1:
        return _foreign(files, {"layout": markers[0].dirname}, shallow = len([f for f in files if f.basename == "kiln-source.json"]) > 0)
    fail("%s: base: %s is not a container_image, an OCI layout (a directory, or files with one `oci-layout`) or a docker-save tarball (.tar)" % (
        label,
        base.label if type(base) == "Target" else base.path,
    ))

def _verify_base(ctx, name, base, base_spec, base_inputs):
    """The base verification action, for an OCI layout the build did not make.

    Bases built (KilnImageInfo) or pulled (KilnBlobSetInfo, verified on fetch)
    by rules_kiln are trusted; any other layout has every blob checked once
    (size and sha256) by its own action, which Bazel caches: an image rebuilt
    on an unchanged base does not hash it again.

    Args:
      ctx: the rule context.
      name: the image's name (the stamp is `<name>.base-verified`).
      base: the `base` attribute's value.
      base_spec: the spec's `base` object (from `_base`).
      base_inputs: the Files of the base.

    Returns:
      A list with the verification stamp File, or an empty list.
    """
    if base_spec == None or "layout" not in base_spec:
        return []
    if type(base) == "Target" and (KilnImageInfo in base or KilnBlobSetInfo in base):
        return []
    stamp = ctx.actions.declare_file(name + ".base-verified")
    args = ctx.actions.args()
    args.add("verify-layout")
    args.add("--layout", base_spec["layout"])
    args.add("--stamp", stamp)
    ctx.actions.run(
        executable = kiln_tool(ctx, "image").files_to_run,
        arguments = [args],
        inputs = base_inputs,
        outputs = [stamp],
        mnemonic = "KilnVerifyBase",
        progress_message = "Verifying the base layout of %{label}",
        toolchain = TOOLCHAIN_TYPES["image"],
    )
    return [stamp]

def _sbom(ctx, name, label, blob_set, own_layers, platform, base_info):
    """Registers the SBOM action (KilnSbom): `<name>.spdx.json`, from the layer blobs.

    Args:
      ctx: the rule context.
      name: prefix of declared files.
      label: the target, for the document and errors.
      blob_set: struct(top, blobs, metadata) of the image.
      own_layers: how many of the manifest's last layers are the image's own.
      platform: `os/arch[/variant]`.
      base_info: what `_base` returned.

    Returns:
      The SBOM File.
    """
    blob_spec, files = write_blob_set(ctx, name + ".sbom", blob_set)
    spec = {
        "blob_set": blob_spec.path,
        "own_layers": own_layers,
        "platform": platform,
        "target": label,
    }
    inputs = [blob_spec] + files
    if base_info.digest:
        spec["base"] = {"digest": base_info.digest.path, "name": base_info.name}
        inputs.append(base_info.digest)
    if base_info.base_packages:
        # A pulled base's packages (read from the registry, KilnBasePackages):
        # only the SBOM needs the network, never the image.
        spec["base_packages"] = base_info.base_packages.path
        inputs.append(base_info.base_packages)
    spec_file = ctx.actions.declare_file(name + ".sbom.spec.json")
    ctx.actions.write(spec_file, json.encode(spec))
    sbom = ctx.actions.declare_file(name + ".spdx.json")
    args = ctx.actions.args()
    args.add("sbom")
    args.add("--spec", spec_file)
    args.add("--output", sbom)
    ctx.actions.run(
        executable = kiln_tool(ctx, "image").files_to_run,
        arguments = [args],
        inputs = [spec_file] + inputs,
        outputs = [sbom],
        mnemonic = "KilnSbom",
        progress_message = "Writing the SBOM of %{label}",
        toolchain = TOOLCHAIN_TYPES["image"],
    )
    return sbom

def _check_binaries(ctx, name, listing, listing_complete, layer_infos, config, platform):
    """Registers KilnCheckBinaries: can the image's program and own ELF files run?

    It reads listings and the config only (kiln-layer recorded each file's
    ELF facts or `#!` interpreter), so it is cheap and runs beside the rest
    of the build as a validation action.

    Args:
      ctx: the rule context.
      name: prefix of declared files.
      listing: the image's merged listing File.
      listing_complete: False when the base's files are not all known.
      layer_infos: the image's own KilnLayerInfos.
      config: the image config File.
      platform: dict os/architecture/variant.

    Returns:
      The report File (`<name>.binaries.txt`).
    """
    spec = ctx.actions.declare_file(name + ".binaries.spec.json")
    ctx.actions.write(spec, json.encode({
        "config": config.path,
        "layers": [layer.listing.path for layer in layer_infos],
        "listing": listing.path,
        "listing_complete": listing_complete,
        "platform": platform,
        "target": display_label(ctx.label),
    }))
    report = ctx.actions.declare_file(name + ".binaries.txt")
    args = ctx.actions.args()
    args.add("check-binaries")
    args.add("--spec", spec)
    args.add("--output", report)
    ctx.actions.run(
        executable = kiln_tool(ctx, "image").files_to_run,
        arguments = [args],
        inputs = [spec, listing, config] + [layer.listing for layer in layer_infos],
        outputs = [report],
        mnemonic = "KilnCheckBinaries",
        progress_message = "Checking that the binaries of %{label} can run in it",
        toolchain = TOOLCHAIN_TYPES["image"],
    )
    return report

def image_implementation(
        ctx,
        name = None,
        base = None,
        files = None,
        file_map = None,
        empty_files = None,
        empty_dirs = None,
        directory = None,
        entrypoint = None,
        cmd = None,
        creation_time = None,
        symlinks = None,
        env = None,
        layers = None,
        compression = None,
        compression_options = None,
        experimental_tarball_format = None,
        debs = None,
        tars = None,
        architecture = None,
        operating_system = None,
        os_version = None,
        output_executable = None,
        output_tarball = None,
        output_config = None,
        output_config_digest = None,
        output_digest = None,
        output_layer = None,
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
      base: a Target or File, overrides ctx.attr.base.
      files: File list, overrides ctx.files.files.
      file_map: dict of image path -> File, added to this rule's own layer.
      empty_files: overrides ctx.attr.empty_files.
      empty_dirs: overrides ctx.attr.empty_dirs.
      directory: overrides ctx.attr.directory.
      entrypoint: overrides ctx.attr.entrypoint.
      cmd: overrides ctx.attr.cmd.
      creation_time: overrides ctx.attr.creation_time.
      symlinks: overrides ctx.attr.symlinks.
      env: overrides ctx.attr.env.
      layers: target list, overrides ctx.attr.layers.
      compression: overrides ctx.attr.compression.
      compression_options: overrides ctx.attr.compression_options.
      experimental_tarball_format: overrides ctx.attr.experimental_tarball_format.
      debs: File list, overrides ctx.files.debs.
      tars: File list, overrides ctx.files.tars.
      architecture: overrides ctx.attr.architecture.
      operating_system: overrides ctx.attr.operating_system.
      os_version: overrides ctx.attr.os_version.
      output_executable: File, the `bazel run` loader script.
      output_tarball: File, overrides ctx.outputs.out.
      output_config: File, overrides ctx.outputs.config.
      output_config_digest: File, overrides ctx.outputs.config_digest.
      output_digest: File, overrides ctx.outputs.digest.
      output_layer: File, overrides ctx.outputs.layer.
      workdir: overrides ctx.attr.workdir.
      null_cmd: overrides ctx.attr.null_cmd.
      null_entrypoint: overrides ctx.attr.null_entrypoint.

    Returns:
      The providers of a container_image target.
    """
    label = display_label(ctx.label)
    for attr_name in _TOOL_ATTRS:
        if getattr(ctx.attr, attr_name, None):
            fail("%s: %s: rules_kiln's tools come from the kiln toolchains (`kiln.toolchains`, see docs/rules.md); remove this attribute" % (label, attr_name))

    name = name or ctx.label.name
    files = files if files != None else ctx.files.files
    tars = tars if tars != None else ctx.files.tars
    debs = debs if debs != None else ctx.files.debs
    file_map = dict(file_map or {})
    entrypoint = entrypoint if entrypoint != None else ctx.attr.entrypoint
    cmd = cmd if cmd != None else ctx.attr.cmd
    null_cmd = null_cmd if null_cmd != None else ctx.attr.null_cmd
    null_entrypoint = null_entrypoint if null_entrypoint != None else ctx.attr.null_entrypoint
    layers = layers if layers != None else ctx.attr.layers
    workdir = workdir if workdir != None else ctx.attr.workdir
    env = env if env != None else ctx.attr.env
    compression = compression if compression != None else ctx.attr.compression
    compression_options = compression_options if compression_options != None else ctx.attr.compression_options
    tarball_format = experimental_tarball_format if experimental_tarball_format != None else ctx.attr.experimental_tarball_format
    os_version = os_version if os_version != None else ctx.attr.os_version
    creation_time = creation_time if creation_time != None else ctx.attr.creation_time
    base = base if base != None else ctx.attr.base
    output_tarball = output_tarball or ctx.outputs.out
    output_config = output_config or ctx.outputs.config
    output_config_digest = output_config_digest or ctx.outputs.config_digest
    output_digest = output_digest or ctx.outputs.digest
    output_layer = output_layer or ctx.outputs.layer

    if tarball_format not in TARBALL_FORMATS:
        fail("%s: experimental_tarball_format: %r is not one of %s" % (label, tarball_format, ", ".join(TARBALL_FORMATS)))
    for port in ctx.attr.ports:
        check_port(port, "%s: ports" % label)

    # rules_docker: the launcher lands at /<basename> and prefixes the entrypoint.
    if ctx.attr.launcher_args and not ctx.file.launcher:
        fail("%s: launcher_args: only valid with `launcher`" % label)
    if ctx.file.launcher:
        launcher_path = "/" + ctx.file.launcher.basename
        file_map[launcher_path] = ctx.file.launcher
        entrypoint = [launcher_path] + ctx.attr.launcher_args + entrypoint
        null_entrypoint = False

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
        tars = tars,
        debs = debs,
    )

    # This rule's own layer. Always declared, since `<name>-layer.tar` is an
    # output; it is only added to the image when it holds something (rules_docker
    # appended an empty layer; Docker itself does not for config-only changes).
    own_layer = build_layer(
        ctx,
        name,
        entries,
        files + tars + debs + file_map.values(),
        compression = compression,
        compression_options = compression_options,
        mtime = layer_mtime(label, ctx.attr.mtime, ctx.attr.portable_mtime, ctx.attr.enable_mtime_preservation),
        tar = output_layer,
        archive_expansion_ratio = ctx.attr.archive_expansion_ratio,
    )
    if entries:
        layer_infos.append(own_layer)

    os, arch, variant = target_platform(ctx, label, architecture, operating_system)
    base_info = _base(ctx, name, label, base, platform_string(os, arch, variant))
    base_spec, base_inputs, shallow = base_info.spec, base_info.inputs, base_info.shallow
    stamp_inputs = stamp_files(ctx)
    labels, label_files = _labels(ctx, label)

    # rules_docker's repository attribute names the default tag: refused
    # here, not only at `bazel run` of an image_push.
    if getattr(ctx.attr, "repository", None):
        check_repository(ctx.attr.repository, "%s: repository" % label)
    check_config_values(
        label,
        entrypoint = [] if null_entrypoint else entrypoint,
        cmd = [] if null_cmd else cmd,
        user = ctx.attr.user,
        workdir = workdir,
        labels = labels,
        volumes = ctx.attr.volumes,
        layer_count = len(layer_infos),
    )

    config = {}
    if null_entrypoint:
        config["entrypoint"] = None
    elif entrypoint:
        config["entrypoint"] = entrypoint
    if null_cmd:
        config["cmd"] = None
    elif cmd:
        config["cmd"] = cmd
    env_pairs = _env_pairs(ctx, label, layer_infos, env)
    if env_pairs:
        config["env"] = env_pairs
    if labels:
        config["labels"] = labels
    if label_files:
        config["label_files"] = {k: f.path for k, f in label_files.items()}
    if workdir:
        config["workdir"] = workdir
    if ctx.attr.user:
        config["user"] = ctx.attr.user
    if ctx.attr.ports:
        config["ports"] = ctx.attr.ports
    if ctx.attr.volumes:
        config["volumes"] = ctx.attr.volumes
    if os_version:
        config["os_version"] = os_version

    # rules_docker: unset means the epoch, or the build time when stamped.
    config["created"] = creation_time or ("{BUILD_TIMESTAMP}" if stamp_inputs else "0")

    platform = {"architecture": arch, "os": os}
    if variant:
        platform["variant"] = variant
    spec = {
        "config": config,
        "layers": [{"descriptor": layer.descriptor.path, "listing": layer.listing.path} for layer in layer_infos],
        "platform": platform,
        "target": label,
    }
    if base_spec:
        spec["base"] = base_spec
    if stamp_inputs:
        spec["stamp"] = [f.path for f in stamp_inputs]
    spec_file = ctx.actions.declare_file(name + ".image.spec.json")
    ctx.actions.write(spec_file, json.encode(spec))

    manifest = ctx.actions.declare_file(name + ".manifest.json")
    descriptor = ctx.actions.declare_file(name + ".descriptor.json")
    listing = ctx.actions.declare_file(name + ".listing.json")
    base_blobs = ctx.actions.declare_directory(name + ".base-blobs") if base_info.foreign else None

    # Descriptors and listings only: kiln-image never reads a layer blob.
    inputs = [spec_file] + base_inputs + stamp_inputs + label_files.values()
    inputs += _verify_base(ctx, name, base, base_spec, base_inputs)
    inputs += [f for layer in layer_infos for f in (layer.descriptor, layer.listing)]
    args = ctx.actions.args()
    args.add("--spec", spec_file)
    args.add("--manifest", manifest)
    if base_blobs:
        args.add("--base-blobs", base_blobs.path)
    args.add("--config", output_config)
    args.add("--config-digest", output_config_digest)
    args.add("--digest", output_digest)
    args.add("--descriptor", descriptor)
    args.add("--listing", listing)
    ctx.actions.run(
        executable = kiln_tool(ctx, "image").files_to_run,
        arguments = [args],
        inputs = inputs,
        outputs = [manifest, output_config, output_config_digest, output_digest, descriptor, listing] + ([base_blobs] if base_blobs else []),
        mnemonic = "KilnImage",
        progress_message = "Building image %{label}",
        toolchain = TOOLCHAIN_TYPES["image"],
    )

    top = blob_entry(manifest, descriptor)
    blobs = depset(
        [blob_entry(layer.blob, layer.descriptor) for layer in layer_infos] + ([layout_entry(base_blobs)] if base_blobs else []),
        transitive = [base_info.blobs],
    )
    metadata = depset([blob_entry(output_config, output_config_digest)], transitive = [base_info.metadata])
    sbom = _sbom(ctx, name, label, struct(top = top, blobs = blobs, metadata = metadata), len(layer_infos), platform_string(os, arch, variant), base_info)
    validation = []
    if getattr(ctx.attr, "check_binaries", True):
        validation.append(_check_binaries(ctx, name, listing, base_info.listing_complete, layer_infos, output_config, platform))
    info = KilnImageInfo(
        base_packages = {platform_key(platform_string(os, arch, variant)): base_info.base_packages} if base_info.base_packages else {},
        blobs = blobs,
        config = output_config,
        descriptor = descriptor,
        digest = output_digest,
        listing = listing,
        listing_complete = base_info.listing_complete,
        manifest = manifest,
        metadata = metadata,
        platform = platform_string(os, arch, variant),
        sbom = sbom,
        shallow = shallow,
        top = top,
    )
    layout_info = blob_set_info(
        top = top,
        digest = output_digest,
        blobs = info.blobs,
        metadata = info.metadata,
        shallow = shallow,
        sboms = [struct(descriptor = descriptor, sbom = sbom)],
    )

    # The OCI layout (output group oci_layout) and name.tar are on demand.
    # On a pulled (shallow) base both need the base's layer bytes: the
    # layout action fetches them, so `bazel build` downloads no base layer.
    layout = oci_layout(ctx, name, layout_info)
    load_tool = kiln_tool(ctx, "load")
    tag = default_tag(ctx, name)
    tar_args = ctx.actions.args()
    tar_args.add("--layout", layout.path)
    tar_args.add("--tag", tag)
    tar_args.add("--format", tarball_format)
    tar_args.add("--output", output_tarball)
    ctx.actions.run(
        executable = load_tool.files_to_run,
        arguments = [tar_args],
        inputs = [layout],
        outputs = [output_tarball],
        mnemonic = "KilnImageTar",
        progress_message = "Writing docker-save tarball of %{label}",
        toolchain = TOOLCHAIN_TYPES["load"],
    )

    # `bazel run :name`: rules_docker's incremental loader; with
    # legacy_run_behavior = False it then runs the image (`-- --norun` skips that).
    loader = output_executable or ctx.actions.declare_file(name + ".load.sh")
    run_layout, run_files = runfiles_layout(ctx, name, layout_info, fetch = True)
    fixed = [("--incremental", None)]
    if not ctx.attr.legacy_run_behavior:
        fixed.append(("--run-flags", ctx.attr.docker_run_flags))
    write_launcher(ctx, loader, run_tool(ctx, "load"), fixed, {"--tag": [tag]}, layout = run_layout)

    return [
        DefaultInfo(
            files = depset([manifest, output_digest]),
            executable = loader,
            runfiles = launcher_runfiles(ctx, run_files + [run_tool(ctx, "load")]),
        ),
        info,
        layout_info,
        OutputGroupInfo(
            layers = depset([layer.blob for layer in layer_infos]),
            layer_tar = depset([output_layer]),
            oci_layout = depset([layout]),
            sbom = depset([sbom]),
            tarball = depset([output_tarball]),
            # Bazel builds validation outputs with every build of the target
            # or of what depends on it (--run_validations, the default).
            _validation = depset(validation),
        ),
    ]

_IMAGE_OWN_ATTRS = {
    "architecture": attr.string(
        doc = "CPU architecture of the image (`amd64` or `arm64`). Unset: taken from the target platform, which is how image_index builds one image per platform.",
    ),
    "base": attr.label(
        doc = "The image to build on top of (FROM): a container_image, an image_index (the manifest for this image's platform is used), an OCI image layout (a directory, or a filegroup holding one `oci-layout` file) or a `docker save` tarball (.tar). Unset: an empty base (scratch).",
        allow_files = True,
    ),
    "check_binaries": attr.bool(
        doc = """Check at build time that the image's program (entrypoint, else cmd) and every ELF file of its own layers can run in it: the ELF machine, class and byte order match the image's platform; a dynamically linked binary's program interpreter (PT_INTERP) is in the image (symlinks followed, base layers included) and its needed libraries (DT_NEEDED, and theirs) are in DT_RUNPATH/DT_RPATH (`$ORIGIN` expanded), `LD_LIBRARY_PATH`, the multiarch directories, `/lib64`, `/lib`, `/usr/lib` or `/usr/local/lib`; a script's `#!` interpreter is in the image. A failure names the file, the cause and what to do (e.g. build it static: rules_go `pure = "on"` or `static = "on"`; or use a base with a C library, e.g. static_base with libc6). Paths that may be in a base whose file list is unknown (a `kiln.pull` or foreign base) are not judged: the report `<name>.binaries.txt` (output group `_validation`) names each, with why. False: no check, for deliberate cases (a file run under qemu, or started by another program with its own loader).""",
        default = True,
    ),
    "cmd": attr.string_list(doc = "Cmd of the image (exec form). The container_image macro turns a string into `/bin/sh -c`. Supports stamp variables."),
    "creation_time": attr.string(
        doc = "The image's creation time: seconds since the epoch (integer or fractional) or RFC 3339. Unset: 0 (1970-01-01T00:00:00Z), or `{BUILD_TIMESTAMP}` when stamped. Supports stamp variables.",
    ),
    "docker_run_flags": attr.string(
        doc = "Flags of the `docker run` that `bazel run :name` does after loading, when `legacy_run_behavior` is False (split as a shell would).",
    ),
    "entrypoint": attr.string_list(doc = "Entrypoint of the image (exec form). Unset: inherited from the base. Supports stamp variables."),
    "env": attr.string_dict(doc = "Environment variables. Keys and values support make variables; values support stamp variables and `$VAR`/`${VAR}` references to the base's (and earlier) variables, as Dockerfile ENV does. A base variable with the same name is replaced."),
    "experimental_tarball_format": attr.string(
        doc = "Format of `<name>.tar`: `legacy` (uncompressed layers, any docker/podman) or `compressed` (the layers as built, with an OCI index; newer Docker only).",
        default = "legacy",
        values = TARBALL_FORMATS,
    ),
    "label_file_strings": attr.string_list(doc = "Set by the container_image macro: the label strings of `label_files`, in order, as written after `@` in `labels`."),
    "label_files": attr.label_list(
        doc = "Files whose contents are label values (`labels = {\"k\": \"@file\"}`); the container_image macro fills this in.",
        allow_files = True,
    ),
    "labels": attr.string_dict(doc = "Labels of the image config. A value `@label` is replaced by the contents of that file. Values support stamp variables."),
    "launcher": attr.label(
        doc = "A static executable placed at `/<basename>` and prepended to the entrypoint.",
        allow_single_file = True,
    ),
    "launcher_args": attr.string_list(doc = "Arguments after `launcher` in the entrypoint. Only valid with `launcher`."),
    "layers": attr.label_list(
        doc = "container_layer targets, each added as its own layer, in order, before this rule's own layer. Their `env` applies before this rule's.",
        providers = [KilnLayerInfo],
    ),
    "legacy_repository_naming": attr.bool(
        doc = "Default tag uses `bazel/<package with / replaced by _>:<name>` instead of `bazel/<package>:<name>`.",
        default = False,
    ),
    "legacy_run_behavior": attr.bool(
        doc = "True: `bazel run :name` only loads the image. False: it then runs it with `docker run <docker_run_flags> <tag>`.",
        default = True,
    ),
    "null_cmd": attr.bool(doc = "Set Cmd to null (what `cmd = None`, `[]` or `\"\"` does in the macro).", default = False),
    "null_entrypoint": attr.bool(doc = "Set Entrypoint to null (what `entrypoint = None`, `[]` or `\"\"` does in the macro).", default = False),
    "operating_system": attr.string(doc = "Operating system of the image.", default = "linux"),
    "os_version": attr.string(doc = "OS version of the image config (`os.version`), e.g. for Windows bases."),
    "ports": attr.string_list(doc = "Ports to expose: `80`, `80/tcp` or `53/udp`."),
    "repository": attr.string(
        doc = "Repository of the default tag: `<repository>/<package>:<name>`.",
        default = "bazel",
    ),
    "user": attr.string(doc = "User (and group) the container runs as, e.g. `65532` or `nonroot:nonroot`. Supports stamp variables."),
    "volumes": attr.string_list(doc = "Volumes (mount points) of the image."),
    "workdir": attr.string(doc = "Working directory of the container. Supports stamp variables."),
}

def _merge(*dicts):
    merged = {}
    for d in dicts:
        merged.update(d)
    return merged

IMAGE_ATTRS = _merge(
    LAYER_ATTRS,
    STAMP_ATTRS,
    RUN_TOOL_ATTRS,
    _IMAGE_OWN_ATTRS,
    CPU_CONSTRAINT_ATTRS,
    {
        name: attr.label(doc = "rules_docker's override of an internal tool. rules_kiln's tools come from toolchains: setting it is an error.", allow_files = True)
        for name in _TOOL_ATTRS
    },
)

IMAGE_OUTPUTS = {
    "config": "%{name}.json",
    "config_digest": "%{name}.json.sha256",
    "digest": "%{name}.digest",
    "layer": "%{name}-layer.tar",
    "out": "%{name}.tar",
}

IMAGE_TOOLCHAINS = [TOOLCHAIN_TYPES["layer"], TOOLCHAIN_TYPES["image"], TOOLCHAIN_TYPES["load"], TOOLCHAIN_TYPES["pull"]]

def _container_image_impl(ctx):
    return image_implementation(ctx)

container_image_ = rule(
    implementation = _container_image_impl,
    doc = """Builds a single-platform OCI image. `bazel run` loads it into Docker. Use the `container_image` macro.

Default outputs: `<name>.manifest.json` and `<name>.digest`, so that `bazel build`
with a remote cache downloads kilobytes; the layer blobs reach push, load and
layouts through the providers. `bazel build :name --output_groups=+oci_layout`
writes the OCI image layout `<name>.oci` (read by skopeo `oci:<path>` and umoci);
`<name>.tar` is built when asked for. `--output_groups=+sbom` writes
`<name>.spdx.json`, the image's SPDX 2.3 SBOM (Debian packages, a `kiln.pull`
base's included, the files of its own layers with their checksums, Go build
info, the base by digest; see docs/supply-chain.md), which image_push attaches to the pushed manifest.""",
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
    inherits the base's. A label value `@file` reads the value from that file.
    `stamp` accepts True/False as well as 1/0/-1.

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
    stamp = kwargs.get("stamp")
    if type(stamp) == "bool":
        kwargs["stamp"] = 1 if stamp else 0
    labels = kwargs.get("labels") or {}
    if type(labels) == "dict":
        file_labels = []
        for v in labels.values():
            if v.startswith("@") and v[1:] not in file_labels:
                file_labels.append(v[1:])
        if file_labels:
            kwargs["label_files"] = list(kwargs.get("label_files") or []) + file_labels
            kwargs["label_file_strings"] = list(kwargs.get("label_file_strings") or []) + file_labels
    container_image_(name = name, **kwargs)
