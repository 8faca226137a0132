"""container_layer: files, symlinks and directories -> one layer blob."""

load(":providers.bzl", "KilnLayerInfo")
load(":toolchain.bzl", "TOOLCHAIN_TYPES", "kiln_tool")
load(":utils.bzl", "display_label", "parse_mode", "workspace_relative_path")

def _strip_prefix(path, prefix):
    if not prefix:
        return path
    if path == prefix:
        return ""
    if path.startswith(prefix + "/"):
        return path[len(prefix) + 1:]
    return None

def _check_data_path(label, data_path):
    for part in data_path.split("/"):
        if part == "..":
            fail("%s: data_path: %r must not contain `..`" % (label, data_path))

def destination(ctx, file, data_path, directory):
    """Where `file` lands in the image, following rules_docker's data_path rules.

    Unset: the basename only. `.` or `./x`: relative to the package (or to x in
    it). `/` or `/x`: relative to the workspace root (or to x). Other relative
    values are relative to the package, like `./`.

    Args:
      ctx: rule context (for the label and package).
      file: the File to place.
      data_path: the data_path attribute value.
      directory: the directory attribute value.

    Returns:
      The path in the image, starting with `/`.
    """
    label = display_label(ctx.label)
    if not data_path:
        relative = file.basename
    else:
        _check_data_path(label, data_path)
        path = workspace_relative_path(file)
        if data_path.startswith("/"):
            prefix = data_path[1:].rstrip("/")
        else:
            sub = data_path[2:] if data_path.startswith("./") else ("" if data_path == "." else data_path)
            prefix = "/".join([p for p in [ctx.label.package, sub.rstrip("/")] if p])
        relative = _strip_prefix(path, prefix)
        if relative == None or relative == "":
            fail("%s: data_path: %s is not under %r (%s)" % (label, file.path, data_path, "/" + prefix))
    return directory.rstrip("/") + "/" + relative

def layer_entries(ctx, files, directory, mode, symlinks, empty_files, empty_dirs, data_path, file_map = {}):
    """Builds the kiln-layer entry list (see docs/internals.md).

    Args:
      ctx: rule context.
      files: Files placed by `destination`.
      directory: directory attribute.
      mode: octal mode string for files and empty files.
      symlinks: dict link -> target.
      empty_files: paths of empty files.
      empty_dirs: paths of empty directories.
      data_path: data_path attribute.
      file_map: dict image path -> File.

    Returns:
      A list of entry dicts.
    """
    label = display_label(ctx.label)
    file_mode = parse_mode(mode, "%s: mode" % label)
    entries = []
    for f in files:
        entries.append({
            "attr": "files",
            "kind": "file",
            "mode": file_mode,
            "path": destination(ctx, f, data_path, directory),
            "source": f.path,
        })
    for path, f in file_map.items():
        entries.append({"attr": "file_map", "kind": "file", "mode": file_mode, "path": path, "source": f.path})
    for link, target in symlinks.items():
        entries.append({"attr": "symlinks", "kind": "symlink", "path": link, "target": target})
    for path in empty_files:
        entries.append({"attr": "empty_files", "kind": "empty_file", "mode": file_mode, "path": path})
    for path in empty_dirs:
        entries.append({"attr": "empty_dirs", "kind": "dir", "mode": 493, "path": path})
    return entries

def build_layer(ctx, prefix, entries, inputs, compression = "gzip"):
    """Registers the kiln-layer action.

    Args:
      ctx: rule context (needs the layer toolchain).
      prefix: prefix of the declared files.
      entries: from `layer_entries`.
      inputs: Files the entries read.
      compression: only `gzip` for now.

    Returns:
      KilnLayerInfo of the new layer.
    """
    spec = ctx.actions.declare_file(prefix + "-layer.spec.json")
    ctx.actions.write(spec, json.encode({
        "compression": compression,
        "entries": entries,
        "target": display_label(ctx.label),
    }))
    blob = ctx.actions.declare_file(prefix + "-layer.tar.gz")
    descriptor = ctx.actions.declare_file(prefix + "-layer.json")
    listing = ctx.actions.declare_file(prefix + "-layer.listing.json")
    tool = kiln_tool(ctx, "layer")
    args = ctx.actions.args()
    args.add("--spec", spec)
    args.add("--blob", blob)
    args.add("--descriptor", descriptor)
    args.add("--listing", listing)
    ctx.actions.run(
        executable = tool.files_to_run,
        arguments = [args],
        inputs = depset([spec] + inputs),
        outputs = [blob, descriptor, listing],
        mnemonic = "KilnLayer",
        progress_message = "Building layer %{label}",
        toolchain = TOOLCHAIN_TYPES["layer"],
    )
    return KilnLayerInfo(blob = blob, descriptor = descriptor, listing = listing)

LAYER_ATTRS = {
    "data_path": attr.string(
        doc = "Root of the files' paths. Unset: each file lands as its basename. `.`: paths relative to this package are kept. `/`: paths relative to the workspace root are kept. `./x` or `x`: relative to x in this package; `/x`: relative to x from the workspace root. `..` is refused.",
    ),
    "directory": attr.string(
        doc = "Directory in the image under which `files` land.",
        default = "/",
    ),
    "empty_dirs": attr.string_list(doc = "Empty directories to create (mode 0755)."),
    "empty_files": attr.string_list(doc = "Empty files to create, with `mode`."),
    "files": attr.label_list(
        doc = "Files to add to the layer, placed under `directory` according to `data_path`.",
        allow_files = True,
    ),
    "mode": attr.string(
        doc = "Octal mode of the files added by `files` and `empty_files`.",
        default = "0o555",
    ),
    "symlinks": attr.string_dict(doc = "Symlinks to create: {\"/path/to/link\": \"/path/to/target\"}."),
}

def _container_layer_impl(ctx):
    entries = layer_entries(
        ctx,
        files = ctx.files.files,
        directory = ctx.attr.directory,
        mode = ctx.attr.mode,
        symlinks = ctx.attr.symlinks,
        empty_files = ctx.attr.empty_files,
        empty_dirs = ctx.attr.empty_dirs,
        data_path = ctx.attr.data_path,
    )
    layer = build_layer(ctx, ctx.label.name, entries, ctx.files.files)
    return [
        DefaultInfo(files = depset([layer.blob])),
        OutputGroupInfo(layer_descriptor = depset([layer.descriptor, layer.listing])),
        layer,
    ]

container_layer = rule(
    implementation = _container_layer_impl,
    doc = "One image layer: files, symlinks and directories, written as a deterministic gzip tarball.",
    attrs = LAYER_ATTRS,
    toolchains = [TOOLCHAIN_TYPES["layer"]],
)
