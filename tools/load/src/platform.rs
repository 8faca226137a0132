//! Choosing the image of an index that matches a platform.

use kiln_oci::media_types;
use kiln_oci::{Descriptor, Platform};

/// The platform images are loaded for by default: Linux on this machine's
/// CPU. The OS is always `linux`, because Docker Desktop and podman machine
/// on macOS and Windows run Linux containers in a VM.
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

/// The variant that counts as "no variant" for an architecture: arm64 images
/// are published both as `linux/arm64` and `linux/arm64/v8` and are the same.
fn variant_of(p: &Platform) -> Option<&str> {
    match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", Some("v8")) => None,
        (_, v) => v,
    }
}

/// Why no image was picked. The message lists what the index offers.
#[derive(Debug, PartialEq, Eq)]
pub enum PickError {
    Missing {
        wanted: Platform,
        available: Vec<String>,
    },
    Ambiguous {
        wanted: Platform,
        candidates: Vec<String>,
    },
}

impl std::fmt::Display for PickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickError::Missing { wanted, available } if available.is_empty() => write!(
                f,
                "the index has no image for platform {wanted}; it has no image with a platform at all"
            ),
            PickError::Missing { wanted, available } => write!(
                f,
                "the index has no image for platform {wanted}; it has: {}",
                available.join(", ")
            ),
            PickError::Ambiguous { wanted, candidates } => write!(
                f,
                "platform {wanted} matches several images ({}); give the variant too",
                candidates.join(", ")
            ),
        }
    }
}

impl std::error::Error for PickError {}

/// Picks the image manifest for `wanted` among an index's entries:
/// 1. the same os, architecture and variant (arm64 and arm64/v8 being equal);
/// 2. when `wanted` has no variant, the only image with that os/architecture.
///
/// Entries that are not image manifests, or have no platform, are ignored;
/// so are `unknown/unknown` entries (build attestations).
pub fn pick<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Result<&'a Descriptor, PickError> {
    let images: Vec<(&Descriptor, &Platform)> = entries
        .iter()
        .filter(|d| media_types::is_manifest(&d.media_type))
        .filter_map(|d| d.platform.as_ref().map(|p| (d, p)))
        .filter(|(_, p)| p.os != "unknown")
        .collect();
    let same_arch: Vec<&(&Descriptor, &Platform)> = images
        .iter()
        .filter(|(_, p)| p.os == wanted.os && p.architecture == wanted.architecture)
        .collect();
    if let Some((d, _)) = same_arch
        .iter()
        .find(|(_, p)| variant_of(p) == variant_of(wanted))
    {
        return Ok(d);
    }
    if wanted.variant.is_none() {
        match same_arch.as_slice() {
            [(d, _)] => return Ok(d),
            [] => {}
            several => {
                return Err(PickError::Ambiguous {
                    wanted: wanted.clone(),
                    candidates: several.iter().map(|(_, p)| p.to_string()).collect(),
                })
            }
        }
    }
    Err(PickError::Missing {
        wanted: wanted.clone(),
        available: images.iter().map(|(_, p)| p.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::sha256_bytes;

    fn entry(platform: Option<&str>, seed: &str) -> Descriptor {
        let mut d = Descriptor::new(
            media_types::OCI_IMAGE_MANIFEST,
            sha256_bytes(seed.as_bytes()),
            1,
        );
        d.platform = platform.map(|p| p.parse().unwrap());
        d
    }

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn arch_names() {
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("x86"), "386");
        assert_eq!(oci_arch("s390x"), "s390x");
        assert_eq!(oci_arch("loongarch64"), "loong64");
        assert_eq!(oci_arch("sparc64"), "sparc64");
        let host = host_platform();
        assert_eq!(host.os, "linux");
        assert_eq!(host.variant, None);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(host.to_string(), "linux/amd64");
    }

    #[test]
    fn picks_exact_and_arm64_v8() {
        let entries = vec![
            entry(Some("linux/amd64"), "a"),
            entry(Some("linux/arm64/v8"), "b"),
            entry(Some("linux/arm/v7"), "c"),
        ];
        assert_eq!(pick(&entries, &p("linux/amd64")).unwrap(), &entries[0]);
        assert_eq!(pick(&entries, &p("linux/arm64")).unwrap(), &entries[1]);
        assert_eq!(pick(&entries, &p("linux/arm64/v8")).unwrap(), &entries[1]);
        assert_eq!(pick(&entries, &p("linux/arm/v7")).unwrap(), &entries[2]);
        // No variant asked: the only linux/arm image will do.
        assert_eq!(pick(&entries, &p("linux/arm")).unwrap(), &entries[2]);

        let plain = vec![entry(Some("linux/arm64"), "d")];
        assert_eq!(pick(&plain, &p("linux/arm64/v8")).unwrap(), &plain[0]);
    }

    #[test]
    fn exact_variant_beats_fallback() {
        let entries = vec![
            entry(Some("linux/arm/v6"), "a"),
            entry(Some("linux/arm/v7"), "b"),
        ];
        assert_eq!(pick(&entries, &p("linux/arm/v7")).unwrap(), &entries[1]);
        let err = pick(&entries, &p("linux/arm")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "platform linux/arm matches several images (linux/arm/v6, linux/arm/v7); give the variant too"
        );
    }

    #[test]
    fn missing_platform_lists_what_is_there() {
        let mut nested = entry(Some("linux/s390x"), "n");
        nested.media_type = media_types::OCI_IMAGE_INDEX.to_string();
        let entries = vec![
            entry(Some("linux/amd64"), "a"),
            entry(Some("linux/arm64/v8"), "b"),
            entry(Some("unknown/unknown"), "attestation"),
            entry(None, "no-platform"),
            nested,
        ];
        let err = pick(&entries, &p("linux/s390x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the index has no image for platform linux/s390x; it has: linux/amd64, linux/arm64/v8"
        );
        // A variant that is not there is not silently replaced by another.
        let err = pick(&[entry(Some("linux/arm/v6"), "x")], &p("linux/arm/v7")).unwrap_err();
        assert!(err.to_string().contains("it has: linux/arm/v6"), "{err}");
        let err = pick(&[], &p("linux/amd64")).unwrap_err();
        assert!(
            err.to_string().contains("no image with a platform"),
            "{err}"
        );
    }
}
