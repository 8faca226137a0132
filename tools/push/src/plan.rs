//! What a push uploads, read from the layout before any network call.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{bail, Context};
use kiln_oci::media_types;
use kiln_oci::{Descriptor, Digest, Layout};

/// A config or layer blob, uploaded from its file in the layout.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
}

/// A manifest or index, pushed with exactly the bytes the layout holds (its
/// digest is the hash of those bytes).
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
pub struct Plan {
    /// Every config and layer blob, each once, in first-seen order.
    pub blobs: Vec<Blob>,
    /// Manifests an index refers to, children before the index naming them.
    pub children: Vec<Manifest>,
    /// What the layout's index.json names; pushed last and tagged.
    pub top: Manifest,
}

impl Plan {
    pub fn from_layout(layout: &Layout) -> anyhow::Result<Plan> {
        let top = layout.top()?;
        let mut walk = Walk {
            layout,
            blobs: Vec::new(),
            seen_blobs: HashSet::new(),
            manifests: Vec::new(),
            seen_manifests: HashSet::new(),
        };
        walk.manifest(&top, 0)?;
        let Some(top) = walk.manifests.pop() else {
            bail!("index.json names nothing to push");
        };
        Ok(Plan {
            blobs: walk.blobs,
            children: walk.manifests,
            top,
        })
    }
}

struct Walk<'a> {
    layout: &'a Layout,
    blobs: Vec<Blob>,
    seen_blobs: HashSet<Digest>,
    manifests: Vec<Manifest>,
    seen_manifests: HashSet<Digest>,
}

/// Indexes of indexes are legal OCI; a bound keeps a malicious cycle finite.
const MAX_DEPTH: usize = 8;

impl Walk<'_> {
    /// Post-order: a manifest is recorded after everything it refers to.
    fn manifest(&mut self, desc: &Descriptor, depth: usize) -> anyhow::Result<()> {
        if depth > MAX_DEPTH {
            bail!("image indexes nested deeper than {MAX_DEPTH} levels");
        }
        if self.seen_manifests.contains(&desc.digest) {
            return Ok(());
        }
        if media_types::is_index(&desc.media_type) {
            let index = self.layout.read_index(desc)?;
            for child in &index.manifests {
                self.manifest(child, depth + 1)
                    .with_context(|| format!("in index {}", desc.digest))?;
            }
        } else if media_types::is_manifest(&desc.media_type) {
            let manifest = self.layout.read_manifest(desc)?;
            self.blob(&manifest.config)?;
            for layer in &manifest.layers {
                self.blob(layer)?;
            }
        } else {
            bail!(
                "{} has media type {:?}, which is neither an image manifest nor an image index",
                desc.digest,
                desc.media_type
            );
        }
        // read_index/read_manifest verified digest and size already.
        let bytes = self.layout.read_blob(&desc.digest)?;
        self.seen_manifests.insert(desc.digest.clone());
        self.manifests.push(Manifest {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            bytes,
        });
        Ok(())
    }

    fn blob(&mut self, desc: &Descriptor) -> anyhow::Result<()> {
        if !self.seen_blobs.insert(desc.digest.clone()) {
            return Ok(());
        }
        let path = self.layout.blob_path(&desc.digest);
        // Only the size is checked here: hashing every layer up front would
        // read it twice, and the registry verifies the digest on upload.
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("blob {} is missing: {}", desc.digest, path.display()))?;
        if !meta.is_file() {
            bail!("blob {}: {} is not a file", desc.digest, path.display());
        }
        if meta.len() != desc.size {
            bail!(
                "blob {} is {} bytes but its descriptor says {}",
                desc.digest,
                meta.len(),
                desc.size
            );
        }
        self.blobs.push(Blob {
            digest: desc.digest.clone(),
            size: desc.size,
            path,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::{ImageIndex, ImageManifest, LayoutWriter};

    #[test]
    fn index_plan_dedupes_blobs_and_orders_children_first() {
        let dir = tempfile::tempdir().unwrap();
        let w = LayoutWriter::new(dir.path().join("l")).unwrap();
        let shared = w.add_blob_bytes(b"shared layer").unwrap();
        let layer = Descriptor::new(media_types::OCI_LAYER_TAR_GZIP, shared.clone(), 12);
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config = w
                .add_json(
                    media_types::OCI_IMAGE_CONFIG,
                    &serde_json::json!({"architecture": arch}),
                )
                .unwrap();
            let m = ImageManifest::new(config, vec![layer.clone()]);
            children.push(w.add_json(media_types::OCI_IMAGE_MANIFEST, &m).unwrap());
        }
        let inner = w
            .add_json(
                media_types::OCI_IMAGE_INDEX,
                &ImageIndex::new(children.clone()),
            )
            .unwrap();
        // An index of an index, naming the first image again.
        let outer = w
            .add_json(
                media_types::OCI_IMAGE_INDEX,
                &ImageIndex::new(vec![inner.clone(), children[0].clone()]),
            )
            .unwrap();
        w.finish(vec![outer.clone()]).unwrap();

        let layout = Layout::open(dir.path().join("l")).unwrap();
        let plan = Plan::from_layout(&layout).unwrap();
        let blob_digests: Vec<&Digest> = plan.blobs.iter().map(|b| &b.digest).collect();
        assert_eq!(blob_digests.len(), 3, "one shared layer + two configs");
        assert_eq!(blob_digests[1], &shared);
        let order: Vec<&Digest> = plan.children.iter().map(|m| &m.digest).collect();
        assert_eq!(
            order,
            vec![&children[0].digest, &children[1].digest, &inner.digest]
        );
        assert_eq!(plan.top.digest, outer.digest);
        assert_eq!(plan.top.media_type, media_types::OCI_IMAGE_INDEX);
        assert_eq!(kiln_oci::sha256_bytes(&plan.top.bytes), outer.digest);
    }
}
