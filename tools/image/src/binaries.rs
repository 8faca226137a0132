//! `kiln-image check-binaries`: refuses, at build time, an image whose
//! program (entrypoint, else cmd) or whose own layers' ELF files cannot run
//! on its platform and file system: wrong machine, class or byte order; a
//! program interpreter (PT_INTERP) or `#!` interpreter that is not in the
//! image; a needed library (DT_NEEDED) found in none of the directories the
//! dynamic loader searches. It reads listings only (kiln-layer records each
//! file's facts, `kiln_oci::program`), never a layer blob.
//!
//! What cannot be judged (a path that may be in a base whose listing is not
//! known, an architecture without an ELF mapping, an unreadable ELF) is
//! skipped and named, with why, in the report and in the error.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kiln_oci::program::{self, Elf, Endian};
use kiln_oci::{atomic::AtomicFile, ListingEntry, Platform};
use serde::Deserialize;
use serde_json::Value;

use crate::entrypoint::{FsView, Lookup};

/// Docker's PATH when the image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Interpreters of interpreters (`#!` scripts run by scripts) the kernel follows.
const MAX_INTERPRETER_DEPTH: usize = 4;

pub const REMEDY_DYNAMIC: &str = "build it static (rules_go: `pure = \"on\"`, or `static = \"on\"`), or use a base with a C library (e.g. static_base with libc6)";
const REMEDY_MACHINE: &str = "build it for the image's platform (rules_go: leave `goos`/`goarch` unset, so that the image's platform chooses them)";
const REMEDY_SCRIPT: &str = "add the interpreter to the image, or make the entrypoint a binary";
const OPT_OUT: &str = "`check_binaries = False` on the target turns this check off (e.g. for a file run under qemu or by another program of the image)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub target: String,
    pub platform: Platform,
    /// The image's merged listing (base and own layers).
    pub listing: PathBuf,
    /// False when some base layer's listing is unknown (a pulled or foreign base).
    pub listing_complete: bool,
    /// The listings of the image's own layers: their ELF files are checked.
    #[serde(default)]
    pub layers: Vec<PathBuf>,
    /// The image config (entrypoint, cmd, env, working directory).
    pub config: PathBuf,
}

/// Why one file cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub cause: String,
    remedy: &'static str,
}

/// The outcome of checking an image.
#[derive(Debug, Default)]
pub struct Report {
    pub checked: BTreeSet<String>,
    pub problems: Vec<Problem>,
    /// `(path, why it was not judged)`.
    pub skipped: Vec<(String, String)>,
}

/// What the check reads from the image config.
#[derive(Debug, Default)]
pub struct Program {
    /// `Entrypoint[0]`, else `Cmd[0]`, and which of the two it is.
    pub program: Option<(&'static str, String)>,
    pub path_var: Option<String>,
    pub library_path: Option<String>,
    pub workdir: Option<String>,
}

impl Program {
    pub fn from_config(config: &Value) -> Program {
        let c = &config["config"];
        let first = |key: &str| {
            c[key]
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let program = first("Entrypoint")
            .map(|p| ("entrypoint", p))
            .or_else(|| first("Cmd").map(|p| ("cmd", p)));
        let env = |name: &str| {
            c["Env"].as_array().and_then(|vars| {
                vars.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|v| v.split_once('='))
                    .rfind(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        Program {
            program,
            path_var: env("PATH"),
            library_path: env("LD_LIBRARY_PATH"),
            workdir: c["WorkingDir"]
                .as_str()
                .filter(|w| !w.is_empty())
                .map(str::to_string),
        }
    }
}

pub struct Checker<'a> {
    view: &'a FsView,
    platform: &'a Platform,
    expected: Option<(u16, u8, Endian)>,
    library_path: Vec<String>,
    pub report: Report,
}

impl<'a> Checker<'a> {
    pub fn new(view: &'a FsView, platform: &'a Platform, library_path: Option<&str>) -> Self {
        Checker {
            view,
            platform,
            expected: (platform.os == "linux")
                .then(|| program::platform_elf(&platform.architecture))
                .flatten(),
            library_path: library_path
                .unwrap_or("")
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(str::to_string)
                .collect(),
            report: Report::default(),
        }
    }

    fn problem(&mut self, path: &str, cause: String, remedy: &'static str) {
        self.report.problems.push(Problem {
            path: path.to_string(),
            cause,
            remedy,
        });
    }

    fn skip(&mut self, path: &str, why: String) {
        self.report.skipped.push((path.to_string(), why));
    }

    /// Checks the image's program: `attr` is `entrypoint` or `cmd`.
    pub fn check_program(
        &mut self,
        attr: &str,
        program: &str,
        path_var: Option<&str>,
        workdir: Option<&str>,
    ) {
        let shown = format!("{attr} {program:?}");
        if program.contains('/') {
            let absolute = if program.starts_with('/') {
                program.to_string()
            } else {
                format!("{}/{program}", workdir.unwrap_or("/").trim_end_matches('/'))
            };
            // kiln-image has already refused a program that is not in the image.
            if let Ok((path, entry)) = self.view.resolve(&absolute) {
                self.check_runnable(&format!("/{path}"), entry, true, 0);
            } else {
                self.skip(&shown, "not found in the known listings (a base whose file list is not known may hold it)".into());
            }
            return;
        }
        let dirs = path_var.unwrap_or(DEFAULT_PATH);
        let mut unknown = false;
        for dir in dirs.split(':').filter(|d| d.starts_with('/')) {
            match self.view.resolve(&format!("{dir}/{program}")) {
                Ok((path, entry)) => {
                    self.check_runnable(&format!("/{path}"), entry, true, 0);
                    return;
                }
                Err(Lookup::Unknown) => unknown = true,
                Err(_) => {}
            }
        }
        if unknown {
            self.skip(&shown, format!("not found in PATH ({dirs}) in the known listings; a base whose file list is not known may hold it"));
        } else {
            self.problem(
                &shown,
                format!("is not in the image: no {program} in PATH ({dirs})"),
                REMEDY_SCRIPT,
            );
        }
    }

    /// Checks one file. `named`: the image's program (or its interpreter),
    /// whose scripts are checked too.
    pub fn check_runnable(&mut self, path: &str, entry: &ListingEntry, named: bool, depth: usize) {
        if let Some(elf) = &entry.elf {
            self.report.checked.insert(path.to_string());
            self.check_elf(path, elf);
            return;
        }
        let Some(interpreter) = entry.script.as_deref().filter(|_| named) else {
            if named {
                // kiln-layer records every ELF file and script: anything else
                // (a file of a base without facts included) is not judged.
                self.skip(
                    path,
                    "neither an ELF file nor a `#!` script in its listing".into(),
                );
            }
            return;
        };
        self.report.checked.insert(path.to_string());
        if interpreter.is_empty() {
            self.problem(
                path,
                "is a script whose `#!` line names no interpreter".into(),
                REMEDY_SCRIPT,
            );
            return;
        }
        if !interpreter.starts_with('/') {
            self.problem(
                path,
                format!(
                    "is a script whose `#!` interpreter {interpreter:?} is not an absolute path"
                ),
                REMEDY_SCRIPT,
            );
            return;
        }
        match self.view.resolve(interpreter) {
            Ok((resolved, interp_entry)) => {
                if depth < MAX_INTERPRETER_DEPTH {
                    self.check_runnable(&format!("/{resolved}"), interp_entry, true, depth + 1);
                }
            }
            Err(Lookup::Unknown) => self.skip(path, format!("its `#!` interpreter {interpreter} may be in the base, whose file list is not known")),
            Err(why) => self.problem(path, format!("is a script whose `#!` interpreter {interpreter} {}", missing(&why)), REMEDY_SCRIPT),
        }
    }

    fn check_elf(&mut self, path: &str, elf: &Elf) {
        let Some((machine, class, endian)) = self.expected else {
            self.skip(
                path,
                format!(
                    "the image's platform {} has no known ELF machine",
                    self.platform
                ),
            );
            return;
        };
        if (elf.machine, elf.class, elf.endian) != (machine, class, endian) {
            self.problem(
                path,
                format!(
                    "is an {} binary, but a {} image runs {}",
                    program::describe(elf.machine, elf.class, elf.endian),
                    self.platform,
                    program::describe(machine, class, endian)
                ),
                REMEDY_MACHINE,
            );
            return;
        }
        if let Some(error) = &elf.error {
            self.skip(
                path,
                format!("its ELF program headers could not be read: {error}"),
            );
            return;
        }
        let Some(interpreter) = &elf.interpreter else {
            // Static, or a shared library: its libraries are judged when a
            // dynamically linked program of the image needs them.
            return;
        };
        match self.view.resolve(interpreter) {
            Ok(_) => {}
            Err(Lookup::Unknown) => {
                self.skip(path, format!("its program interpreter {interpreter} may be in the base, whose file list is not known"));
                return;
            }
            Err(why) => {
                self.problem(
                    path,
                    format!(
                        "is dynamically linked: its program interpreter {interpreter} {}",
                        missing(&why)
                    ),
                    REMEDY_DYNAMIC,
                );
                return;
            }
        }
        // The libraries, and theirs, as ld.so loads them (each soname once).
        let mut todo: Vec<(String, String, Vec<String>)> = elf
            .needed
            .iter()
            .map(|n| (n.clone(), path.to_string(), elf.runpath.clone()))
            .collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut missing_libs = Vec::new();
        let mut unknown_libs = Vec::new();
        while let Some((name, needed_by, runpath)) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let dirs = self.search_dirs(&needed_by, &runpath);
            match self.find_library(&name, &dirs) {
                Found::Yes(lib_path, lib) => {
                    if let Some(lib) = lib {
                        todo.extend(
                            lib.needed
                                .iter()
                                .map(|n| (n.clone(), lib_path.clone(), lib.runpath.clone())),
                        );
                    }
                }
                Found::Unknown => unknown_libs.push(name),
                Found::No => missing_libs.push(if needed_by == path {
                    name
                } else {
                    format!("{name} (needed by {needed_by})")
                }),
            }
        }
        if !missing_libs.is_empty() {
            let dirs = self.search_dirs(path, &elf.runpath).join(", ");
            self.problem(
                path,
                format!(
                    "is dynamically linked and needs {}, found in none of {dirs}",
                    missing_libs.join(", ")
                ),
                REMEDY_DYNAMIC,
            );
        } else if !unknown_libs.is_empty() {
            self.skip(
                path,
                format!(
                    "its libraries {} may be in the base, whose file list is not known",
                    unknown_libs.join(", ")
                ),
            );
        }
    }

    /// Where ld.so looks for a library of `needed_by`: its DT_RUNPATH (or
    /// DT_RPATH; `$ORIGIN` is its directory), the image's LD_LIBRARY_PATH,
    /// then the default directories (multiarch ones first, as Debian's glibc).
    fn search_dirs(&self, needed_by: &str, runpath: &[String]) -> Vec<String> {
        let origin = needed_by.rsplit_once('/').map_or("", |(dir, _)| dir);
        let origin = if origin.is_empty() { "/" } else { origin };
        let mut dirs: Vec<String> = runpath
            .iter()
            .map(|d| d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
            .filter(|d| d.starts_with('/'))
            .collect();
        dirs.extend(self.library_path.iter().cloned());
        if let Some(triple) = multiarch(&self.platform.architecture) {
            dirs.push(format!("/lib/{triple}"));
            dirs.push(format!("/usr/lib/{triple}"));
        }
        if self.expected.is_some_and(|(_, class, _)| class == 64) {
            dirs.push("/lib64".into());
            dirs.push("/usr/lib64".into());
        }
        for d in ["/lib", "/usr/lib", "/usr/local/lib"] {
            dirs.push(d.into());
        }
        let mut unique = Vec::new();
        for d in dirs {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        unique
    }

    fn find_library(&self, name: &str, dirs: &[String]) -> Found {
        let candidates: Vec<String> = if name.contains('/') {
            vec![name.to_string()]
        } else {
            dirs.iter()
                .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
                .collect()
        };
        let mut unknown = false;
        for candidate in candidates {
            match self.view.resolve(&candidate) {
                Ok((path, entry)) => {
                    // ld.so skips a library of another machine or class.
                    let fits = entry
                        .elf
                        .as_ref()
                        .is_none_or(|e| Some((e.machine, e.class, e.endian)) == self.expected);
                    if fits {
                        return Found::Yes(format!("/{path}"), entry.elf.clone());
                    }
                }
                Err(Lookup::Unknown) => unknown = true,
                Err(_) => {}
            }
        }
        if unknown {
            Found::Unknown
        } else {
            Found::No
        }
    }
}

enum Found {
    Yes(String, Option<Elf>),
    Unknown,
    No,
}

fn missing(why: &Lookup) -> String {
    match why {
        Lookup::NotAFile(kind) => format!("is a {kind} in the image, not a file"),
        Lookup::Loop => "has too many levels of symbolic links in the image".into(),
        _ => "is not in the image".into(),
    }
}

/// Debian's multiarch directory name of an OCI architecture.
fn multiarch(arch: &str) -> Option<&'static str> {
    kiln_oci::platform::architecture(arch).and_then(|a| a.multiarch)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Checks the image: the program named by the config, then every ELF file
/// of the own layers (as the merged file system has it).
pub fn check(
    view: &FsView,
    platform: &Platform,
    program: &Program,
    own_layers: &[Vec<ListingEntry>],
) -> Report {
    let mut checker = Checker::new(view, platform, program.library_path.as_deref());
    if let Some((attr, name)) = &program.program {
        checker.check_program(
            attr,
            name,
            program.path_var.as_deref(),
            program.workdir.as_deref(),
        );
    }
    let own: BTreeSet<&str> = own_layers
        .iter()
        .flatten()
        .filter(|e| e.elf.is_some())
        .map(|e| e.path.as_str())
        .collect();
    for path in own {
        let shown = format!("/{path}");
        if checker.report.checked.contains(&shown) {
            continue;
        }
        // The merged file system's entry: a later layer may have replaced it.
        if let Ok((_, entry)) = view.resolve(&shown) {
            if entry.path == path {
                checker.check_runnable(&shown, entry, false, 0);
            }
        }
    }
    checker.report
}

/// The error (or report) text.
pub fn render(target: &str, platform: &Platform, report: &Report) -> String {
    let mut text = String::new();
    if !report.problems.is_empty() {
        let _ = writeln!(
            text,
            "{target}: check_binaries: {} cannot run in this {platform} image:",
            if report.problems.len() == 1 {
                "1 file".to_string()
            } else {
                format!("{} files", report.problems.len())
            }
        );
        for p in &report.problems {
            let _ = writeln!(text, "  {} {}", p.path, p.cause);
        }
        let remedies: BTreeSet<&str> = report.problems.iter().map(|p| p.remedy).collect();
        for r in remedies {
            let _ = writeln!(text, "To fix: {r}.");
        }
        let _ = writeln!(text, "{OPT_OUT}.");
    } else {
        let _ = writeln!(
            text,
            "{target}: check_binaries: {} files checked for {platform}",
            report.checked.len()
        );
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(text, "Not checked:");
        for (path, why) in &report.skipped {
            let _ = writeln!(text, "  {path}: {why}");
        }
    }
    text
}

pub fn run(spec_path: &Path, output: &Path) -> anyhow::Result<()> {
    let spec: Spec =
        read_json(spec_path).with_context(|| format!("--spec {}", spec_path.display()))?;
    let target = &spec.target;
    let listing: Vec<ListingEntry> =
        read_json(&spec.listing).with_context(|| format!("{target}: listing"))?;
    let mut view = FsView::new(spec.listing_complete);
    view.add_layer(listing);
    let own: Vec<Vec<ListingEntry>> = spec
        .layers
        .iter()
        .map(|l| read_json(l).with_context(|| format!("{target}: layers")))
        .collect::<anyhow::Result<_>>()?;
    let config: Value = read_json(&spec.config).with_context(|| format!("{target}: config"))?;
    let report = check(&view, &spec.platform, &Program::from_config(&config), &own);
    let text = render(target, &spec.platform, &report);
    if !report.problems.is_empty() {
        bail!("{}", text.trim_end());
    }
    let mut out = AtomicFile::create(output).with_context(|| format!("{target}: --output"))?;
    std::io::Write::write_all(&mut out, text.as_bytes())
        .with_context(|| format!("{target}: --output"))?;
    out.commit()
        .with_context(|| format!("{target}: --output"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::ListingKind;

    const LD: &str = "/lib64/ld-linux-x86-64.so.2";

    fn elf(
        machine: u16,
        class: u8,
        endian: Endian,
        interpreter: Option<&str>,
        needed: &[&str],
        runpath: &[&str],
    ) -> Elf {
        Elf {
            class,
            endian,
            machine,
            interpreter: interpreter.map(str::to_string),
            needed: needed.iter().map(|s| s.to_string()).collect(),
            runpath: runpath.iter().map(|s| s.to_string()).collect(),
            error: None,
        }
    }

    fn file(path: &str, elf: Option<Elf>) -> ListingEntry {
        let mut e = ListingEntry::new(ListingKind::File, path, None);
        e.elf = elf;
        e
    }

    fn script(path: &str, interpreter: &str) -> ListingEntry {
        let mut e = ListingEntry::new(ListingKind::File, path, None);
        e.script = Some(interpreter.into());
        e
    }

    fn link(path: &str, target: &str) -> ListingEntry {
        ListingEntry::new(ListingKind::Symlink, path, Some(target.into()))
    }

    /// A layer's listing: `entries` and the directories above them.
    fn layer(entries: Vec<ListingEntry>) -> Vec<ListingEntry> {
        let mut dirs = BTreeSet::new();
        for e in &entries {
            let mut parent = e.path.as_str();
            while let Some((dir, _)) = parent.rsplit_once('/') {
                dirs.insert(dir.to_string());
                parent = dir;
            }
        }
        let mut all: Vec<ListingEntry> = dirs
            .into_iter()
            .map(|d| ListingEntry::new(ListingKind::Dir, d, None))
            .collect();
        all.extend(entries);
        all
    }

    fn amd64() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    fn dynamic(needed: &[&str], runpath: &[&str]) -> Elf {
        elf(62, 64, Endian::Little, Some(LD), needed, runpath)
    }

    fn static_bin() -> Elf {
        elf(62, 64, Endian::Little, None, &[], &[])
    }

    /// The image's program `/svc` over `base`, checked for `platform`.
    fn run_check(
        base: Vec<ListingEntry>,
        svc: ListingEntry,
        complete: bool,
        platform: &Platform,
    ) -> Report {
        let mut view = FsView::new(complete);
        view.add_layer(layer(base));
        view.add_layer(layer(vec![svc.clone()]));
        let program = Program {
            program: Some(("entrypoint", format!("/{}", svc.path))),
            ..Program::default()
        };
        check(&view, platform, &program, &[vec![svc]])
    }

    fn libc_base() -> Vec<ListingEntry> {
        vec![
            link(
                "lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ),
            file(
                "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                Some(elf(62, 64, Endian::Little, None, &[], &[])),
            ),
            file(
                "lib/x86_64-linux-gnu/libc.so.6",
                Some(elf(
                    62,
                    64,
                    Endian::Little,
                    None,
                    &["ld-linux-x86-64.so.2"],
                    &[],
                )),
            ),
        ]
    }

    #[test]
    fn static_binary_passes_on_scratch() {
        let r = run_check(vec![], file("svc", Some(static_bin())), true, &amd64());
        assert!(r.problems.is_empty() && r.skipped.is_empty(), "{r:?}");
        assert!(r.checked.contains("/svc"));
    }

    #[test]
    fn dynamic_binary_needs_its_loader() {
        let r = run_check(
            vec![],
            file("svc", Some(dynamic(&["libc.so.6"], &[]))),
            true,
            &amd64(),
        );
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(r.problems[0]
            .cause
            .contains("program interpreter /lib64/ld-linux-x86-64.so.2 is not in the image"));
        let text = render("//t:img", &amd64(), &r);
        assert!(
            text.contains("//t:img: check_binaries: 1 file cannot run in this linux/amd64 image"),
            "{text}"
        );
        assert!(
            text.contains(REMEDY_DYNAMIC) && text.contains("check_binaries = False"),
            "{text}"
        );
    }

    #[test]
    fn dynamic_binary_runs_on_a_base_with_libc() {
        let r = run_check(
            libc_base(),
            file("svc", Some(dynamic(&["libc.so.6"], &[]))),
            true,
            &amd64(),
        );
        assert!(r.problems.is_empty(), "{r:?}");
    }

    #[test]
    fn missing_needed_library_is_named() {
        let r = run_check(
            libc_base(),
            file("svc", Some(dynamic(&["libc.so.6", "libssl.so.3"], &[]))),
            true,
            &amd64(),
        );
        assert_eq!(r.problems.len(), 1, "{r:?}");
        let cause = &r.problems[0].cause;
        assert!(
            cause.contains("needs libssl.so.3, found in none of /lib/x86_64-linux-gnu"),
            "{cause}"
        );
        assert!(!cause.contains("libc.so.6"), "{cause}");
    }

    #[test]
    fn libraries_of_libraries_are_needed_too() {
        let mut base = libc_base();
        base.push(file(
            "usr/lib/x86_64-linux-gnu/libssl.so.3",
            Some(elf(62, 64, Endian::Little, None, &["libcrypto.so.3"], &[])),
        ));
        let r = run_check(
            base,
            file("svc", Some(dynamic(&["libssl.so.3"], &[]))),
            true,
            &amd64(),
        );
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(
            r.problems[0]
                .cause
                .contains("libcrypto.so.3 (needed by /usr/lib/x86_64-linux-gnu/libssl.so.3)"),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn origin_runpath_finds_bundled_libraries() {
        let mut base = libc_base();
        base.push(file(
            "opt/app/lib/libfoo.so.1",
            Some(elf(62, 64, Endian::Little, None, &[], &[])),
        ));
        let svc = file(
            "opt/app/bin/svc",
            Some(dynamic(&["libfoo.so.1"], &["$ORIGIN/../lib"])),
        );
        let r = run_check(base.clone(), svc, true, &amd64());
        assert!(r.problems.is_empty(), "{r:?}");
        // Without the runpath the library is not found.
        let svc = file("opt/app/bin/svc", Some(dynamic(&["libfoo.so.1"], &[])));
        let r = run_check(base, svc, true, &amd64());
        assert_eq!(r.problems.len(), 1, "{r:?}");
    }

    #[test]
    fn library_of_another_machine_does_not_count() {
        let mut base = libc_base();
        base.push(file(
            "usr/lib/libfoo.so.1",
            Some(elf(183, 64, Endian::Little, None, &[], &[])),
        ));
        let r = run_check(
            base,
            file("svc", Some(dynamic(&["libfoo.so.1"], &[]))),
            true,
            &amd64(),
        );
        assert_eq!(r.problems.len(), 1, "{r:?}");
    }

    #[test]
    fn wrong_machine_class_or_byte_order() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let r = run_check(vec![], file("svc", Some(static_bin())), true, &arm64);
        assert_eq!(r.problems.len(), 1);
        let cause = &r.problems[0].cause;
        assert!(
            cause.contains("x86-64") && cause.contains("AArch64") && cause.contains("linux/arm64"),
            "{cause}"
        );
        for wrong in [
            elf(62, 32, Endian::Little, None, &[], &[]),
            elf(62, 64, Endian::Big, None, &[], &[]),
        ] {
            let r = run_check(vec![], file("svc", Some(wrong)), true, &amd64());
            assert_eq!(r.problems.len(), 1, "{r:?}");
        }
    }

    #[test]
    fn script_needs_its_interpreter() {
        let r = run_check(vec![], script("run.sh", "/bin/sh"), true, &amd64());
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(r.problems[0]
            .cause
            .contains("`#!` interpreter /bin/sh is not in the image"));
        // The interpreter is checked in turn.
        let base = vec![file("bin/sh", Some(dynamic(&["libc.so.6"], &[])))];
        let r = run_check(base, script("run.sh", "/bin/sh"), true, &amd64());
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert_eq!(r.problems[0].path, "/bin/sh");
        let mut base = libc_base();
        base.push(file("bin/sh", Some(dynamic(&["libc.so.6"], &[]))));
        let r = run_check(base, script("run.sh", "/bin/sh"), true, &amd64());
        assert!(r.problems.is_empty(), "{r:?}");
    }

    #[test]
    fn unknown_base_is_skipped_with_a_reason() {
        let r = run_check(
            vec![],
            file("svc", Some(dynamic(&["libc.so.6"], &[]))),
            false,
            &amd64(),
        );
        assert!(r.problems.is_empty());
        assert_eq!(r.skipped.len(), 1);
        assert!(r.skipped[0].1.contains("file list is not known"));
        // What the known layers contradict is still an error.
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let r = run_check(vec![], file("svc", Some(static_bin())), false, &arm64);
        assert_eq!(r.problems.len(), 1);
    }

    #[test]
    fn program_from_path() {
        let mut view = FsView::new(true);
        view.add_layer(layer(vec![file("usr/bin/svc", Some(dynamic(&[], &[])))]));
        let program = Program {
            program: Some(("cmd", "svc".into())),
            ..Program::default()
        };
        let r = check(&view, &amd64(), &program, &[]);
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert_eq!(r.problems[0].path, "/usr/bin/svc");
        let program = Program {
            program: Some(("cmd", "nothere".into())),
            ..Program::default()
        };
        let r = check(&view, &amd64(), &program, &[]);
        assert!(r.problems[0].cause.contains("no nothere in PATH"), "{r:?}");
    }

    #[test]
    fn config_gives_program_and_environment() {
        let config: Value = serde_json::json!({"config": {"Cmd": ["/svc", "-x"], "Env": ["PATH=/bin", "LD_LIBRARY_PATH=/opt/lib"], "WorkingDir": "/app"}});
        let p = Program::from_config(&config);
        assert_eq!(p.program, Some(("cmd", "/svc".to_string())));
        assert_eq!(p.path_var.as_deref(), Some("/bin"));
        assert_eq!(p.library_path.as_deref(), Some("/opt/lib"));
        assert_eq!(p.workdir.as_deref(), Some("/app"));
        let config: Value = serde_json::json!({"config": {"Entrypoint": ["/e"], "Cmd": ["/c"]}});
        assert_eq!(
            Program::from_config(&config).program,
            Some(("entrypoint", "/e".to_string()))
        );
    }

    #[test]
    fn own_layer_files_are_checked_but_not_their_scripts() {
        let mut view = FsView::new(true);
        let own = vec![
            file(
                "app/tool",
                Some(elf(183, 64, Endian::Little, None, &[], &[])),
            ),
            script("app/run.sh", "/bin/bash"),
        ];
        view.add_layer(layer(own.clone()));
        let r = check(&view, &amd64(), &Program::default(), &[own]);
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert_eq!(r.problems[0].path, "/app/tool");
    }
}
