//! Deterministic tar writing.
//!
//! A [`Tree`] collects entries by normalised path, checks duplicates and
//! creates missing parent directories, then writes them sorted bytewise by
//! path with normalised headers: the metadata given for each entry (by
//! default mtime 0, uid/gid 0), empty user/group names, explicit modes, no
//! host metadata. Directory names end in `/`. Long names use the GNU
//! extension the `tar` crate writes. The same set of entries therefore always
//! produces the same bytes, whatever the insertion order.
//!
//! Besides files, directories and symlinks a tree holds what archives bring
//! (kiln-layer's `tars`/`debs`): byte ranges of open files ([`Segment`]),
//! hard links, device nodes and FIFOs.
//!
//! The `append_*` helpers write single normalised entries, for tools that
//! stream their own archives.

use std::cell::OnceCell;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::hash::BuildHasher;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tar::{Builder, EntryType, Header};

use crate::model::{ListingEntry, ListingKind};
use crate::program::{self, Program, ReadAt};

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

/// Owner, permissions and modification time of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, at most 0o7777.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
}

impl Meta {
    /// `mode`, owned by 0:0, mtime 0.
    pub fn new(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }
}

/// A byte range of an open file: the data of a regular file inside an
/// archive (or inside a decompressed, spooled copy of one). Reads are
/// positioned, so several segments of one file can be read at once.
#[derive(Clone)]
pub struct Segment {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

impl Segment {
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Segment {
        Segment { file, offset, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The range `offset..offset + len` of this segment (relative to its
    /// start), or None when it does not fit inside it.
    pub fn sub(&self, offset: u64, len: u64) -> Option<Segment> {
        let end = offset.checked_add(len)?;
        (end <= self.len).then(|| Segment {
            file: self.file.clone(),
            offset: self.offset + offset,
            len,
        })
    }

    /// A reader of the range; it also seeks within the range (positions are
    /// relative to its start), so a segment can serve as a window onto an
    /// archive member.
    pub fn reader(&self) -> SegmentReader {
        SegmentReader {
            file: self.file.clone(),
            start: self.offset,
            pos: self.offset,
            end: self.offset + self.len,
        }
    }
}

impl PartialEq for Segment {
    fn eq(&self, other: &Segment) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.offset == other.offset && self.len == other.len
    }
}

impl Eq for Segment {}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Segment({}+{})", self.offset, self.len)
    }
}

/// Reads (and seeks in) a [`Segment`] with positioned reads.
pub struct SegmentReader {
    file: Arc<File>,
    start: u64,
    pos: u64,
    end: u64,
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = read_at(&self.file, &mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes early (did it change while being read?)",
                    self.end - self.pos
                ),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SegmentReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => Some(self.start.saturating_add(n)),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
        };
        match base {
            Some(p) if p >= self.start => {
                self.pos = p;
                Ok(p - self.start)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the range",
            )),
        }
    }
}

impl ReadAt for Segment {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let left = self.len.saturating_sub(offset);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        read_at(&self.file, &mut buf[..n], self.offset + offset)
    }
    fn size(&self) -> u64 {
        self.len
    }
}

/// A source file read for its program facts.
struct SourceFile {
    file: File,
    len: u64,
}

impl ReadAt for SourceFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_at(&self.file, buf, offset)
    }
    fn size(&self) -> u64 {
        self.len
    }
}

/// What a regular file needs to run (`crate::program`), for the listing.
/// A source that cannot be read gives None here: writing the layer reads
/// the same bytes and reports the error with its origin.
fn probe_content(content: &Content) -> Option<Program> {
    match content {
        Content::File(src) => {
            let file = File::open(src).ok()?;
            let len = file.metadata().ok()?.len();
            program::probe(&SourceFile { file, len }).ok()?
        }
        Content::Bytes(bytes) => program::probe(&bytes[..]).ok()?,
        Content::Segment(segment) => program::probe(segment).ok()?,
        _ => None,
    }
}

/// One positioned read (the file's cursor is not used on Unix).
#[cfg(unix)]
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// One positioned read (moves the file's cursor on Windows; segments never
/// use it).
#[cfg(windows)]
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    file.seek_read(buf, offset)
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A regular file whose bytes are read from `source` (symlinks followed).
    File(PathBuf),
    /// A regular file with these bytes (e.g. an empty file).
    Bytes(Vec<u8>),
    /// A regular file whose bytes are a range of an open file.
    Segment(Segment),
    Dir,
    /// A symbolic link to this target, written as given.
    Symlink(String),
    /// A hard link to another entry of the tree (a path, normalised when
    /// added). Written as a tar hard link to the first name of the linked
    /// group in path order: see [`Tree::write`].
    Hardlink(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// The type of an entry, finer than [`ListingKind`]: two entries of
/// different types are never the same entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Regular,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Content {
    fn kind(&self) -> ListingKind {
        match self {
            Content::Dir => ListingKind::Dir,
            Content::Symlink(_) => ListingKind::Symlink,
            _ => ListingKind::File,
        }
    }

    fn ty(&self) -> Type {
        match self {
            Content::File(_) | Content::Bytes(_) | Content::Segment(_) => Type::Regular,
            Content::Dir => Type::Dir,
            Content::Symlink(_) => Type::Symlink,
            Content::Hardlink(_) => Type::Hardlink,
            Content::CharDevice { .. } => Type::Char,
            Content::BlockDevice { .. } => Type::Block,
            Content::Fifo => Type::Fifo,
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
    #[error("{path:?}: invalid hard link target {target:?}: {error}")]
    HardlinkTarget {
        path: String,
        target: String,
        error: PathError,
    },
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
    #[error("{path:?} ({origin}) is a hard link to {target:?}, which {why}")]
    Hardlink {
        path: String,
        origin: String,
        target: String,
        why: &'static str,
    },
}

/// Who defined an entry, for error messages: a caller-chosen description
/// (`files "/hello" (source …)`), or for an archive's entry the description
/// of the archive, shared by all its entries, and the entry's name in it
/// (a layer of a million archive entries holds one copy of the former).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    source: Arc<str>,
    entry: Option<Box<str>>,
}

impl Origin {
    /// The entry `name` of the archive described by `source`
    /// (`tars x.tar`): shown as `tars x.tar entry "name"`.
    pub fn entry(source: &Arc<str>, name: &str) -> Origin {
        Origin {
            source: source.clone(),
            entry: Some(name.into()),
        }
    }
}

impl From<String> for Origin {
    fn from(source: String) -> Origin {
        Origin {
            source: source.into(),
            entry: None,
        }
    }
}

impl From<&str> for Origin {
    fn from(source: &str) -> Origin {
        Origin {
            source: source.into(),
            entry: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(name) => write!(f, "{} entry {name:?}", self.source),
            None => f.write_str(&self.source),
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    content: Content,
    meta: Meta,
    /// Who defined it, for error messages.
    origin: Origin,
    /// A parent directory created because an entry below it needed it.
    implied: bool,
    /// Size of a regular file, recorded when added.
    size: u64,
}

/// The entries of a [`Tree`] by path: a vector, a hash index of the paths
/// and, once asked for, their order by path. A layer of a million archive
/// entries costs about 200 bytes each (a B-tree, filled in path order,
/// keeps its nodes half empty).
#[derive(Clone, Debug, Default)]
struct PathMap {
    slots: Vec<Slot>,
    /// 32 bits of the (keyed) hash of a path → the last slot with them;
    /// slots with the same bits are chained by `Slot::next`, so a collision
    /// costs a comparison, never a wrong answer.
    index: HashMap<u32, u32>,
    hasher: RandomState,
    /// Slot numbers sorted by path (bytewise); reset by every insertion.
    sorted: OnceCell<Vec<usize>>,
}

#[derive(Clone, Debug)]
struct Slot {
    path: Box<str>,
    node: Node,
    /// The previous slot whose path has the same hash bits ([`NO_SLOT`]:
    /// none).
    next: u32,
}

const NO_SLOT: u32 = u32::MAX;

impl PathMap {
    fn hash(&self, path: &str) -> u32 {
        // The low bits of a keyed SipHash are as good as any.
        self.hasher.hash_one(path) as u32
    }

    fn find(&self, path: &str) -> Option<usize> {
        let mut at = self.index.get(&self.hash(path)).copied();
        while let Some(i) = at.filter(|&i| i != NO_SLOT).map(|i| i as usize) {
            if &*self.slots[i].path == path {
                return Some(i);
            }
            at = Some(self.slots[i].next);
        }
        None
    }

    fn get(&self, path: &str) -> Option<&Node> {
        self.find(path).map(|i| &self.slots[i].node)
    }

    fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.find(path).map(|i| &mut self.slots[i].node)
    }

    fn get_key_value(&self, path: &str) -> Option<(&str, &Node)> {
        self.find(path)
            .map(|i| (&*self.slots[i].path, &self.slots[i].node))
    }

    /// Adds `path`, which is not in the map.
    /// Adds `path`, which is not in the map. Slot numbers are 32-bit: four
    /// billion entries would need a terabyte of memory first.
    fn insert(&mut self, path: String, node: Node) {
        let i = u32::try_from(self.slots.len()).unwrap_or(NO_SLOT);
        let next = self.index.insert(self.hash(&path), i).unwrap_or(NO_SLOT);
        self.slots.push(Slot {
            path: path.into_boxed_str(),
            node,
            next,
        });
        self.sorted = OnceCell::new();
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Every entry, sorted bytewise by path.
    fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        let sorted = self.sorted.get_or_init(|| {
            let mut order: Vec<usize> = (0..self.slots.len()).collect();
            order.sort_unstable_by(|&a, &b| {
                self.slots[a]
                    .path
                    .as_bytes()
                    .cmp(self.slots[b].path.as_bytes())
            });
            order
        });
        sorted
            .iter()
            .map(|&i| (&*self.slots[i].path, &self.slots[i].node))
    }
}

impl std::ops::Index<&str> for PathMap {
    type Output = Node;

    fn index(&self, path: &str) -> &Node {
        match self.get(path) {
            Some(node) => node,
            None => panic!("{path:?} is not in the tree"),
        }
    }
}

/// A set of entries keyed by normalised path, written in sorted order.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    nodes: PathMap,
    /// mtime of the parent directories the tree creates.
    parent_mtime: u64,
}

/// How a member of a group of hard-linked names is written: the first name
/// in path order carries the content of `root` (the entry the links lead
/// to), every other name is a hard link to `first`.
struct LinkRole<'a> {
    root: &'a str,
    first: &'a str,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Sets the mtime of the parent directories created from now on
    /// (default 0).
    pub fn set_parent_mtime(&mut self, mtime: u64) {
        self.parent_mtime = mtime;
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 0
    }

    /// Adds an entry owned by 0:0 with mtime 0 (symlinks always get mode
    /// 0777). See [`Tree::add`].
    pub fn insert(
        &mut self,
        path: &str,
        content: Content,
        mode: u32,
        origin: impl Into<Origin>,
    ) -> Result<(), TreeError> {
        let mode = match content {
            Content::Symlink(_) => SYMLINK_MODE,
            _ => mode,
        };
        self.add(path, content, Meta::new(mode), origin)
    }

    /// Adds an entry. `path` (and a hard link's target) is normalised here;
    /// `origin` describes where the entry comes from (e.g.
    /// `files "/hello" (bazel-out/…/hello)`) and is used in error messages.
    /// A source file is checked to exist now, so that errors surface before
    /// any output is written.
    ///
    /// Duplicates: two directories merge, the later one's metadata winning;
    /// other entries must be the same (type, mode, owner, bytes or link
    /// target; the mtime may differ, the later one winning) or it is a
    /// [`TreeError::Conflict`].
    pub fn add(
        &mut self,
        path: &str,
        content: Content,
        meta: Meta,
        origin: impl Into<Origin>,
    ) -> Result<(), TreeError> {
        let origin = origin.into();
        let raw_path = path;
        let path = normalize_path(raw_path).map_err(|error| TreeError::Path {
            path: raw_path.to_string(),
            error,
        })?;
        if meta.mode > MAX_MODE {
            return Err(TreeError::Mode {
                path: raw_path.to_string(),
                mode: meta.mode,
            });
        }
        let mut content = content;
        let size = match &content {
            Content::File(src) => {
                let file_meta = fs::metadata(src).map_err(|error| TreeError::Source {
                    path: raw_path.to_string(),
                    source_path: src.clone(),
                    error,
                })?;
                if !file_meta.is_file() {
                    return Err(TreeError::NotAFile {
                        path: raw_path.to_string(),
                        source_path: src.clone(),
                    });
                }
                file_meta.len()
            }
            Content::Bytes(b) => b.len() as u64,
            Content::Segment(s) => s.len(),
            Content::Symlink(t) if t.is_empty() || t.contains('\0') => {
                return Err(TreeError::LinkTarget {
                    path: raw_path.to_string(),
                    target: t.clone(),
                })
            }
            Content::Hardlink(t) => {
                let target = normalize_path(t).map_err(|error| TreeError::HardlinkTarget {
                    path: raw_path.to_string(),
                    target: t.clone(),
                    error,
                })?;
                content = Content::Hardlink(target);
                0
            }
            Content::Dir
            | Content::Symlink(_)
            | Content::CharDevice { .. }
            | Content::BlockDevice { .. }
            | Content::Fifo => 0,
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
                        holder: node.origin.to_string(),
                        child: origin.to_string(),
                    })
                }
                None => {
                    self.nodes.insert(
                        parent.to_string(),
                        Node {
                            content: Content::Dir,
                            meta: Meta {
                                mtime: self.parent_mtime,
                                ..Meta::new(DEFAULT_DIR_MODE)
                            },
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
            meta,
            origin,
            implied: false,
            size,
        };
        match self.nodes.get_mut(&path) {
            None => {
                self.nodes.insert(path, node);
            }
            Some(existing) if existing.implied && node.content != Content::Dir => {
                // `existing.origin` is the entry below that needed a directory here.
                return Err(TreeError::NotADirectory {
                    path,
                    kind: node.content.kind(),
                    holder: node.origin.to_string(),
                    child: existing.origin.to_string(),
                });
            }
            Some(existing) if existing.content == Content::Dir && node.content == Content::Dir => {
                // An explicit directory decides the metadata of an implied
                // one, and a later directory that of an earlier one
                // (packages re-declare /usr and the like).
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
                        first: existing.origin.to_string(),
                        second: node.origin.to_string(),
                    });
                }
                existing.meta.mtime = node.meta.mtime;
            }
        }
        Ok(())
    }

    /// Checks that every hard link leads (possibly through other hard links)
    /// to an entry of the tree that is not a directory.
    pub fn check(&self) -> Result<(), TreeError> {
        self.link_plan().map(|_| ())
    }

    /// Checks the hard link at `path` as [`Tree::check`] does; any other
    /// entry (or none) passes.
    pub fn check_hardlink(&self, path: &str) -> Result<(), TreeError> {
        match self.nodes.get_key_value(path) {
            Some((path, node)) => match &node.content {
                Content::Hardlink(target) => {
                    self.resolve_link(target)
                        .map(|_| ())
                        .map_err(|why| TreeError::Hardlink {
                            path: path.to_string(),
                            origin: node.origin.to_string(),
                            target: target.clone(),
                            why,
                        })
                }
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Follows hard links from `target`: the entry they lead to, or why not.
    fn resolve_link<'a>(&'a self, target: &'a str) -> Result<(&'a str, &'a Node), &'static str> {
        let mut cur = target;
        for _ in 0..=self.nodes.len() {
            let Some((path, node)) = self.nodes.get_key_value(cur) else {
                return Err(if cur == target {
                    "is not in the layer"
                } else {
                    "leads to a hard link to a path that is not in the layer"
                });
            };
            match &node.content {
                Content::Hardlink(next) => cur = next,
                Content::Dir => return Err("is a directory"),
                _ => return Ok((path, node)),
            }
        }
        Err("is part of a cycle of hard links")
    }

    /// Groups the names of every hard-linked entry. Names absent from the
    /// map are written as they are.
    fn link_plan(&self) -> Result<HashMap<&str, LinkRole<'_>>, TreeError> {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (path, node) in self.nodes.iter() {
            if let Content::Hardlink(target) = &node.content {
                let (root, _) = self
                    .resolve_link(target)
                    .map_err(|why| TreeError::Hardlink {
                        path: path.to_string(),
                        origin: node.origin.to_string(),
                        target: target.clone(),
                        why,
                    })?;
                groups.entry(root).or_default().push(path);
            }
        }
        let mut plan = HashMap::new();
        for (root, links) in groups {
            // Paths are visited in sorted order, so `links` is sorted.
            let first = links.first().map_or(root, |&l| l.min(root));
            for member in links.into_iter().chain([root]) {
                plan.insert(member, LinkRole { root, first });
            }
        }
        Ok(plan)
    }

    /// Every entry (created parents included), sorted by path. A hard link
    /// is listed as what it leads to (a file, or a symlink with its target);
    /// devices and FIFOs as files.
    pub fn listing(&self) -> Vec<ListingEntry> {
        self.nodes
            .iter()
            .map(|(path, node)| self.listing_entry(path, node))
            .collect()
    }

    /// [`Tree::listing`] as canonical JSON, written entry by entry (a
    /// layer of a million files needs no second copy of its paths).
    pub fn write_listing<W: Write>(&self, out: &mut W) -> anyhow::Result<()> {
        out.write_all(b"[")?;
        for (i, (path, node)) in self.nodes.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&crate::canonical::to_vec(&self.listing_entry(path, node))?)?;
        }
        out.write_all(b"]")?;
        Ok(())
    }

    fn listing_entry(&self, path: &str, node: &Node) -> ListingEntry {
        let content = match &node.content {
            Content::Hardlink(t) => self
                .resolve_link(t)
                .map_or(&node.content, |(_, n)| &n.content),
            c => c,
        };
        let mut entry = ListingEntry::new(
            content.kind(),
            path,
            match content {
                Content::Symlink(t) => Some(t.clone()),
                _ => None,
            },
        );
        match probe_content(content) {
            Some(Program::Elf(elf)) => entry.elf = Some(elf),
            Some(Program::Script(interpreter)) => entry.script = Some(interpreter),
            None => {}
        }
        entry
    }

    /// Appends every entry to `builder`, sorted bytewise by path. Parents sort
    /// before their children because a parent path is a prefix of them.
    /// Does not finish the archive.
    ///
    /// Hard links: a tar hard link must name an entry that comes before it,
    /// but sorting can put a link before the entry it links to (`a` linking
    /// to `b`). So every group of hard-linked names is written with the
    /// content and metadata of the entry the links lead to on the group's
    /// first name in path order, and every other name of the group
    /// (including the original entry's) as a hard link to that first name.
    /// Extracting the layer gives what extracting the sources gives: the
    /// same names sharing one inode with the same bytes and metadata.
    pub fn write<W: Write>(&self, builder: &mut Builder<W>) -> anyhow::Result<()> {
        let plan = self.link_plan()?;
        for (path, node) in self.nodes.iter() {
            let written = match plan.get(path) {
                Some(role) if role.first != path => {
                    let root = &self.nodes[role.root];
                    let mut h = header_with(EntryType::Link, &root.meta, 0);
                    builder
                        .append_link(&mut h, path, role.first)
                        .map_err(anyhow::Error::from)
                }
                Some(role) => write_node(builder, path, &self.nodes[role.root]),
                None => write_node(builder, path, node),
            };
            written.with_context(|| format!("writing {path:?} to the tar"))?;
        }
        Ok(())
    }
}

/// Writes one entry with `node`'s content and metadata under `path`.
fn write_node<W: Write>(b: &mut Builder<W>, path: &str, node: &Node) -> anyhow::Result<()> {
    let meta = &node.meta;
    match &node.content {
        Content::Dir => {
            let mut h = header_with(EntryType::Directory, meta, 0);
            b.append_data(&mut h, format!("{path}/"), io::empty())?;
        }
        Content::Bytes(bytes) => {
            let mut h = header_with(EntryType::Regular, meta, bytes.len() as u64);
            b.append_data(&mut h, path, &bytes[..])?;
        }
        Content::File(src) => {
            let mut file = File::open(src)
                .with_context(|| format!("{}: opening source {}", node.origin, src.display()))?;
            // The header holds the size seen when the entry was added: a
            // file that no longer has it would give a layer that matches
            // neither version, so it is an error (before, during or after
            // the copy).
            let changed = |file: &File| -> Option<anyhow::Error> {
                let now = file.metadata().ok()?.len();
                (now != node.size).then(|| {
                    anyhow::anyhow!(
                        "{}: source {} changed while the layer was written: it had {} bytes, now {now}",
                        node.origin,
                        src.display(),
                        node.size
                    )
                })
            };
            if let Some(e) = changed(&file) {
                return Err(e);
            }
            let mut h = header_with(EntryType::Regular, meta, node.size);
            let copied = b.append_data(&mut h, path, exact(&mut file, node.size));
            if let Some(e) = changed(&file) {
                return Err(e);
            }
            copied.with_context(|| format!("{}: reading source {}", node.origin, src.display()))?;
        }
        Content::Segment(s) => {
            let mut h = header_with(EntryType::Regular, meta, s.len());
            let reader = io::BufReader::with_capacity(256 * 1024, s.reader());
            b.append_data(&mut h, path, exact(reader, s.len()))
                .with_context(|| format!("{}: reading the archive", node.origin))?;
        }
        Content::Symlink(t) => {
            let mut h = header_with(EntryType::Symlink, meta, 0);
            b.append_link(&mut h, path, t)?;
        }
        Content::Hardlink(t) => {
            // `Tree::write` writes links from its plan; a link reaching
            // here was not planned.
            anyhow::bail!("{}: unresolved hard link to {t:?}", node.origin);
        }
        Content::CharDevice { major, minor } | Content::BlockDevice { major, minor } => {
            let ty = if matches!(node.content, Content::CharDevice { .. }) {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut h = header_with(ty, meta, 0);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
            b.append_data(&mut h, path, io::empty())?;
        }
        Content::Fifo => {
            let mut h = header_with(EntryType::Fifo, meta, 0);
            b.append_data(&mut h, path, io::empty())?;
        }
    }
    Ok(())
}

/// Whether two definitions of one path are the same entry: same type, mode,
/// owner, and bytes or link target (the mtime is not compared). On an I/O
/// error, names the source that failed.
fn same_entry(a: &Node, b: &Node) -> Result<bool, (PathBuf, io::Error)> {
    let (ma, mb) = (&a.meta, &b.meta);
    if (ma.mode, ma.uid, ma.gid) != (mb.mode, mb.uid, mb.gid) || a.content.ty() != b.content.ty() {
        return Ok(false);
    }
    match (&a.content, &b.content) {
        (Content::Dir, Content::Dir) | (Content::Fifo, Content::Fifo) => Ok(true),
        (Content::Symlink(x), Content::Symlink(y))
        | (Content::Hardlink(x), Content::Hardlink(y)) => Ok(x == y),
        (Content::CharDevice { .. }, _) | (Content::BlockDevice { .. }, _) => {
            Ok(a.content == b.content)
        }
        (Content::File(x), Content::File(y)) if x == y => Ok(true),
        (Content::Segment(x), Content::Segment(y)) if x == y => Ok(true),
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
        Content::Segment(s) => Ok(Box::new(s.reader())),
        _ => Ok(Box::new(io::empty())),
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
        let na = crate::compression::read_up_to(&mut ra, &mut ba).map_err(|e| (source_of(a), e))?;
        let nb = crate::compression::read_up_to(&mut rb, &mut bb).map_err(|e| (source_of(b), e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// A normalised header: the given type, mode and size, everything else zero.
pub fn header(entry_type: EntryType, mode: u32, size: u64) -> Header {
    header_with(entry_type, &Meta::new(mode), size)
}

/// A normalised header with the given type, metadata and size: empty
/// user/group names, nothing from the host.
pub fn header_with(entry_type: EntryType, meta: &Meta, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(meta.mode);
    h.set_size(size);
    h.set_uid(meta.uid);
    h.set_gid(meta.gid);
    h.set_mtime(meta.mtime);
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
    b.append_data(&mut h, path, exact(reader, size))
}

/// Appends a symbolic link (mode 0777).
pub fn append_symlink<W: Write>(b: &mut Builder<W>, path: &str, target: &str) -> io::Result<()> {
    let mut h = header(EntryType::Symlink, SYMLINK_MODE, 0);
    b.append_link(&mut h, path, target)
}

fn exact<R: Read>(reader: R, size: u64) -> ExactReader<R> {
    ExactReader {
        inner: reader.take(size),
        remaining: size,
    }
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
            Content::Segment(s) => write!(f, "{} bytes of an archive", s.len()),
            Content::Dir => f.write_str("directory"),
            Content::Symlink(t) => write!(f, "symlink to {t}"),
            Content::Hardlink(t) => write!(f, "hard link to {t}"),
            Content::CharDevice { major, minor } => {
                write!(f, "character device {major},{minor}")
            }
            Content::BlockDevice { major, minor } => write!(f, "block device {major},{minor}"),
            Content::Fifo => f.write_str("FIFO"),
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
        // A later directory's metadata wins.
        t.insert("/d", Content::Dir, 0o700, "d3").unwrap();
        assert_eq!(t.nodes["d"].meta.mode, 0o700);
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
    fn source_that_changes_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("grows");
        fs::write(&src, b"12345").unwrap();
        let mut t = Tree::new();
        t.insert(
            "/g",
            Content::File(src.clone()),
            0o644,
            "files \"/g\" (grows)",
        )
        .unwrap();
        for now in [&b"1234567"[..], b"12"] {
            fs::write(&src, now).unwrap();
            let err = format!("{:#}", tree_to_vec(&t).unwrap_err());
            assert!(
                err.contains(&format!(
                    "files \"/g\" (grows): source {} changed while the layer was written: \
                     it had 5 bytes, now {}",
                    src.display(),
                    now.len()
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn file_that_shrinks_is_an_error() {
        let mut b = Builder::new(Vec::new());
        let err = append_file(&mut b, "f", 0o644, 10, &b"short"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn metadata_devices_and_dirs() {
        let mut t = Tree::new();
        t.set_parent_mtime(946684800);
        let meta = Meta {
            mode: 0o4755,
            uid: 1000,
            gid: 3_000_000,
            mtime: 1_700_000_000,
        };
        t.add("/opt/a/f", Content::Bytes(b"x".to_vec()), meta, "f")
            .unwrap();
        t.add(
            "/dev/null",
            Content::CharDevice { major: 1, minor: 3 },
            Meta::new(0o666),
            "null",
        )
        .unwrap();
        t.add(
            "/dev/sda",
            Content::BlockDevice { major: 8, minor: 0 },
            Meta::new(0o660),
            "sda",
        )
        .unwrap();
        t.add("/dev/p", Content::Fifo, Meta::new(0o600), "p")
            .unwrap();
        // Same entry but another mtime: one entry, the later mtime.
        let later = Meta {
            mtime: 1_800_000_000,
            ..meta
        };
        t.add("/opt/a/f", Content::Bytes(b"x".to_vec()), later, "f2")
            .unwrap();
        // Another owner: a conflict.
        let err = t
            .add(
                "/opt/a/f",
                Content::Bytes(b"x".to_vec()),
                Meta { uid: 1, ..meta },
                "f3",
            )
            .unwrap_err();
        assert!(err.to_string().contains("f and f3"), "{err}");
        let err = t
            .add("/dev/p", Content::Fifo, Meta::new(0o644), "p2")
            .unwrap_err();
        assert!(matches!(err, TreeError::Conflict { .. }));

        let bytes = tree_to_vec(&t).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            let dev = matches!(h.entry_type(), EntryType::Char | EntryType::Block);
            seen.push((
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                dev.then(|| h.device_major().unwrap()).flatten(),
                dev.then(|| h.device_minor().unwrap()).flatten(),
            ));
        }
        let dir = |p: &str| {
            (
                p.to_string(),
                EntryType::Directory,
                0o755,
                0,
                0,
                946684800,
                None,
                None,
            )
        };
        assert_eq!(
            seen,
            [
                dir("dev/"),
                (
                    "dev/null".into(),
                    EntryType::Char,
                    0o666,
                    0,
                    0,
                    0,
                    Some(1),
                    Some(3)
                ),
                ("dev/p".into(), EntryType::Fifo, 0o600, 0, 0, 0, None, None),
                (
                    "dev/sda".into(),
                    EntryType::Block,
                    0o660,
                    0,
                    0,
                    0,
                    Some(8),
                    Some(0)
                ),
                dir("opt/"),
                dir("opt/a/"),
                (
                    "opt/a/f".into(),
                    EntryType::Regular,
                    0o4755,
                    1000,
                    3_000_000,
                    1_800_000_000,
                    None,
                    None
                ),
            ]
        );
        let kinds: Vec<ListingKind> = t.listing().iter().map(|e| e.kind).collect();
        assert_eq!(kinds[1], ListingKind::File);
    }

    #[test]
    fn hardlinks_point_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        fs::write(&src, b"payload").unwrap();
        let file = Arc::new(File::open(&src).unwrap());
        let meta = Meta {
            mode: 0o750,
            uid: 7,
            gid: 8,
            mtime: 9,
        };
        let mut t = Tree::new();
        // "z/target" holds the data; "a/link" and "m/link" link to it (one
        // through the other), and sort before it.
        t.add(
            "z/target",
            Content::Segment(Segment::new(file.clone(), 3, 4)),
            meta,
            "target",
        )
        .unwrap();
        t.add("a/link", Content::Hardlink("./m/link".into()), meta, "l1")
            .unwrap();
        t.add("m/link", Content::Hardlink("/z/target".into()), meta, "l2")
            .unwrap();
        t.add("b/sym", Content::Symlink("x".into()), Meta::new(0o777), "s")
            .unwrap();
        t.add("c/symlink", Content::Hardlink("b/sym".into()), meta, "l3")
            .unwrap();
        t.check().unwrap();
        let bytes = tree_to_vec(&t).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let ty = e.header().entry_type();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mode = e.header().mode().unwrap();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            if ty != EntryType::Directory {
                seen.push((path, ty, link, mode, data));
            }
        }
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            seen,
            [
                (
                    "a/link".into(),
                    EntryType::Regular,
                    None,
                    0o750,
                    "load".into()
                ),
                ("b/sym".into(), EntryType::Symlink, s("x"), 0o777, "".into()),
                (
                    "c/symlink".into(),
                    EntryType::Link,
                    s("b/sym"),
                    0o777,
                    "".into()
                ),
                (
                    "m/link".into(),
                    EntryType::Link,
                    s("a/link"),
                    0o750,
                    "".into()
                ),
                (
                    "z/target".into(),
                    EntryType::Link,
                    s("a/link"),
                    0o750,
                    "".into()
                ),
            ]
        );
        let listing = t.listing();
        let c = listing.iter().find(|e| e.path == "c/symlink").unwrap();
        assert_eq!(
            (c.kind, c.target.as_deref()),
            (ListingKind::Symlink, Some("x"))
        );
        let l = listing.iter().find(|e| e.path == "a/link").unwrap();
        assert_eq!(l.kind, ListingKind::File);

        // Broken links are errors naming the link, its origin and target.
        let mut bad = Tree::new();
        bad.add(
            "x",
            Content::Hardlink("nope".into()),
            meta,
            "tars t.tar entry \"x\"",
        )
        .unwrap();
        let err = bad.check().unwrap_err().to_string();
        assert_eq!(
            err,
            "\"x\" (tars t.tar entry \"x\") is a hard link to \"nope\", which is not in the layer"
        );
        bad.add("d/f", Content::Bytes(vec![]), meta, "f").unwrap();
        bad.add("y", Content::Hardlink("d".into()), meta, "y")
            .unwrap();
        bad.add("nope", Content::Hardlink("y".into()), meta, "n")
            .unwrap();
        let err = bad.check().unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let mut cyc = Tree::new();
        cyc.add("p", Content::Hardlink("q".into()), meta, "p")
            .unwrap();
        cyc.add("q", Content::Hardlink("p".into()), meta, "q")
            .unwrap();
        assert!(cyc.check().unwrap_err().to_string().contains("cycle"));
        assert!(tree_to_vec(&cyc).is_err());
        let err = bad
            .add("z", Content::Hardlink("../etc".into()), meta, "z")
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid hard link target"),
            "{err}"
        );
    }

    #[test]
    fn segment_reader_seeks_within_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("data");
        fs::write(&src, b"0123456789").unwrap();
        let seg = Segment::new(Arc::new(File::open(&src).unwrap()), 2, 5);
        let mut r = seg.reader();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "23456");
        assert_eq!(r.seek(SeekFrom::Start(1)).unwrap(), 1);
        assert_eq!(r.seek(SeekFrom::Current(2)).unwrap(), 3);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "56");
        assert!(r.seek(SeekFrom::Current(-10)).is_err());
        // A range past the end of the file is an error, not a short read.
        let past = Segment::new(Arc::new(File::open(&src).unwrap()), 8, 5);
        let mut v = Vec::new();
        let err = past.reader().read_to_end(&mut v).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
