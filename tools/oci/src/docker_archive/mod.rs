//! The `docker save` tarball: its member names and documents, defined once
//! for the reader (base images given as a tar, [`reader`]) and the writer
//! (what kiln-load streams into `docker load`, [`writer`]).
//!
//! Formats seen in the wild, and which side handles each:
//! - legacy (Docker < 25): `manifest.json`, `repositories`, the config as
//!   `<config hex>.json`, each layer uncompressed as `<diff_id hex>/layer.tar`
//!   (read and written);
//! - Docker ≥ 25: the same `manifest.json` pointing at `blobs/sha256/<hex>`,
//!   plus `index.json` and `oci-layout` (an OCI layout); `<id>/layer.tar` may
//!   be symlinks to the blobs (read; written without the symlinks, the layers
//!   as their blobs);
//! - a plain OCI layout in a tar (`index.json`, `blobs/`) (read).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_types;
use crate::model::{Descriptor, ImageIndex};
use crate::reference::TaggedName;

pub mod reader;
pub mod writer;

pub use reader::{normalize, TarFile, SPOOL_RATIO, SPOOL_SLACK};
pub use writer::ArchiveWriter;

/// Docker's list of the images in the tarball ([`DockerSaveImage`]s).
pub const MANIFEST_JSON: &str = "manifest.json";
/// `name -> tag -> top layer directory`, read by loaders that predate
/// `manifest.json` (Docker before 1.10).
pub const REPOSITORIES: &str = "repositories";
/// The OCI layout's index (Docker ≥ 25, podman, containerd).
pub const INDEX_JSON: &str = "index.json";
/// The OCI layout's marker file ([`media_types::OCI_LAYOUT_FILE`]).
pub const OCI_LAYOUT: &str = "oci-layout";
/// The directories holding an OCI layout's blobs.
pub const BLOB_DIRS: [&str; 2] = ["blobs/", "blobs/sha256/"];

/// containerd's annotation for an image's full (normalised) name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One image of `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct DockerSaveImage {
    /// Archive path of the config JSON.
    #[serde(rename = "Config")]
    pub config: String,
    /// The names to tag the image with, as the user wrote them (the engine
    /// normalises them itself); `null` in an untagged save.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Archive paths of the layers, base first.
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

impl DockerSaveImage {
    /// The entry of an OCI-layout tarball: config and layers as their blobs.
    pub fn oci(config: &Digest, layers: &[Descriptor], tags: &[TaggedName]) -> DockerSaveImage {
        DockerSaveImage {
            config: blob_name(config),
            repo_tags: Some(repo_tags(tags)),
            layers: layers.iter().map(|l| blob_name(&l.digest)).collect(),
        }
    }

    /// The entry of a legacy tarball: the config as `<hex>.json`, layers as
    /// `<diff_id hex>/layer.tar`.
    pub fn legacy(config: &Digest, diff_ids: &[Digest], tags: &[TaggedName]) -> DockerSaveImage {
        DockerSaveImage {
            config: legacy_config_name(config),
            repo_tags: Some(repo_tags(tags)),
            layers: diff_ids.iter().map(legacy_layer_name).collect(),
        }
    }
}

fn repo_tags(tags: &[TaggedName]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

/// `repositories`: for each tag, its name -> tag -> the top layer's
/// directory (the last diff_id's hex). Empty for an image without layers.
pub type Repositories = BTreeMap<String, BTreeMap<String, String>>;

/// The `repositories` document of an image whose top layer is `top`.
pub fn repositories(tags: &[TaggedName], top: Option<&Digest>) -> Repositories {
    let mut out = Repositories::new();
    if let Some(top) = top {
        for t in tags {
            out.entry(t.name.clone())
                .or_default()
                .insert(t.tag.clone(), top.hex().to_string());
        }
    }
    out
}

/// The `index.json` of an OCI-layout tarball of one image: one entry per
/// tag, all for the same manifest (an annotation holds a single name).
/// containerd wants the normalised name; the OCI ref name is the reference
/// as given (a full reference is allowed there, and podman reads it as the
/// image's name).
pub fn tagged_index(manifest: &Descriptor, tags: &[TaggedName]) -> ImageIndex {
    let entries = tags
        .iter()
        .map(|t| {
            let mut d = Descriptor::new(
                manifest.media_type.clone(),
                manifest.digest.clone(),
                manifest.size,
            );
            d.platform = manifest.platform.clone();
            d.annotations = Some(BTreeMap::from([
                (ANNOTATION_CONTAINERD_NAME.to_string(), t.normalized()),
                (media_types::ANNOTATION_REF_NAME.to_string(), t.to_string()),
            ]));
            d
        })
        .collect();
    ImageIndex::new(entries)
}

/// Archive path of blob `digest` in an OCI layout: `blobs/sha256/<hex>`.
pub fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Directory of a legacy layer: `<diff_id hex>/`.
pub fn legacy_layer_dir(diff_id: &Digest) -> String {
    format!("{}/", diff_id.hex())
}

/// Archive path of a legacy (uncompressed) layer: `<diff_id hex>/layer.tar`.
pub fn legacy_layer_name(diff_id: &Digest) -> String {
    format!("{}/layer.tar", diff_id.hex())
}

/// Archive path of a legacy config: `<config digest hex>.json` (the config's
/// digest is the Docker image ID).
pub fn legacy_config_name(config: &Digest) -> String {
    format!("{}.json", config.hex())
}
