//! Reading `docker save` tarballs (and OCI layouts packed in a tar) without
//! unpacking them: the tar is indexed once (headers only, file data is
//! seeked over) and members are then read in place by offset. The formats
//! are described in [`super`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{blob_name, DockerSaveImage, INDEX_JSON, MANIFEST_JSON};
use crate::compression::{read_up_to, Compression, MAGIC_LEN};
use crate::digest::sha256_bytes;
use crate::model::{Descriptor, ImageIndex};
use crate::select::BlobStore;

/// Symlink/hardlink hops followed inside the tar before giving up.
const MAX_HOPS: usize = 40;

/// JSON members larger than this are refused (a manifest.json or config is
/// kilobytes; this stops a mislabelled layer from being read into memory).
const MAX_JSON: u64 = 64 << 20;

/// A gzip-compressed tarball is decompressed into a spool next to the
/// output, limited to this many times its compressed size plus
/// [`SPOOL_SLACK`]: gzip'd images are a few times smaller than their tar,
/// a gzip bomb a thousand times. A plain tar is read in place (no spool).
pub const SPOOL_RATIO: u64 = 32;

/// See [`SPOOL_RATIO`].
pub const SPOOL_SLACK: u64 = 256 << 20;

#[derive(Clone, Debug)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// Target as a normalised archive path.
    Link(String),
    /// A link whose target is outside the archive (absolute, or `..` above
    /// its root), as written.
    Outside(String),
}

/// A tarball indexed by member name.
#[derive(Debug)]
pub struct TarFile {
    /// The tarball as given (for messages).
    path: PathBuf,
    /// What is read: `path`, or the decompressed copy of a `.tar.gz`.
    data: PathBuf,
    /// Keeps the decompressed copy alive; removed on drop.
    _scratch: Option<tempfile::TempPath>,
    members: BTreeMap<String, Member>,
}

/// Normalises an archive path: no leading `/` or `./`, no `.` components or
/// repeated `/`, `..` applied (never above the root).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Decompresses the gzip stream `file` (`compressed` bytes) into `spool`,
/// failing once more than `limit` bytes come out (the spool is then
/// dropped by the caller, with the temporary file).
fn spool_gunzip(file: File, spool: &mut File, limit: u64, compressed: u64) -> anyhow::Result<()> {
    let gunzip = crate::compression::decoder(Compression::Gzip, BufReader::new(file))?;
    let mut out = io::BufWriter::new(spool);
    // One byte past the limit tells "exactly at" from "beyond".
    let written = io::copy(&mut gunzip.take(limit + 1), &mut out)?;
    io::Write::flush(&mut out)?;
    if written > limit {
        bail!(
            "it decompresses to more than {limit} bytes ({SPOOL_RATIO} times its {compressed} \
             compressed bytes plus {} MiB): refused as a likely gzip bomb; give the plain \
             (uncompressed) tar, which is read in place",
            SPOOL_SLACK >> 20
        );
    }
    Ok(())
}

/// [`normalize`], or `None` when `path` is absolute or climbs above the
/// root with `..`: it names something outside the archive.
fn normalize_within(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The directory part of a normalised archive path ("" at the root).
fn dirname(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

impl TarFile {
    /// Indexes the tarball at `path`. Members are read in place, which needs
    /// a plain tar: a gzip-compressed one (`docker save | gzip`) is first
    /// decompressed into a temporary file in `scratch_dir` (removed when the
    /// `TarFile` is dropped); other compressions are refused.
    pub fn open(path: impl AsRef<Path>, scratch_dir: &Path) -> anyhow::Result<TarFile> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut magic = [0u8; MAGIC_LEN];
        let n = read_up_to(&mut file, &mut magic)
            .with_context(|| format!("reading {}", path.display()))?;
        file.seek(SeekFrom::Start(0))
            .with_context(|| format!("reading {}", path.display()))?;
        let (data, scratch) = match Compression::detect(&magic[..n]) {
            Compression::None => (path.clone(), None),
            Compression::Gzip => {
                let compressed = file
                    .metadata()
                    .with_context(|| format!("reading {}", path.display()))?
                    .len();
                let limit = compressed
                    .saturating_mul(SPOOL_RATIO)
                    .saturating_add(SPOOL_SLACK);
                let mut tmp = tempfile::Builder::new()
                    .prefix(".kiln-base-tar")
                    .tempfile_in(scratch_dir)
                    .with_context(|| {
                        format!("creating a temporary file in {}", scratch_dir.display())
                    })?;
                spool_gunzip(file, tmp.as_file_mut(), limit, compressed)
                    .with_context(|| format!("decompressing {}", path.display()))?;
                let tmp_path = tmp.into_temp_path();
                (tmp_path.to_path_buf(), Some(tmp_path))
            }
            kind => bail!(
                "{} is a {}-compressed file; a docker save tarball must be a plain or gzip-compressed tar",
                path.display(),
                kind.name()
            ),
        };
        let file = File::open(&data).with_context(|| format!("opening {}", data.display()))?;
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut members = BTreeMap::new();
        let entries = archive
            .entries_with_seek()
            .with_context(|| format!("reading {} as a tar archive", path.display()))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("reading {} as a tar archive", path.display()))?;
            let name_raw = entry
                .path()
                .with_context(|| format!("{}: a member name is not valid", path.display()))?;
            let name = normalize(&name_raw.to_string_lossy());
            let header = entry.header();
            let member = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .with_context(|| format!("{}: member {name}", path.display()))?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let resolved = if header.entry_type() == tar::EntryType::Link {
                        // Hard links name members: archive paths, never outside.
                        normalize_within(target.trim_start_matches('/'))
                    } else if let Some(root) = target.strip_prefix('/') {
                        // Read as relative to the archive's root.
                        normalize_within(root)
                    } else {
                        match dirname(&name) {
                            "" => normalize_within(&target),
                            dir => normalize_within(&format!("{dir}/{target}")),
                        }
                    };
                    match resolved {
                        Some(r) => Member::Link(r),
                        None => Member::Outside(target),
                    }
                }
                // Directories, PAX/GNU metadata and anything else are not
                // something this reader is asked for.
                _ => continue,
            };
            // As when extracting: a later member of the same name wins.
            members.insert(name, member);
        }
        Ok(TarFile {
            path,
            data,
            _scratch: scratch,
            members,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when `name` is a file (or a link to one) in the archive.
    pub fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_ok()
    }

    fn resolve(&self, name: &str) -> anyhow::Result<(u64, u64)> {
        let mut cur = normalize(name);
        for _ in 0..=MAX_HOPS {
            match self.members.get(&cur) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => cur = target.clone(),
                Some(Member::Outside(target)) => bail!(
                    "{}: member {name:?}{} is a link to {target:?}, outside the archive: \
                     links in a docker save tarball must stay inside it",
                    self.path.display(),
                    if cur == normalize(name) {
                        String::new()
                    } else {
                        format!(" (through {cur:?})")
                    }
                ),
                None if cur != normalize(name) => bail!(
                    "{}: member {name:?} is a link to {cur:?}, which is not in the archive",
                    self.path.display()
                ),
                None => bail!("{} has no member {name:?}", self.path.display()),
            }
        }
        bail!(
            "{}: member {name:?}: too many levels of links",
            self.path.display()
        )
    }

    /// A reader over the bytes of member `name` (links followed), and its size.
    pub fn open_member(&self, name: &str) -> anyhow::Result<(impl Read, u64)> {
        let (offset, size) = self.resolve(name)?;
        let mut file =
            File::open(&self.data).with_context(|| format!("opening {}", self.path.display()))?;
        file.seek(SeekFrom::Start(offset))
            .with_context(|| format!("{}: seeking to member {name:?}", self.path.display()))?;
        Ok((file.take(size), size))
    }

    /// The whole content of a small member (JSON documents).
    pub fn read_member(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let (mut reader, size) = self.open_member(name)?;
        if size > MAX_JSON {
            bail!(
                "{}: member {name:?} has {size} bytes, too large for a JSON document",
                self.path.display()
            );
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: reading member {name:?}", self.path.display()))?;
        if bytes.len() as u64 != size {
            bail!(
                "{}: member {name:?} is truncated ({} of {size} bytes)",
                self.path.display(),
                bytes.len()
            );
        }
        Ok(bytes)
    }

    /// Parses member `name` as JSON.
    pub fn read_member_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> anyhow::Result<T> {
        let bytes = self.read_member(name)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: parsing member {name:?}", self.path.display()))
    }

    /// `manifest.json` of a `docker save` tarball, if it has one.
    pub fn docker_manifest(&self) -> anyhow::Result<Option<Vec<DockerSaveImage>>> {
        if !self.contains(MANIFEST_JSON) {
            return Ok(None);
        }
        self.read_member_json(MANIFEST_JSON).map(Some)
    }

    /// `index.json` of an OCI layout in the tarball, if it has one.
    pub fn oci_index(&self) -> anyhow::Result<Option<ImageIndex>> {
        if !self.contains(INDEX_JSON) {
            return Ok(None);
        }
        self.read_member_json(INDEX_JSON).map(Some)
    }
}

impl BlobStore for TarFile {
    fn read_verified(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        let name = blob_name(&desc.digest);
        let bytes = self.read_member(&name)?;
        if bytes.len() as u64 != desc.size {
            bail!(
                "{}: blob {} has {} bytes but its descriptor says {}",
                self.path.display(),
                desc.digest,
                bytes.len(),
                desc.size
            );
        }
        let actual = sha256_bytes(&bytes);
        if actual != desc.digest {
            bail!(
                "{}: blob {} is corrupt: its content has digest {actual}",
                self.path.display(),
                desc.digest
            );
        }
        Ok(bytes)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(kind);
        b.append_link(&mut h, name, target).unwrap();
    }

    #[test]
    fn index_and_read_members() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "./a/file", b"hello");
        let long = format!("{}/x", "d".repeat(150));
        add(&mut b, &long, b"long name");
        link(
            &mut b,
            tar::EntryType::Symlink,
            "a/rel",
            "../blobs/sha256/x",
        );
        link(&mut b, tar::EntryType::Symlink, "a/abs", "/a/file");
        link(&mut b, tar::EntryType::Link, "hard", "a/file");
        link(&mut b, tar::EntryType::Symlink, "loop", "loop");
        link(&mut b, tar::EntryType::Symlink, "a/out", "../../etc/passwd");
        link(&mut b, tar::EntryType::Symlink, "a/gone", "missing");
        add(&mut b, "blobs/sha256/x", b"blob");
        add(
            &mut b,
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":null,"Layers":["a/rel"]}]"#,
        );
        let path = dir.path().join("t.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();

        let t = TarFile::open(&path, dir.path()).unwrap();
        assert_eq!(t.read_member("a/file").unwrap(), b"hello");
        assert_eq!(t.read_member("/a/./file").unwrap(), b"hello");
        assert_eq!(t.read_member(&long).unwrap(), b"long name");
        assert_eq!(t.read_member("a/rel").unwrap(), b"blob");
        assert_eq!(t.read_member("a/abs").unwrap(), b"hello");
        assert_eq!(t.read_member("hard").unwrap(), b"hello");
        assert!(format!("{:#}", t.read_member("loop").unwrap_err()).contains("too many"));
        assert!(format!("{:#}", t.read_member("nope").unwrap_err()).contains("no member"));
        let e = format!("{:#}", t.read_member("a/out").unwrap_err());
        assert!(
            e.contains("link to \"../../etc/passwd\", outside the archive"),
            "{e}"
        );
        let e = format!("{:#}", t.read_member("a/gone").unwrap_err());
        assert!(
            e.contains("is a link to \"a/missing\", which is not"),
            "{e}"
        );
        let m = t.docker_manifest().unwrap().unwrap();
        assert_eq!(m[0].config, "c.json");
        assert_eq!(m[0].layers, ["a/rel"]);
        assert!(t.oci_index().unwrap().is_none());
    }

    #[test]
    fn gzip_tarball_is_decompressed_others_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "manifest.json", b"[]");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        let path = dir.path().join("t.tar.gz");
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let t = TarFile::open(&path, &scratch).unwrap();
        assert_eq!(t.read_member("manifest.json").unwrap(), b"[]");
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 1);
        drop(t);
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

        // A gzip bomb: the spool stops at its limit.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let path = dir.path().join("bomb.gz");
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let mut spool = tempfile::tempfile().unwrap();
        let err = spool_gunzip(File::open(&path).unwrap(), &mut spool, 1000, 10).unwrap_err();
        assert!(format!("{err:#}").contains("gzip bomb"), "{err:#}");
        assert_eq!(spool.metadata().unwrap().len(), 1001);
        let mut spool = tempfile::tempfile().unwrap();
        spool_gunzip(File::open(&path).unwrap(), &mut spool, 1 << 20, 10).unwrap();

        let path = dir.path().join("t.tar.zst");
        std::fs::write(&path, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        let err = TarFile::open(&path, &scratch).unwrap_err();
        assert!(format!("{err:#}").contains("zstd-compressed"), "{err:#}");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("./a//b/./c"), "a/b/c");
        assert_eq!(normalize("/a/../../b"), "b");
        assert_eq!(normalize("a/b/../c"), "a/c");
    }
}
