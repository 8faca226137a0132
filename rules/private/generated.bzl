"""Tables the rules share with the kiln tools, written from the tools' Rust source.

Generated from kiln_oci (tools/oci/src/generated_bzl.rs); do not edit. After a
change there: `KILN_UPDATE_GENERATED=1 cargo test -p kiln-oci --test generated_bzl`.
The Rust tests fail while this file is stale.
"""

# Go's GOOS values, which the OCI image spec names for `os`.
OPERATING_SYSTEMS = [
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
]

# Docker (overlay2) and containerd refuse images with more layers.
MAX_LAYERS = 127

# The architectures images are built for and the tools ship for: OCI name ->
# the variant written in images ("" for none) and Bazel's @platforms//cpu
# value (also `uname -m`; the tools' platform key is linux_<cpu>).
BUILD_ARCHITECTURES = {
    "amd64": {
        "bazel_cpu": "x86_64",
        "variant": "",
    },
    "arm64": {
        "bazel_cpu": "aarch64",
        "variant": "v8",
    },
}

# (architecture, variant) pairs that mean the architecture without a variant
# (images are published both ways).
IMPLIED_VARIANTS = [
    ("arm64", "v8"),
    ("amd64", "v1"),
]

# compression -> (default level, highest level); levels start at 1.
COMPRESSION_LEVELS = {
    "gzip": (6, 9),
    "zstd": (3, 19),
}

# kiln-layer compresses a layer on at most this many threads.
LAYER_MAX_WORKERS = 4
