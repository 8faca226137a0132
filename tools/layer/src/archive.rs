//! `tar` and `deb` entries: reading archives into the layer's [`Tree`]
//! (and opening the archives of `concat` entries, see `concat.rs`).
//!
//! Entries are written sorted by path, so their data is needed in an order
//! that is not the archive's. A plain tar (a file, or the uncompressed
//! `data.tar` member of a .deb) is therefore indexed in place: its headers
//! are read (data skipped with seeks) and each file becomes a [`Segment`] of
//! the archive, read when the layer is written. A compressed stream cannot
//! be read at random, so it is decompressed once, streaming, and the data
//! of its regular files is copied into an anonymous temporary file (the
//! spool: deleted when the process ends; it lives in `$TMPDIR`, which Bazel
//! points into the action's sandbox) as the entries go by; headers are not
//! spooled. That spool is the alternative to holding every file of the
//! archive in memory or decompressing it again for every entry; a .deb is
//! read member by member.
//!
//! What an archive may expand to is bounded ([`ExpansionLimit`]): file data
//! counts in full, headers at one eighth (a tar of many small files is
//! mostly headers, which compress a hundred times and more), so a
//! compression bomb fails with a clear error instead of filling the disk,
//! while a genuine archive of a million files passes.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tar::EntryType;

use kiln_oci::compression::{read_up_to, Compression, MAGIC_LEN};
use kiln_oci::docker_archive::{SPOOL_RATIO, SPOOL_SLACK};
use kiln_oci::tar_writer::{
    normalize_path, read_at, Content, Meta, Origin, PathError, Segment, Tree,
};

/// An archive entry of the spec.
pub struct ArchiveSource<'a> {
    pub target: &'a str,
    pub attr: &'a str,
    /// The archive file (execroot-relative).
    pub path: &'a Path,
    /// Normalised directory to extract under; empty for the root.
    pub prefix: String,
    /// The mtime of every entry; None keeps the archive's (`mtime.preserve`).
    pub mtime: Option<u64>,
    /// See [`ExpansionLimit`].
    pub expansion_ratio: u64,
}

/// The default of the `archive_expansion_ratio` attribute: the rule of
/// docker-save bases ([`SPOOL_RATIO`]).
pub const DEFAULT_EXPANSION_RATIO: u64 = SPOOL_RATIO;

/// What reading an archive of `input` bytes may expand to: `ratio` times
/// `input` plus [`SPOOL_SLACK`], counting the data of the files copied into
/// the spool in full and every other decompressed byte (headers, long
/// names, PAX records) at one eighth. Real tarballs compress far less
/// (Debian's data.tar.xz about 4 times); kiln's own gzip layer of a million
/// empty files (7 MB for 512 MB of headers) counts 64 MB; a compression
/// bomb (8 GiB from a 263 KB zstd file) stops here. `ratio` is the
/// target's `archive_expansion_ratio`, named in the error.
#[derive(Clone, Copy, Debug)]
pub struct ExpansionLimit {
    pub input: u64,
    pub ratio: u64,
}

/// Headers count this fraction of their bytes (see [`ExpansionLimit`]).
const HEADER_SHARE: u64 = 8;

impl ExpansionLimit {
    pub fn bytes(self) -> u64 {
        self.input
            .saturating_mul(self.ratio)
            .saturating_add(SPOOL_SLACK)
    }

    fn error(self) -> String {
        format!(
            "it expands to more than {} bytes, the limit for an archive of {} bytes \
             ({} times its size plus {} MiB, file data in full and headers at one eighth; \
             a compression bomb?): if the archive is genuine, raise the target's \
             `archive_expansion_ratio` (now {})",
            self.bytes(),
            self.input,
            self.ratio,
            SPOOL_SLACK >> 20,
            self.ratio
        )
    }
}

/// A reader and seeker of an archive's plain tar stream.
pub trait TarStream: Read + Seek {}
impl<T: Read + Seek> TarStream for T {}

/// Counts the bytes coming out of a decompressor and stops at `cap` (no
/// charge can stay within the limit past it). Seeks forward (all the tar
/// reader asks for, to skip data) by reading.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
    cap: u64,
    limit: ExpansionLimit,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.cap {
            return Err(io::Error::other(self.limit.error()));
        }
        Ok(n)
    }
}

impl<R: Read> Seek for Counted<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Current(n) if n >= 0 => {
                io::copy(&mut self.take(n.unsigned_abs()), &mut io::sink())?;
                Ok(self.count.load(Ordering::Relaxed))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a decompressed stream only skips forward",
            )),
        }
    }
}

/// Where the data of an archive's regular files comes from, and what
/// reading it has cost so far (see [`ExpansionLimit`]).
pub struct FileData {
    /// A plain tar: file data is read in place from it.
    in_place: Option<Segment>,
    /// The spool (created on first use) and its length: decompressed file
    /// data and expanded sparse files.
    spool: Option<(Arc<File>, u64)>,
    /// Bytes out of the decompressor so far (0 for a plain tar).
    decompressed: Arc<AtomicU64>,
    /// Of those, file data (the rest are headers).
    streamed_data: u64,
    limit: ExpansionLimit,
}

impl FileData {
    fn charged(&self, more_data: u64) -> u64 {
        let spooled = self.spool.as_ref().map_or(0, |s| s.1);
        let headers = self
            .decompressed
            .load(Ordering::Relaxed)
            .saturating_sub(self.streamed_data);
        spooled
            .saturating_add(more_data)
            .saturating_add(headers / HEADER_SHARE)
    }

    /// Fails once what was read so far is over the limit.
    pub fn check(&self) -> Result<(), String> {
        if self.charged(0) > self.limit.bytes() {
            return Err(self.limit.error());
        }
        Ok(())
    }

    /// The bytes of the regular file `entry`: a range of the plain tar, or
    /// copied into the spool.
    pub fn regular<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<Segment, String> {
        let size = entry.size();
        if let Some(tar) = &self.in_place {
            return tar.sub(entry.raw_file_position(), size).ok_or_else(|| {
                format!("its {size} bytes of data extend past the end of the archive (truncated?)")
            });
        }
        if self.charged(size) > self.limit.bytes() {
            return Err(self.limit.error());
        }
        self.streamed_data += size;
        self.copy(entry, size)
            .map_err(|e| format!("copying its data: {e}"))
    }

    /// Expands a GNU sparse entry (the tar crate fills the holes when it is
    /// read) into the spool and returns its bytes there.
    pub fn sparse<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<Segment, String> {
        if self.in_place.is_none() {
            self.streamed_data += entry.size();
        }
        let room = self.limit.bytes().saturating_sub(self.charged(0));
        let seg = self
            .copy(entry, room.saturating_add(1))
            .map_err(|e| format!("expanding the sparse file: {e}"))?;
        if seg.len() > room {
            return Err(self.limit.error());
        }
        Ok(seg)
    }

    /// Appends at most `max` bytes of `entry` to the spool.
    fn copy(&mut self, entry: &mut impl Read, max: u64) -> io::Result<Segment> {
        let (file, end) = match &mut self.spool {
            Some(s) => s,
            None => self.spool.insert((Arc::new(tempfile::tempfile()?), 0)),
        };
        let mut out = BufWriter::with_capacity(256 * 1024, &**file);
        let n = io::copy(&mut entry.take(max), &mut out)?;
        out.flush()?;
        let seg = Segment::new(file.clone(), *end, n);
        *end += n;
        Ok(seg)
    }
}

/// The normalised directory an archive is extracted under: "" for `/`.
pub fn prefix(path: &str) -> Result<String, PathError> {
    match normalize_path(path) {
        Ok(p) => Ok(p),
        Err(PathError::Empty) => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Adds every entry of the tarball `src.path` (plain, gzip, zstd or xz).
pub fn add_tar(tree: &mut Tree, src: &ArchiveSource) -> anyhow::Result<()> {
    let (target, attr, path) = (src.target, src.attr, src.path.display());
    let (file, len) = open(src.path).with_context(|| format!("{target}: {attr}: {path}"))?;
    add_archive(tree, src, &path.to_string(), Segment::new(file, 0, len))
}

/// Adds every entry of the data member of the Debian package `src.path`.
pub fn add_deb(tree: &mut Tree, src: &ArchiveSource) -> anyhow::Result<()> {
    let (target, attr, path) = (src.target, src.attr, src.path.display());
    let (file, len) = open(src.path).with_context(|| format!("{target}: {attr}: {path}"))?;
    let (archive, seg) = deb_data(target, attr, src.path, file, len)?;
    add_archive(tree, src, &archive, seg)
}

/// The data member of the .deb `path` (open as `file`, `len` bytes) and its
/// name for messages: `x.deb (data.tar.xz)`.
fn deb_data(
    target: &str,
    attr: &str,
    path: &Path,
    file: Arc<File>,
    len: u64,
) -> anyhow::Result<(String, Segment)> {
    let path = path.display();
    let member = deb_data_member(&file, len)
        .map_err(|e| anyhow!("{target}: {attr}: {path}: {e}"))?
        .ok_or_else(|| {
            anyhow!(
                "{target}: {attr}: {path}: no data.tar, data.tar.gz, data.tar.xz or \
                 data.tar.zst member: not a Debian binary package?"
            )
        })?;
    Ok((
        format!("{path} ({})", member.name),
        Segment::new(file, member.offset, member.size),
    ))
}

fn open(path: &Path) -> anyhow::Result<(Arc<File>, u64)> {
    let file = File::open(path).context("opening")?;
    let meta = file.metadata().context("reading its metadata")?;
    if !meta.is_file() {
        bail!("not a regular file");
    }
    Ok((Arc::new(file), meta.len()))
}

/// Adds the entries of the (possibly compressed) tar stream in `seg`;
/// `archive` names it in messages.
fn add_archive(
    tree: &mut Tree,
    src: &ArchiveSource,
    archive: &str,
    seg: Segment,
) -> anyhow::Result<()> {
    let (tar, data) = plain_tar(src.target, src.attr, archive, seg, src.expansion_ratio)?;
    index(tree, src, archive, tar, data)
}

/// The plain tar stream in `seg` (itself, or its decompression, read once)
/// and where its file data comes from.
fn plain_tar(
    target: &str,
    attr: &str,
    archive: &str,
    seg: Segment,
    ratio: u64,
) -> anyhow::Result<(Box<dyn TarStream>, FileData)> {
    let mut magic = [0u8; MAGIC_LEN];
    let n = read_up_to(&mut seg.reader(), &mut magic)
        .with_context(|| format!("{target}: {attr}: {archive}: reading"))?;
    let limit = ExpansionLimit {
        input: seg.len(),
        ratio,
    };
    let decompressed = Arc::new(AtomicU64::new(0));
    let data = |in_place| FileData {
        in_place,
        spool: None,
        decompressed: decompressed.clone(),
        streamed_data: 0,
        limit,
    };
    Ok(match Compression::detect(&magic[..n]) {
        Compression::None => (Box::new(seg.reader()), data(Some(seg))),
        Compression::Bzip2 => bail!(
            "{target}: {attr}: {archive}: bzip2 compression is not supported \
             (plain, gzip, zstd and xz are)"
        ),
        format => {
            let input = BufReader::with_capacity(256 * 1024, seg.reader());
            let decoder = kiln_oci::compression::decoder(format, input)
                .with_context(|| format!("{target}: {attr}: {archive}: decompressing"))?;
            let stream = Counted {
                inner: decoder,
                count: decompressed.clone(),
                // Headers count one eighth: more than this many bytes can
                // never be within the limit.
                cap: limit.bytes().saturating_mul(HEADER_SHARE),
                limit,
            };
            (Box::new(stream), data(None))
        }
    })
}

/// The plain tar stream of `path`, a .deb (its data member, when the file
/// starts with the `ar` magic) or a tarball in any supported compression,
/// where its file data comes from, and the archive's name for messages
/// (`x.deb (data.tar.xz)` or `x.tar`).
pub fn open_tar_or_deb(
    target: &str,
    attr: &str,
    path: &Path,
    ratio: u64,
) -> anyhow::Result<(String, Box<dyn TarStream>, FileData)> {
    let shown = path.display();
    let (file, len) = open(path).with_context(|| format!("{target}: {attr}: {shown}"))?;
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut Segment::new(file.clone(), 0, len).reader(), &mut magic)
        .with_context(|| format!("{target}: {attr}: {shown}: reading"))?;
    let (archive, seg) = if &magic[..n] == AR_MAGIC {
        deb_data(target, attr, path, file, len)?
    } else {
        (shown.to_string(), Segment::new(file, 0, len))
    };
    let (tar, data) = plain_tar(target, attr, &archive, seg, ratio)?;
    Ok((archive, tar, data))
}

/// Where an archive entry lands: `prefix` joined with the normalised name;
/// None for the archive's root (`./`, `/`, `.`).
pub fn entry_path(prefix: &str, name: &str) -> Result<Option<String>, PathError> {
    match normalize_path(name) {
        Ok(rel) if prefix.is_empty() => Ok(Some(rel)),
        Ok(rel) => Ok(Some(format!("{prefix}/{rel}"))),
        Err(PathError::Empty) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the headers of the plain tar stream `tar` (skipping data with
/// seeks) and adds each entry to the tree, its data from `data`.
fn index(
    tree: &mut Tree,
    src: &ArchiveSource,
    archive: &str,
    tar: Box<dyn TarStream>,
    mut data: FileData,
) -> anyhow::Result<()> {
    let (target, attr) = (src.target, src.attr);
    let read_err = |e: io::Error| anyhow!("{target}: {attr}: {archive}: reading the archive: {e}");
    let source: Arc<str> = format!("{attr} {archive}").into();
    let mut links = Vec::new();
    let mut reader = tar::Archive::new(tar);
    for entry in reader.entries_with_seek().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        data.check()
            .map_err(|e| anyhow!("{target}: {attr}: {archive}: {e}"))?;
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions() {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw).map_err(|e| {
            anyhow!(
                "{target}: {attr}: {archive}: entry {:?}: the name is not UTF-8",
                String::from_utf8_lossy(e.as_bytes())
            )
        })?;
        let fail = |what: String| anyhow!("{target}: {attr}: {archive}: entry {name:?}: {what}");
        let Some(path) = entry_path(&src.prefix, &name).map_err(|e| fail(e.to_string()))? else {
            continue;
        };
        let origin = Origin::entry(&source, &name);
        let meta = entry_meta(&mut entry, src.mtime).map_err(|e| fail(e.to_string()))?;
        let link_name = || -> anyhow::Result<String> {
            let raw = entry
                .link_name_bytes()
                .ok_or_else(|| fail("the link has no target".into()))?;
            String::from_utf8(raw.into_owned())
                .map_err(|_| fail("the link target is not UTF-8".into()))
        };
        let content = match ty {
            // Pre-POSIX archives mark directories only by a trailing `/`.
            EntryType::Regular if name.ends_with('/') && entry.size() == 0 => Content::Dir,
            EntryType::Regular | EntryType::Continuous => {
                Content::Segment(data.regular(&mut entry).map_err(fail)?)
            }
            EntryType::GNUSparse => Content::Segment(data.sparse(&mut entry).map_err(fail)?),
            EntryType::Directory => Content::Dir,
            EntryType::Symlink => Content::Symlink(link_name()?),
            EntryType::Link => {
                let to = link_name()?;
                let full = entry_path(&src.prefix, &to)
                    .map_err(|e| fail(format!("hard link to {to:?}: {e}")))?
                    .ok_or_else(|| fail(format!("hard link to {to:?}: the archive's root")))?;
                links.push(path.clone());
                Content::Hardlink(full)
            }
            EntryType::Char | EntryType::Block => {
                let h = entry.header();
                let major = h.device_major().map_err(|e| fail(e.to_string()))?;
                let minor = h.device_minor().map_err(|e| fail(e.to_string()))?;
                let (major, minor) = (major.unwrap_or(0), minor.unwrap_or(0));
                if ty == EntryType::Char {
                    Content::CharDevice { major, minor }
                } else {
                    Content::BlockDevice { major, minor }
                }
            }
            EntryType::Fifo => Content::Fifo,
            other => {
                return Err(fail(format!(
                    "entry type {:?} is not supported (files, directories, links, devices \
                     and FIFOs are)",
                    char::from(other.as_byte())
                )))
            }
        };
        tree.add(&path, content, meta, origin)
            .map_err(|e| anyhow!("{target}: {attr}: {e}"))?;
    }
    // A hard link names an entry before it in its archive (or anything
    // already in the layer).
    for link in links {
        tree.check_hardlink(&link)
            .map_err(|e| anyhow!("{target}: {attr}: {e}"))?;
    }
    Ok(())
}

/// The entry's mode, numeric owner (PAX `uid`/`gid` applied by the tar
/// crate) and mtime: `mtime` when given, else its own (PAX `mtime` first).
fn entry_meta<R: Read>(entry: &mut tar::Entry<R>, mtime: Option<u64>) -> io::Result<Meta> {
    let pax_mtime = pax_records(entry)?;
    let mtime = match (mtime, pax_mtime) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => entry.header().mtime()?,
    };
    let h = entry.header();
    // Owners are 32-bit in every runtime; a larger one (base-256 headers
    // allow 2^63-1) would be written as something else.
    let id = |what: &str, v: u64| {
        if v > u64::from(u32::MAX) {
            Err(io::Error::other(format!(
                "its {what} {v} is above 4294967295 (2^32-1), the largest owner id"
            )))
        } else {
            Ok(v)
        }
    };
    Ok(Meta {
        mode: h.mode()? & 0o7777,
        uid: id("uid", h.uid()?)?,
        gid: id("gid", h.gid()?)?,
        mtime,
    })
}

/// Checks the entry's PAX records and returns its PAX `mtime` (`123` or
/// `123.456`; whole seconds kept, times before the epoch as 0). PAX sparse
/// files (`GNU.sparse.*`) are refused: the tar crate would read their sparse
/// map as file data.
pub fn pax_records<R: Read>(entry: &mut tar::Entry<R>) -> io::Result<Option<u64>> {
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(None);
    };
    let mut mtime = None;
    for ext in exts {
        let ext = ext?;
        let key = ext.key_bytes();
        if key.starts_with(b"GNU.sparse.") {
            return Err(invalid(
                "PAX sparse files are not supported (GNU sparse headers are)",
            ));
        }
        if key == b"mtime" {
            let value = ext
                .value()
                .map_err(|_| invalid("a PAX mtime is not UTF-8"))?;
            let whole = value.split('.').next().unwrap_or("");
            mtime = Some(if whole.starts_with('-') {
                0
            } else {
                whole
                    .parse()
                    .map_err(|_| invalid(&format!("invalid PAX mtime {value:?}")))?
            });
        }
    }
    Ok(mtime)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The data member of a .deb.
#[derive(Debug, PartialEq, Eq)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
}

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER: u64 = 60;

/// Finds the `data.tar*` member of an `ar` archive (the .deb container):
/// `!<arch>\n`, then per member a 60-byte header (name 16, mtime 12, uid 6,
/// gid 6, mode 8, decimal size 10, "`\n") and its data, padded to an even
/// offset. Names may end in `/` (GNU ar) or be BSD `#1/<len>` long names.
/// Only headers are read.
fn deb_data_member(file: &File, len: u64) -> Result<Option<Member>, String> {
    let mut magic = [0u8; 8];
    if read_exact_at(file, &mut magic, 0).is_err() || &magic != AR_MAGIC {
        return Err("not a Debian package (no `!<arch>` ar header)".into());
    }
    let mut pos = AR_MAGIC.len() as u64;
    while pos < len {
        let mut h = [0u8; AR_HEADER as usize];
        read_exact_at(file, &mut h, pos)
            .map_err(|e| format!("reading the ar member header at offset {pos}: {e}"))?;
        if &h[58..60] != b"`\n" {
            return Err(format!("bad ar member header at offset {pos}"));
        }
        let size = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim_end().parse::<u64>().ok())
            .ok_or_else(|| format!("bad ar member size at offset {pos}"))?;
        let start = pos + AR_HEADER;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= len)
            .ok_or_else(|| format!("the ar member at offset {pos} extends past the end"))?;
        let raw_name = String::from_utf8_lossy(&h[..16]).trim_end().to_string();
        let (name, offset) = match raw_name.strip_prefix("#1/") {
            Some(n) => {
                let n: u64 = n
                    .parse()
                    .ok()
                    .filter(|&n| n <= size)
                    .ok_or_else(|| format!("bad BSD ar long name at offset {pos}"))?;
                let mut name = vec![0u8; n as usize];
                read_exact_at(file, &mut name, start)
                    .map_err(|e| format!("reading the ar member name at offset {pos}: {e}"))?;
                let name = String::from_utf8_lossy(&name)
                    .trim_end_matches('\0')
                    .to_string();
                (name, start + n)
            }
            None => (raw_name.trim_end_matches('/').to_string(), start),
        };
        if name == "data.tar" || name.starts_with("data.tar.") {
            return Ok(Some(Member {
                name,
                offset,
                size: end - offset,
            }));
        }
        pos = end + (size & 1);
    }
    Ok(None)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], offset + done as u64)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        assert_eq!(entry_path("", "./usr/bin/").unwrap().unwrap(), "usr/bin");
        assert_eq!(entry_path("opt", "/a//b").unwrap().unwrap(), "opt/a/b");
        assert_eq!(entry_path("opt", "./").unwrap(), None);
        assert_eq!(entry_path("", ".").unwrap(), None);
        assert_eq!(entry_path("", "../x"), Err(PathError::ParentDir));
        assert_eq!(entry_path("", "a/../../x"), Err(PathError::ParentDir));
        assert_eq!(prefix("/").unwrap(), "");
        assert_eq!(prefix("/opt/x/").unwrap(), "opt/x");
        assert!(prefix("/a/..").is_err());
    }

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            let h = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                100644,
                data.len()
            );
            assert_eq!(h.len(), 60);
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    fn find(bytes: &[u8]) -> Result<Option<Member>, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.deb");
        std::fs::write(&p, bytes).unwrap();
        deb_data_member(&File::open(&p).unwrap(), bytes.len() as u64)
    }

    fn zstd_tar_of(dir: &Path, size: u64) -> std::path::PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "zeros", io::repeat(0).take(size))
            .unwrap();
        let path = dir.join("bomb.tar.zst");
        let tar = b.into_inner().unwrap();
        std::fs::write(&path, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
        path
    }

    #[test]
    fn expansion_is_bounded_and_the_limit_can_be_raised() {
        let dir = tempfile::tempdir().unwrap();
        let path = zstd_tar_of(dir.path(), (256 << 20) + (1 << 20));
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len < 100_000, "{len}");
        let src = |ratio| ArchiveSource {
            target: "//t:l",
            attr: "tars",
            path: &path,
            prefix: String::new(),
            mtime: Some(0),
            expansion_ratio: ratio,
        };
        let err = add_tar(&mut Tree::new(), &src(32)).unwrap_err().to_string();
        let limit = len * 32 + (256 << 20);
        assert!(
            err.starts_with("//t:l: tars: ")
                && err.contains(&format!(
                    "entry \"zeros\": it expands to more than {limit} bytes, the limit for an \
                     archive of {len} bytes (32 times its size plus 256 MiB"
                ))
                && err.contains("raise the target's `archive_expansion_ratio` (now 32)"),
            "{err}"
        );
        // Raised, it passes (the file is spooled).
        let mut tree = Tree::new();
        add_tar(&mut tree, &src(1000)).unwrap();
        assert_eq!(tree.len(), 1);
    }

    #[test]
    fn headers_count_one_eighth() {
        let limit = ExpansionLimit {
            input: 1000,
            ratio: 32,
        };
        let data = FileData {
            in_place: None,
            spool: None,
            decompressed: Arc::new(AtomicU64::new(0)),
            streamed_data: 0,
            limit,
        };
        let at = |headers: u64| {
            data.decompressed.store(headers, Ordering::Relaxed);
            data.check()
        };
        assert_eq!(limit.bytes(), 32_000 + (256 << 20));
        assert!(at(limit.bytes() * 8).is_ok());
        assert!(at(limit.bytes() * 8 + 8)
            .unwrap_err()
            .contains("archive_expansion_ratio"));
    }

    #[test]
    fn finds_the_data_member() {
        let deb = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz/", b"abc"),
            ("data.tar.zst/", b"0123456"),
        ]);
        let m = find(&deb).unwrap().unwrap();
        assert_eq!(m.name, "data.tar.zst");
        assert_eq!(&deb[m.offset as usize..][..m.size as usize], b"0123456");

        // BSD long name.
        let mut data = b"data.tar\0\0\0\0".to_vec();
        data.extend_from_slice(b"TAR");
        let deb = ar(&[("#1/12", &data)]);
        let m = find(&deb).unwrap().unwrap();
        assert_eq!((m.name.as_str(), m.size), ("data.tar", 3));

        assert_eq!(find(&ar(&[("debian-binary", b"2.0\n")])).unwrap(), None);
        assert!(find(b"PK\x03\x04")
            .unwrap_err()
            .contains("not a Debian package"));
        let mut cut = ar(&[("data.tar", b"0123456789")]);
        cut.truncate(cut.len() - 3);
        assert!(find(&cut).unwrap_err().contains("past the end"));
    }

    #[test]
    fn owners_above_32_bits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.tar");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid((1 << 63) - 1);
        b.append_data(&mut h, "f", io::empty()).unwrap();
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let src = ArchiveSource {
            target: "//t:l",
            attr: "tars",
            path: &path,
            prefix: String::new(),
            mtime: Some(0),
            expansion_ratio: DEFAULT_EXPANSION_RATIO,
        };
        let e = add_tar(&mut Tree::new(), &src).unwrap_err().to_string();
        assert!(
            e.contains("//t:l: tars:") && e.contains("uid 9223372036854775807 is above"),
            "{e}"
        );
    }
}
