//! Reading and writing OCI image layouts (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::atomic::{parent_dir, tmp_prefix};
use crate::canonical;
use crate::digest::{sha256_bytes, Digest, HashingWriter};
use crate::media_types;
use crate::model::{Descriptor, ImageIndex, ImageManifest, Platform};
use crate::select::{self, BlobStore, Selected};
use crate::source::{SourceBlob, Sources, SOURCE_FILE};

/// Where a blob a layout's manifest names is: the shallow-blob decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Located<'s> {
    /// In the layout: a regular file of the descriptor's size.
    Present(PathBuf),
    /// Absent by design: listed in the layout's `kiln-source.json` with
    /// this source, of the descriptor's size.
    Absent(&'s SourceBlob),
}

/// An existing OCI image layout directory.
#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens `dir`, checking that it has an `oci-layout` file of version 1.x.
    pub fn open(dir: impl AsRef<Path>) -> anyhow::Result<Layout> {
        let dir = dir.as_ref().to_path_buf();
        let marker = dir.join("oci-layout");
        let bytes = fs::read(&marker).with_context(|| {
            format!(
                "{} is not an OCI layout: cannot read {}",
                dir.display(),
                marker.display()
            )
        })?;
        #[derive(serde::Deserialize)]
        struct OciLayout {
            #[serde(rename = "imageLayoutVersion")]
            image_layout_version: String,
        }
        let parsed: OciLayout = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", marker.display()))?;
        if !parsed.image_layout_version.starts_with("1.") {
            bail!(
                "{}: unsupported imageLayoutVersion {:?}",
                marker.display(),
                parsed.image_layout_version
            );
        }
        Ok(Layout { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layout's `index.json`.
    pub fn index_json(&self) -> anyhow::Result<ImageIndex> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// The single entry of `index.json`: the image manifest or index this
    /// layout holds. Layouts written by the kiln tools always have exactly one.
    pub fn top(&self) -> anyhow::Result<Descriptor> {
        let mut index = self.index_json()?;
        if index.manifests.len() != 1 {
            bail!(
                "{}: index.json must have exactly one entry, found {}",
                self.dir.display(),
                index.manifests.len()
            );
        }
        Ok(index.manifests.remove(0))
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path_in(&self.dir, digest)
    }

    /// The shallow-blob decision, the same for every tool: a blob that is
    /// present is used (linked, uploaded); one that is absent but listed in
    /// `sources` (the layout's `kiln-source.json`) stays absent and is
    /// carried on; anything else is an error. Sizes are checked against
    /// `desc` (only sizes: hashing every layer up front would read it twice;
    /// whoever reads the bytes verifies the digest).
    pub fn locate<'s>(
        &self,
        sources: Option<&'s Sources>,
        desc: &Descriptor,
    ) -> anyhow::Result<Located<'s>> {
        let path = self.blob_path(&desc.digest);
        let listed = sources.and_then(|s| s.get(&desc.digest));
        match (fs::metadata(&path), listed) {
            (Ok(meta), _) => {
                if !meta.is_file() {
                    bail!("blob {}: {} is not a file", desc.digest, path.display());
                }
                if meta.len() != desc.size {
                    bail!(
                        "{}: blob {} has {} bytes but its descriptor says {}",
                        self.dir.display(),
                        desc.digest,
                        meta.len(),
                        desc.size
                    );
                }
                Ok(Located::Present(path))
            }
            (Err(e), Some(listed)) if e.kind() == io::ErrorKind::NotFound => {
                if listed.size != desc.size {
                    bail!(
                        "{}: blob {} has {} bytes according to {SOURCE_FILE} but its \
                         descriptor says {}",
                        self.dir.display(),
                        desc.digest,
                        listed.size,
                        desc.size
                    );
                }
                Ok(Located::Absent(listed))
            }
            (Err(e), None) if e.kind() == io::ErrorKind::NotFound && sources.is_some() => bail!(
                "{}: blob {} is neither in the layout nor listed in its {SOURCE_FILE}",
                self.dir.display(),
                desc.digest
            ),
            (Err(e), _) => Err(e)
                .with_context(|| format!("blob {} is missing: {}", desc.digest, path.display())),
        }
    }

    /// Reads a whole blob, verifying its digest. Meant for JSON documents;
    /// stream layers from `blob_path` instead.
    pub fn read_blob(&self, digest: &Digest) -> anyhow::Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).with_context(|| format!("reading blob {}", path.display()))?;
        let actual = sha256_bytes(&bytes);
        if &actual != digest {
            bail!(
                "blob {} is corrupt: its content has digest {actual}",
                path.display()
            );
        }
        Ok(bytes)
    }

    /// Reads the image manifest `desc` points at (OCI or Docker v2).
    pub fn read_manifest(&self, desc: &Descriptor) -> anyhow::Result<ImageManifest> {
        if !media_types::is_manifest(&desc.media_type) {
            bail!(
                "{}: {} is a {:?}, not an image manifest",
                self.dir.display(),
                desc.digest,
                desc.media_type
            );
        }
        self.read_json(desc, "image manifest")
    }

    /// Reads the image index `desc` points at (OCI index or Docker list).
    pub fn read_index(&self, desc: &Descriptor) -> anyhow::Result<ImageIndex> {
        if !media_types::is_index(&desc.media_type) {
            bail!(
                "{}: {} is a {:?}, not an image index",
                self.dir.display(),
                desc.digest,
                desc.media_type
            );
        }
        self.read_json(desc, "image index")
    }

    /// Reads and parses any JSON blob `desc` points at, checking size and digest.
    pub fn read_json<T: DeserializeOwned>(
        &self,
        desc: &Descriptor,
        what: &str,
    ) -> anyhow::Result<T> {
        let bytes = self
            .read_verified(desc)
            .with_context(|| format!("reading {what}"))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: parsing {what} {}", self.dir.display(), desc.digest))
    }

    /// The image manifest for `platform` in a layout of any origin: see
    /// `select::select_manifest` (a single manifest is taken as it is;
    /// indexes, nested ones too, and several entries are searched).
    pub fn select(&self, platform: &Platform) -> anyhow::Result<Selected> {
        select::select_manifest(self, &self.index_json()?, platform)
    }
}

impl BlobStore for Layout {
    fn read_verified(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        let bytes = self.read_blob(&desc.digest)?;
        if bytes.len() as u64 != desc.size {
            bail!(
                "{}: blob {} has {} bytes but its descriptor says {}",
                self.dir.display(),
                desc.digest,
                bytes.len(),
                desc.size
            );
        }
        Ok(bytes)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

fn blob_path_in(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Builds an OCI layout in a temporary sibling of its destination and renames
/// it into place on `finish`. Dropped unfinished, the temporary is removed.
pub struct LayoutWriter {
    tmp: tempfile::TempDir,
    dest: PathBuf,
}

impl LayoutWriter {
    pub fn new(dest: impl AsRef<Path>) -> anyhow::Result<LayoutWriter> {
        let dest = dest.as_ref().to_path_buf();
        let parent = parent_dir(&dest);
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&tmp_prefix(&dest))
            .tempdir_in(parent)
            .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
        let blobs = tmp.path().join("blobs").join("sha256");
        fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        let marker = tmp.path().join("oci-layout");
        fs::write(&marker, media_types::OCI_LAYOUT_FILE)
            .with_context(|| format!("writing {}", marker.display()))?;
        Ok(LayoutWriter { tmp, dest })
    }

    /// The temporary directory being filled.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path_in(self.tmp.path(), digest)
    }

    /// Records the blobs this layout references but lacks (a shallow layout):
    /// those of `absent` it does hold after all are dropped, and
    /// `kiln-source.json` is written only when some remain.
    pub fn write_absent(&self, mut absent: Sources) -> anyhow::Result<()> {
        absent
            .blobs
            .retain(|digest, _| !self.blob_path(digest).exists());
        if absent.is_empty() {
            return Ok(());
        }
        absent.write_to(self.path())
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn add_blob_bytes(&self, bytes: &[u8]) -> anyhow::Result<Digest> {
        let digest = sha256_bytes(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(digest)
    }

    /// Stores `value` as a canonical JSON blob; returns its descriptor.
    pub fn add_json<T: Serialize + ?Sized>(
        &self,
        media_type: &str,
        value: &T,
    ) -> anyhow::Result<Descriptor> {
        let bytes = canonical::to_vec(value)?;
        let digest = self.add_blob_bytes(&bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// Stores the file at `src` as blob `digest`: hard-linked when the
    /// filesystem allows, copied otherwise, skipped when already present.
    /// The digest is trusted (the file was produced by a kiln tool) rather
    /// than re-hashed, because layers can be large.
    pub fn add_blob_file(&self, src: &Path, digest: &Digest) -> anyhow::Result<()> {
        let dst = self.blob_path(digest);
        if dst.exists() {
            return Ok(());
        }
        // Bazel sandboxes present inputs as symlinks, and link(2) would link
        // the symlink itself; resolve it so the blob is the real file.
        let real = fs::canonicalize(src)
            .with_context(|| format!("blob {digest}: cannot read {}", src.display()))?;
        if !real.is_file() {
            bail!("blob {digest}: {} is not a regular file", src.display());
        }
        match fs::hard_link(&real, &dst) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                // Cross-device, or a filesystem without hard links.
                fs::copy(&real, &dst).with_context(|| {
                    format!(
                        "blob {digest}: copying {} to {}",
                        src.display(),
                        dst.display()
                    )
                })?;
                Ok(())
            }
        }
    }

    /// Stores a blob produced by `write`, hashed on the way: `write` gets a
    /// writer into a temporary file of the layout, which is renamed to
    /// `blobs/sha256/<digest>` afterwards. Returns the digest, the size and
    /// what `write` returned. For blobs whose digest is only known once
    /// written (layers taken out of a tarball).
    pub fn add_blob_stream<T>(
        &self,
        write: impl FnOnce(&mut dyn io::Write) -> anyhow::Result<T>,
    ) -> anyhow::Result<(Digest, u64, T)> {
        let tmp = tempfile::Builder::new()
            .prefix(".blob")
            .tempfile_in(self.tmp.path())
            .with_context(|| format!("creating a blob file in {}", self.tmp.path().display()))?;
        let mut hashing = HashingWriter::new(io::BufWriter::new(tmp.as_file()));
        let value = write(&mut hashing)?;
        let (mut buffered, digest, size) = hashing.finish();
        io::Write::flush(&mut buffered)
            .with_context(|| format!("writing {}", tmp.path().display()))?;
        drop(buffered);
        let dst = self.blob_path(&digest);
        if dst.exists() {
            return Ok((digest, size, value)); // `tmp` is removed on drop.
        }
        tmp.persist(&dst)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming a blob into {}", dst.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("setting permissions of {}", dst.display()))?;
        }
        Ok((digest, size, value))
    }

    /// Copies blob `digest` from another layout.
    pub fn add_blob_from(&self, layout: &Layout, digest: &Digest) -> anyhow::Result<()> {
        self.add_blob_file(&layout.blob_path(digest), digest)
            .with_context(|| format!("copying from layout {}", layout.dir().display()))
    }

    /// Writes `index.json` with `index_entries` and renames the layout into
    /// place, replacing whatever is at the destination (Bazel pre-creates
    /// tree artifact directories).
    pub fn finish(self, index_entries: Vec<Descriptor>) -> anyhow::Result<()> {
        self.finish_with(&ImageIndex::new(index_entries))
    }

    /// `finish` with an `index.json` document given as any serialisable
    /// value, for entries carrying fields `Descriptor` does not model (the
    /// platform's `os.version`).
    pub fn finish_with<T: Serialize + ?Sized>(self, index: &T) -> anyhow::Result<()> {
        let index_path = self.tmp.path().join("index.json");
        fs::write(&index_path, canonical::to_vec(index)?)
            .with_context(|| format!("writing {}", index_path.display()))?;
        // TempDir is created 0700; the layout is an ordinary readable tree.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(self.tmp.path(), fs::Permissions::from_mode(0o755))
                .with_context(|| format!("setting permissions of {}", self.tmp.path().display()))?;
        }
        match fs::symlink_metadata(&self.dest) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&self.dest),
            Ok(_) => fs::remove_file(&self.dest),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .with_context(|| format!("removing the previous {}", self.dest.display()))?;
        fs::rename(self.tmp.path(), &self.dest)
            .with_context(|| format!("renaming the layout into {}", self.dest.display()))?;
        // The directory now lives at `dest`: stop TempDir from cleaning up.
        let _ = self.tmp.keep();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Platform;

    #[test]
    fn the_shallow_blob_decision() {
        let dir = tempfile::tempdir().unwrap();
        let w = LayoutWriter::new(dir.path().join("l")).unwrap();
        let here = w.add_blob_bytes(b"here").unwrap();
        w.finish(vec![]).unwrap();
        let layout = Layout::open(dir.path().join("l")).unwrap();
        let desc =
            |d: &Digest, size| Descriptor::new(media_types::OCI_LAYER_TAR_GZIP, d.clone(), size);
        let away = sha256_bytes(b"away");
        let listed = SourceBlob {
            media_type: media_types::OCI_LAYER_TAR_GZIP.into(),
            size: 4,
            registry: "registry.example".into(),
            repository: "base".into(),
        };
        let mut sources = Sources::default();
        sources.add(away.clone(), listed.clone()).unwrap();
        let some = Some(&sources);

        // Present: linked, in a complete layout as in a shallow one.
        for s in [None, some] {
            assert_eq!(
                layout.locate(s, &desc(&here, 4)).unwrap(),
                Located::Present(layout.blob_path(&here))
            );
        }
        // Listed: absent.
        assert_eq!(
            layout.locate(some, &desc(&away, 4)).unwrap(),
            Located::Absent(&listed)
        );
        // Otherwise an error, and sizes must agree.
        let err = |s, d: &Descriptor| layout.locate(s, d).unwrap_err().to_string();
        let nowhere = sha256_bytes(b"nowhere");
        assert!(err(some, &desc(&nowhere, 1))
            .ends_with("is neither in the layout nor listed in its kiln-source.json"));
        assert!(err(None, &desc(&away, 4)).starts_with(&format!("blob {away} is missing: ")));
        assert!(err(some, &desc(&away, 5))
            .ends_with("4 bytes according to kiln-source.json but its descriptor says 5"));
        assert!(err(None, &desc(&here, 5)).ends_with("4 bytes but its descriptor says 5"));
    }

    fn write_image(dest: &Path) -> (Descriptor, Vec<u8>) {
        let w = LayoutWriter::new(dest).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layer_src = dir.path().join("layer");
        fs::write(&layer_src, b"layer bytes").unwrap();
        let layer_digest = sha256_bytes(b"layer bytes");
        w.add_blob_file(&layer_src, &layer_digest).unwrap();
        let config = w
            .add_json(
                media_types::OCI_IMAGE_CONFIG,
                &serde_json::json!({"os": "linux"}),
            )
            .unwrap();
        let manifest = ImageManifest::new(
            config,
            vec![Descriptor::new(
                media_types::OCI_LAYER_TAR_GZIP,
                layer_digest,
                11,
            )],
        );
        let mut desc = w
            .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
            .unwrap();
        desc.platform = Some("linux/amd64".parse::<Platform>().unwrap());
        w.finish(vec![desc.clone()]).unwrap();
        (desc, canonical::to_vec(&manifest).unwrap())
    }

    #[test]
    fn write_then_read() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("layout");
        fs::create_dir(&dest).unwrap(); // as Bazel pre-creates it
        let (desc, manifest_bytes) = write_image(&dest);

        let layout = Layout::open(&dest).unwrap();
        let top = layout.top().unwrap();
        assert_eq!(top, desc);
        let m = layout.read_manifest(&top).unwrap();
        assert_eq!(m.layers.len(), 1);
        assert_eq!(layout.read_blob(&top.digest).unwrap(), manifest_bytes);
        assert_eq!(
            fs::read(layout.blob_path(&m.layers[0].digest)).unwrap(),
            b"layer bytes"
        );
        assert!(layout.read_index(&top).is_err());
        assert_eq!(
            fs::read_to_string(dest.join("oci-layout")).unwrap(),
            media_types::OCI_LAYOUT_FILE
        );
        // Only the layout remains: no temporary siblings.
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_blob_is_detected() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("layout");
        let (desc, _) = write_image(&dest);
        let layout = Layout::open(&dest).unwrap();
        let path = layout.blob_path(&desc.digest);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"{}").unwrap();
        let err = layout.read_manifest(&desc).unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
    }

    #[test]
    fn add_blob_stream_hashes_while_writing() {
        let root = tempfile::tempdir().unwrap();
        let w = LayoutWriter::new(root.path().join("layout")).unwrap();
        let (d, n, extra) = w
            .add_blob_stream(|out| {
                out.write_all(b"streamed ")?;
                out.write_all(b"bytes")?;
                Ok(42)
            })
            .unwrap();
        assert_eq!(
            (d.clone(), n, extra),
            (sha256_bytes(b"streamed bytes"), 14, 42)
        );
        assert_eq!(fs::read(w.blob_path(&d)).unwrap(), b"streamed bytes");
        // The same content again: one blob, no temporary left.
        w.add_blob_stream(|out| Ok(out.write_all(b"streamed bytes")?))
            .unwrap();
        let err = w
            .add_blob_stream(|_| -> anyhow::Result<()> { bail!("boom") })
            .unwrap_err();
        assert_eq!(err.to_string(), "boom");
        let names: Vec<_> = fs::read_dir(w.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}"); // blobs/ and oci-layout
        assert_eq!(
            fs::read_dir(w.path().join("blobs/sha256")).unwrap().count(),
            1
        );
    }

    #[test]
    fn unfinished_writer_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        {
            let w = LayoutWriter::new(root.path().join("layout")).unwrap();
            w.add_blob_bytes(b"x").unwrap();
        }
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn open_and_top_errors() {
        let root = tempfile::tempdir().unwrap();
        let err = Layout::open(root.path()).unwrap_err();
        assert!(format!("{err:#}").contains("not an OCI layout"));

        let dest = root.path().join("empty");
        LayoutWriter::new(&dest).unwrap().finish(vec![]).unwrap();
        let err = Layout::open(&dest).unwrap().top().unwrap_err();
        assert!(format!("{err:#}").contains("exactly one entry, found 0"));
    }

    #[cfg(unix)]
    #[test]
    fn add_blob_file_resolves_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::write(&real, b"data").unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let w = LayoutWriter::new(root.path().join("layout")).unwrap();
        let d = sha256_bytes(b"data");
        w.add_blob_file(&link, &d).unwrap();
        let meta = fs::symlink_metadata(w.blob_path(&d)).unwrap();
        assert!(meta.is_file());
        // Adding the same digest again is a no-op.
        w.add_blob_file(&link, &d).unwrap();
        let err = w
            .add_blob_file(&root.path().join("nope"), &sha256_bytes(b"n"))
            .unwrap_err();
        assert!(format!("{err:#}").contains("nope"));
    }
}
