//! An image's filesystem unpacked into a directory: its layers applied in
//! order, with the OCI whiteouts (`.wh.NAME` deletes NAME of the layers
//! below, `.wh..wh..opq` empties its directory of them).
//!
//! Paths inside the image are resolved the way the image would see them:
//! a symlink, absolute or relative, is followed inside the root and never
//! out of it. Hand-written because tar's own `unpack_in` resolves symlinks
//! against the host's `/` (a layer's absolute `lib -> /usr/lib` would leave
//! the root) and knows nothing of whiteouts.
//!
//! Owners are recorded from the tar headers, and given to the files when the
//! unpacker may (as root); modes are applied to the files themselves,
//! directories' last (a read-only directory still gets its children).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

use crate::compression::{self, Compression, MAGIC_LEN};

/// Symlinks followed while resolving one path before giving up (Linux's own
/// limit).
const MAX_SYMLINKS: usize = 40;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Owner and mode of an entry, as its layer's tar header gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// An unpacked image filesystem.
pub struct Rootfs {
    root: PathBuf,
    /// Image path (relative, no symlinks) -> owner from the tar header.
    owners: BTreeMap<PathBuf, Owner>,
}

/// Makes `owner` own `path` (not following a symlink) when this process may:
/// as root, commands run in the root see the image's owners. Otherwise the
/// files stay the unpacker's, and the recorded owners are what checks read.
fn give(path: &Path, owner: Owner) {
    let (Ok(uid), Ok(gid)) = (u32::try_from(owner.uid), u32::try_from(owner.gid)) else {
        return;
    };
    let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
}

/// The image path `path` (absolute or not) as normal components: `.` and
/// leading `/` dropped, `..` refused (a tar entry must not climb out).
fn entry_components(path: &Path) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => bail!("{}: a path with `..`", path.display()),
            Component::Prefix(_) => bail!("{}: not a Unix path", path.display()),
        }
    }
    Ok(out)
}

impl Rootfs {
    /// An empty root at `root` (created if missing).
    pub fn create(root: impl Into<PathBuf>) -> anyhow::Result<Rootfs> {
        let root = root.into();
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let root = fs::canonicalize(&root).with_context(|| format!("{}", root.display()))?;
        Ok(Rootfs {
            root,
            owners: BTreeMap::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The owner the layers gave the entry at `rel` (a path from
    /// [`Rootfs::resolve`]).
    pub fn owner(&self, rel: &Path) -> Option<Owner> {
        self.owners.get(rel).copied()
    }

    /// Applies the layer blobs at `layers`, in order (each gzip, zstd, xz or
    /// uncompressed, told from its bytes).
    pub fn apply_layers(&mut self, layers: &[PathBuf]) -> anyhow::Result<()> {
        let mut dir_modes: BTreeMap<PathBuf, u32> = BTreeMap::new();
        for layer in layers {
            self.apply_layer(layer, &mut dir_modes)
                .with_context(|| format!("applying layer {}", layer.display()))?;
        }
        // Deepest first: a parent made read-only last.
        for (rel, mode) in dir_modes.iter().rev() {
            let path = self.root.join(rel);
            if let Ok(meta) = fs::symlink_metadata(&path) {
                if meta.is_dir() {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                        .with_context(|| format!("chmod {}", path.display()))?;
                }
            }
        }
        Ok(())
    }

    fn apply_layer(
        &mut self,
        layer: &Path,
        dir_modes: &mut BTreeMap<PathBuf, u32>,
    ) -> anyhow::Result<()> {
        let file = fs::File::open(layer).context("opening")?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let head = io::BufRead::fill_buf(&mut input)?;
        let format = Compression::detect(&head[..head.len().min(MAGIC_LEN)]);
        let reader = compression::decoder(format, input)?;
        self.apply_tar(reader, dir_modes)
    }

    /// Applies one uncompressed layer tarball.
    pub fn apply_tar(
        &mut self,
        reader: impl Read,
        dir_modes: &mut BTreeMap<PathBuf, u32>,
    ) -> anyhow::Result<()> {
        // What this layer made: its own whiteouts never delete these.
        let mut made: BTreeSet<PathBuf> = BTreeSet::new();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().context("reading the tar")? {
            let mut entry = entry.context("reading a tar entry")?;
            let raw = entry.path().context("an entry's path")?.into_owned();
            let rel = entry_components(&raw)?;
            let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue; // the root itself
            };
            let parent_rel = rel.parent().unwrap_or(Path::new(""));
            let parent = self
                .resolve_dir(parent_rel, true)
                .with_context(|| format!("{}: its directory", raw.display()))?;
            if name == OPAQUE {
                self.empty_dir(&parent, &made)?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                let target = parent.join(hidden);
                if !made.contains(&target) {
                    self.remove(&target)?;
                }
                continue;
            }
            let dest_rel = parent.join(&name);
            let dest = self.root.join(&dest_rel);
            let header = entry.header();
            let mode = header.mode().unwrap_or(0o644);
            let owner = Owner {
                uid: header.uid().unwrap_or(0),
                gid: header.gid().unwrap_or(0),
            };
            let kind = header.entry_type();
            let existing = fs::symlink_metadata(&dest).ok();
            if kind.is_dir() {
                if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                    if existing.is_some() {
                        self.remove(&dest_rel)?;
                    }
                    fs::create_dir(&dest).with_context(|| format!("mkdir {}", dest.display()))?;
                }
                give(&dest, owner);
                dir_modes.insert(dest_rel.clone(), mode);
            } else {
                if existing.is_some() {
                    self.remove(&dest_rel)?;
                }
                if kind.is_symlink() {
                    let target = entry
                        .link_name()
                        .context("a symlink's target")?
                        .unwrap_or_default()
                        .into_owned();
                    symlink(&target, &dest)
                        .with_context(|| format!("symlink {}", dest.display()))?;
                    give(&dest, owner);
                } else if kind.is_hard_link() {
                    let target = entry
                        .link_name()
                        .context("a hard link's target")?
                        .unwrap_or_default()
                        .into_owned();
                    let target_rel = entry_components(&target)?;
                    let target_parent =
                        self.resolve_dir(target_rel.parent().unwrap_or(Path::new("")), false)?;
                    let source = self
                        .root
                        .join(target_parent.join(target_rel.file_name().unwrap_or_default()));
                    fs::hard_link(&source, &dest).with_context(|| {
                        format!("{}: hard link to {}", raw.display(), target.display())
                    })?;
                } else if kind.is_file() || kind == tar::EntryType::Continuous {
                    let mut out = fs::File::create(&dest)
                        .with_context(|| format!("creating {}", dest.display()))?;
                    io::copy(&mut entry, &mut out)
                        .with_context(|| format!("writing {}", dest.display()))?;
                    // Before the mode: chown clears setuid and setgid.
                    give(&dest, owner);
                    fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o7777))
                        .with_context(|| format!("chmod {}", dest.display()))?;
                } else {
                    // Devices and FIFOs need privileges to make and are never
                    // what a structure test reads: skipped.
                    continue;
                }
            }
            self.owners.insert(dest_rel.clone(), owner);
            made.insert(dest_rel);
        }
        Ok(())
    }

    /// Removes the entry at image path `rel` (recursively) and its owners.
    fn remove(&mut self, rel: &Path) -> anyhow::Result<()> {
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => return Ok(()),
        }
        .with_context(|| format!("removing {}", path.display()))?;
        let gone: Vec<PathBuf> = self
            .owners
            .range(rel.to_path_buf()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.owners.remove(&k);
        }
        Ok(())
    }

    /// Removes what lower layers put in directory `rel` (an opaque whiteout).
    fn empty_dir(&mut self, rel: &Path, made: &BTreeSet<PathBuf>) -> anyhow::Result<()> {
        let dir = self.root.join(rel);
        let children: Vec<PathBuf> = fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| rel.join(e.file_name()))
            .filter(|c| !made.contains(c))
            .collect();
        for c in children {
            self.remove(&c)?;
        }
        Ok(())
    }

    /// Image path `path` with every symlink resolved inside the root (the
    /// last component too when `follow_last`), relative to the root. None
    /// when a component does not exist.
    pub fn resolve(&self, path: &Path, follow_last: bool) -> anyhow::Result<Option<PathBuf>> {
        let rel = normalize_lexically(path);
        let (parent, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_owned()),
            _ => return Ok(Some(PathBuf::new())),
        };
        let Some(dir) = self.walk(&parent, false)? else {
            return Ok(None);
        };
        let candidate = dir.join(&name);
        match fs::symlink_metadata(self.root.join(&candidate)) {
            Err(_) => Ok(None),
            Ok(m) if m.file_type().is_symlink() && follow_last => self.walk(&candidate, false),
            Ok(_) => Ok(Some(candidate)),
        }
    }

    /// Directory `rel` resolved inside the root, made (with its parents)
    /// when missing if `create`.
    fn resolve_dir(&self, rel: &Path, create: bool) -> anyhow::Result<PathBuf> {
        match self.walk(rel, create)? {
            Some(p) => {
                let real = self.root.join(&p);
                if !real.is_dir() {
                    bail!("/{} is not a directory", p.display());
                }
                Ok(p)
            }
            None => bail!("/{} does not exist", rel.display()),
        }
    }

    /// Walks `rel` from the root, following every symlink inside the root;
    /// missing components are made as directories when `create`, else
    /// the walk ends with None.
    fn walk(&self, rel: &Path, create: bool) -> anyhow::Result<Option<PathBuf>> {
        let mut pending: Vec<PathBuf> = rel
            .components()
            .rev()
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        let mut at = PathBuf::new();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            let c = c.as_path();
            match c.components().next() {
                Some(Component::RootDir) => {
                    at = PathBuf::new();
                    continue;
                }
                Some(Component::CurDir) | None => continue,
                Some(Component::ParentDir) => {
                    at.pop();
                    continue;
                }
                _ => {}
            }
            let next = at.join(c);
            let real = self.root.join(&next);
            match fs::symlink_metadata(&real) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        bail!("/{}: too many levels of symbolic links", rel.display());
                    }
                    let target = fs::read_link(&real)?;
                    if target.is_absolute() {
                        at = PathBuf::new();
                    }
                    for t in target.components().rev() {
                        pending.push(PathBuf::from(t.as_os_str()));
                    }
                }
                Ok(_) => at = next,
                Err(_) if create => {
                    fs::create_dir(&real).with_context(|| format!("mkdir {}", real.display()))?;
                    at = next;
                }
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(at))
    }
}

/// `path` as root-relative components, `..` applied lexically (never above
/// the root), for paths named in test configs.
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, content) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_uid(1000);
            h.set_gid(2000);
            match *kind {
                tar::EntryType::Directory => {
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, path, content).unwrap();
                }
                _ => {
                    h.set_mode(0o640);
                    h.set_size(content.len() as u64);
                    b.append_data(&mut h, path, content.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn apply(fs_: &mut Rootfs, bytes: &[u8]) -> anyhow::Result<()> {
        let mut modes = BTreeMap::new();
        fs_.apply_tar(bytes, &mut modes)
    }

    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as L};

    #[test]
    fn whiteouts_remove_lower_layers_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Rootfs::create(dir.path().join("r")).unwrap();
        apply(
            &mut r,
            &layer(&[
                ("etc/", D, ""),
                ("etc/a", F, "a"),
                ("etc/b", F, "b"),
                ("opt/x/y", F, "y"),
            ]),
        )
        .unwrap();
        apply(
            &mut r,
            &layer(&[
                ("etc/.wh.a", F, ""),
                ("opt/x/z", F, "z"),
                ("opt/x/.wh..wh..opq", F, ""),
            ]),
        )
        .unwrap();
        let root = r.root().to_path_buf();
        assert!(!root.join("etc/a").exists());
        assert_eq!(fs::read_to_string(root.join("etc/b")).unwrap(), "b");
        assert!(
            !root.join("opt/x/y").exists(),
            "opaque whiteout empties lower entries"
        );
        assert_eq!(fs::read_to_string(root.join("opt/x/z")).unwrap(), "z");
        assert_eq!(r.owner(Path::new("etc/a")), None);
        assert_eq!(
            r.owner(Path::new("etc/b")),
            Some(Owner {
                uid: 1000,
                gid: 2000
            })
        );
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Rootfs::create(dir.path().join("r")).unwrap();
        apply(
            &mut r,
            &layer(&[
                ("usr/lib/", D, ""),
                ("lib", L, "/usr/lib"),
                ("escape", L, "/../../.."),
                ("lib/libc.so", F, "libc"),
                ("escape/inside", F, "i"),
                ("hard", H, "lib/libc.so"),
            ]),
        )
        .unwrap();
        let root = r.root().to_path_buf();
        assert_eq!(
            fs::read_to_string(root.join("usr/lib/libc.so")).unwrap(),
            "libc"
        );
        assert_eq!(fs::read_to_string(root.join("inside")).unwrap(), "i");
        assert_eq!(fs::read_to_string(root.join("hard")).unwrap(), "libc");
        assert_eq!(
            r.resolve(Path::new("/lib/libc.so"), true).unwrap(),
            Some(PathBuf::from("usr/lib/libc.so"))
        );
        assert_eq!(
            r.resolve(Path::new("/lib"), false).unwrap(),
            Some(PathBuf::from("lib"))
        );
        assert_eq!(r.resolve(Path::new("/nope/x"), true).unwrap(), None);
    }

    #[test]
    fn parent_dir_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Rootfs::create(dir.path().join("r")).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(F);
        h.set_size(1);
        h.set_mode(0o644);
        // Header::set_path refuses `..`; write the name bytes directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil\0\0");
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let err = apply(&mut r, &b.into_inner().unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains(".."), "{err:#}");
        assert!(!dir.path().join("evil").exists());
    }
}
