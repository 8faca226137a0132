//! SBOMs as OCI 1.1 referrers of the manifests they describe.
//!
//! Each SBOM becomes an artifact manifest (`artifactType`
//! `application/spdx+json`, the OCI empty descriptor as config, the SPDX
//! document as its one layer, `subject` = the platform manifest). A
//! registry with the Referrers API (`GET /v2/<name>/referrers/<digest>`)
//! indexes it itself; elsewhere the referrers tag schema applies: an index
//! at tag `sha256-<hex>` of the subject, read, extended and written back,
//! keeping what others (cosign, other tools) put there.

use anyhow::Context;
use kiln_oci::{Descriptor, Digest};
use serde_json::{json, Value};

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI empty descriptor's blob: `{}`.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_BLOB: &[u8] = b"{}";

/// The artifact manifest attaching the SBOM blob (`sbom`) to `subject`.
pub fn sbom_manifest(subject: &Descriptor, sbom: &Descriptor) -> anyhow::Result<Vec<u8>> {
    let empty = kiln_oci::sha256_bytes(EMPTY_BLOB);
    kiln_oci::canonical::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SPDX_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": empty.to_string(), "size": EMPTY_BLOB.len(), "data": "e30="},
        "layers": [{"mediaType": SPDX_MEDIA_TYPE, "digest": sbom.digest.to_string(), "size": sbom.size}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.size},
    }))
}

/// The tag of the referrers tag schema for `subject`: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

/// Whether a referrers index (the API's answer or the fallback tag's)
/// lists `digest`.
pub fn lists(index: &[u8], digest: &Digest) -> bool {
    let Ok(doc) = serde_json::from_slice::<Value>(index) else {
        return false;
    };
    doc.get("manifests")
        .and_then(Value::as_array)
        .is_some_and(|ms| {
            ms.iter()
                .any(|m| m.get("digest").and_then(Value::as_str) == Some(&digest.to_string()))
        })
}

/// The fallback index with the referrer `manifest` (its digest and size)
/// added to `existing` (kept as it is otherwise), or a new index.
pub fn add_to_index(
    existing: Option<&[u8]>,
    digest: &Digest,
    size: u64,
) -> anyhow::Result<Vec<u8>> {
    let mut doc: Value = match existing {
        Some(bytes) => serde_json::from_slice(bytes)
            .context("parsing the referrers index at the fallback tag")?,
        None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
    };
    let entry = json!({"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": size, "artifactType": SPDX_MEDIA_TYPE});
    match doc.get_mut("manifests").and_then(Value::as_array_mut) {
        Some(ms) => ms.push(entry),
        None => doc["manifests"] = json!([entry]),
    }
    kiln_oci::canonical::to_vec(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(media: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media, kiln_oci::sha256_bytes(bytes), bytes.len() as u64)
    }

    #[test]
    fn the_sbom_manifest_is_an_oci_1_1_artifact_with_a_subject() {
        let subject = desc(OCI_MANIFEST, b"manifest");
        let sbom = desc(SPDX_MEDIA_TYPE, b"{\"spdxVersion\":\"SPDX-2.3\"}");
        let bytes = sbom_manifest(&subject, &sbom).expect("manifest");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["artifactType"], SPDX_MEDIA_TYPE);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(v["subject"]["digest"], subject.digest.to_string());
        assert_eq!(v["layers"][0]["digest"], sbom.digest.to_string());
        assert_eq!(bytes, sbom_manifest(&subject, &sbom).expect("again"));
        assert_eq!(
            fallback_tag(&subject.digest),
            format!("sha256-{}", subject.digest.hex())
        );
    }

    #[test]
    fn the_fallback_index_keeps_other_referrers() {
        let theirs = kiln_oci::sha256_bytes(b"cosign attestation");
        let existing = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": theirs.to_string(), "size": 9, "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}]})).expect("json");
        let ours = kiln_oci::sha256_bytes(b"ours");
        let merged = add_to_index(Some(&existing), &ours, 5).expect("merged");
        assert!(lists(&merged, &theirs) && lists(&merged, &ours));
        let fresh = add_to_index(None, &ours, 5).expect("new");
        assert!(lists(&fresh, &ours) && !lists(&fresh, &theirs));
        assert!(!lists(b"not json", &ours));
    }
}
