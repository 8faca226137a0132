"""Blob sets: an image or index as the blob Files the build made.

Actions exchange descriptors; each blob File is made once (by a layer, image
or index action, or the pull that fetched it) and reaches the edges (push,
load, `name.tar`, the `oci_layout` output group) through providers, as
depsets of entries:

- `blob_entry(blob, digest)`: a blob File and the File holding its digest (a
  descriptor JSON, or `sha256:<hex>` / `<hex>` text);
- `layout_entry(dir)`: an OCI layout directory holding blobs (a pulled or a
  foreign base); its kiln-source.json names what it lacks.

The edges write a blob-set spec (see `kiln_oci::blob_set`) naming them.
"""

load(":toolchain.bzl", "TOOLCHAIN_TYPES", "kiln_tool", "run_tool")
load(":utils.bzl", "display_label", "input_runfiles_path")

def blob_entry(blob, digest):
    """A blob File and the File its digest is in.

    Args:
      blob: the blob.
      digest: a descriptor JSON, or `sha256:<hex>` / `<hex>` text.

    Returns:
      The entry.
    """
    return struct(blob = blob, digest = digest)

def layout_entry(directory):
    """An OCI layout directory holding blobs.

    Args:
      directory: the layout (a directory File).

    Returns:
      The entry.
    """
    return struct(blob = directory, digest = None)

def entry_files(entries):
    """The Files of entries, to use as inputs or runfiles.

    Args:
      entries: list of entries.

    Returns:
      list of Files.
    """
    files = []
    for e in entries:
        files.append(e.blob)
        if e.digest:
            files.append(e.digest)
    return files

def blob_set_spec(label, top, entries, path):
    """The JSON of a blob-set spec.

    Args:
      label: the target, for messages.
      top: a `blob_entry` whose digest File is the top's descriptor, or a
        `layout_entry` (the single entry of its index.json).
      entries: the other entries.
      path: File -> string (exec path, or runfiles path for launchers).

    Returns:
      The spec as a string.
    """
    if top.digest:
        top_json = {"blob": path(top.blob), "descriptor": path(top.digest)}
    else:
        top_json = {"layout": path(top.blob)}
    return json.encode({
        "blobs": [{"blob": path(e.blob), "digest": path(e.digest)} for e in entries if e.digest],
        "layouts": [path(e.blob) for e in entries if not e.digest],
        "ref_name": "latest",
        "target": label,
        "top": top_json,
    })

def write_blob_set(ctx, name, info, runfiles = False, metadata_only = False):
    """Writes the blob-set spec of `info` (a KilnBlobSetInfo).

    Args:
      ctx: rule context.
      name: prefix of the declared file.
      info: the KilnBlobSetInfo.
      runfiles: paths relative to the runfiles directory (for launchers:
        input_runfiles_path) instead of the exec root.
      metadata_only: name manifests, configs and pulled layouts only (what
        kiln-image reads of a base), not layer blobs.

    Returns:
      (the spec File, the entry Files it names, top included).
    """
    entries = info.metadata.to_list() + ([] if metadata_only else info.blobs.to_list())
    spec = ctx.actions.declare_file(name + (".run" if runfiles else "") + ".blobs.json")
    path = input_runfiles_path if runfiles else (lambda f: f.path)
    ctx.actions.write(spec, blob_set_spec(display_label(ctx.label), info.top, entries, path))
    return spec, entry_files([info.top] + entries)

def oci_layout(ctx, name, info):
    """Registers the action writing the OCI layout of `info` (output group `oci_layout`).

    On a pulled (shallow) base the layout needs the base's layers, which
    only the registry has: the action fetches them (KilnFetchBlobs), and so
    needs the network.

    Args:
      ctx: rule context with the pull toolchain.
      name: prefix of the declared directory (`<name>.oci`).
      info: the KilnBlobSetInfo.

    Returns:
      The layout directory File.
    """
    spec, files = write_blob_set(ctx, name, info)
    layout = ctx.actions.declare_directory(name + ".oci")
    args = ctx.actions.args()
    args.add("layout")
    args.add("--spec", spec)
    args.add("--output", layout.path)
    if info.shallow:
        args.add("--fetch")
    ctx.actions.run(
        executable = kiln_tool(ctx, "pull").files_to_run,
        arguments = [args],
        inputs = [spec] + files,
        outputs = [layout],
        mnemonic = "KilnFetchBlobs" if info.shallow else "KilnLayout",
        progress_message = ("Fetching base layers for the OCI layout of %{label}" if info.shallow else "Writing the OCI layout of %{label}"),
        toolchain = TOOLCHAIN_TYPES["pull"],
        # Fetching downloads from the registry named in kiln-source.json, so
        # it cannot run on a remote executor without network; every blob is
        # checked against its digest, so the result is still cacheable.
        execution_requirements = {"no-remote-exec": "1", "requires-network": "1"} if info.shallow else {},
        use_default_shell_env = info.shallow,
    )
    return layout

def runfiles_layout(ctx, name, info, fetch):
    """The `layout` argument of `write_launcher` for `info`, and its runfiles.

    Args:
      ctx: rule context with the pull toolchain.
      name: prefix of declared files.
      info: the KilnBlobSetInfo.
      fetch: download the blobs a pulled base lacks at run time (load does;
        push mounts or copies them registry-side instead).

    Returns:
      (the `layout` struct for write_launcher, list of runfiles).
    """
    spec, files = write_blob_set(ctx, name, info, runfiles = True)
    pull = run_tool(ctx, "pull")
    return struct(pull = pull, spec = spec, fetch = fetch and info.shallow), [spec, pull] + files
