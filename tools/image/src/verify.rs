//! `kiln-image verify-layout`: checks every blob an OCI layout given as a
//! base names (index → manifests → configs and layers): its size always,
//! its sha256 once. It runs as its own action per base (`KilnVerifyBase`),
//! so Bazel caches the verification: an image rebuilt on the same base does
//! not hash the base again. Blobs absent from a layout that has a
//! `kiln-source.json` (a shallow layout) are left to the image action,
//! which checks them against that file.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use kiln_oci::{media_types, sha256_file, Digest, SOURCE_FILE};
use serde_json::Value;

/// Index and manifest documents larger than this are refused (the
/// distribution registry's own limit is 4 MiB).
pub const MAX_DOCUMENT: u64 = 8 << 20;

/// Verifies the layout at `dir`; writes `stamp` (the checked blobs, one
/// `sha256:… SIZE` a line) when every blob is whole.
pub fn verify_layout(dir: &Path, stamp: &Path) -> anyhow::Result<()> {
    let index = read_document(&dir.join("index.json"))?;
    let shallow = dir.join(SOURCE_FILE).exists();
    // Each descriptor with the document that names it (`index.json`, or an
    // index or manifest by digest): a corrupt layer is reported against the
    // manifest that lists it.
    let mut todo: Vec<(Value, String)> = named(descriptors(&index, "manifests"), "index.json");
    let mut seen = BTreeSet::new();
    let mut lines = String::new();
    while let Some((desc, named_by)) = todo.pop() {
        let digest: Digest = desc
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                anyhow!(
                    "base layout {}: {named_by}: a descriptor has no digest",
                    dir.display()
                )
            })?
            .parse()
            .map_err(|e| anyhow!("base layout {}: {named_by}: {e}", dir.display()))?;
        let size = desc.get("size").and_then(Value::as_u64).ok_or_else(|| {
            anyhow!(
                "base layout {}: {named_by}: descriptor {digest} has no size",
                dir.display()
            )
        })?;
        if !seen.insert(digest.clone()) {
            continue;
        }
        let path = dir.join("blobs").join("sha256").join(digest.hex());
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && shallow => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "base layout {}: blob {digest} ({}), named by {named_by}",
                        dir.display(),
                        path.display()
                    )
                })
            }
        };
        if meta.len() != size {
            bail!(
                "base layout {}: blob {digest} ({}) has {} bytes, its descriptor in {named_by} \
                 says {size}",
                dir.display(),
                path.display(),
                meta.len()
            );
        }
        let media_type = desc.get("mediaType").and_then(Value::as_str).unwrap_or("");
        if media_types::is_index(media_type) || media_types::is_manifest(media_type) {
            let bytes = doc_bytes(&path)?;
            check_digest(
                dir,
                &path,
                &digest,
                &kiln_oci::sha256_bytes(&bytes),
                &named_by,
            )?;
            let doc: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            let this = if media_types::is_index(media_type) {
                format!("image index {digest}")
            } else {
                format!("image manifest {digest}")
            };
            todo.extend(named(descriptors(&doc, "manifests"), &this));
            todo.extend(named(doc.get("config").cloned(), &this));
            todo.extend(named(descriptors(&doc, "layers"), &this));
        } else {
            let (actual, _) = sha256_file(&path)?;
            check_digest(dir, &path, &digest, &actual, &named_by)?;
        }
        lines.push_str(&format!("{digest} {size}\n"));
    }
    kiln_oci::atomic::write_file(stamp, lines.as_bytes())
        .with_context(|| format!("writing {}", stamp.display()))
}

fn check_digest(
    dir: &Path,
    path: &Path,
    want: &Digest,
    actual: &Digest,
    named_by: &str,
) -> anyhow::Result<()> {
    if actual != want {
        bail!(
            "base layout {}: blob {want} ({}), named by {named_by}, is corrupt: its content has \
             digest {actual}",
            dir.display(),
            path.display()
        );
    }
    Ok(())
}

/// Descriptors paired with the document naming them.
fn named(descs: impl IntoIterator<Item = Value>, by: &str) -> Vec<(Value, String)> {
    descs.into_iter().map(|d| (d, by.to_string())).collect()
}

fn doc_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_DOCUMENT {
        bail!(
            "{} has {len} bytes; index and manifest documents are limited to {MAX_DOCUMENT}",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_document(path: &Path) -> anyhow::Result<Value> {
    serde_json::from_slice(&doc_bytes(path)?).with_context(|| format!("parsing {}", path.display()))
}

fn descriptors(doc: &Value, key: &str) -> Vec<Value> {
    doc.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::sha256_bytes;
    use std::fs;

    /// Writes `bytes` as a blob of the layout `dir`; returns its descriptor.
    fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
        let digest = sha256_bytes(bytes);
        fs::write(dir.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
    }

    #[test]
    fn a_corrupt_layer_is_reported_against_the_manifest_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let layer = blob(dir, media_types::OCI_LAYER_TAR_GZIP, b"layer bytes");
        let config = blob(dir, media_types::OCI_IMAGE_CONFIG, b"{}");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_IMAGE_MANIFEST,
            "config": config,
            "layers": [layer],
        });
        let manifest = blob(
            dir,
            media_types::OCI_IMAGE_MANIFEST,
            manifest.to_string().as_bytes(),
        );
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
        fs::write(dir.join("index.json"), index.to_string()).unwrap();
        let stamp = dir.join("stamp");
        verify_layout(dir, &stamp).unwrap();

        // The same size, other bytes.
        let layer_digest = layer["digest"].as_str().unwrap();
        let layer_path = dir.join("blobs/sha256").join(&layer_digest[7..]);
        fs::write(&layer_path, b"LAYER BYTES").unwrap();
        let err = format!("{:#}", verify_layout(dir, &stamp).unwrap_err());
        let manifest_digest = manifest["digest"].as_str().unwrap();
        assert!(
            err.contains(&format!(
                "blob {layer_digest} ({}), named by image manifest {manifest_digest}, is corrupt",
                layer_path.display()
            )) && !err.contains("index.json"),
            "{err}"
        );
    }
}
