//! Spec parsing, validation and the single streaming pass
//! tar → sha256 (diff_id) → gzip → sha256 + count → file.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use flate2::{Compression, GzBuilder};
use serde::Deserialize;

use kiln_oci::atomic::{self, AtomicFile};
use kiln_oci::canonical;
use kiln_oci::media_types;
use kiln_oci::tar_writer::{Content, Tree, DEFAULT_DIR_MODE, DEFAULT_FILE_MODE};
use kiln_oci::{HashingWriter, LayerDescriptor};

/// gzip level fixed by the contract: changing it changes every layer digest.
const GZIP_LEVEL: u32 = 6;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub target: String,
    #[serde(default = "default_compression")]
    pub compression: String,
    pub entries: Vec<EntrySpec>,
}

fn default_compression() -> String {
    "gzip".to_string()
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
}

pub fn run(spec: &Path, blob: &Path, descriptor: &Path, listing: &Path) -> anyhow::Result<()> {
    let spec = read_spec(spec)?;
    let target = spec.target.clone();
    let tree = build_tree(&spec)?;

    let out = AtomicFile::create(blob).with_context(|| format!("{target}: --blob"))?;
    let (out, desc) =
        write_layer(&tree, out).with_context(|| format!("{target}: writing the layer"))?;
    out.commit().with_context(|| format!("{target}: --blob"))?;

    atomic::write_file(descriptor, &canonical::to_vec(&desc)?)
        .with_context(|| format!("{target}: --descriptor"))?;
    atomic::write_file(listing, &canonical::to_vec(&tree.listing())?)
        .with_context(|| format!("{target}: --listing"))?;
    Ok(())
}

pub fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    let bytes = fs::read(path).with_context(|| format!("--spec {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("--spec {}: parsing", path.display()))
}

/// Validates every entry and collects them into a [`Tree`]; errors name the
/// target, the attribute and the path.
pub fn build_tree(spec: &Spec) -> anyhow::Result<Tree> {
    let target = &spec.target;
    if spec.compression != "gzip" {
        bail!(
            "{target}: compression: unsupported {:?} (only \"gzip\" is implemented)",
            spec.compression
        );
    }
    let mut tree = Tree::new();
    for e in &spec.entries {
        let fail = |what: String| anyhow!("{target}: {}: {:?}: {what}", e.attr, e.path);
        let (content, mode, origin) = match e.kind.as_str() {
            "file" => {
                let src = e
                    .source
                    .as_deref()
                    .ok_or_else(|| fail("a file entry needs \"source\"".into()))?;
                (
                    Content::File(PathBuf::from(src)),
                    e.mode.unwrap_or(DEFAULT_FILE_MODE),
                    format!("{} {:?} (source {src})", e.attr, e.path),
                )
            }
            "empty_file" => (
                Content::Bytes(Vec::new()),
                e.mode.unwrap_or(DEFAULT_FILE_MODE),
                format!("{} {:?} (empty file)", e.attr, e.path),
            ),
            "dir" => (
                Content::Dir,
                e.mode.unwrap_or(DEFAULT_DIR_MODE),
                format!("{} {:?} (directory)", e.attr, e.path),
            ),
            "symlink" => {
                let to = e
                    .target
                    .as_deref()
                    .ok_or_else(|| fail("a symlink entry needs \"target\"".into()))?;
                (
                    Content::Symlink(to.to_string()),
                    0,
                    format!("{} {:?} (symlink to {to:?})", e.attr, e.path),
                )
            }
            other => {
                return Err(fail(format!(
                    "unknown kind {other:?} (expected file, empty_file, dir or symlink)"
                )))
            }
        };
        tree.insert(&e.path, content, mode, origin)
            .map_err(|err| anyhow!("{target}: {}: {err}", e.attr))?;
    }
    Ok(tree)
}

/// Writes the tree as a tar+gzip stream into `out` in one pass, returning
/// `out` (flushed) and the descriptor. No temporary copy is made.
pub fn write_layer<W: Write>(tree: &Tree, out: W) -> anyhow::Result<(W, LayerDescriptor)> {
    let compressed = HashingWriter::new(BufWriter::with_capacity(256 * 1024, out));
    // mtime 0 and no file name keep the gzip header free of host state.
    let gz = GzBuilder::new()
        .mtime(0)
        .write(compressed, Compression::new(GZIP_LEVEL));
    let mut builder = tar::Builder::new(HashingWriter::new(gz));
    tree.write(&mut builder)?;
    let uncompressed = builder.into_inner().context("finishing the tar")?;
    let (gz, diff_id, _) = uncompressed.finish();
    let compressed = gz.finish().context("finishing the gzip stream")?;
    let (buffered, digest, size) = compressed.finish();
    let out = buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .context("flushing the blob")?;
    Ok((
        out,
        LayerDescriptor {
            media_type: media_types::OCI_LAYER_TAR_GZIP.to_string(),
            digest,
            size,
            diff_id,
        },
    ))
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
        let (blob, desc) = write_layer(&tree, Vec::new()).unwrap();
        assert_eq!(desc.digest, sha256_bytes(&blob));
        assert_eq!(desc.size, blob.len() as u64);
        let mut tar_bytes = Vec::new();
        GzDecoder::new(&blob[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(desc.diff_id, sha256_bytes(&tar_bytes));
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
        assert_eq!(
            write_layer(&one, Vec::new()).unwrap().0,
            write_layer(&two, Vec::new()).unwrap().0
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
        let e =
            err_of(serde_json::json!({"target": "//t:l", "compression": "zstd", "entries": []}));
        assert!(
            e.starts_with("//t:l: compression: unsupported \"zstd\""),
            "{e}"
        );
        let e = err_of(serde_json::json!({"target": "//t:l", "entries": [
            {"attr": "x", "kind": "fifo", "path": "/p"}]}));
        assert!(e.contains("unknown kind \"fifo\""), "{e}");
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
