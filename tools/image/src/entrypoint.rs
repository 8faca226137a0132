//! The image's file listing (base + layers) and the check that an absolute
//! entrypoint names a file in it, following symlinks like the kernel would.

use std::collections::{BTreeMap, VecDeque};

use kiln_oci::{ListingEntry, ListingKind};

/// Symlink hops before giving up, as Linux does (ELOOP after 40).
const MAX_HOPS: usize = 40;

/// The union of listings, later layers winning.
///
/// Only kiln-image's own bases come with a listing. A base given as any OCI
/// layout (skopeo, umoci, crane, a pulled image) or as a `docker save`
/// tarball has none unless the rule passes one: its layers are not opened to
/// list them (that would cost a full read and decompression of every base
/// layer). The view is then incomplete, and the entrypoint check only judges
/// what it can see: a path found in our own layers is checked (a directory
/// is not a program, a file cannot be used as a directory), but a path, or a
/// symlink target, it does not find may be in the base and passes.
#[derive(Debug, Default)]
pub struct FsView {
    entries: BTreeMap<String, ListingEntry>,
    /// False when some layer's listing is unknown (a base without listing):
    /// then a missing path may still exist, and is not an error.
    complete: bool,
}

/// The outcome of resolving a path.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    File,
    NotAFile(ListingKind),
    Missing,
    /// Not in the known listings, and some listing is unknown.
    Unknown,
    Loop,
}

impl FsView {
    pub fn new(complete: bool) -> FsView {
        FsView {
            entries: BTreeMap::new(),
            complete,
        }
    }

    /// Overlays one layer's listing.
    pub fn add_layer(&mut self, listing: Vec<ListingEntry>) {
        for e in listing {
            if e.kind != ListingKind::Dir {
                // A non-directory hides whatever a lower layer had below it.
                let prefix = format!("{}/", e.path);
                let below: Vec<String> = self
                    .entries
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in below {
                    self.entries.remove(&k);
                }
            }
            self.entries.insert(e.path.clone(), e);
        }
    }

    /// The merged listing, sorted by path.
    pub fn listing(&self) -> Vec<ListingEntry> {
        self.entries.values().cloned().collect()
    }

    /// Resolves an absolute path through symlinks (in any component).
    pub fn lookup(&self, path: &str) -> Lookup {
        match self.resolve(path) {
            Ok(_) => Lookup::File,
            Err(lookup) => lookup,
        }
    }

    /// Resolves an absolute path through symlinks (in any component) to a
    /// file: its path (no leading `/`) and entry, or why there is none.
    pub fn resolve(&self, path: &str) -> Result<(String, &ListingEntry), Lookup> {
        let mut todo: VecDeque<String> = split(path).collect();
        let mut cur: Vec<String> = Vec::new();
        let mut last: Option<&ListingEntry> = None; // None: a directory ("/" itself)
        let mut hops = 0;
        while let Some(comp) = todo.pop_front() {
            match comp.as_str() {
                "." => continue,
                ".." => {
                    cur.pop();
                    last = None;
                    continue;
                }
                _ => {}
            }
            if last.is_some_and(|e| e.kind != ListingKind::Dir) {
                // A file used as a directory: ENOTDIR, i.e. not there.
                return Err(Lookup::Missing);
            }
            cur.push(comp);
            let key = cur.join("/");
            let Some(entry) = self.entries.get(&key) else {
                return Err(if self.complete {
                    Lookup::Missing
                } else {
                    Lookup::Unknown
                });
            };
            match (&entry.kind, &entry.target) {
                (ListingKind::Symlink, Some(target)) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(Lookup::Loop);
                    }
                    cur.pop();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    for (i, c) in split(target).enumerate() {
                        todo.insert(i, c);
                    }
                    last = None;
                }
                (ListingKind::Symlink, None) => return Err(Lookup::Missing),
                _ => last = Some(entry),
            }
        }
        match last {
            Some(entry) if entry.kind == ListingKind::File => Ok((cur.join("/"), entry)),
            Some(entry) => Err(Lookup::NotAFile(entry.kind)),
            None => Err(Lookup::NotAFile(ListingKind::Dir)),
        }
    }
}

fn split(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// Checks `entrypoint[0]` (or `cmd[0]` without an entrypoint) when it is an
/// absolute path. Returns the attribute name and message on failure.
pub fn check(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    view: &FsView,
) -> Result<(), (&'static str, String)> {
    let (attr, program) = match (entrypoint, cmd) {
        (Some([first, ..]), _) => ("entrypoint", first),
        (_, Some([first, ..])) => ("cmd", first),
        _ => return Ok(()),
    };
    if !program.starts_with('/') {
        // Looked up in PATH at run time: nothing to check here.
        return Ok(());
    }
    match view.lookup(program) {
        Lookup::File | Lookup::Unknown => Ok(()),
        Lookup::Missing => Err((attr, format!("{program:?} is not in the image"))),
        Lookup::NotAFile(kind) => Err((
            attr,
            format!("{program:?} is a {kind} in the image, not a file"),
        )),
        Lookup::Loop => Err((
            attr,
            format!("{program:?}: too many levels of symbolic links in the image"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: ListingKind, path: &str, target: Option<&str>) -> ListingEntry {
        ListingEntry::new(kind, path, target.map(str::to_string))
    }

    fn view() -> FsView {
        use ListingKind::*;
        let mut v = FsView::new(true);
        v.add_layer(vec![
            e(Dir, "usr", None),
            e(Dir, "usr/bin", None),
            e(File, "usr/bin/app", None),
            e(Symlink, "bin", Some("usr/bin")),
            e(Symlink, "abs", Some("/usr/bin/app")),
            e(Symlink, "rel", Some("../usr/./bin/app")),
            e(Symlink, "dangling", Some("/nowhere")),
            e(Symlink, "loop", Some("/loop")),
            e(Dir, "data", None),
            e(File, "data/old", None),
        ]);
        v
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn lookup_follows_symlinks() {
        let v = view();
        assert_eq!(v.lookup("/usr/bin/app"), Lookup::File);
        assert_eq!(v.lookup("/bin/app"), Lookup::File);
        assert_eq!(v.lookup("/abs"), Lookup::File);
        assert_eq!(v.lookup("/rel"), Lookup::File);
        assert_eq!(v.lookup("//usr//bin/./app"), Lookup::File);
        assert_eq!(v.lookup("/usr/bin"), Lookup::NotAFile(ListingKind::Dir));
        assert_eq!(v.lookup("/bin"), Lookup::NotAFile(ListingKind::Dir));
        assert_eq!(v.lookup("/dangling"), Lookup::Missing);
        assert_eq!(v.lookup("/usr/bin/app/x"), Lookup::Missing);
        assert_eq!(v.lookup("/loop"), Lookup::Loop);
        assert_eq!(v.lookup("/nope"), Lookup::Missing);
    }

    #[test]
    fn later_layers_win() {
        let mut v = view();
        v.add_layer(vec![
            e(ListingKind::File, "data", None),
            e(ListingKind::File, "bin", None),
        ]);
        assert_eq!(v.lookup("/data"), Lookup::File);
        assert_eq!(v.lookup("/data/old"), Lookup::Missing);
        assert_eq!(v.lookup("/bin/app"), Lookup::Missing);
        assert!(!v.listing().iter().any(|e| e.path == "data/old"));
    }

    #[test]
    fn check_entrypoint() {
        let v = view();
        assert!(check(Some(&s(&["/bin/app", "-x"])), None, &v).is_ok());
        assert!(check(Some(&s(&["app"])), None, &v).is_ok()); // PATH lookup
        assert!(check(None, None, &v).is_ok());
        assert_eq!(
            check(Some(&s(&["/x"])), Some(&s(&["/bin/app"])), &v).unwrap_err(),
            ("entrypoint", "\"/x\" is not in the image".to_string())
        );
        assert_eq!(
            check(Some(&[]), Some(&s(&["/usr"])), &v).unwrap_err(),
            (
                "cmd",
                "\"/usr\" is a directory in the image, not a file".to_string()
            )
        );
        assert_eq!(check(None, Some(&s(&["/loop"])), &v).unwrap_err().0, "cmd");
    }

    #[test]
    fn unknown_base_skips_what_it_cannot_see() {
        let mut v = FsView::new(false);
        v.add_layer(vec![e(ListingKind::Dir, "app", None)]);
        assert!(check(Some(&s(&["/bin/sh"])), None, &v).is_ok());
        // What the known layers do show is still checked.
        assert!(check(Some(&s(&["/app"])), None, &v).is_err());
    }
}
