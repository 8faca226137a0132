"""Public API: providers, the contract between kiln rules and yours."""

load(
    "//rules/private:providers.bzl",
    _KilnBlobSetInfo = "KilnBlobSetInfo",
    _KilnImageInfo = "KilnImageInfo",
    _KilnLayerInfo = "KilnLayerInfo",
)

KilnBlobSetInfo = _KilnBlobSetInfo
KilnImageInfo = _KilnImageInfo
KilnLayerInfo = _KilnLayerInfo

# The same provider under the name rules_kiln 0.1 gave it.
KilnLayoutInfo = _KilnBlobSetInfo
