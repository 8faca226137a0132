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
/// made equal: `arm64` and `arm64/v8` (images are published both ways),
/// `amd64` and `amd64/v1`, and an empty variant and none.
fn normalized(p: &Platform) -> (&str, &str, Option<&str>) {
    let variant = crate::platform::significant_variant(&p.architecture, p.variant.as_deref());
    (p.os.as_str(), p.architecture.as_str(), variant)
}

/// True when `have` is an image for `want`: the same os, architecture and
/// variant, with `arm64` = `arm64/v8`, `amd64` = `amd64/v1`.
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    normalized(want) == normalized(have)
}

/// True for the `unknown/unknown` entries of an index (build attestations,
/// signatures): an `unknown` os or architecture is never an image to run,
/// so it is never chosen nor offered in messages.
pub fn is_attestation(p: &Platform) -> bool {
    p.os == "unknown" || p.architecture == "unknown"
}

/// The platform images are built, pulled and loaded for by default: Linux on
/// this machine's CPU. The OS is always `linux`, because Docker Desktop and
/// podman machine on macOS and Windows run Linux containers in a VM.
pub fn host_platform() -> Platform {
    Platform {
        os: "linux".to_string(),
        architecture: oci_arch(std::env::consts::ARCH).to_string(),
        variant: None,
    }
}

/// Rust's names for CPU architectures mapped to Go's, which OCI uses.
pub fn oci_arch(rust_arch: &str) -> &str {
    let little = cfg!(target_endian = "little");
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" if little => "mips64le",
        "mips64" => "mips64",
        "mips" if little => "mipsle",
        other => other,
    }
}

/// Why no image was picked for a platform. The message lists what there is;
/// the caller says where (which layout, index or flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("no image for platform {wanted}; {}", offered(.available))]
    Missing {
        wanted: Platform,
        available: Vec<String>,
    },
    #[error(
        "platform {wanted} matches several images ({}); give the variant too",
        .candidates.join(", ")
    )]
    Ambiguous {
        wanted: Platform,
        candidates: Vec<String>,
    },
}

fn offered(available: &[String]) -> String {
    if available.is_empty() {
        "there is no image with a known platform".to_string()
    } else {
        format!("there are images for: {}", available.join(", "))
    }
}

/// The one platform-matching rule of the tools (kiln-image's bases,
/// kiln-pull, kiln-load): among `candidates` (each an item and its
/// platform, in index order),
/// 1. the first whose platform matches `wanted` ([`platform_matches`]; the
///    OCI image-index spec: "the first matching entry SHOULD be used");
/// 2. else, when `wanted` has no variant, the only one with its os and
///    architecture (several are [`PickError::Ambiguous`]);
/// 3. else [`PickError::Missing`], listing the platforms there are.
///
/// Attestations ([`is_attestation`]) are never chosen nor listed.
pub fn pick<'a, T>(candidates: &'a [(T, Platform)], wanted: &Platform) -> Result<&'a T, PickError> {
    let images: Vec<&(T, Platform)> = candidates
        .iter()
        .filter(|(_, p)| !is_attestation(p))
        .collect();
    if let Some((item, _)) = images.iter().find(|(_, p)| platform_matches(wanted, p)) {
        return Ok(item);
    }
    if wanted.variant.is_none() {
        let same_arch: Vec<&&(T, Platform)> = images
            .iter()
            .filter(|(_, p)| p.os == wanted.os && p.architecture == wanted.architecture)
            .collect();
        match same_arch.as_slice() {
            [(item, _)] => return Ok(item),
            [] => {}
            several => {
                return Err(PickError::Ambiguous {
                    wanted: wanted.clone(),
                    candidates: several.iter().map(|(_, p)| p.to_string()).collect(),
                })
            }
        }
    }
    let mut available: Vec<String> = Vec::new();
    for (_, p) in &images {
        let s = p.to_string();
        if !available.contains(&s) {
            available.push(s);
        }
    }
    Err(PickError::Missing {
        wanted: wanted.clone(),
        available,
    })
}

/// [`pick`] among the image manifests of an index's `entries` that carry a
/// platform (nested indexes are not followed: see [`select_manifest`]).
pub fn pick_entry<'a>(
    entries: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, PickError> {
    let images: Vec<(&Descriptor, Platform)> = entries
        .iter()
        .filter(|d| media_types::is_manifest(&d.media_type))
        .filter_map(|d| d.platform.clone().map(|p| (d, p)))
        .collect();
    pick(&images, wanted).copied()
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
///   when the descriptor has none, its config's; [`pick`] chooses.
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

    let platformed: Vec<(&Descriptor, Platform)> = candidates
        .iter()
        .filter_map(|c| c.platform.clone().map(|p| (&c.descriptor, p)))
        .collect();
    let chosen =
        pick(&platformed, want).map_err(|e| anyhow::anyhow!("{}: {e}", store.describe()))?;
    let manifest = read_json(store, chosen, "image manifest")?;
    Ok(Selected {
        descriptor: (*chosen).clone(),
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
        assert!(!platform_matches(&p("linux/amd64"), &p("linux/amd64/v2")));
    }

    fn item(platform: &str) -> (String, Platform) {
        (platform.to_string(), p(platform))
    }

    #[test]
    fn picking() {
        let all = [
            item("linux/amd64/v1"),
            item("linux/arm64/v8"),
            item("linux/arm/v6"),
            item("linux/arm/v7"),
            item("unknown/unknown"),
            item("linux/unknown"),
        ];
        let got = |want: &str| pick(&all, &p(want)).map(String::as_str);
        assert_eq!(got("linux/amd64"), Ok("linux/amd64/v1"));
        assert_eq!(got("linux/amd64/v1"), Ok("linux/amd64/v1"));
        assert_eq!(got("linux/arm64"), Ok("linux/arm64/v8"));
        assert_eq!(got("linux/arm/v7"), Ok("linux/arm/v7"));
        assert_eq!(
            got("linux/arm").unwrap_err().to_string(),
            "platform linux/arm matches several images (linux/arm/v6, linux/arm/v7); give the variant too"
        );
        // Attestations are neither chosen nor offered.
        assert_eq!(
            got("unknown/unknown").unwrap_err().to_string(),
            "no image for platform unknown/unknown; there are images for: \
             linux/amd64/v1, linux/arm64/v8, linux/arm/v6, linux/arm/v7"
        );
        assert!(got("linux/unknown").is_err());
        // A variant asked for is never replaced by another.
        assert!(got("linux/arm/v5").is_err());
        // Without a variant, the only one with that os/architecture.
        let one = [item("linux/amd64/v3")];
        assert_eq!(pick(&one, &p("linux/amd64")), Ok(&one[0].0));
        assert!(pick(&one, &p("linux/amd64/v2")).is_err());
        let none: [(String, Platform); 1] = [item("unknown/unknown")];
        assert_eq!(
            pick(&none, &p("linux/amd64")).unwrap_err().to_string(),
            "no image for platform linux/amd64; there is no image with a known platform"
        );
    }

    #[test]
    fn arch_names() {
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("x86"), "386");
        assert_eq!(oci_arch("loongarch64"), "loong64");
        assert_eq!(oci_arch("sparc64"), "sparc64");
        let host = host_platform();
        assert_eq!(host.os, "linux");
        assert_eq!(host.variant, None);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(host.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(host.to_string(), "linux/arm64");
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
            "mem: no image for platform linux/s390x; there are images for: linux/amd64, linux/arm64/v8, linux/arm64"
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
                .ends_with("there are images for: linux/amd64, linux/arm/v7, linux/arm/v6"),
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
                "no image for platform linux/s390x; there are images for: linux/amd64, linux/arm64/v8"
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
