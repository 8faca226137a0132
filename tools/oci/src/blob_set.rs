//! A blob set: an image or index described by the files the build made,
//! not by a directory of copies.
//!
//! Build actions exchange descriptors; each blob File is produced once (by
//! the layer, image or index action, or the pull that fetched it) and
//! reaches the edges (push, load, `name.tar`, the `oci_layout` output group)
//! through Bazel providers. The rules write a spec naming those Files:
//!
//! ```json
//! {"target": "//app:image",
//!  "top": {"blob": "app/image.index.json", "descriptor": "app/image.index.descriptor.json"},
//!  "blobs": [{"blob": "app/x-layer.tar.gz", "digest": "app/x-layer.json"}, …],
//!  "layouts": ["external/+kiln+base/base.oci"],
//!  "ref_name": "latest"}
//! ```
//! - `top`: the manifest or index, as its blob and a descriptor file; or
//!   `{"layout": DIR}`: the single entry of that layout's `index.json`.
//! - `blobs`: a File and where its digest is: a JSON file with a `digest`
//!   key (a descriptor), or a text file holding `sha256:<hex>` or `<hex>`.
//!   Trusted, not re-hashed: the kiln tools wrote both.
//! - `layouts`: OCI layout directories whose `blobs/sha256/` hold blobs (a
//!   pulled base, a foreign base); their `kiln-source.json` names the blobs
//!   they lack (a shallow, pulled base) and where those are.
//!
//! Paths are relative to a root: the exec root in actions, the runfiles
//! directory in `bazel run` launchers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::Value;

use crate::digest::{sha256_bytes, Digest};
use crate::layer_sizes::{LayerSizes, UncompressedLayer};
use crate::layout::{Layout, LayoutWriter};
use crate::media_types::{self, ANNOTATION_REF_NAME};
use crate::model::{Descriptor, ImageIndex, ImageManifest};
use crate::select::BlobStore;
use crate::source::{SourceBlob, Sources};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSetSpec {
    pub target: String,
    pub top: TopSpec,
    #[serde(default)]
    pub blobs: Vec<BlobFile>,
    #[serde(default)]
    pub layouts: Vec<PathBuf>,
    #[serde(default)]
    pub ref_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSpec {
    #[serde(default)]
    pub blob: Option<PathBuf>,
    #[serde(default)]
    pub descriptor: Option<PathBuf>,
    #[serde(default)]
    pub layout: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobFile {
    pub blob: PathBuf,
    pub digest: PathBuf,
}

/// Where one blob is.
pub enum Located<'a> {
    File(PathBuf),
    /// Absent by design: listed in a shallow layout's `kiln-source.json`.
    Absent(&'a SourceBlob),
    Missing,
}

/// How `write_layout` puts blob files into the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Hard links, copies across filesystems: a self-contained layout (a
    /// Bazel tree artifact).
    HardOrCopy,
    /// Symbolic links to the real files: a layout that lives as long as one
    /// `bazel run` (push, load), made without copying any layer.
    Symlink,
}

pub struct BlobSet {
    target: String,
    /// The top descriptor as JSON (keeps `os.version`, which `Platform` does
    /// not model) and parsed.
    top_json: Value,
    top: Descriptor,
    files: BTreeMap<Digest, PathBuf>,
    layouts: Vec<(Layout, Option<Sources>)>,
    ref_name: Option<String>,
    /// Our layers' diff_id and uncompressed size, from their descriptors:
    /// written into layouts as `kiln-layers.json` for kiln-load.
    sizes: LayerSizes,
}

/// The diff_id and uncompressed size a layer descriptor file records (a
/// kiln-layer descriptor does; other digest files do not).
fn read_layer_sizes(path: &Path) -> Option<UncompressedLayer> {
    let bytes = fs::read(path).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some(UncompressedLayer {
        diff_id: v.get("diff_id")?.as_str()?.parse().ok()?,
        uncompressed_size: v.get("uncompressed_size")?.as_u64()?,
    })
}

/// Reads a digest from a descriptor JSON file or a `sha256:<hex>` / `<hex>` text file.
pub fn read_digest_file(path: &Path) -> anyhow::Result<Digest> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    let raw = if text.starts_with('{') {
        let v: Value =
            serde_json::from_str(text).with_context(|| format!("parsing {}", path.display()))?;
        v.get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: no \"digest\" string", path.display()))?
            .to_string()
    } else if text.starts_with("sha256:") {
        text.to_string()
    } else {
        format!("sha256:{text}")
    };
    raw.parse()
        .map_err(|e| anyhow!("{}: not a digest: {e}", path.display()))
}

impl BlobSet {
    /// Loads the spec at `spec_path`; its paths are relative to `root`.
    pub fn load(spec_path: &Path, root: &Path) -> anyhow::Result<BlobSet> {
        let bytes =
            fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
        let spec: BlobSetSpec = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", spec_path.display()))?;
        Self::from_spec(spec, root)
    }

    pub fn from_spec(spec: BlobSetSpec, root: &Path) -> anyhow::Result<BlobSet> {
        let at = |p: &Path| root.join(p);
        let target = spec.target.clone();
        let mut files = BTreeMap::new();
        let mut sizes = LayerSizes::default();
        for b in &spec.blobs {
            let digest = read_digest_file(&at(&b.digest)).with_context(|| target.clone())?;
            if let Some(layer) = read_layer_sizes(&at(&b.digest)) {
                sizes.layers.insert(digest.clone(), layer);
            }
            files.insert(digest, at(&b.blob));
        }
        let mut layouts = Vec::new();
        for dir in &spec.layouts {
            let dir = at(dir);
            let layout = Layout::open(&dir).with_context(|| target.clone())?;
            let sources = Sources::load(&dir).with_context(|| target.clone())?;
            layouts.push((layout, sources));
        }
        let (top_json, top) = match (&spec.top.blob, &spec.top.descriptor, &spec.top.layout) {
            (Some(blob), Some(descriptor), None) => {
                let path = at(descriptor);
                let bytes =
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let json: Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?;
                let desc: Descriptor = serde_json::from_value(json.clone())
                    .with_context(|| format!("parsing {}", path.display()))?;
                files.insert(desc.digest.clone(), at(blob));
                (json, desc)
            }
            (None, None, Some(dir)) => {
                let layout = Layout::open(at(dir)).with_context(|| target.clone())?;
                let desc = layout.top().with_context(|| target.clone())?;
                let sources = Sources::load(&at(dir)).with_context(|| target.clone())?;
                layouts.push((layout, sources));
                (serde_json::to_value(&desc)?, desc)
            }
            _ => bail!(
                "{}: top: give either \"blob\" and \"descriptor\", or \"layout\"",
                target
            ),
        };
        Ok(BlobSet {
            target,
            top_json,
            top,
            files,
            layouts,
            ref_name: spec.ref_name,
            sizes,
        })
    }

    pub fn top(&self) -> &Descriptor {
        &self.top
    }

    /// The target the spec is of (for messages).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn locate(&self, digest: &Digest) -> Located<'_> {
        if let Some(p) = self.files.get(digest) {
            return Located::File(p.clone());
        }
        for (layout, _) in &self.layouts {
            let p = layout.blob_path(digest);
            if p.exists() {
                return Located::File(p);
            }
        }
        for (_, sources) in &self.layouts {
            if let Some(blob) = sources.as_ref().and_then(|s| s.get(digest)) {
                return Located::Absent(blob);
            }
        }
        Located::Missing
    }

    /// Every blob the top references, in walk order, with what refers to it
    /// (for messages): the top, manifests, configs, layers.
    pub fn reachable(&self) -> anyhow::Result<Vec<(Descriptor, String)>> {
        let mut out = vec![(self.top.clone(), "the top manifest or index".to_string())];
        let mut seen = BTreeSet::new();
        let mut i = 0;
        while i < out.len() {
            let (desc, _) = out[i].clone();
            i += 1;
            if !seen.insert(desc.digest.clone()) {
                continue;
            }
            if media_types::is_index(&desc.media_type) {
                let index: ImageIndex = self.read_json(&desc)?;
                for m in index.manifests {
                    let what = format!(
                        "image {}",
                        m.platform
                            .as_ref()
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| m.digest.to_string())
                    );
                    out.push((m, what));
                }
            } else if media_types::is_manifest(&desc.media_type) {
                let manifest: ImageManifest = self.read_json(&desc)?;
                let of = format!("manifest {}", desc.digest);
                out.push((manifest.config.clone(), format!("config of {of}")));
                for (n, l) in manifest.layers.into_iter().enumerate() {
                    out.push((l, format!("layer {n} of {of}")));
                }
            }
        }
        let mut unique = BTreeSet::new();
        out.retain(|(d, _)| unique.insert(d.digest.clone()));
        Ok(out)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, desc: &Descriptor) -> anyhow::Result<T> {
        let bytes = self.read_verified(desc)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: parsing {}", self.target, desc.digest))
    }

    /// Writes an OCI layout at `dest`: `index.json` with the top (and
    /// `ref_name`), every reachable blob it has. Blobs absent by design are
    /// listed in the layout's `kiln-source.json` (a shallow layout, which
    /// `kiln-pull fetch-blobs` completes); blobs nothing holds are an error
    /// naming each of them. Returns the absent ones.
    pub fn write_layout(&self, dest: &Path, link: Link) -> anyhow::Result<Sources> {
        let writer = LayoutWriter::new(dest)?;
        let mut absent = Sources::default();
        let mut missing = Vec::new();
        for (desc, what) in self.reachable()? {
            match self.locate(&desc.digest) {
                Located::File(p) => add(&writer, &p, &desc.digest, link)?,
                Located::Absent(blob) => absent.add(
                    desc.digest.clone(),
                    SourceBlob {
                        media_type: desc.media_type.clone(),
                        ..blob.clone()
                    },
                )?,
                Located::Missing => missing.push(format!("{} ({what})", desc.digest)),
            }
        }
        if !missing.is_empty() {
            bail!(
                "{}: no input holds these blobs of the image: {}",
                self.target,
                missing.join(", ")
            );
        }
        writer.write_absent(absent.clone())?;
        self.sizes
            .write_to(writer.path())
            .with_context(|| format!("{}: writing the layout {}", self.target, dest.display()))?;
        let mut entry = self.top_json.clone();
        if let Some(name) = self.ref_name.as_deref().filter(|n| !n.is_empty()) {
            entry["annotations"] = serde_json::json!({ ANNOTATION_REF_NAME: name });
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_IMAGE_INDEX,
            "manifests": [entry],
        });
        writer
            .finish_with(&index)
            .with_context(|| format!("{}: writing the layout {}", self.target, dest.display()))?;
        Ok(absent)
    }
}

fn add(writer: &LayoutWriter, src: &Path, digest: &Digest, link: Link) -> anyhow::Result<()> {
    match link {
        Link::HardOrCopy => writer.add_blob_file(src, digest),
        Link::Symlink => {
            let dst = writer.blob_path(digest);
            if dst.exists() {
                return Ok(());
            }
            let real = fs::canonicalize(src)
                .with_context(|| format!("blob {digest}: cannot read {}", src.display()))?;
            std::os::unix::fs::symlink(&real, &dst)
                .with_context(|| format!("blob {digest}: linking {}", dst.display()))
        }
    }
}

impl BlobStore for BlobSet {
    fn read_verified(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        let path = match self.locate(&desc.digest) {
            Located::File(p) => p,
            Located::Absent(_) | Located::Missing => {
                bail!(
                    "{}: blob {} is not among the inputs",
                    self.target,
                    desc.digest
                )
            }
        };
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = sha256_bytes(&bytes);
        if actual != desc.digest || bytes.len() as u64 != desc.size {
            bail!(
                "{}: {} does not match its descriptor {} ({} bytes): it has digest {actual} and {} bytes",
                self.target,
                path.display(),
                desc.digest,
                desc.size,
                bytes.len()
            );
        }
        Ok(bytes)
    }

    fn describe(&self) -> String {
        self.target.clone()
    }

    fn is_absent(&self, desc: &Descriptor) -> bool {
        !matches!(self.locate(&desc.digest), Located::File(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical;
    use crate::model::ImageManifest;

    /// Writes blob `bytes` as `name` and its descriptor as `name.json`.
    fn blob(dir: &Path, name: &str, media_type: &str, bytes: &[u8]) -> Descriptor {
        fs::write(dir.join(name), bytes).unwrap();
        let d = Descriptor::new(media_type, sha256_bytes(bytes), bytes.len() as u64);
        fs::write(
            dir.join(format!("{name}.json")),
            canonical::to_vec(&d).unwrap(),
        )
        .unwrap();
        d
    }

    fn image(dir: &Path, layers: &[Descriptor]) -> (Descriptor, Value) {
        let config = blob(dir, "config", media_types::OCI_IMAGE_CONFIG, b"{}");
        let manifest = ImageManifest::new(config, layers.to_vec());
        let top = blob(
            dir,
            "manifest",
            media_types::OCI_IMAGE_MANIFEST,
            &canonical::to_vec(&manifest).unwrap(),
        );
        let spec = serde_json::json!({
            "target": "//t:img",
            "top": {"blob": "manifest", "descriptor": "manifest.json"},
            "blobs": [{"blob": "config", "digest": "config.json"}, {"blob": "layer", "digest": "layer.json"}],
            "ref_name": "latest",
        });
        (top, spec)
    }

    #[test]
    fn writes_a_layout_of_the_reachable_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let layer = blob(d, "layer", media_types::OCI_LAYER_TAR_GZIP, b"layer bytes");
        let (top, spec) = image(d, std::slice::from_ref(&layer));
        let set = BlobSet::from_spec(serde_json::from_value(spec).unwrap(), d).unwrap();
        let absent = set.write_layout(&d.join("out"), Link::HardOrCopy).unwrap();
        assert!(absent.is_empty());
        let layout = Layout::open(d.join("out")).unwrap();
        let entry = layout.top().unwrap();
        assert_eq!(entry.digest, top.digest);
        assert_eq!(entry.ref_name(), Some("latest"));
        assert_eq!(layout.read_blob(&layer.digest).unwrap(), b"layer bytes");
        assert_eq!(fs::read_dir(d.join("out/blobs/sha256")).unwrap().count(), 3);
    }

    #[test]
    fn missing_blobs_are_named_and_absent_ones_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let layer = blob(d, "layer", media_types::OCI_LAYER_TAR_GZIP, b"layer bytes");
        let pulled = Descriptor::new(media_types::OCI_LAYER_TAR_GZIP, sha256_bytes(b"base"), 4);
        let lost = Descriptor::new(media_types::OCI_LAYER_TAR_GZIP, sha256_bytes(b"lost"), 4);
        let (_, mut spec) = image(d, &[pulled.clone(), lost.clone(), layer]);

        // Nothing holds `pulled` or `lost`: both are named.
        let set = BlobSet::from_spec(serde_json::from_value(spec.clone()).unwrap(), d).unwrap();
        let e = set
            .write_layout(&d.join("bad"), Link::HardOrCopy)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&pulled.digest.to_string()) && e.contains(&lost.digest.to_string()),
            "{e}"
        );
        assert!(e.contains("layer 0 of manifest"), "{e}");
        assert!(!d.join("bad").exists());

        // A pulled layout lists `pulled` as absent: only `lost` is missing.
        let w = LayoutWriter::new(d.join("base")).unwrap();
        let mut sources = Sources::default();
        sources
            .add(
                pulled.digest.clone(),
                SourceBlob {
                    media_type: pulled.media_type.clone(),
                    size: 4,
                    registry: "127.0.0.1:5000".into(),
                    repository: "kiln/base".into(),
                },
            )
            .unwrap();
        w.write_absent(sources).unwrap();
        w.finish(Vec::new()).unwrap();
        spec["layouts"] = serde_json::json!(["base"]);
        let set = BlobSet::from_spec(serde_json::from_value(spec.clone()).unwrap(), d).unwrap();
        let e = set
            .write_layout(&d.join("bad"), Link::HardOrCopy)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&lost.digest.to_string()) && !e.contains(&pulled.digest.to_string()),
            "{e}"
        );

        // With `lost` at hand the layout is written, shallow.
        fs::write(d.join("lost"), b"lost").unwrap();
        fs::write(d.join("lost.json"), canonical::to_vec(&lost).unwrap()).unwrap();
        spec["blobs"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"blob": "lost", "digest": "lost.json"}));
        let set = BlobSet::from_spec(serde_json::from_value(spec).unwrap(), d).unwrap();
        let absent = set.write_layout(&d.join("out"), Link::Symlink).unwrap();
        assert_eq!(
            absent.blobs.keys().collect::<Vec<_>>(),
            vec![&pulled.digest]
        );
        assert!(d.join("out").join(crate::source::SOURCE_FILE).is_file());
        assert!(
            fs::symlink_metadata(d.join("out/blobs/sha256").join(lost.digest.hex()))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn digest_files_in_three_spellings() {
        let tmp = tempfile::tempdir().unwrap();
        let d = sha256_bytes(b"x");
        for (name, text) in [
            ("a", format!("{{\"digest\":\"{d}\"}}")),
            ("b", d.to_string()),
            ("c", d.hex().to_string()),
        ] {
            fs::write(tmp.path().join(name), text).unwrap();
            assert_eq!(read_digest_file(&tmp.path().join(name)).unwrap(), d);
        }
    }
}
