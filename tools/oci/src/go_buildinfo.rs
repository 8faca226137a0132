//! The build information the Go toolchain embeds in every binary it links
//! (what `go version -m` prints): the Go version, the main module and the
//! module dependencies.
//!
//! Hand-written: no maintained Rust crate reads Go's buildinfo blob, and the
//! format is small and stable (Go's `debug/buildinfo`). Since Go 1.18 the
//! `.go.buildinfo` section starts with a 32-byte header, the magic
//! `\xff Go buildinf:`, then the pointer size and a flags byte; flag bit 1
//! means the version and the module text follow inline as two
//! varint-length-prefixed strings. Older binaries (pointers into the data
//! segment) are not read: `parse` returns `None` for them. The ELF section
//! is found with the `object` crate; a binary without section headers is
//! searched for the magic at Go's 16-byte alignment, as `debug/buildinfo`
//! does.

use object::{Object, ObjectSection};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER: usize = 32;
const FLAG_INLINE: u8 = 0x2;
/// The module text is framed by two 16-byte sentinels.
const SENTINEL: usize = 16;

/// One module: the main one, or a dependency (with its replacement, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub version: String,
    /// The go.sum hash (`h1:…`), when the build recorded one.
    pub sum: String,
    pub replaced_by: Option<Box<Module>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.22.5`.
    pub go_version: String,
    /// The main package's import path (`path` line).
    pub path: String,
    pub main: Option<Module>,
    pub deps: Vec<Module>,
    /// `build` lines: `key=value` settings (`-ldflags`, `GOARCH`, vcs…).
    pub settings: Vec<(String, String)>,
}

/// The build info of an ELF file, or `None` when it is not a Go binary of
/// Go 1.18 or later (or not ELF at all).
pub fn parse(file: &[u8]) -> Option<BuildInfo> {
    if !file.starts_with(b"\x7fELF") {
        return None;
    }
    let blob = match object::File::parse(file) {
        Ok(elf) => match elf.section_by_name(".go.buildinfo") {
            Some(section) => section.data().ok()?,
            None => find_magic(file)?,
        },
        Err(_) => find_magic(file)?,
    };
    parse_blob(blob)
}

fn find_magic(file: &[u8]) -> Option<&[u8]> {
    (0..file.len().saturating_sub(HEADER))
        .step_by(16)
        .find(|&i| file[i..].starts_with(MAGIC))
        .map(|i| &file[i..])
}

/// Parses the buildinfo blob (the section's bytes, magic first).
pub fn parse_blob(blob: &[u8]) -> Option<BuildInfo> {
    if blob.len() < HEADER || !blob.starts_with(MAGIC) {
        return None;
    }
    if blob[15] & FLAG_INLINE == 0 {
        return None;
    }
    let mut rest = &blob[HEADER..];
    let version = read_string(&mut rest)?;
    let modinfo = read_string(&mut rest)?;
    let modinfo = if modinfo.len() > 2 * SENTINEL && modinfo[modinfo.len() - SENTINEL - 1] == b'\n'
    {
        &modinfo[SENTINEL..modinfo.len() - SENTINEL]
    } else {
        &modinfo[..0]
    };
    let go_version = String::from_utf8(version.to_vec()).ok()?;
    let mut info = parse_modinfo(std::str::from_utf8(modinfo).ok()?);
    info.go_version = go_version;
    Some(info)
}

fn read_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    if len > rest.len() {
        return None;
    }
    let (s, tail) = rest.split_at(len);
    *rest = tail;
    Some(s)
}

/// The text `go version -m` prints after the first line: tab-separated
/// `path`, `mod`, `dep`, `=>` (replaces the line before) and `build` lines.
pub fn parse_modinfo(text: &str) -> BuildInfo {
    let mut info = BuildInfo {
        go_version: String::new(),
        path: String::new(),
        main: None,
        deps: Vec::new(),
        settings: Vec::new(),
    };
    // Which module a `=>` line replaces: the main one or the last dep.
    let mut last_is_main = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let module = |f: &[&str]| Module {
            path: f.get(1).unwrap_or(&"").to_string(),
            version: f.get(2).unwrap_or(&"").to_string(),
            sum: f.get(3).unwrap_or(&"").to_string(),
            replaced_by: None,
        };
        match fields[0] {
            "path" => info.path = fields.get(1).unwrap_or(&"").to_string(),
            "mod" => {
                info.main = Some(module(&fields));
                last_is_main = true;
            }
            "dep" => {
                info.deps.push(module(&fields));
                last_is_main = false;
            }
            "=>" => {
                let target = if last_is_main {
                    info.main.as_mut()
                } else {
                    info.deps.last_mut()
                };
                if let Some(m) = target {
                    m.replaced_by = Some(Box::new(module(&fields)));
                }
            }
            "build" => {
                let setting = fields[1..].join("\t");
                let (k, v) = setting.split_once('=').unwrap_or((&setting, ""));
                info.settings.push((k.to_string(), v.to_string()));
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// A buildinfo blob as the Go 1.18+ linker writes it.
    fn blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(8);
        b.push(FLAG_INLINE);
        b.resize(HEADER, 0);
        varint(version.len(), &mut b);
        b.extend_from_slice(version.as_bytes());
        let framed = format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(16));
        varint(framed.len(), &mut b);
        b.extend_from_slice(framed.as_bytes());
        b
    }

    const MODINFO: &str = "path\texample.com/shop/cmd/api\n\
        mod\texample.com/shop\t(devel)\t\n\
        dep\tgithub.com/google/uuid\tv1.6.0\th1:abc=\n\
        dep\tgolang.org/x/text\tv0.14.0\th1:def=\n\
        =>\t../text\t(devel)\t\n\
        build\t-ldflags=-s -w\n\
        build\tGOARCH=amd64\n";

    #[test]
    fn reads_version_main_module_deps_replacements_and_settings() {
        let info = parse_blob(&blob("go1.22.5", MODINFO)).expect("parsed");
        assert_eq!(info.go_version, "go1.22.5");
        assert_eq!(info.path, "example.com/shop/cmd/api");
        let main = info.main.expect("main module");
        assert_eq!(
            (main.path.as_str(), main.version.as_str()),
            ("example.com/shop", "(devel)")
        );
        assert_eq!(info.deps.len(), 2);
        assert_eq!(info.deps[0].path, "github.com/google/uuid");
        assert_eq!(info.deps[0].version, "v1.6.0");
        assert_eq!(info.deps[0].sum, "h1:abc=");
        assert_eq!(
            info.deps[1].replaced_by.as_ref().expect("replaced").path,
            "../text"
        );
        assert_eq!(
            info.settings,
            vec![
                ("-ldflags".to_string(), "-s -w".to_string()),
                ("GOARCH".to_string(), "amd64".to_string())
            ]
        );
    }

    #[test]
    fn finds_the_blob_in_a_file_without_section_headers() {
        let mut file = b"\x7fELF".to_vec();
        file.resize(64, 0);
        file.extend(blob("go1.23.0", MODINFO));
        let info = parse(&file).expect("found by its magic");
        assert_eq!(info.go_version, "go1.23.0");
    }

    #[test]
    fn not_go_or_pre_1_18_or_truncated_is_none() {
        assert_eq!(parse(b"#!/bin/sh\necho hi\n"), None);
        let mut old = blob("go1.17", MODINFO);
        old[15] = 0;
        assert_eq!(parse_blob(&old), None);
        let whole = blob("go1.22.5", MODINFO);
        assert_eq!(parse_blob(&whole[..40]), None);
        let mut huge = MAGIC.to_vec();
        huge.extend([8, FLAG_INLINE]);
        huge.resize(HEADER, 0);
        huge.extend([0xff; 12]);
        assert_eq!(parse_blob(&huge), None);
    }

    #[test]
    fn reads_the_buildinfo_of_a_real_go_binary_when_go_is_installed() {
        // The parser against the real linker's output, when a Go toolchain
        // is on the machine (the e2e suite checks the examples' binaries).
        let Ok(go) = which("go") else { return };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("go.mod"),
            "module example.com/hello\n\ngo 1.21\n",
        )
        .expect("go.mod");
        std::fs::write(dir.path().join("main.go"), "package main\nfunc main() {}\n")
            .expect("main.go");
        let out = std::process::Command::new(go)
            .args(["build", "-o", "hello", "."])
            .current_dir(dir.path())
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", dir.path().join("cache"))
            .env("GOTOOLCHAIN", "local")
            .output()
            .expect("go build");
        if !out.status.success() {
            return;
        }
        let bytes = std::fs::read(dir.path().join("hello")).expect("binary");
        let info = parse(&bytes).expect("a Go binary has buildinfo");
        assert!(info.go_version.starts_with("go1."), "{}", info.go_version);
        assert_eq!(info.path, "example.com/hello");
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        let path = std::env::var_os("PATH").ok_or(())?;
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }
}
