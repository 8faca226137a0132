//! Serde types for the OCI documents the tools read and write, plus the
//! descriptor and listing JSON exchanged between kiln tools.
//!
//! `None` fields are omitted when serialising, so that the JSON carries only
//! what is set (digests depend on it). Unknown fields are ignored on reading.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_types;
use crate::program::Elf;

/// Docker (overlay2) and containerd refuse images with more layers.
pub const MAX_LAYERS: usize = 127;

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: None,
        }
    }

    /// The `org.opencontainers.image.ref.name` annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .as_ref()?
            .get(media_types::ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

/// The platform an image runs on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    /// `os/architecture[/variant]`, e.g. `linux/arm64/v8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {0:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64/v8")]
pub struct PlatformError(pub String);

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty() || p.trim() != *p) {
            return Err(PlatformError(s.to_string()));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(PlatformError(s.to_string())),
        }
    }
}

/// An image manifest (OCI, or Docker v2 which has the same shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Empty when the document has none (it is optional in OCI).
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageManifest {
    /// An OCI image manifest with schema version 2.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: media_types::OCI_IMAGE_MANIFEST.to_string(),
            config,
            layers,
            annotations: None,
        }
    }
}

/// An image index (OCI, or a Docker manifest list), also the shape of a
/// layout's `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Empty when the document has none (it is optional in OCI).
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageIndex {
    /// An OCI image index with schema version 2.
    pub fn new(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: media_types::OCI_IMAGE_INDEX.to_string(),
            manifests,
            annotations: None,
        }
    }
}

/// The descriptor JSON that kiln-layer writes: a layer descriptor plus the
/// digest of the uncompressed tar (`diff_id`), which the image config needs,
/// and its size (`uncompressed_size`), which a docker-save tarball's header
/// needs before the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
}

impl LayerDescriptor {
    /// The plain OCI descriptor for the manifest's `layers`.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size)
    }
}

/// What kind of filesystem entry a listing line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListingKind {
    Dir,
    File,
    Symlink,
}

impl fmt::Display for ListingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListingKind::Dir => "directory",
            ListingKind::File => "file",
            ListingKind::Symlink => "symlink",
        })
    }
}

/// One line of a listing JSON (`[{"kind":"file","path":"hello"}, …]`): the
/// entries of a layer (or an image) by normalised path, without leading `/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingEntry {
    pub kind: ListingKind,
    pub path: String,
    /// Symlink target, exactly as written in the tar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A regular file that is an ELF executable or shared object: what it
    /// needs to run (`kiln_oci::program`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elf: Option<Elf>,
    /// A regular file that is a `#!` script: its interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

impl ListingEntry {
    /// An entry without program facts.
    pub fn new(kind: ListingKind, path: impl Into<String>, target: Option<String>) -> ListingEntry {
        ListingEntry {
            kind,
            path: path.into(),
            target,
            elf: None,
            script: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical;
    use crate::digest::sha256_bytes;

    #[test]
    fn platform_display_and_parse() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.os, "linux");
        assert_eq!(p.architecture, "arm64");
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let p: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "a/b/c/d",
            "linux//v8",
            "linux/ amd64",
        ] {
            let err = bad.parse::<Platform>().unwrap_err();
            assert!(err.to_string().contains("OS/ARCH"), "{bad}");
        }
    }

    #[test]
    fn descriptor_json_skips_none() {
        let d = Descriptor::new(media_types::OCI_IMAGE_CONFIG, sha256_bytes(b"x"), 1);
        let s = String::from_utf8(canonical::to_vec(&d).unwrap()).unwrap();
        assert_eq!(
            s,
            format!(
                r#"{{"digest":"{}","mediaType":"{}","size":1}}"#,
                sha256_bytes(b"x"),
                media_types::OCI_IMAGE_CONFIG
            )
        );
        let back: Descriptor = serde_json::from_str(&s).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn manifest_reads_unknown_fields_and_missing_media_type() {
        let json = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{d}","size":3,"urls":[]}},"layers":[],"subject":null}}"#,
            d = sha256_bytes(b"abc")
        );
        let m: ImageManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(m.media_type, "");
        assert_eq!(m.config.size, 3);
        let out = String::from_utf8(canonical::to_vec(&m).unwrap()).unwrap();
        assert!(!out.contains("mediaType\":\"\""));
    }

    #[test]
    fn listing_json() {
        let l = vec![
            ListingEntry::new(ListingKind::Dir, "bin", None),
            ListingEntry::new(ListingKind::Symlink, "bin/hello", Some("/hello".into())),
        ];
        assert_eq!(
            String::from_utf8(canonical::to_vec(&l).unwrap()).unwrap(),
            r#"[{"kind":"dir","path":"bin"},{"kind":"symlink","path":"bin/hello","target":"/hello"}]"#
        );
    }
}
