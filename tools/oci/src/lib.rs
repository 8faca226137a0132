//! The OCI model shared by the rules_kiln tools: digests, descriptors,
//! canonical JSON, OCI image layouts and deterministic tar writing.
//!
//! The contract these types implement is `docs/internals.md`.

pub mod atomic;
// Images and indexes as the blob Files the build made (the edges: push, load, layouts).
pub mod blob_set;
pub mod canonical;
// Compression told from magic bytes, shared by every tool that reads archives.
pub mod compression;
pub mod digest;
// Deterministic parallel gzip and zstd encoders (layer blobs).
pub mod encoder;
// The Go toolchain's build info in a binary (Go version, modules), for SBOMs.
pub mod go_buildinfo;
// The `docker save` tarball: read (base images given as a tar) and written (kiln-load).
pub mod docker_archive;
// kiln-layers.json: the uncompressed sizes of a layout's own layers.
pub mod layer_sizes;
pub mod layout;
pub mod media_types;
pub mod model;
// Operating systems, CPU architectures and their spellings, written once.
pub mod platform;
// What an ELF binary or a script needs to run (kiln-layer records it, kiln-image checks it).
pub mod program;
// Repository/tag name validation for kiln-push and kiln-load.
pub mod reference;
// An image's layers applied to a directory, whiteouts and all (kiln-imagetest).
pub mod rootfs;
// The SPDX 2.3 SBOM of an image, from its layers.
pub mod sbom;
// Picking the manifest for a platform out of an index (base images).
pub mod select;
// kiln-source.json: where the blobs absent from a shallow layout are.
pub mod source;
// Bazel workspace status values substituted into `{KEY}` placeholders.
pub mod stamp;
// rules/private/generated.bzl: the tables above, for the rules.
pub mod generated_bzl;
pub mod tar_writer;

pub use digest::{sha256_bytes, sha256_file, Digest, HashingReader, HashingWriter};
pub use layout::{Layout, LayoutWriter, Located};
pub use model::{
    Descriptor, ImageIndex, ImageManifest, LayerDescriptor, ListingEntry, ListingKind, Platform,
};
pub use source::{SourceBlob, Sources, SOURCE_FILE};
pub use stamp::Stamp;
