//! The OCI model shared by the rules_kiln tools: digests, descriptors,
//! canonical JSON, OCI image layouts and deterministic tar writing.
//!
//! The contract these types implement is `docs/internals.md`.

pub mod atomic;
pub mod canonical;
pub mod digest;
pub mod layout;
pub mod media_types;
pub mod model;
// Repository/tag name validation for kiln-push and kiln-load.
pub mod reference;
pub mod tar_writer;

pub use digest::{sha256_bytes, sha256_file, Digest, HashingWriter};
pub use layout::{Layout, LayoutWriter};
pub use model::{
    Descriptor, ImageIndex, ImageManifest, LayerDescriptor, ListingEntry, ListingKind, Platform,
};
