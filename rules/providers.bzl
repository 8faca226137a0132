"""Public API: providers, the contract between kiln rules and yours."""

load(
    "//rules/private:providers.bzl",
    _KilnImageInfo = "KilnImageInfo",
    _KilnLayerInfo = "KilnLayerInfo",
    _KilnLayoutInfo = "KilnLayoutInfo",
)

KilnImageInfo = _KilnImageInfo
KilnLayerInfo = _KilnLayerInfo
KilnLayoutInfo = _KilnLayoutInfo
