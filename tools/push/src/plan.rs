//! What a push uploads, read from the layout before any network call.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{bail, Context};
use kiln_oci::blob_set::{self, BlobSet};
use kiln_oci::media_types;
use kiln_oci::select::BlobStore;
use kiln_oci::{
    Descriptor, Digest, ImageIndex, ImageManifest, Layout, Located, Sources, SOURCE_FILE,
};
use kiln_registry::{repo_of, RepoRef};

/// A config or layer blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub source: BlobSource,
    /// What names it first (`layer of image manifest sha256:…`): errors
    /// about its bytes point there rather than at the layout's index.json.
    pub named_by: String,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSource {
    /// Its file in the layout: uploaded from there.
    Local(PathBuf),
    /// Absent from the layout (a shallow base), in this repository according
    /// to `kiln-source.json`: mounted or copied registry-side.
    Remote(RepoRef),
    /// Not a runfile (lazy mode): this file of the output tree when it is
    /// there, else the remote cache (`GET /cas/<hex>`).
    Lazy(PathBuf),
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

/// Where a walk reads manifests from and finds blobs.
trait Store {
    /// The bytes of a manifest or index, verified against `desc`.
    fn read(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>>;
    /// Where the bytes of a config or layer are.
    fn locate(&self, desc: &Descriptor) -> anyhow::Result<BlobSource>;
}

struct LayoutStore<'a> {
    layout: &'a Layout,
    /// `kiln-source.json`, when the layout is shallow.
    sources: Option<Sources>,
}

impl Store for LayoutStore<'_> {
    fn read(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        if self.sources.is_some() && !self.layout.blob_path(&desc.digest).exists() {
            bail!(
                "manifest {} is absent from this shallow layout (a platform kiln-pull did \
                 not pull?); only blobs listed in {SOURCE_FILE} may be absent",
                desc.digest
            );
        }
        if media_types::is_index(&desc.media_type) {
            self.layout.read_index(desc)?;
        } else {
            self.layout.read_manifest(desc)?;
        }
        // read_index/read_manifest verified digest and size already.
        self.layout.read_blob(&desc.digest)
    }

    fn locate(&self, desc: &Descriptor) -> anyhow::Result<BlobSource> {
        // The registry verifies the digest on upload.
        Ok(match self.layout.locate(self.sources.as_ref(), desc)? {
            Located::Present(path) => BlobSource::Local(path),
            Located::Absent(listed) => BlobSource::Remote(repo_of(listed)?),
        })
    }
}

/// A blob set (the Files the build made, named by a spec), plus, in lazy
/// mode, the blobs that are not runfiles: where Bazel would put each in
/// its output tree (present when this machine built or downloaded it).
pub struct BlobSetStore<'a> {
    pub set: &'a BlobSet,
    pub lazy: &'a HashMap<Digest, PathBuf>,
}

impl Store for BlobSetStore<'_> {
    fn read(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        self.set.read_verified(desc)
    }

    fn locate(&self, desc: &Descriptor) -> anyhow::Result<BlobSource> {
        Ok(match self.set.locate(&desc.digest) {
            blob_set::Located::File(path) => BlobSource::Local(path),
            blob_set::Located::Absent(listed) => BlobSource::Remote(repo_of(listed)?),
            blob_set::Located::Missing => match self.lazy.get(&desc.digest) {
                Some(output) => BlobSource::Lazy(output.clone()),
                None => bail!(
                    "{}: blob {} is not among the push's inputs",
                    self.set.target(),
                    desc.digest
                ),
            },
        })
    }
}

impl Plan {
    pub fn from_layout(layout: &Layout) -> anyhow::Result<Plan> {
        let top = layout.top()?;
        let store = LayoutStore {
            layout,
            sources: Sources::load(layout.dir())?,
        };
        Self::walk(&store, &top)
    }

    pub fn from_blob_set(store: &BlobSetStore) -> anyhow::Result<Plan> {
        Self::walk(store, store.set.top()).with_context(|| store.set.target().to_string())
    }

    fn walk(store: &dyn Store, top: &Descriptor) -> anyhow::Result<Plan> {
        let mut walk = Walk {
            store,
            blobs: Vec::new(),
            seen_blobs: HashSet::new(),
            manifests: Vec::new(),
            seen_manifests: HashSet::new(),
        };
        walk.manifest(top, 0)?;
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
    store: &'a dyn Store,
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
        let is_index = media_types::is_index(&desc.media_type);
        if !is_index && !media_types::is_manifest(&desc.media_type) {
            bail!(
                "{} has media type {:?}, which is neither an image manifest nor an image index",
                desc.digest,
                desc.media_type
            );
        }
        let bytes = self.store.read(desc)?;
        if is_index {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing image index {}", desc.digest))?;
            for child in &index.manifests {
                self.manifest(child, depth + 1)
                    .with_context(|| format!("in index {}", desc.digest))?;
            }
        } else {
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing image manifest {}", desc.digest))?;
            self.blob(&manifest.config, || {
                format!("config of image manifest {}", desc.digest)
            })?;
            for layer in &manifest.layers {
                self.blob(layer, || format!("layer of image manifest {}", desc.digest))?;
            }
        }
        self.seen_manifests.insert(desc.digest.clone());
        self.manifests.push(Manifest {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            bytes,
        });
        Ok(())
    }

    fn blob(&mut self, desc: &Descriptor, named_by: impl FnOnce() -> String) -> anyhow::Result<()> {
        if !self.seen_blobs.insert(desc.digest.clone()) {
            return Ok(());
        }
        let source = self.store.locate(desc)?;
        self.blobs.push(Blob {
            digest: desc.digest.clone(),
            size: desc.size,
            source,
            named_by: named_by(),
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

    #[test]
    fn shallow_layout_blobs_come_from_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let w = LayoutWriter::new(dir.path().join("l")).unwrap();
        let local = w.add_blob_bytes(b"our layer").unwrap();
        let absent = kiln_oci::sha256_bytes(b"base layer");
        let config = w
            .add_json(media_types::OCI_IMAGE_CONFIG, &serde_json::json!({}))
            .unwrap();
        let layers = vec![
            Descriptor::new(media_types::OCI_LAYER_TAR_GZIP, absent.clone(), 10),
            Descriptor::new(media_types::OCI_LAYER_TAR_GZIP, local.clone(), 9),
        ];
        let m = w
            .add_json(
                media_types::OCI_IMAGE_MANIFEST,
                &ImageManifest::new(config, layers),
            )
            .unwrap();
        let mut sources = Sources::default();
        sources
            .add(
                absent.clone(),
                kiln_oci::SourceBlob {
                    media_type: media_types::OCI_LAYER_TAR_GZIP.into(),
                    size: 10,
                    registry: "registry.example".into(),
                    repository: "kiln/base".into(),
                },
            )
            .unwrap();
        sources.write_to(w.path()).unwrap();
        w.finish(vec![m]).unwrap();

        let layout = Layout::open(dir.path().join("l")).unwrap();
        let plan = Plan::from_layout(&layout).unwrap();
        let sources: Vec<(&Digest, &BlobSource)> =
            plan.blobs.iter().map(|b| (&b.digest, &b.source)).collect();
        assert_eq!(sources.len(), 3);
        assert_eq!(
            sources[1],
            (
                &absent,
                &BlobSource::Remote(RepoRef::new("registry.example", "kiln/base").unwrap())
            )
        );
        assert_eq!(
            sources[2],
            (&local, &BlobSource::Local(layout.blob_path(&local)))
        );

        // Absent and not listed: named as missing.
        std::fs::write(dir.path().join("l").join(SOURCE_FILE), br#"{"blobs":{}}"#).unwrap();
        let err = format!("{:#}", Plan::from_layout(&layout).unwrap_err());
        assert!(
            err.ends_with(&format!(
                "blob {absent} is neither in the layout nor listed in its {SOURCE_FILE}"
            )),
            "{err}"
        );
    }
}
