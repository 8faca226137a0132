"""container_layer: files, symlinks and directories -> one layer blob."""

load(":generated.bzl", "COMPRESSION_LEVELS", "LAYER_MAX_WORKERS")
load(":providers.bzl", "KilnLayerInfo")
load(":toolchain.bzl", "TOOLCHAIN_TYPES", "kiln_tool")
load(":utils.bzl", "display_label", "expand_make_variables", "parse_mode", "workspace_relative_path")

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

def layer_entries(ctx, files, directory, mode, symlinks, empty_files, empty_dirs, data_path, file_map = {}, tars = [], debs = []):
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
      tars: tarballs extracted under `directory`.
      debs: Debian packages whose data member is extracted under `directory`.

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
    for f in tars:
        entries.append({"attr": "tars", "kind": "tar", "path": directory or "/", "source": f.path})
    for f in debs:
        entries.append({"attr": "debs", "kind": "deb", "path": directory or "/", "source": f.path})
    for link, target in symlinks.items():
        entries.append({"attr": "symlinks", "kind": "symlink", "path": link, "target": target})
    for path in empty_files:
        entries.append({"attr": "empty_files", "kind": "empty_file", "mode": file_mode, "path": path})
    for path in empty_dirs:
        entries.append({"attr": "empty_dirs", "kind": "dir", "mode": 493, "path": path})
    return entries

# rules_docker's portable_mtime: 2000-01-01T00:00:00Z, which every tar reader
# and file system accepts.
PORTABLE_MTIME = 946684800

COMPRESSIONS = sorted(COMPRESSION_LEVELS)

def layer_mtime(label, mtime, portable_mtime, enable_mtime_preservation):
    """The `mtime` object of a kiln-layer spec.

    Args:
      label: the target, for errors.
      mtime: the mtime attribute (-1: unset).
      portable_mtime: the portable_mtime attribute.
      enable_mtime_preservation: the enable_mtime_preservation attribute.

    Returns:
      {"seconds": N, "preserve": bool}.
    """
    if mtime != -1 and portable_mtime:
        fail("%s: mtime: set either `mtime` or `portable_mtime`, not both" % label)
    if mtime < -1:
        fail("%s: mtime: %d is not a time (seconds since the epoch, >= 0)" % (label, mtime))
    seconds = mtime if mtime != -1 else (PORTABLE_MTIME if portable_mtime else 0)
    return {"preserve": enable_mtime_preservation, "seconds": seconds}

def check_compression(label, compression, compression_options):
    """Fails on an unknown compression or compressor option.

    Args:
      label: the target, for errors.
      compression: the compression attribute.
      compression_options: the compression_options attribute.
    """
    if compression not in COMPRESSIONS:
        fail("%s: compression: %r is not supported (supported: %s)" % (label, compression, ", ".join(COMPRESSIONS)))
    highest = COMPRESSION_LEVELS[compression][1]
    levels = ["--fast", "--best"] + ["-%d" % n for n in range(1, highest + 1)]
    for option in compression_options:
        if option not in levels:
            fail("%s: compression_options: %r is not an option of %s (supported: -1 to -%d, --fast, --best)" % (label, option, compression, highest))

# kiln-layer compresses on up to LAYER_MAX_WORKERS threads (fewer when the
# machine has fewer CPUs) plus one writing the tar: the KilnLayer action
# declares them, and at most 256 MiB of memory, so that Bazel does not run
# more beside it than the machine holds. Bazel still runs an action that asks
# for more CPUs than it has, alone.
LAYER_CPUS = LAYER_MAX_WORKERS
LAYER_MEMORY_MB = 256

def _layer_resources(_os, _inputs):
    return {"cpu": LAYER_CPUS, "memory": LAYER_MEMORY_MB}

def layer_tar(ctx, layer, tar):
    """Registers the action writing `tar`, the uncompressed layer, from its blob.

    It runs only when `tar` is requested (rules_docker's `<name>-layer.tar`):
    the layer action writes the blob alone, so no layer's bytes are written
    twice and the remote cache holds no uncompressed copy.

    Args:
      ctx: rule context (needs the layer toolchain).
      layer: KilnLayerInfo whose blob and descriptor to read.
      tar: the File to write.
    """
    args = ctx.actions.args()
    args.add("tar")
    args.add("--blob", layer.blob)
    args.add("--descriptor", layer.descriptor)
    args.add("--out", tar)
    ctx.actions.run(
        executable = kiln_tool(ctx, "layer").files_to_run,
        arguments = [args],
        inputs = [layer.blob, layer.descriptor],
        outputs = [tar],
        mnemonic = "KilnLayerTar",
        progress_message = "Decompressing layer %{label} into %{output}",
        toolchain = TOOLCHAIN_TYPES["layer"],
    )

def build_layer(ctx, prefix, entries, inputs, compression = "gzip", compression_options = [], mtime = None, tar = None, env = {}, archive_expansion_ratio = 32):
    """Registers the kiln-layer action.

    Args:
      ctx: rule context (needs the layer toolchain).
      prefix: prefix of the declared files.
      entries: from `layer_entries`.
      inputs: Files the entries read.
      compression: `gzip` or `zstd`.
      compression_options: e.g. ["-9"].
      mtime: from `layer_mtime`; None: every entry at the epoch.
      tar: File to receive the uncompressed layer tarball (its own action, run
        only when the file is requested), or None.
      env: environment variables the layer brings to images (container_layer's env).
      archive_expansion_ratio: the archive_expansion_ratio attribute.

    Returns:
      KilnLayerInfo of the new layer.
    """
    label = display_label(ctx.label)
    check_compression(label, compression, compression_options)
    if archive_expansion_ratio < 1:
        fail("%s: archive_expansion_ratio: %d is not a ratio (at least 1)" % (label, archive_expansion_ratio))
    spec = ctx.actions.declare_file(prefix + "-layer.spec.json")
    ctx.actions.write(spec, json.encode({
        "archive_expansion_ratio": archive_expansion_ratio,
        "compression": compression,
        "compression_options": compression_options,
        "entries": entries,
        "mtime": mtime or {"preserve": False, "seconds": 0},
        "target": label,
    }))
    blob = ctx.actions.declare_file(prefix + ("-layer.tar.zst" if compression == "zstd" else "-layer.tar.gz"))
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
        resource_set = _layer_resources,
        toolchain = TOOLCHAIN_TYPES["layer"],
    )
    layer = KilnLayerInfo(blob = blob, descriptor = descriptor, listing = listing, tar = tar, env = env)
    if tar:
        layer_tar(ctx, layer, tar)
    return layer

LAYER_ATTRS = {
    "archive_expansion_ratio": attr.int(
        doc = "What a `tars`/`debs` archive may expand to when read: this many times its size plus 256 MiB, file data counting in full and headers (names, PAX records) at one eighth, so that a tarball of a million small files passes while a compression bomb fails. Raise it for a genuine archive that the error (which names this attribute) refuses.",
        default = 32,
    ),
    "compression": attr.string(
        doc = "Compression of this rule's layer blob: `gzip` (as rules_docker) or `zstd`. It does not change layers given in `layers`.",
        default = "gzip",
    ),
    "compression_options": attr.string_list(
        doc = "Options of the compressor for this rule's layer: `-1` to `-9` for gzip (`-1` to `-19` for zstd), `--fast`, `--best`. Default level: 6 (gzip), 3 (zstd).",
    ),
    "data_path": attr.string(
        doc = "Root of the files' paths. Unset: each file lands as its basename. `.`: paths relative to this package are kept. `/`: paths relative to the workspace root are kept. `./x` or `x`: relative to x in this package; `/x`: relative to x from the workspace root. `..` is refused.",
    ),
    "debs": attr.label_list(
        doc = "Debian packages whose contents (the `data.tar.*` member) are extracted under `directory`. Nothing is installed: no maintainer scripts run.",
        allow_files = [".deb", ".udeb"],
    ),
    "directory": attr.string(
        doc = "Directory in the image under which `files`, `tars` and `debs` land.",
        default = "/",
    ),
    "empty_dirs": attr.string_list(doc = "Empty directories to create (mode 0755)."),
    "empty_files": attr.string_list(doc = "Empty files to create, with `mode`."),
    "enable_mtime_preservation": attr.bool(
        doc = "Keep the modification time of `files` (from the file system) and of `tars`/`debs` entries (from the archive) instead of `mtime`. Builds are then only as reproducible as those times.",
        default = False,
    ),
    "env": attr.string_dict(
        doc = "Environment variables that images using this layer get (container_layer only; applied before the image's own `env`). Values support make variables.",
    ),
    "files": attr.label_list(
        doc = "Files to add to the layer, placed under `directory` according to `data_path`.",
        allow_files = True,
    ),
    "mode": attr.string(
        doc = "Octal mode of the files added by `files` and `empty_files`.",
        default = "0o555",
    ),
    "mtime": attr.int(
        doc = "Modification time of every entry, in seconds since the epoch. -1 (default): 0, or 2000-01-01 with `portable_mtime`.",
        default = -1,
    ),
    "portable_mtime": attr.bool(
        doc = "Set every entry's modification time to 2000-01-01T00:00:00Z (946684800) instead of the epoch.",
        default = False,
    ),
    "symlinks": attr.string_dict(doc = "Symlinks to create: {\"/path/to/link\": \"/path/to/target\"}."),
    "tars": attr.label_list(
        doc = "Tarballs whose entries are extracted under `directory`: plain, gzip, zstd or xz (detected from their bytes). Entries keep their type, mode and owner; an entry escaping the root with `..` is an error. A compressed tarball is decompressed once, streaming; its files' data goes to a temporary file in `$TMPDIR`, within `archive_expansion_ratio`: more (a compression bomb) is an error.",
        allow_files = True,
    ),
}

def _container_layer_impl(ctx):
    label = display_label(ctx.label)
    entries = layer_entries(
        ctx,
        files = ctx.files.files,
        directory = ctx.attr.directory,
        mode = ctx.attr.mode,
        symlinks = ctx.attr.symlinks,
        empty_files = ctx.attr.empty_files,
        empty_dirs = ctx.attr.empty_dirs,
        data_path = ctx.attr.data_path,
        tars = ctx.files.tars,
        debs = ctx.files.debs,
    )
    layer = build_layer(
        ctx,
        ctx.label.name,
        entries,
        ctx.files.files + ctx.files.tars + ctx.files.debs,
        compression = ctx.attr.compression,
        compression_options = ctx.attr.compression_options,
        mtime = layer_mtime(label, ctx.attr.mtime, ctx.attr.portable_mtime, ctx.attr.enable_mtime_preservation),
        tar = ctx.outputs.layer,
        archive_expansion_ratio = ctx.attr.archive_expansion_ratio,
        env = {
            expand_make_variables(ctx, k, "%s: env" % label): expand_make_variables(ctx, v, "%s: env[%s]" % (label, k))
            for k, v in ctx.attr.env.items()
        },
    )
    return [
        DefaultInfo(files = depset([layer.blob])),
        OutputGroupInfo(
            layer_descriptor = depset([layer.descriptor, layer.listing]),
            layer_tar = depset([ctx.outputs.layer]),
        ),
        layer,
    ]

container_layer = rule(
    implementation = _container_layer_impl,
    doc = """One image layer: files, tarballs, Debian packages, symlinks and directories,
written as a deterministic compressed tarball (the blob) and, on demand, as the
uncompressed `<name>-layer.tar` (decompressed from the blob by its own action,
only when that file or the `layer_tar` output group is requested). Use it in
container_image's `layers`.""",
    attrs = LAYER_ATTRS,
    outputs = {"layer": "%{name}-layer.tar"},
    toolchains = [TOOLCHAIN_TYPES["layer"]],
)
