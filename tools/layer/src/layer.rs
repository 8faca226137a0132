//! Spec parsing, validation and the single streaming pass
//! tar → sha256 (diff_id) → gzip or zstd on worker threads → sha256 + count
//! → file; and `<name>-layer.tar` decompressed from the blob on request.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use kiln_oci::atomic::AtomicFile;
use kiln_oci::canonical;
use kiln_oci::compression::Compression as DetectedCompression;
use kiln_oci::encoder::{Codec, ParallelEncoder, GZIP_LEVELS, ZSTD_LEVELS};
use kiln_oci::media_types;
use kiln_oci::tar_writer::{
    Content, Meta, Tree, DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, SYMLINK_MODE,
};
use kiln_oci::{HashingWriter, LayerDescriptor};

use crate::archive::{self, ArchiveSource};
use crate::concat;

const BUFFER: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub target: String,
    /// `gzip` (default) or `zstd`.
    #[serde(default)]
    pub compression: Option<String>,
    /// gzip/zstd command-line style level options; the last one wins.
    #[serde(default)]
    pub compression_options: Vec<String>,
    #[serde(default)]
    pub mtime: MtimeSpec,
    /// The `archive_expansion_ratio` attribute: see
    /// [`archive::ExpansionLimit`].
    #[serde(default = "default_expansion_ratio")]
    pub archive_expansion_ratio: u64,
    pub entries: Vec<EntrySpec>,
}

fn default_expansion_ratio() -> u64 {
    archive::DEFAULT_EXPANSION_RATIO
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtimeSpec {
    /// The mtime of every entry.
    #[serde(default)]
    pub seconds: u64,
    /// `file` entries take their source's mtime, archive entries keep theirs.
    #[serde(default)]
    pub preserve: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    pub attr: String,
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: Option<u64>,
    #[serde(default)]
    pub gid: Option<u64>,
    /// `concat`: the archives to read.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// `concat`: the glob selecting their members.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// The layer's compression and level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip(u32),
    Zstd(u32),
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip(_) => media_types::OCI_LAYER_TAR_GZIP,
            Compression::Zstd(_) => media_types::OCI_LAYER_TAR_ZSTD,
        }
    }
}

/// Output paths, and the number of compressing threads.
pub struct Outputs<'a> {
    pub blob: &'a Path,
    pub descriptor: &'a Path,
    pub listing: &'a Path,
    pub workers: usize,
}

pub fn run(spec: &Path, outputs: &Outputs) -> anyhow::Result<()> {
    let spec = read_spec(spec)?;
    let target = spec.target.clone();
    let compression = compression(&spec)?;
    let tree = build_tree(&spec)?;
    // Hard links were checked archive by archive; this is a safety net.
    tree.check().map_err(|e| anyhow!("{target}: {e}"))?;

    let blob = AtomicFile::create(outputs.blob).with_context(|| format!("{target}: --blob"))?;
    let (blob, desc) = write_layer(&tree, compression, outputs.workers, blob)
        .with_context(|| format!("{target}: writing the layer"))?;
    let descriptor = prepared(outputs.descriptor, &canonical::to_vec(&desc)?)
        .with_context(|| format!("{target}: --descriptor"))?;
    let listing =
        listing_file(outputs.listing, &tree).with_context(|| format!("{target}: --listing"))?;

    // Everything is written: only now does any output appear.
    blob.commit().with_context(|| format!("{target}: --blob"))?;
    descriptor
        .commit()
        .with_context(|| format!("{target}: --descriptor"))?;
    listing
        .commit()
        .with_context(|| format!("{target}: --listing"))?;
    Ok(())
}

/// A temporary sibling of `path` holding `bytes`, not yet renamed into place.
fn prepared(path: &Path, bytes: &[u8]) -> anyhow::Result<AtomicFile> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(f)
}

/// A temporary sibling of `path` holding the tree's listing, not yet
/// renamed into place.
fn listing_file(path: &Path, tree: &Tree) -> anyhow::Result<AtomicFile> {
    let mut f = AtomicFile::create(path)?;
    let mut out = BufWriter::with_capacity(BUFFER, &mut f);
    tree.write_listing(&mut out)
        .and_then(|()| Ok(out.flush()?))
        .with_context(|| format!("writing {}", path.display()))?;
    drop(out);
    Ok(f)
}

pub fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    let bytes = fs::read(path).with_context(|| format!("--spec {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("--spec {}: parsing", path.display()))
}

/// `compression` and `compression_options` → the compressor and its level.
pub fn compression(spec: &Spec) -> anyhow::Result<Compression> {
    let target = &spec.target;
    let name = spec.compression.as_deref().unwrap_or("gzip");
    let (default, max) = match name {
        "gzip" => (GZIP_LEVELS.default, GZIP_LEVELS.max),
        "zstd" => (ZSTD_LEVELS.default, ZSTD_LEVELS.max),
        other => bail!("{target}: compression: unsupported {other:?} (supported: gzip, zstd)"),
    };
    let mut level = default;
    for option in &spec.compression_options {
        level = match option.as_str() {
            "--fast" => 1,
            "--best" => max,
            o => o
                .strip_prefix('-')
                .filter(|d| !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|l| (1..=max).contains(l))
                .ok_or_else(|| {
                    anyhow!(
                        "{target}: compression_options: {o:?} is not an option of {name} \
                         (supported: -1 to -{max}, --fast, --best)"
                    )
                })?,
        };
    }
    Ok(match name {
        "zstd" => Compression::Zstd(level),
        _ => Compression::Gzip(level),
    })
}

/// Validates every entry, reads the archives' entry lists, and collects
/// everything into a [`Tree`]; errors name the target, the attribute and
/// the path (or archive and entry).
pub fn build_tree(spec: &Spec) -> anyhow::Result<Tree> {
    let target = &spec.target;
    let mtime = &spec.mtime;
    let mut tree = Tree::new();
    tree.set_parent_mtime(mtime.seconds);
    for e in &spec.entries {
        let fail = |what: String| anyhow!("{target}: {}: {:?}: {what}", e.attr, e.path);
        let not_allowed = |keys: &[(&str, bool)]| -> anyhow::Result<()> {
            match keys.iter().find(|(_, present)| *present) {
                Some((key, _)) => Err(fail(format!(
                    "{key:?} is not allowed on a {} entry",
                    e.kind
                ))),
                None => Ok(()),
            }
        };
        for (key, id) in [("uid", e.uid), ("gid", e.gid)] {
            if id.is_some_and(|v| v > u64::from(u32::MAX)) {
                return Err(fail(format!(
                    "{key} {} is above 4294967295 (2^32-1), the largest owner id",
                    id.unwrap_or_default()
                )));
            }
        }
        let meta = |default_mode: u32| Meta {
            mode: e.mode.unwrap_or(default_mode),
            uid: e.uid.unwrap_or(0),
            gid: e.gid.unwrap_or(0),
            mtime: mtime.seconds,
        };
        let (content, meta, origin) = match e.kind.as_str() {
            "file" => {
                not_allowed(&[
                    ("target", e.target.is_some()),
                    ("sources", e.sources.is_some()),
                    ("pattern", e.pattern.is_some()),
                ])?;
                let src = e
                    .source
                    .as_deref()
                    .ok_or_else(|| fail("a file entry needs \"source\"".into()))?;
                let mut meta = meta(DEFAULT_FILE_MODE);
                if mtime.preserve {
                    // A source that cannot be read is reported by Tree::add.
                    if let Some(t) = source_mtime(Path::new(src)) {
                        meta.mtime = t;
                    }
                }
                (
                    Content::File(PathBuf::from(src)),
                    meta,
                    format!("{} {:?} (source {src})", e.attr, e.path),
                )
            }
            "empty_file" => {
                not_allowed(&[
                    ("source", e.source.is_some()),
                    ("target", e.target.is_some()),
                    ("sources", e.sources.is_some()),
                    ("pattern", e.pattern.is_some()),
                ])?;
                (
                    Content::Bytes(Vec::new()),
                    meta(DEFAULT_FILE_MODE),
                    format!("{} {:?} (empty file)", e.attr, e.path),
                )
            }
            "dir" => {
                not_allowed(&[
                    ("source", e.source.is_some()),
                    ("target", e.target.is_some()),
                    ("sources", e.sources.is_some()),
                    ("pattern", e.pattern.is_some()),
                ])?;
                (
                    Content::Dir,
                    meta(DEFAULT_DIR_MODE),
                    format!("{} {:?} (directory)", e.attr, e.path),
                )
            }
            "symlink" => {
                not_allowed(&[
                    ("source", e.source.is_some()),
                    ("sources", e.sources.is_some()),
                    ("pattern", e.pattern.is_some()),
                ])?;
                let to = e
                    .target
                    .as_deref()
                    .ok_or_else(|| fail("a symlink entry needs \"target\"".into()))?;
                (
                    Content::Symlink(to.to_string()),
                    // Symlinks are always 0777 (their mode means nothing).
                    Meta {
                        mode: SYMLINK_MODE,
                        ..meta(SYMLINK_MODE)
                    },
                    format!("{} {:?} (symlink to {to:?})", e.attr, e.path),
                )
            }
            kind @ ("tar" | "deb") => {
                not_allowed(&[
                    ("target", e.target.is_some()),
                    ("mode", e.mode.is_some()),
                    ("uid", e.uid.is_some()),
                    ("gid", e.gid.is_some()),
                    ("sources", e.sources.is_some()),
                    ("pattern", e.pattern.is_some()),
                ])?;
                let src = e
                    .source
                    .as_deref()
                    .ok_or_else(|| fail(format!("a {kind} entry needs \"source\"")))?;
                let prefix = archive::prefix(&e.path).map_err(|err| fail(err.to_string()))?;
                let source = ArchiveSource {
                    target,
                    attr: &e.attr,
                    path: Path::new(src),
                    prefix,
                    mtime: (!mtime.preserve).then_some(mtime.seconds),
                    expansion_ratio: spec.archive_expansion_ratio,
                };
                if kind == "tar" {
                    archive::add_tar(&mut tree, &source)?;
                } else {
                    archive::add_deb(&mut tree, &source)?;
                }
                continue;
            }
            "concat" => {
                not_allowed(&[
                    ("source", e.source.is_some()),
                    ("target", e.target.is_some()),
                ])?;
                let sources = e
                    .sources
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| fail("a concat entry needs \"sources\" (archives)".into()))?;
                let pattern = e
                    .pattern
                    .as_deref()
                    .ok_or_else(|| fail("a concat entry needs \"pattern\"".into()))?;
                // Checked before the archives are read (Tree::add would).
                kiln_oci::tar_writer::normalize_path(&e.path)
                    .map_err(|err| fail(err.to_string()))?;
                let bytes = concat::build(
                    target,
                    &e.attr,
                    &e.path,
                    sources,
                    pattern,
                    spec.archive_expansion_ratio,
                )?;
                (
                    Content::Bytes(bytes),
                    meta(DEFAULT_FILE_MODE),
                    format!(
                        "{} {:?} (concatenation of {pattern:?} in {})",
                        e.attr,
                        e.path,
                        sources.join(", ")
                    ),
                )
            }
            other => {
                return Err(fail(format!(
                    "unknown kind {other:?} (expected file, empty_file, dir, symlink, tar, deb \
                     or concat)"
                )))
            }
        };
        tree.add(&e.path, content, meta, origin)
            .map_err(|err| anyhow!("{target}: {}: {err}", e.attr))?;
    }
    Ok(tree)
}

/// The modification time of a file (symlinks followed), in whole seconds
/// since the epoch (0 before it); None when it cannot be read.
fn source_mtime(path: &Path) -> Option<u64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(
        modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Writes the tree as a compressed tar stream into `out` in one pass, on
/// `workers` compressing threads: this thread writes the tar and hashes it
/// (diff_id), the workers compress fixed-size chunks, and a writer thread
/// hashes the compressed chunks in order (digest) and writes them. Returns
/// the writer (not flushed) and the descriptor. Nothing is read back and no
/// temporary copy is made; the bytes do not depend on `workers`.
pub fn write_layer<W: Write + Send + 'static>(
    tree: &Tree,
    compression: Compression,
    workers: usize,
    out: W,
) -> anyhow::Result<(W, LayerDescriptor)> {
    let codec = match compression {
        Compression::Gzip(level) => Codec::Gzip(level),
        Compression::Zstd(level) => Codec::Zstd(level),
    };
    let encoder = ParallelEncoder::new(codec, workers, out).context("starting the compressor")?;
    let mut builder = tar::Builder::new(HashingWriter::new(encoder));
    tree.write(&mut builder)?;
    let uncompressed = builder.into_inner().context("finishing the tar")?;
    let (encoder, diff_id, uncompressed_size) = uncompressed.finish();
    let encoded = encoder
        .finish()
        .context("finishing the compressed stream")?;
    Ok((
        encoded.out,
        LayerDescriptor {
            media_type: compression.media_type().to_string(),
            digest: encoded.digest,
            size: encoded.size,
            diff_id,
            uncompressed_size,
        },
    ))
}

/// `<name>-layer.tar`: the uncompressed layer, decompressed from the blob
/// (gzip or zstd, told from its bytes) into `out` and checked against the
/// descriptor's diff_id and uncompressed size before it appears.
pub fn write_tar(blob: &Path, descriptor: &Path, out: &Path) -> anyhow::Result<()> {
    let desc: LayerDescriptor = serde_json::from_slice(
        &fs::read(descriptor).with_context(|| format!("--descriptor {}", descriptor.display()))?,
    )
    .with_context(|| format!("--descriptor {}: parsing", descriptor.display()))?;
    let file = fs::File::open(blob).with_context(|| format!("--blob {}", blob.display()))?;
    let mut input = io::BufReader::with_capacity(BUFFER, file);
    let head = io::BufRead::fill_buf(&mut input)
        .with_context(|| format!("--blob {}: reading", blob.display()))?;
    let mut decoder: Box<dyn io::Read> = match DetectedCompression::detect(head) {
        DetectedCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        DetectedCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .with_context(|| format!("--blob {}", blob.display()))?,
        ),
        other => bail!(
            "--blob {}: a layer blob is gzip or zstd, not {}",
            blob.display(),
            other.name()
        ),
    };
    let mut tar = AtomicFile::create(out).with_context(|| format!("--out {}", out.display()))?;
    let mut hashed = HashingWriter::new(BufWriter::with_capacity(BUFFER, &mut tar));
    io::copy(&mut decoder, &mut hashed)
        .with_context(|| format!("--blob {}: decompressing", blob.display()))?;
    let (buffered, diff_id, size) = hashed.finish();
    buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("--out {}: writing", out.display()))?;
    if (diff_id.clone(), size) != (desc.diff_id.clone(), desc.uncompressed_size) {
        bail!(
            "--blob {}: decompresses to {size} bytes with digest {diff_id}, but the descriptor \
             says {} bytes with diff_id {}",
            blob.display(),
            desc.uncompressed_size,
            desc.diff_id
        );
    }
    tar.commit()
        .with_context(|| format!("--out {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use kiln_oci::sha256_bytes;
    use std::io::Read;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn err_of(json: serde_json::Value) -> String {
        format!("{:#}", build_tree(&spec(json)).unwrap_err())
    }

    #[test]
    fn digest_and_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("hello");
        fs::write(&src, vec![42u8; 300_000]).unwrap();
        let s = spec(serde_json::json!({
            "target": "//t:l",
            "compression": "gzip",
            "entries": [
                {"attr": "files", "kind": "file", "path": "/hello", "source": src, "mode": 493},
                {"attr": "symlinks", "kind": "symlink", "path": "/bin/hello", "target": "/hello"},
            ]
        }));
        let tree = build_tree(&s).unwrap();
        let (blob, desc) = write_layer(&tree, compression(&s).unwrap(), 2, Vec::new()).unwrap();
        assert_eq!(desc.digest, sha256_bytes(&blob));
        assert_eq!(desc.size, blob.len() as u64);
        let mut tar_bytes = Vec::new();
        GzDecoder::new(&blob[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(desc.diff_id, sha256_bytes(&tar_bytes));
        assert_eq!(desc.uncompressed_size, tar_bytes.len() as u64);
        assert_eq!(desc.media_type, media_types::OCI_LAYER_TAR_GZIP);
        // gzip header: no FNAME flag, mtime 0, OS "unknown".
        assert_eq!(&blob[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
        assert_eq!(blob[9], 255);
    }

    #[test]
    fn same_entries_in_any_order_same_blob() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, b"a").unwrap();
        let entries = vec![
            serde_json::json!({"attr": "files", "kind": "file", "path": "/x/a", "source": a, "mode": 420}),
            serde_json::json!({"attr": "empty_dirs", "kind": "dir", "path": "/data", "mode": 493}),
            serde_json::json!({"attr": "empty_files", "kind": "empty_file", "path": "/etc/m", "mode": 420}),
            serde_json::json!({"attr": "symlinks", "kind": "symlink", "path": "/l", "target": "x/a"}),
        ];
        let mut rev = entries.clone();
        rev.reverse();
        let one = build_tree(&spec(
            serde_json::json!({"target": "t", "entries": entries}),
        ))
        .unwrap();
        let two = build_tree(&spec(serde_json::json!({"target": "t", "entries": rev}))).unwrap();
        let gz = Compression::Gzip(GZIP_LEVELS.default);
        assert_eq!(
            write_layer(&one, gz, 1, Vec::new()).unwrap().0,
            write_layer(&two, gz, 3, Vec::new()).unwrap().0
        );
    }

    #[test]
    fn validation_errors_name_target_attr_path() {
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "files", "kind": "file", "path": "/a/../b", "source": "x"}]}));
        assert_eq!(
            e,
            "//t:l: files: \"/a/../b\": the path has a `..` component"
        );
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "empty_dirs", "kind": "dir", "path": "/"}]}));
        assert!(
            e.starts_with("//t:l: empty_dirs: \"/\": the path is empty"),
            "{e}"
        );
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "empty_files", "kind": "empty_file", "path": "a\u{0}b"}]}));
        assert!(e.contains("NUL"), "{e}");
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "files", "kind": "file", "path": "/hello", "source": "bazel-out/nope/hello"}]}));
        assert!(
            e.starts_with("//t:l: files: \"/hello\": source file bazel-out/nope/hello: "),
            "{e}"
        );
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "files", "kind": "file", "path": "/hello"}]}));
        assert!(e.contains("needs \"source\""), "{e}");
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "x", "kind": "fifo", "path": "/p"}]}));
        assert!(e.contains("unknown kind \"fifo\""), "{e}");
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "tars", "kind": "tar", "path": "/", "source": "x.tar", "mode": 420}]}));
        assert_eq!(
            e,
            "//t:l: tars: \"/\": \"mode\" is not allowed on a tar entry"
        );
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "tars", "kind": "tar", "path": "/a/../b", "source": "x.tar"}]}));
        assert!(e.contains("`..`"), "{e}");
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "debs", "kind": "deb", "path": "/", "source": "nope.deb"}]}));
        assert!(e.starts_with("//t:l: debs: nope.deb: opening: "), "{e}");
    }

    fn compression_of(json: serde_json::Value) -> Result<Compression, String> {
        compression(&spec(json)).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn compression_and_levels() {
        let c = |c: &str, o: &[&str]| {
            compression_of(serde_json::json!({
                "target": "//t:l", "compression": c, "compression_options": o, "entries": []}))
        };
        assert_eq!(
            compression_of(serde_json::json!({"target": "t", "entries": []})),
            Ok(Compression::Gzip(6))
        );
        assert_eq!(c("gzip", &[]), Ok(Compression::Gzip(6)));
        assert_eq!(c("gzip", &["-9"]), Ok(Compression::Gzip(9)));
        assert_eq!(c("gzip", &["--fast"]), Ok(Compression::Gzip(1)));
        assert_eq!(c("gzip", &["--best"]), Ok(Compression::Gzip(9)));
        assert_eq!(c("gzip", &["-9", "-2"]), Ok(Compression::Gzip(2)));
        assert_eq!(c("zstd", &[]), Ok(Compression::Zstd(3)));
        assert_eq!(c("zstd", &["-19"]), Ok(Compression::Zstd(19)));
        assert_eq!(c("zstd", &["--best"]), Ok(Compression::Zstd(19)));
        assert_eq!(c("zstd", &["--fast"]), Ok(Compression::Zstd(1)));
        for bad in [
            "-10", "-0", "-01", "9", "--fast=3", "-", "", "-1 ", "--ultra",
        ] {
            let e = c("gzip", &[bad]).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "//t:l: compression_options: {bad:?} is not an option of gzip \
                     (supported: -1 to -9, --fast, --best)"
                )
            );
        }
        assert!(c("zstd", &["-20"]).unwrap_err().contains("-1 to -19"));
        assert_eq!(
            c("bzip2", &[]).unwrap_err(),
            "//t:l: compression: unsupported \"bzip2\" (supported: gzip, zstd)"
        );
    }

    #[test]
    fn owners_and_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        fs::write(&src, b"x").unwrap();
        let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567);
        fs::File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let entries = serde_json::json!([
            {"attr": "files", "kind": "file", "path": "/a/f", "source": src, "uid": 1000, "gid": 2000},
            {"attr": "empty_dirs", "kind": "dir", "path": "/d", "uid": 5},
            {"attr": "symlinks", "kind": "symlink", "path": "/l", "target": "f", "gid": 6}
        ]);
        let read = |preserve: bool| {
            let s = spec(serde_json::json!({"target": "t", "entries": entries,
                "mtime": {"seconds": 946684800, "preserve": preserve}}));
            let tree = build_tree(&s).unwrap();
            let bytes = kiln_oci::tar_writer::tree_to_vec(&tree).unwrap();
            let mut a = tar::Archive::new(&bytes[..]);
            a.entries()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let h = e.header();
                    (
                        String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                        h.uid().unwrap(),
                        h.gid().unwrap(),
                        h.mtime().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let t = 946684800;
        assert_eq!(
            read(false),
            [
                ("a/".to_string(), 0, 0, t),
                ("a/f".to_string(), 1000, 2000, t),
                ("d/".to_string(), 5, 0, t),
                ("l".to_string(), 0, 6, t),
            ]
        );
        let preserved = read(true);
        assert_eq!(preserved[1], ("a/f".to_string(), 1000, 2000, 1_234_567));
        assert_eq!(preserved[2].3, t);
    }

    #[test]
    fn conflicting_duplicates_name_both_sources() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"one").unwrap();
        fs::write(&b, b"two").unwrap();
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "files", "kind": "file", "path": "/bin/x", "source": a},
            {"attr": "files", "kind": "file", "path": "bin//x", "source": b}]}));
        assert!(
            e.starts_with("//t:l: files: \"bin/x\" is defined twice"),
            "{e}"
        );
        assert!(e.contains(&format!("(source {})", a.display())), "{e}");
        assert!(e.contains(&format!("(source {})", b.display())), "{e}");

        // Identical duplicates are fine and written once.
        let s = spec(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "files", "kind": "file", "path": "/bin/x", "source": a},
            {"attr": "files", "kind": "file", "path": "/bin/x", "source": a}]}));
        assert_eq!(build_tree(&s).unwrap().listing().len(), 2);
    }
}
