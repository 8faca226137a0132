//! Deterministic tar writing.
//!
//! A [`Tree`] collects entries by normalised path, checks duplicates and
//! creates missing parent directories, then writes them sorted bytewise by
//! path with normalised headers: mtime 0, uid/gid 0, empty user/group names,
//! explicit modes, no host metadata. Directory names end in `/`. Long names
//! use the GNU extension the `tar` crate writes. The same set of entries
//! therefore always produces the same bytes, whatever the insertion order.
//!
//! The `append_*` helpers write single normalised entries, for tools that
//! stream their own archives.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use tar::{Builder, EntryType, Header};

use crate::model::{ListingEntry, ListingKind};

pub const DEFAULT_DIR_MODE: u32 = 0o755;
pub const DEFAULT_FILE_MODE: u32 = 0o644;
pub const SYMLINK_MODE: u32 = 0o777;
const MAX_MODE: u32 = 0o7777;

/// Why a path cannot be used in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty (or names the root directory)")]
    Empty,
    #[error("the path has a `..` component")]
    ParentDir,
    #[error("the path has a NUL byte")]
    Nul,
}

/// Normalises a path as written by a user into the form used in the tar and
/// listings: a leading `/` or `./` is dropped, `.` components and repeated
/// `/` collapse. Empty results, `..` components and NUL bytes are errors.
pub fn normalize_path(path: &str) -> Result<String, PathError> {
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(PathError::ParentDir),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(parts.join("/"))
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A regular file whose bytes are read from `source` (symlinks followed).
    File(PathBuf),
    /// A regular file with these bytes (e.g. an empty file).
    Bytes(Vec<u8>),
    Dir,
    /// A symbolic link to this target, written as given.
    Symlink(String),
}

impl Content {
    fn kind(&self) -> ListingKind {
        match self {
            Content::File(_) | Content::Bytes(_) => ListingKind::File,
            Content::Dir => ListingKind::Dir,
            Content::Symlink(_) => ListingKind::Symlink,
        }
    }
}

/// Why an entry cannot be added to a [`Tree`]. The binaries prefix it with
/// the target and attribute.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path:?}: {error}")]
    Path { path: String, error: PathError },
    #[error("{path:?}: mode {mode:#o} is not a permission mode (at most 0o7777)")]
    Mode { path: String, mode: u32 },
    #[error("{path:?}: invalid symlink target {target:?}: it must be non-empty without NUL bytes")]
    LinkTarget { path: String, target: String },
    #[error("{path:?}: source file {}: {error}", source_path.display())]
    Source {
        path: String,
        source_path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error("{path:?}: source {} is not a regular file", source_path.display())]
    NotAFile { path: String, source_path: PathBuf },
    #[error("{path:?} is defined twice with different contents: {first} and {second}")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("{path:?} is a {kind} ({holder}) but {child} needs it to be a directory")]
    NotADirectory {
        path: String,
        kind: ListingKind,
        holder: String,
        child: String,
    },
}

#[derive(Clone, Debug)]
struct Node {
    content: Content,
    mode: u32,
    /// Who defined it, for error messages (caller-chosen text).
    origin: String,
    /// A parent directory created because an entry below it needed it.
    implied: bool,
    /// Size of a `File` source, recorded when added.
    size: u64,
}

/// A set of entries keyed by normalised path, written in sorted order.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds an entry. `path` is normalised here; `origin` describes where the
    /// entry comes from (e.g. `files "/hello" (bazel-out/…/hello)`) and is
    /// used in error messages. A source file is checked to exist now, so that
    /// errors surface before any output is written.
    pub fn insert(
        &mut self,
        path: &str,
        content: Content,
        mode: u32,
        origin: impl Into<String>,
    ) -> Result<(), TreeError> {
        let origin = origin.into();
        let raw_path = path;
        let path = normalize_path(raw_path).map_err(|error| TreeError::Path {
            path: raw_path.to_string(),
            error,
        })?;
        let mode = match content {
            Content::Symlink(_) => SYMLINK_MODE,
            _ if mode > MAX_MODE => {
                return Err(TreeError::Mode {
                    path: raw_path.to_string(),
                    mode,
                })
            }
            _ => mode,
        };
        let size = match &content {
            Content::File(src) => {
                let meta = fs::metadata(src).map_err(|error| TreeError::Source {
                    path: raw_path.to_string(),
                    source_path: src.clone(),
                    error,
                })?;
                if !meta.is_file() {
                    return Err(TreeError::NotAFile {
                        path: raw_path.to_string(),
                        source_path: src.clone(),
                    });
                }
                meta.len()
            }
            Content::Bytes(b) => b.len() as u64,
            Content::Symlink(t) if t.is_empty() || t.contains('\0') => {
                return Err(TreeError::LinkTarget {
                    path: raw_path.to_string(),
                    target: t.clone(),
                })
            }
            Content::Dir | Content::Symlink(_) => 0,
        };

        // Every ancestor must be (or become) a directory.
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            let parent = &path[..end];
            match self.nodes.get(parent) {
                Some(node) if node.content == Content::Dir => {}
                Some(node) => {
                    return Err(TreeError::NotADirectory {
                        path: parent.to_string(),
                        kind: node.content.kind(),
                        holder: node.origin.clone(),
                        child: origin,
                    })
                }
                None => {
                    self.nodes.insert(
                        parent.to_string(),
                        Node {
                            content: Content::Dir,
                            mode: DEFAULT_DIR_MODE,
                            origin: origin.clone(),
                            implied: true,
                            size: 0,
                        },
                    );
                }
            }
            end += 1;
        }

        let node = Node {
            content,
            mode,
            origin,
            implied: false,
            size,
        };
        match self.nodes.get_mut(&path) {
            None => {
                self.nodes.insert(path, node);
            }
            Some(existing) if existing.implied => {
                if node.content != Content::Dir {
                    // `existing.origin` is the entry below that needed a directory here.
                    return Err(TreeError::NotADirectory {
                        path,
                        kind: node.content.kind(),
                        holder: node.origin,
                        child: existing.origin.clone(),
                    });
                }
                // An explicit directory decides the mode of an implied one.
                *existing = node;
            }
            Some(existing) => {
                let same =
                    same_entry(existing, &node).map_err(|(src, error)| TreeError::Source {
                        path: raw_path.to_string(),
                        source_path: src,
                        error,
                    })?;
                if !same {
                    return Err(TreeError::Conflict {
                        path,
                        first: existing.origin.clone(),
                        second: node.origin,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every entry (created parents included), sorted by path.
    pub fn listing(&self) -> Vec<ListingEntry> {
        self.nodes
            .iter()
            .map(|(path, node)| ListingEntry {
                kind: node.content.kind(),
                path: path.clone(),
                target: match &node.content {
                    Content::Symlink(t) => Some(t.clone()),
                    _ => None,
                },
            })
            .collect()
    }

    /// Appends every entry to `builder`, sorted bytewise by path. Parents sort
    /// before their children because a parent path is a prefix of them.
    /// Does not finish the archive.
    pub fn write<W: Write>(&self, builder: &mut Builder<W>) -> anyhow::Result<()> {
        for (path, node) in &self.nodes {
            let written = match &node.content {
                Content::Dir => append_dir(builder, path, node.mode),
                Content::Bytes(b) => append_bytes(builder, path, node.mode, b),
                Content::Symlink(t) => append_symlink(builder, path, t),
                Content::File(src) => {
                    let file = File::open(src).with_context(|| {
                        format!("{}: opening source {}", node.origin, src.display())
                    })?;
                    append_file(builder, path, node.mode, node.size, file).with_context(|| {
                        format!("{}: reading source {}", node.origin, src.display())
                    })?;
                    Ok(())
                }
            };
            written.with_context(|| format!("writing {path:?} to the tar"))?;
        }
        Ok(())
    }
}

/// Whether two definitions of one path are the same entry: same kind, mode,
/// and bytes or link target. On an I/O error, names the source that failed.
fn same_entry(a: &Node, b: &Node) -> Result<bool, (PathBuf, io::Error)> {
    if a.mode != b.mode || a.content.kind() != b.content.kind() {
        return Ok(false);
    }
    match (&a.content, &b.content) {
        (Content::Dir, Content::Dir) => Ok(true),
        (Content::Symlink(x), Content::Symlink(y)) => Ok(x == y),
        (Content::File(x), Content::File(y)) if x == y => Ok(true),
        _ if a.size != b.size => Ok(false),
        (x, y) => same_bytes(x, y),
    }
}

fn open_content(c: &Content) -> Result<Box<dyn Read + '_>, (PathBuf, io::Error)> {
    match c {
        Content::File(p) => File::open(p)
            .map(|f| Box::new(f) as Box<dyn Read>)
            .map_err(|e| (p.clone(), e)),
        Content::Bytes(b) => Ok(Box::new(&b[..])),
        Content::Dir | Content::Symlink(_) => Ok(Box::new(io::empty())),
    }
}

fn source_of(c: &Content) -> PathBuf {
    match c {
        Content::File(p) => p.clone(),
        _ => PathBuf::new(),
    }
}

/// Compares two contents chunk by chunk, so large duplicates need no memory.
fn same_bytes(a: &Content, b: &Content) -> Result<bool, (PathBuf, io::Error)> {
    let mut ra = open_content(a)?;
    let mut rb = open_content(b)?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut ra, &mut ba).map_err(|e| (source_of(a), e))?;
        let nb = read_full(&mut rb, &mut bb).map_err(|e| (source_of(b), e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A normalised header: the given type, mode and size, everything else zero.
pub fn header(entry_type: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Appends a directory entry; a trailing `/` is added to the name.
pub fn append_dir<W: Write>(b: &mut Builder<W>, path: &str, mode: u32) -> io::Result<()> {
    let mut h = header(EntryType::Directory, mode, 0);
    let name = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    b.append_data(&mut h, name, io::empty())
}

/// Appends a regular file with the given bytes.
pub fn append_bytes<W: Write>(
    b: &mut Builder<W>,
    path: &str,
    mode: u32,
    bytes: &[u8],
) -> io::Result<()> {
    let mut h = header(EntryType::Regular, mode, bytes.len() as u64);
    b.append_data(&mut h, path, bytes)
}

/// Appends a regular file of exactly `size` bytes streamed from `reader`;
/// a reader that ends early is an error (the header already promised `size`).
pub fn append_file<W: Write, R: Read>(
    b: &mut Builder<W>,
    path: &str,
    mode: u32,
    size: u64,
    reader: R,
) -> io::Result<()> {
    let mut h = header(EntryType::Regular, mode, size);
    let exact = ExactReader {
        inner: reader.take(size),
        remaining: size,
    };
    b.append_data(&mut h, path, exact)
}

/// Appends a symbolic link (mode 0777).
pub fn append_symlink<W: Write>(b: &mut Builder<W>, path: &str, target: &str) -> io::Result<()> {
    let mut h = header(EntryType::Symlink, SYMLINK_MODE, 0);
    b.append_link(&mut h, path, target)
}

struct ExactReader<R> {
    inner: io::Take<R>,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes early (did it change while being read?)",
                    self.remaining
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::File(p) => write!(f, "file {}", p.display()),
            Content::Bytes(b) => write!(f, "{} bytes", b.len()),
            Content::Dir => f.write_str("directory"),
            Content::Symlink(t) => write!(f, "symlink to {t}"),
        }
    }
}

/// Builds a whole tar (with end-of-archive blocks) in memory; for tests and
/// small archives.
pub fn tree_to_vec(tree: &Tree) -> anyhow::Result<Vec<u8>> {
    let mut b = Builder::new(Vec::new());
    tree.write(&mut b)?;
    Ok(b.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, EntryType, u32, u64, u64, u64)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_path("/hello").unwrap(), "hello");
        assert_eq!(normalize_path("./a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(normalize_path("a").unwrap(), "a");
        assert_eq!(normalize_path("...").unwrap(), "...");
        assert_eq!(normalize_path(""), Err(PathError::Empty));
        assert_eq!(normalize_path("/"), Err(PathError::Empty));
        assert_eq!(normalize_path("./"), Err(PathError::Empty));
        assert_eq!(normalize_path("/a/../b"), Err(PathError::ParentDir));
        assert_eq!(normalize_path(".."), Err(PathError::ParentDir));
        assert_eq!(normalize_path("a\0b"), Err(PathError::Nul));
    }

    #[test]
    fn path_errors_name_the_path() {
        let mut t = Tree::new();
        let err = t.insert("/x/../y", Content::Dir, 0o755, "o").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"/x/../y\": the path has a `..` component"
        );
        let err = t.insert("", Content::Dir, 0o755, "o").unwrap_err();
        assert!(err.to_string().contains("empty"));
        let err = t
            .insert("a", Content::Bytes(vec![]), 0o10000, "files \"a\"")
            .unwrap_err();
        assert!(err.to_string().contains("mode 0o10000"), "{err}");
        let err = t
            .insert("l", Content::Symlink(String::new()), 0, "symlinks \"l\"")
            .unwrap_err();
        assert!(err.to_string().contains("invalid symlink target"), "{err}");
    }

    #[test]
    fn deterministic_regardless_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("bin");
        fs::write(&src, b"\x7fELF...").unwrap();
        let entries: Vec<(&str, Content, u32)> = vec![
            ("/usr/bin/tool", Content::File(src.clone()), 0o755),
            ("/bin", Content::Symlink("usr/bin".into()), 0),
            ("/etc/marker", Content::Bytes(vec![]), 0o644),
            ("/usr", Content::Dir, 0o700),
            ("/a-b", Content::Dir, 0o755),
            ("/a/b", Content::Bytes(b"x".to_vec()), 0o600),
        ];
        let build = |order: &[usize]| {
            let mut t = Tree::new();
            for &i in order {
                let (p, c, m) = &entries[i];
                t.insert(p, c.clone(), *m, format!("entry {p}")).unwrap();
            }
            tree_to_vec(&t).unwrap()
        };
        let one = build(&[0, 1, 2, 3, 4, 5]);
        let two = build(&[5, 3, 1, 4, 2, 0]);
        assert_eq!(one, two);

        let got = names(&one);
        let paths: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            paths,
            // "a" < "a-b" < "a/b" bytewise: a parent precedes its children
            // even when a sibling sorts between them.
            [
                "a/",
                "a-b/",
                "a/b",
                "bin",
                "etc/",
                "etc/marker",
                "usr/",
                "usr/bin/",
                "usr/bin/tool"
            ]
        );
        for (path, _, _, mtime, uid, gid) in &got {
            assert_eq!((*mtime, *uid, *gid), (0, 0, 0), "{path}");
        }
        let modes: BTreeMap<&str, u32> = got.iter().map(|g| (g.0.as_str(), g.2)).collect();
        assert_eq!(modes["usr/"], 0o700); // explicit beats implied
        assert_eq!(modes["usr/bin/"], 0o755); // implied parent
        assert_eq!(modes["usr/bin/tool"], 0o755);
        assert_eq!(modes["bin"], 0o777);
        let mut a = tar::Archive::new(&one[..]);
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        }
    }

    #[test]
    fn parents_before_children_and_listing() {
        let mut t = Tree::new();
        t.insert("/bin/hello", Content::Symlink("/hello".into()), 0, "s")
            .unwrap();
        t.insert("/hello", Content::Bytes(b"hi".to_vec()), 0o755, "f")
            .unwrap();
        let listing = t.listing();
        assert_eq!(
            String::from_utf8(crate::canonical::to_vec(&listing).unwrap()).unwrap(),
            r#"[{"kind":"dir","path":"bin"},{"kind":"symlink","path":"bin/hello","target":"/hello"},{"kind":"file","path":"hello"}]"#
        );
    }

    #[test]
    fn duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let c = dir.path().join("c");
        fs::write(&a, b"same").unwrap();
        fs::write(&b, b"same").unwrap();
        fs::write(&c, b"diff").unwrap();
        let mut t = Tree::new();
        t.insert("/x", Content::File(a.clone()), 0o644, "files \"/x\" (a)")
            .unwrap();
        // Identical bytes from another source: written once.
        t.insert("x", Content::File(b), 0o644, "files \"x\" (b)")
            .unwrap();
        t.insert("/d", Content::Dir, 0o755, "dir").unwrap();
        t.insert("/d/", Content::Dir, 0o755, "dir again").unwrap();
        t.insert("/l", Content::Symlink("x".into()), 0, "l1")
            .unwrap();
        t.insert("/l", Content::Symlink("x".into()), 0, "l2")
            .unwrap();
        assert_eq!(t.len(), 3);

        let err = t
            .insert("/x", Content::File(c), 0o644, "files \"/x\" (c)")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"x\" is defined twice with different contents: files \"/x\" (a) and files \"/x\" (c)"
        );
        let err = t
            .insert("/x", Content::File(a.clone()), 0o755, "other mode")
            .unwrap_err();
        assert!(matches!(err, TreeError::Conflict { .. }));
        let err = t
            .insert("/l", Content::Symlink("y".into()), 0, "l3")
            .unwrap_err();
        assert!(err.to_string().contains("l1 and l3"), "{err}");
        let err = t.insert("/d", Content::Dir, 0o700, "d3").unwrap_err();
        assert!(matches!(err, TreeError::Conflict { .. }));
        let err = t.insert("/x", Content::Dir, 0o644, "dir x").unwrap_err();
        assert!(matches!(err, TreeError::Conflict { .. }));
        // A file where a directory is needed, in both orders.
        let err = t
            .insert("/x/y", Content::Bytes(vec![]), 0o644, "child")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"x\" is a file (files \"/x\" (a)) but child needs it to be a directory"
        );
        t.insert("/p/q", Content::Bytes(vec![]), 0o644, "q")
            .unwrap();
        let err = t
            .insert("/p", Content::Bytes(vec![]), 0o644, "p file")
            .unwrap_err();
        assert!(err.to_string().contains("(p file) but q needs"), "{err}");
        // Empty file and an empty source file are the same entry.
        let e = dir.path().join("empty");
        fs::write(&e, b"").unwrap();
        t.insert("/e", Content::Bytes(vec![]), 0o644, "e1").unwrap();
        t.insert("/e", Content::File(e), 0o644, "e2").unwrap();
    }

    #[test]
    fn missing_source_names_it() {
        let mut t = Tree::new();
        let err = t
            .insert(
                "/x",
                Content::File("no/such/file".into()),
                0o644,
                "files \"/x\"",
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no/such/file"), "{msg}");
        assert!(msg.starts_with("\"/x\": source file"), "{msg}");
        let dir = tempfile::tempdir().unwrap();
        let err = t
            .insert("/x", Content::File(dir.path().into()), 0o644, "f")
            .unwrap_err();
        assert!(err.to_string().contains("not a regular file"));
    }

    #[test]
    fn long_names_and_link_targets() {
        let long = format!("/{}/{}", "d".repeat(90), "f".repeat(120));
        let target = format!("/{}", "t".repeat(150));
        let mut t = Tree::new();
        t.insert(&long, Content::Bytes(b"x".to_vec()), 0o644, "f")
            .unwrap();
        t.insert("/l", Content::Symlink(target.clone()), 0, "l")
            .unwrap();
        let bytes = tree_to_vec(&t).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let p = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            if p == "l" {
                let link = e.link_name_bytes().unwrap().into_owned();
                assert_eq!(String::from_utf8(link).unwrap(), target);
            }
            seen.push(p);
        }
        assert_eq!(seen[1], &long[1..]);
    }

    #[test]
    fn file_that_shrinks_is_an_error() {
        let mut b = Builder::new(Vec::new());
        let err = append_file(&mut b, "f", 0o644, 10, &b"short"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
