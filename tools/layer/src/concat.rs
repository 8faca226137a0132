//! `concat` entries: one regular file made of the regular-file members of
//! archives (.deb or tarballs) whose path matches a glob, concatenated in
//! path order — e.g. the CA bundle `/etc/ssl/certs/ca-certificates.crt`
//! that the postinst of Debian's `ca-certificates` would generate from
//! `usr/share/ca-certificates/**/*.crt`.
//!
//! The archives are opened as for `tar`/`deb` entries (the file data of
//! compressed streams spooled to a temporary file, within the same
//! expansion limit); only the headers are read while collecting, then the
//! matching members' bytes are read into memory, at most [`MAX_SIZE`] of
//! them.

use std::collections::btree_map::Entry as Slot;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::Path;

use anyhow::{anyhow, bail};
use tar::EntryType;

use kiln_oci::compression::read_up_to;
use kiln_oci::tar_writer::{normalize_path, Segment};

use crate::archive;

/// The largest concatenation built (it is held in memory).
pub const MAX_SIZE: u64 = 64 << 20;

/// A glob on normalised member paths (no leading `/` or `./`): a `**`
/// component matches zero or more whole components, `*` any run of
/// characters within one component (`/` excluded, a leading `.` included);
/// every other character matches itself.
#[derive(Debug)]
pub struct Glob {
    parts: Vec<String>,
}

impl Glob {
    /// Parses `pattern`, normalised like a path (a leading `/` or `./`,
    /// `.` components and repeated `/` dropped). Empty patterns, `..`
    /// components, NUL bytes and a `**` that is not a whole component are
    /// errors.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let normal = normalize_path(pattern).map_err(|e| e.to_string())?;
        let parts: Vec<String> = normal.split('/').map(str::to_string).collect();
        if parts.iter().any(|p| p != "**" && p.contains("**")) {
            return Err("`**` must be a whole path component".into());
        }
        Ok(Glob { parts })
    }

    pub fn matches(&self, path: &str) -> bool {
        let pattern: Vec<&str> = self.parts.iter().map(String::as_str).collect();
        let path: Vec<&str> = path.split('/').collect();
        match_components(&pattern, &path)
    }
}

fn match_components(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|i| match_components(rest, &path[i..])),
        Some((first, rest)) => path.split_first().is_some_and(|(name, tail)| {
            match_one(first.as_bytes(), name.as_bytes()) && match_components(rest, tail)
        }),
    }
}

/// One component against one pattern component: `*` matches any run of
/// bytes, anything else itself (greedy with backtracking to the last `*`).
fn match_one(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // After the last `*` seen: where the pattern resumes and the name
    // position that `*` has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, n));
        } else if pattern.get(p) == Some(&name[n]) {
            p += 1;
            n += 1;
        } else if let Some((resume, consumed)) = star {
            p = resume;
            n = consumed + 1;
            star = Some((resume, n));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A matching member: its bytes and where it comes from.
struct Member {
    data: Segment,
    origin: String,
}

/// The content of the `concat` entry at `path` (for messages): every
/// regular-file member of `sources` (hard links to one included, symlinks
/// not) whose normalised path matches `pattern`, in bytewise path order,
/// each followed by a newline when it does not end with one (an empty
/// member adds nothing).
pub fn build(
    target: &str,
    attr: &str,
    path: &str,
    sources: &[String],
    pattern: &str,
    expansion_ratio: u64,
) -> anyhow::Result<Vec<u8>> {
    let glob = Glob::new(pattern)
        .map_err(|e| anyhow!("{target}: {attr}: {path:?}: pattern {pattern:?}: {e}"))?;
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    for src in sources {
        collect(
            target,
            attr,
            Path::new(src),
            &glob,
            expansion_ratio,
            &mut members,
        )?;
    }
    if members.is_empty() {
        bail!(
            "{target}: {attr}: {path:?}: pattern {pattern:?} matches no regular file in {}",
            sources.join(", ")
        );
    }
    let mut out = Vec::new();
    for m in members.values() {
        let too_big = || {
            anyhow!(
                "{target}: {attr}: {path:?}: the concatenation is larger than {} MiB \
                 (at {})",
                MAX_SIZE >> 20,
                m.origin
            )
        };
        if out.len() as u64 + m.data.len() > MAX_SIZE {
            return Err(too_big());
        }
        let start = out.len();
        m.data
            .reader()
            .read_to_end(&mut out)
            .map_err(|e| anyhow!("{target}: {attr}: {}: reading: {e}", m.origin))?;
        if out.len() > start && out.last() != Some(&b'\n') {
            out.push(b'\n');
            if out.len() as u64 > MAX_SIZE {
                return Err(too_big());
            }
        }
    }
    Ok(out)
}

/// Adds the matching regular-file members of the archive `src` to
/// `members`; a path already there must have the same bytes.
fn collect(
    target: &str,
    attr: &str,
    src: &Path,
    glob: &Glob,
    expansion_ratio: u64,
    members: &mut BTreeMap<String, Member>,
) -> anyhow::Result<()> {
    let (archive, tar, mut files) = archive::open_tar_or_deb(target, attr, src, expansion_ratio)?;
    let read_err = |e: io::Error| anyhow!("{target}: {attr}: {archive}: reading the archive: {e}");
    // Every member so far: the bytes of a regular file (hard links
    // resolved), None for any other type.
    let mut seen: HashMap<String, Option<Segment>> = HashMap::new();
    let mut reader = tar::Archive::new(tar);
    for entry in reader.entries_with_seek().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        files
            .check()
            .map_err(|e| anyhow!("{target}: {attr}: {archive}: {e}"))?;
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions() {
            continue;
        }
        let name = String::from_utf8(entry.path_bytes().into_owned()).map_err(|e| {
            anyhow!(
                "{target}: {attr}: {archive}: entry {:?}: the name is not UTF-8",
                String::from_utf8_lossy(e.as_bytes())
            )
        })?;
        let fail = |what: String| anyhow!("{target}: {attr}: {archive}: entry {name:?}: {what}");
        let Some(path) = archive::entry_path("", &name).map_err(|e| fail(e.to_string()))? else {
            continue;
        };
        let data = match ty {
            // Pre-POSIX archives mark directories only by a trailing `/`.
            EntryType::Regular if name.ends_with('/') && entry.size() == 0 => None,
            EntryType::Regular | EntryType::Continuous => {
                // Refuses PAX sparse files, whose map would be read as data.
                archive::pax_records(&mut entry).map_err(|e| fail(e.to_string()))?;
                Some(files.regular(&mut entry).map_err(fail)?)
            }
            EntryType::GNUSparse => Some(files.sparse(&mut entry).map_err(fail)?),
            EntryType::Link => {
                let to = entry
                    .link_name_bytes()
                    .ok_or_else(|| fail("the link has no target".into()))?;
                let to = String::from_utf8(to.into_owned())
                    .map_err(|_| fail("the link target is not UTF-8".into()))?;
                let full = archive::entry_path("", &to)
                    .map_err(|e| fail(format!("hard link to {to:?}: {e}")))?
                    .ok_or_else(|| fail(format!("hard link to {to:?}: the archive's root")))?;
                seen.get(&full).cloned().ok_or_else(|| {
                    fail(format!(
                        "hard link to {to:?}, which is not an earlier entry of the archive"
                    ))
                })?
            }
            // Directories, symlinks, devices, FIFOs, …: not regular files.
            _ => None,
        };
        seen.insert(path.clone(), data.clone());
        let Some(data) = data else { continue };
        if !glob.matches(&path) {
            continue;
        }
        let origin = format!("{archive} entry {name:?}");
        match members.entry(path) {
            Slot::Vacant(slot) => {
                slot.insert(Member { data, origin });
            }
            Slot::Occupied(slot) => {
                let first = slot.get();
                let same = same_bytes(&first.data, &data)
                    .map_err(|e| anyhow!("{target}: {attr}: {archive}: reading: {e}"))?;
                if !same {
                    bail!(
                        "{target}: {attr}: {:?} is in two archives with different contents: \
                         {} and {origin}",
                        slot.key(),
                        first.origin
                    );
                }
            }
        }
    }
    Ok(())
}

/// Whether two segments hold the same bytes, compared chunk by chunk.
fn same_bytes(a: &Segment, b: &Segment) -> io::Result<bool> {
    if a.len() != b.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (a.reader(), b.reader());
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_up_to(&mut ra, &mut ba)?;
        let nb = read_up_to(&mut rb, &mut bb)?;
        if ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Glob::new(pattern).unwrap().matches(path)
    }

    #[test]
    fn globs() {
        let ca = "usr/share/ca-certificates/**/*.crt";
        assert!(m(ca, "usr/share/ca-certificates/mozilla/A.crt"));
        assert!(m(ca, "usr/share/ca-certificates/A.crt"));
        assert!(m(ca, "usr/share/ca-certificates/a/b/c/.crt"));
        assert!(!m(ca, "usr/share/ca-certificates/mozilla/A.crt.orig"));
        assert!(!m(ca, "usr/share/ca-certificates/mozilla/A.pem"));
        assert!(!m(ca, "usr/share/doc/ca-certificates/x.crt"));
        assert!(!m(ca, "usr/share/ca-certificates"));
        // Normalised like paths.
        assert!(m("/usr//share/./*", "usr/share/x"));
        assert!(m("./a/*", "a/b"));
        // `*` stays within one component.
        assert!(!m("a/*", "a/b/c"));
        assert!(m("a/*/c", "a/b/c"));
        assert!(m("*", "x"));
        assert!(!m("*", "x/y"));
        assert!(m("**", "x/y/z"));
        assert!(m("a/**", "a"));
        assert!(m("a/**/b/**/c", "a/x/b/y/z/c"));
        assert!(m("a/**/b/**/c", "a/b/c"));
        assert!(!m("a/**/b/**/c", "a/x/c"));
        // Within a component.
        assert!(m("*a*b*", "xxaYYbzz"));
        assert!(m("*a*b*", "ab"));
        assert!(m("a*b", "aXbXb"));
        assert!(!m("a*b", "aXbX"));
        assert!(m("*.crt", ".crt"));
        assert!(m("ü*é", "üXYé"));
        assert!(!m("a?", "ab"), "`?` is literal");
        assert!(m("a?", "a?"));
        assert!(!m("abc", "ab"));
        assert!(!m("ab", "abc"));

        for bad in ["", "/", "./", "a/../b", "a**/b", "a/b**", "x\0"] {
            assert!(Glob::new(bad).is_err(), "{bad:?}");
        }
    }
}
