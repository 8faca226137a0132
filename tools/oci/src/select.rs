//! Choosing the image manifest for a platform in an OCI layout whose
//! `index.json` holds an image index (possibly nested) or several manifests,
//! as pulled images and layouts from skopeo, umoci or crane do.
//!
//! The layout may be a directory (`Layout`) or live inside a tarball
//! (`docker_archive::TarFile`): both implement [`BlobStore`].

use anyhow::{bail, Context};

use crate::media_types;
use crate::model::{Descriptor, ImageIndex, ImageManifest, Platform};

/// Nested indexes deeper than this are refused (a cycle would never end).
const MAX_DEPTH: usize = 8;

/// Somewhere blobs can be read from by descriptor.
pub trait BlobStore {
    /// The whole blob `desc` points at, checked against its digest and size.
    /// Meant for JSON documents (manifests, indexes, configs).
    fn read_verified(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>>;

    /// How to name this store in messages (a path).
    fn describe(&self) -> String;

    /// True when the blob is absent by design (a shallow layout written by
    /// kiln-pull holds the manifests of the pulled platforms only): such an
    /// image cannot be chosen by its config, nor a nested index searched.
    /// Complete stores have every blob: reading a missing one is an error.
    fn is_absent(&self, _desc: &Descriptor) -> bool {
        false
    }
}

/// The manifest chosen, with its descriptor (as found in the index).
#[derive(Clone, Debug)]
pub struct Selected {
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
}

/// `(os, architecture, variant)` with the spellings that mean the same image
/// made equal: `arm64` and `arm64/v8` (images are published both ways), and
/// `amd64` and `amd64/v1`.
fn normalized(p: &Platform) -> (&str, &str, Option<&str>) {
    let variant = match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", Some("v8")) | ("amd64", Some("v1")) => None,
        (_, Some("")) => None,
        (_, v) => v,
    };
    (p.os.as_str(), p.architecture.as_str(), variant)
}

/// True when `have` is an image for `want` (same os, architecture and
/// variant, `arm64` matching `arm64/v8`).
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    normalized(want) == normalized(have)
}

fn read_json<T: serde::de::DeserializeOwned>(
    store: &dyn BlobStore,
    desc: &Descriptor,
    what: &str,
) -> anyhow::Result<T> {
    let bytes = store.read_verified(desc)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: parsing {what} {}", store.describe(), desc.digest))
}

struct Candidate {
    descriptor: Descriptor,
    platform: Option<Platform>,
}

fn collect(
    store: &dyn BlobStore,
    entries: &[Descriptor],
    depth: usize,
    out: &mut Vec<Candidate>,
) -> anyhow::Result<()> {
    for d in entries {
        if store.is_absent(d) {
            // Not pulled: nothing to search, nothing to choose by config. A
            // manifest with a platform stays a candidate (choosing it is
            // then an error saying the platform was not pulled).
            if media_types::is_manifest(&d.media_type) && d.platform.is_some() {
                out.push(Candidate {
                    descriptor: d.clone(),
                    platform: d.platform.clone(),
                });
            }
        } else if media_types::is_index(&d.media_type) {
            if depth >= MAX_DEPTH {
                bail!(
                    "{}: image indexes are nested more than {MAX_DEPTH} deep",
                    store.describe()
                );
            }
            let index: ImageIndex = read_json(store, d, "image index")?;
            collect(store, &index.manifests, depth + 1, out)?;
        } else if media_types::is_manifest(&d.media_type) {
            out.push(Candidate {
                descriptor: d.clone(),
                platform: d.platform.clone(),
            });
        }
        // Anything else (artifacts, unknown media types) cannot be a base.
    }
    Ok(())
}

/// The platform recorded in an image's config, for index entries that carry
/// none (umoci and skopeo write `index.json` entries without `platform`).
fn platform_from_config(
    store: &dyn BlobStore,
    desc: &Descriptor,
) -> anyhow::Result<Option<Platform>> {
    let manifest: ImageManifest = read_json(store, desc, "image manifest")?;
    let config: serde_json::Value = read_json(store, &manifest.config, "image config")?;
    let field = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Ok(match (field("os"), field("architecture")) {
        (Some(os), Some(architecture)) if !os.is_empty() && !architecture.is_empty() => {
            Some(Platform {
                architecture,
                os,
                variant: field("variant").filter(|v| !v.is_empty()),
            })
        }
        _ => None,
    })
}

/// Picks the image manifest for `want` among the entries of `index_json`.
///
/// - A single image manifest entry is used as it is, whatever its platform
///   (layouts written by kiln-image, single-platform pulls).
/// - Otherwise every image manifest reachable through the entries (nested
///   indexes followed) is a candidate; its platform is the descriptor's, or
///   when the descriptor has none, its config's. The first candidate whose
///   platform matches is chosen (the OCI image-index spec: "the first
///   matching entry SHOULD be used"). When `want` has no variant and nothing
///   matches exactly, the only candidate with the same os/architecture is
///   chosen; several are an error asking for the variant.
/// - No match is an error listing the platforms the layout has.
pub fn select_manifest(
    store: &dyn BlobStore,
    index_json: &ImageIndex,
    want: &Platform,
) -> anyhow::Result<Selected> {
    let entries = &index_json.manifests;
    if entries.is_empty() {
        bail!("{}: index.json has no entries", store.describe());
    }
    if let [only] = entries.as_slice() {
        if media_types::is_manifest(&only.media_type) {
            let manifest = read_json(store, only, "image manifest")?;
            return Ok(Selected {
                descriptor: only.clone(),
                manifest,
            });
        }
    }
    let mut candidates = Vec::new();
    collect(store, entries, 0, &mut candidates)?;
    for c in &mut candidates {
        if c.platform.is_none() {
            c.platform = platform_from_config(store, &c.descriptor)?;
        }
    }

    let chosen = candidates
        .iter()
        .find(|c| {
            c.platform
                .as_ref()
                .is_some_and(|p| platform_matches(want, p))
        })
        .or_else(|| {
            if want.variant.is_some() {
                return None;
            }
            let mut same_arch = candidates.iter().filter(|c| {
                c.platform
                    .as_ref()
                    .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
            });
            match (same_arch.next(), same_arch.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        });
    let Some(chosen) = chosen else {
        let mut available: Vec<String> = Vec::new();
        for p in candidates.iter().filter_map(|c| c.platform.as_ref()) {
            let s = p.to_string();
            if !available.contains(&s) {
                available.push(s);
            }
        }
        let ambiguous: Vec<&String> = available
            .iter()
            .filter(|s| s.starts_with(&format!("{}/{}/", want.os, want.architecture)))
            .collect();
        if want.variant.is_none() && ambiguous.len() > 1 {
            bail!(
                "{}: platform {want} matches several images ({}); give the variant too",
                store.describe(),
                ambiguous
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if available.is_empty() {
            bail!(
                "{}: no image for platform {want}: the layout has no image with a known platform",
                store.describe()
            );
        }
        bail!(
            "{}: no image for platform {want}; the layout has: {}",
            store.describe(),
            available.join(", ")
        );
    };
    let manifest = read_json(store, &chosen.descriptor, "image manifest")?;
    Ok(Selected {
        descriptor: chosen.descriptor.clone(),
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical;
    use crate::digest::{sha256_bytes, Digest};
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem(BTreeMap<Digest, Vec<u8>>);

    impl Mem {
        fn add(&mut self, media_type: &str, value: serde_json::Value) -> Descriptor {
            let bytes = canonical::to_vec(&value).unwrap();
            let d = sha256_bytes(&bytes);
            let desc = Descriptor::new(media_type, d.clone(), bytes.len() as u64);
            self.0.insert(d, bytes);
            desc
        }

        fn image(&mut self, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
            let mut cfg = serde_json::json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                cfg["variant"] = v.into();
            }
            let c = self.add(media_types::OCI_IMAGE_CONFIG, cfg);
            let m = ImageManifest::new(c, vec![]);
            self.add(
                media_types::OCI_IMAGE_MANIFEST,
                serde_json::to_value(m).unwrap(),
            )
        }
    }

    impl BlobStore for Mem {
        fn read_verified(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
            match self.0.get(&desc.digest) {
                Some(b) => Ok(b.clone()),
                None => bail!("no blob {}", desc.digest),
            }
        }

        fn describe(&self) -> String {
            "mem".into()
        }
    }

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn with_platform(mut d: Descriptor, s: &str) -> Descriptor {
        d.platform = Some(p(s));
        d
    }

    #[test]
    fn matching() {
        assert!(platform_matches(&p("linux/arm64"), &p("linux/arm64/v8")));
        assert!(platform_matches(&p("linux/arm64/v8"), &p("linux/arm64")));
        assert!(platform_matches(&p("linux/amd64"), &p("linux/amd64/v1")));
        assert!(!platform_matches(&p("linux/arm/v7"), &p("linux/arm/v6")));
        assert!(!platform_matches(&p("linux/amd64"), &p("windows/amd64")));
        assert!(!platform_matches(&p("linux/arm64/v9"), &p("linux/arm64")));
    }

    #[test]
    fn nested_index_and_first_match() {
        let mut m = Mem::default();
        let amd = with_platform(m.image("linux", "amd64", None), "linux/amd64");
        let arm = with_platform(m.image("linux", "arm64", Some("v8")), "linux/arm64/v8");
        let arm_dup = with_platform(m.image("linux", "arm64", None), "linux/arm64");
        let attestation = with_platform(m.image("unknown", "unknown", None), "unknown/unknown");
        let inner = m.add(
            media_types::OCI_IMAGE_INDEX,
            serde_json::to_value(ImageIndex::new(vec![attestation, arm.clone(), arm_dup])).unwrap(),
        );
        let outer = m.add(
            media_types::OCI_IMAGE_INDEX,
            serde_json::to_value(ImageIndex::new(vec![amd.clone(), inner])).unwrap(),
        );
        let top = ImageIndex::new(vec![outer]);
        let s = select_manifest(&m, &top, &p("linux/arm64")).unwrap();
        assert_eq!(s.descriptor.digest, arm.digest);
        let s = select_manifest(&m, &top, &p("linux/amd64")).unwrap();
        assert_eq!(s.descriptor.digest, amd.digest);
        let err = select_manifest(&m, &top, &p("linux/s390x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mem: no image for platform linux/s390x; the layout has: linux/amd64, unknown/unknown, linux/arm64/v8, linux/arm64"
        );
    }

    #[test]
    fn platform_from_config_when_the_entry_has_none() {
        let mut m = Mem::default();
        let a = m.image("linux", "amd64", None);
        let b = m.image("linux", "arm", Some("v7"));
        let top = ImageIndex::new(vec![a.clone(), b.clone()]);
        assert_eq!(
            select_manifest(&m, &top, &p("linux/arm/v7"))
                .unwrap()
                .descriptor
                .digest,
            b.digest
        );
        // No variant asked: the only linux/arm image.
        assert_eq!(
            select_manifest(&m, &top, &p("linux/arm"))
                .unwrap()
                .descriptor
                .digest,
            b.digest
        );
        let c = m.image("linux", "arm", Some("v6"));
        let top = ImageIndex::new(vec![a, b, c]);
        let err = select_manifest(&m, &top, &p("linux/arm")).unwrap_err();
        assert!(err.to_string().contains("give the variant"), "{err}");
        let err = select_manifest(&m, &top, &p("linux/arm/v5")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the layout has: linux/amd64, linux/arm/v7, linux/arm/v6"),
            "{err}"
        );
    }

    /// `Mem` without some of its blobs, absent by design.
    struct Partial<'a>(&'a Mem, Vec<Digest>);

    impl BlobStore for Partial<'_> {
        fn read_verified(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
            if self.1.contains(&desc.digest) {
                bail!("absent {}", desc.digest);
            }
            self.0.read_verified(desc)
        }

        fn describe(&self) -> String {
            "partial".into()
        }

        fn is_absent(&self, desc: &Descriptor) -> bool {
            self.1.contains(&desc.digest)
        }
    }

    #[test]
    fn absent_blobs_are_neither_searched_nor_read_for_platforms() {
        let mut m = Mem::default();
        let amd = with_platform(m.image("linux", "amd64", None), "linux/amd64");
        let arm = with_platform(m.image("linux", "arm64", Some("v8")), "linux/arm64/v8");
        let no_platform = m.image("linux", "s390x", None);
        let nested = m.add(
            media_types::OCI_IMAGE_INDEX,
            serde_json::to_value(ImageIndex::new(vec![])).unwrap(),
        );
        let top = ImageIndex::new(vec![
            amd.clone(),
            arm.clone(),
            no_platform.clone(),
            nested.clone(),
        ]);
        let store = Partial(
            &m,
            vec![arm.digest.clone(), no_platform.digest, nested.digest],
        );
        assert_eq!(
            select_manifest(&store, &top, &p("linux/amd64"))
                .unwrap()
                .descriptor
                .digest,
            amd.digest
        );
        // The absent arm64 image is still chosen for arm64: reading it fails.
        let err = select_manifest(&store, &top, &p("linux/arm64")).unwrap_err();
        assert_eq!(err.to_string(), format!("absent {}", arm.digest));
        let err = select_manifest(&store, &top, &p("linux/s390x")).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "no image for platform linux/s390x; the layout has: linux/amd64, linux/arm64/v8"
            ),
            "{err}"
        );
    }

    #[test]
    fn single_manifest_is_used_as_is() {
        let mut m = Mem::default();
        let a = with_platform(m.image("linux", "amd64", None), "linux/amd64");
        let top = ImageIndex::new(vec![a.clone()]);
        let s = select_manifest(&m, &top, &p("linux/arm64")).unwrap();
        assert_eq!(s.descriptor, a);
        let err = select_manifest(&m, &ImageIndex::new(vec![]), &p("linux/arm64")).unwrap_err();
        assert!(err.to_string().contains("no entries"));
    }
}
