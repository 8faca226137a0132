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
    let index_path = dir.join("index.json");
    let index = read_document(&index_path)?;
    let shallow = dir.join(SOURCE_FILE).exists();
    let mut todo: Vec<Value> = descriptors(&index, "manifests");
    let mut seen = BTreeSet::new();
    let mut lines = String::new();
    while let Some(desc) = todo.pop() {
        let digest: Digest = desc
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: a descriptor has no digest", index_path.display()))?
            .parse()
            .map_err(|e| anyhow!("{}: {e}", index_path.display()))?;
        let size = desc
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("{}: descriptor {digest} has no size", dir.display()))?;
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
                        "base layout {}: blob {digest} ({})",
                        dir.display(),
                        path.display()
                    )
                })
            }
        };
        if meta.len() != size {
            bail!(
                "base layout {}: blob {digest} ({}) has {} bytes, its descriptor says {size}",
                dir.display(),
                path.display(),
                meta.len()
            );
        }
        let media_type = desc.get("mediaType").and_then(Value::as_str).unwrap_or("");
        if media_types::is_index(media_type) || media_types::is_manifest(media_type) {
            let bytes = doc_bytes(&path)?;
            check_digest(dir, &path, &digest, &kiln_oci::sha256_bytes(&bytes))?;
            let doc: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            todo.extend(descriptors(&doc, "manifests"));
            todo.extend(doc.get("config").cloned());
            todo.extend(descriptors(&doc, "layers"));
        } else {
            let (actual, _) = sha256_file(&path)?;
            check_digest(dir, &path, &digest, &actual)?;
        }
        lines.push_str(&format!("{digest} {size}\n"));
    }
    kiln_oci::atomic::write_file(stamp, lines.as_bytes())
        .with_context(|| format!("writing {}", stamp.display()))
}

fn check_digest(dir: &Path, path: &Path, want: &Digest, actual: &Digest) -> anyhow::Result<()> {
    if actual != want {
        bail!(
            "base layout {}: blob {want} ({}) is corrupt: its content has digest {actual}",
            dir.display(),
            path.display()
        );
    }
    Ok(())
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
