"""Providers: the contract between kiln rules."""

KilnLayerInfo = provider(
    doc = "One layer blob built by kiln-layer.",
    fields = {
        "blob": "File: the compressed layer tarball (the blob pushed to registries).",
        "descriptor": "File: JSON {mediaType, digest, size, diff_id} of the blob.",
        "env": "dict: environment variables images using this layer get (before their own).",
        "listing": "File: JSON list of the layer's entries {path, kind, target?}.",
        "tar": "File or None: the uncompressed layer tarball (`<name>-layer.tar`), decompressed from `blob` by its own action, run only when the file is requested.",
    },
)

KilnImageInfo = provider(
    doc = """One single-platform image built by kiln-image: its config and manifest, and
the blob Files it is made of (as entries of `rules/private/blobs.bzl`).""",
    fields = {
        "base_packages": "dict platform key (`utils.bzl` `platform_key`) -> File: the Debian packages of a pulled base's layers for this image's platform (KilnBasePackages, `kiln_oci::sbom::BasePackages` JSON), which the SBOM lists; the base's, for an image on a kiln image; empty otherwise.",
        "blobs": "depset of blob entries: the layer blobs (and a foreign base's blob directory).",
        "config": "File: the image config blob.",
        "descriptor": "File: JSON descriptor of the manifest, with its platform.",
        "digest": "File: `sha256:<hex>` of the manifest.",
        "listing": "File: JSON list of every path in the image (base included), with each file's ELF facts or `#!` interpreter.",
        "listing_complete": "bool: the listing holds every file of the image (False on a `kiln.pull` or foreign base, whose files are not listed).",
        "manifest": "File: the image manifest.",
        "metadata": "depset of blob entries: manifest and config blobs, this image's and its base's, and a pulled base's layout (no layer bytes).",
        "platform": "string: `os/architecture[/variant]`.",
        "sbom": "File: the image's SPDX 2.3 JSON SBOM (`<name>.spdx.json`).",
        "shallow": "bool: some base layer blobs are only in a registry (a pulled base), listed in its layout's kiln-source.json.",
        "top": "blob entry: the manifest, with `descriptor` as its digest File.",
    },
)

KilnBlobSetInfo = provider(
    doc = """An image or an index as a set of blobs: its top manifest or index and the
blob Files everything it references is in. What push, load, image_test, the
OCI layout and a kiln-built base take. Built by `blob_set_info`.""",
    fields = {
        "base_packages": "dict platform key (`utils.bzl` `platform_key`) -> File: a pulled base's Debian packages per platform (KilnBasePackages), read only by SBOMs (empty otherwise).",
        "blobs": "depset of blob entries: layer blobs.",
        "digest": "File: `sha256:<hex>` of the top manifest or index.",
        "images": "dict platform string -> KilnImageInfo: the images of an index (empty for an image or a pulled layout).",
        "metadata": "depset of blob entries: manifests, configs, indexes, pulled layouts.",
        "sboms": "list of struct(descriptor, sbom): each platform manifest's descriptor File and its SBOM File, attached as referrers by push (empty for a pulled layout).",
        "shallow": "bool: some blobs are only in a registry (a pulled base), listed in a layout's kiln-source.json; `kiln-pull layout --fetch` downloads them.",
        "top": "blob entry of the top manifest or index (its digest File is its descriptor), or a layout entry (a pulled layout: the single entry of its index.json).",
    },
)

def blob_set_info(top, digest, blobs = depset(), metadata = depset(), shallow = False, images = {}, sboms = [], base_packages = {}):
    """The KilnBlobSetInfo of an image, an index or a pulled layout.

    Args:
      top: blob entry of the top manifest or index, or a pulled layout's entry.
      digest: File holding `sha256:<hex>` of the top manifest or index.
      blobs: depset of layer blob entries.
      metadata: depset of manifest, config, index and layout entries.
      shallow: some blobs are only in a registry.
      images: platform string -> KilnImageInfo, for an index.
      sboms: struct(descriptor, sbom) per platform manifest.
      base_packages: platform key -> File of a pulled base's Debian packages.

    Returns:
      KilnBlobSetInfo.
    """
    return KilnBlobSetInfo(
        base_packages = base_packages,
        blobs = blobs,
        digest = digest,
        images = images,
        metadata = metadata,
        sboms = sboms,
        shallow = shallow,
        top = top,
    )

KilnDebInfo = provider(
    doc = "One pinned Debian package (from `kiln.debs`): its .deb and the control data dpkg's status keeps.",
    fields = {
        "architecture": "string: Debian architecture (`all`, `amd64`, `arm64`, ...).",
        "control": "File: the package's control file, written to `/var/lib/dpkg/status.d/<package>`.",
        "deb": "File: the .deb.",
        "md5sums": "File or None: the package's md5sums, written to `/var/lib/dpkg/status.d/<package>.md5sums`.",
        "package": "string: package name.",
        "version": "string: package version.",
    },
)
