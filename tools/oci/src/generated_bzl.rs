//! `rules/private/generated.bzl`: the decisions the rules share with the
//! tools, rendered as Starlark from the Rust constants that make them, so
//! that each is written once. The test `tools/oci/tests/generated_bzl.rs`
//! fails when the checked-in file differs from [`render`], and rewrites it
//! with `KILN_UPDATE_GENERATED=1`.

use std::fmt::Write;

use crate::encoder::{GZIP_LEVELS, MAX_WORKERS, ZSTD_LEVELS};
use crate::model::MAX_LAYERS;
use crate::platform::{build_architectures, IMPLIED_VARIANTS, OPERATING_SYSTEMS};

/// Where the file lives, relative to the repository root.
pub const PATH: &str = "rules/private/generated.bzl";

/// The file's text, formatted as buildifier formats it.
pub fn render() -> String {
    let mut s = String::new();
    s.push_str(
        "\"\"\"Tables the rules share with the kiln tools, written from the tools' Rust source.\n\
         \n\
         Generated from kiln_oci (tools/oci/src/generated_bzl.rs); do not edit. After a\n\
         change there: `KILN_UPDATE_GENERATED=1 cargo test -p kiln-oci --test generated_bzl`.\n\
         The Rust tests fail while this file is stale.\n\
         \"\"\"\n\n",
    );
    s.push_str("# Go's GOOS values, which the OCI image spec names for `os`.\n");
    s.push_str("OPERATING_SYSTEMS = [\n");
    for os in OPERATING_SYSTEMS {
        let _ = writeln!(s, "    \"{os}\",");
    }
    s.push_str("]\n\n");
    s.push_str("# Docker (overlay2) and containerd refuse images with more layers.\n");
    let _ = writeln!(s, "MAX_LAYERS = {MAX_LAYERS}\n");
    s.push_str(
        "# The architectures images are built for and the tools ship for: OCI name ->\n\
         # the variant written in images (\"\" for none) and Bazel's @platforms//cpu\n\
         # value (also `uname -m`; the tools' platform key is linux_<cpu>).\n",
    );
    s.push_str("BUILD_ARCHITECTURES = {\n");
    for a in build_architectures() {
        let cpu = a.bazel_cpu.unwrap_or_default();
        let _ = writeln!(
            s,
            "    \"{}\": {{\n        \"bazel_cpu\": \"{cpu}\",\n        \"variant\": \"{}\",\n    }},",
            a.name, a.variant
        );
    }
    s.push_str("}\n\n");
    s.push_str(
        "# (architecture, variant) pairs that mean the architecture without a variant\n\
         # (images are published both ways).\n",
    );
    s.push_str("IMPLIED_VARIANTS = [\n");
    for (arch, variant) in IMPLIED_VARIANTS {
        let _ = writeln!(s, "    (\"{arch}\", \"{variant}\"),");
    }
    s.push_str("]\n\n");
    s.push_str("# compression -> (default level, highest level); levels start at 1.\n");
    s.push_str("COMPRESSION_LEVELS = {\n");
    for (name, levels) in [("gzip", GZIP_LEVELS), ("zstd", ZSTD_LEVELS)] {
        let _ = writeln!(s, "    \"{name}\": ({}, {}),", levels.default, levels.max);
    }
    s.push_str("}\n\n");
    s.push_str("# kiln-layer compresses a layer on at most this many threads.\n");
    let _ = writeln!(s, "LAYER_MAX_WORKERS = {MAX_WORKERS}");
    s
}
