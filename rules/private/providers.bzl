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
    doc = "One single-platform image built by kiln-image.",
    fields = {
        "config": "File: the image config blob.",
        "descriptor": "File: JSON descriptor of the manifest, with its platform.",
        "digest": "File: `sha256:<hex>` of the manifest.",
        "layout": "File (directory): an OCI image layout holding the image and all its blobs.",
        "listing": "File: JSON list of every path in the image (base included).",
        "platform": "string: `os/architecture[/variant]`.",
        "shallow": "bool: some base layer blobs are absent from `layout` and listed in its kiln-source.json (a pulled base).",
    },
)

KilnLayoutInfo = provider(
    doc = "Something pushable and loadable: an OCI layout holding an image or an index.",
    fields = {
        "digest": "File: `sha256:<hex>` of the layout's top manifest or index.",
        "layout": "File (directory): the OCI image layout.",
        "shallow": "bool: some blobs are absent from `layout` and listed in its kiln-source.json; kiln-pull fetch-blobs completes it.",
    },
)
