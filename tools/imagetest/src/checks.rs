//! The checks of a structure test config against an unpacked image: each
//! prints its name, then PASS or FAIL with what was expected against what
//! the image has.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use regex::Regex;
use serde_json::Value;

use kiln_oci::rootfs::Rootfs;

use crate::config::{EnvVar, FileContentTest, FileExistenceTest, MetadataTest};

/// The image config's `config` object, as the checks read it.
#[derive(Debug, Default, Clone)]
pub struct ImageConfig {
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
}

impl ImageConfig {
    /// From an image config blob's JSON.
    pub fn from_json(v: &Value) -> ImageConfig {
        let c = v.get("config").cloned().unwrap_or(Value::Null);
        let strings = |k: &str| -> Vec<String> {
            c.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let keys = |k: &str| -> Vec<String> {
            c.get(k)
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        ImageConfig {
            env: strings("Env")
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv, String::new()),
                })
                .collect(),
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
            workdir: text("WorkingDir"),
            user: text("User"),
            labels: c
                .get("Labels")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            exposed_ports: keys("ExposedPorts"),
            volumes: keys("Volumes"),
        }
    }

    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What one check found wrong: `what` expected `expected`, the image has `actual`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub what: String,
    pub expected: String,
    pub actual: String,
}

fn mismatch(
    what: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Mismatch {
    Mismatch {
        what: what.into(),
        expected: expected.into(),
        actual: actual.into(),
    }
}

/// Counts and prints results.
#[derive(Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
}

impl Report {
    /// Prints the result of check `name` (of `kind`).
    pub fn record(&mut self, kind: &str, name: &str, problems: &[Mismatch]) {
        println!("=== RUN   {kind}: {name}");
        if problems.is_empty() {
            self.passed += 1;
            println!("--- PASS: {kind}: {name}");
            return;
        }
        self.failed += 1;
        println!("--- FAIL: {kind}: {name}");
        for p in problems {
            println!("    {}", p.what);
            for (label, text) in [("expected", &p.expected), ("actual", &p.actual)] {
                let mut lines = text.lines();
                println!("      {label:<8}: {}", lines.next().unwrap_or(""));
                for l in lines {
                    println!("                {l}");
                }
            }
        }
    }
}

/// Go's `os.FileMode.String()` of a Unix mode (container-structure-test
/// compares `permissions` with it): type letters (`d`, `L`, `p`, `S`, `D`,
/// `u`, `g`, `t`) or `-`, then `rwxrwxrwx`.
pub fn go_mode_string(mode: u32) -> String {
    let mut s = String::new();
    let kind = mode & libc::S_IFMT;
    if kind == libc::S_IFDIR {
        s.push('d');
    }
    if kind == libc::S_IFLNK {
        s.push('L');
    }
    if kind == libc::S_IFBLK || kind == libc::S_IFCHR {
        s.push('D');
    }
    if kind == libc::S_IFIFO {
        s.push('p');
    }
    if kind == libc::S_IFSOCK {
        s.push('S');
    }
    if mode & libc::S_ISUID != 0 {
        s.push('u');
    }
    if mode & libc::S_ISGID != 0 {
        s.push('g');
    }
    if kind == libc::S_IFCHR {
        s.push('c');
    }
    if mode & libc::S_ISVTX != 0 {
        s.push('t');
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

pub fn file_existence(rootfs: &Rootfs, t: &FileExistenceTest) -> Vec<Mismatch> {
    let found = match rootfs.resolve(Path::new(&t.path), false) {
        Ok(f) => f,
        Err(e) => {
            return vec![mismatch(
                format!("{}: resolving", t.path),
                "a path",
                format!("{e:#}"),
            )]
        }
    };
    let meta = found.as_ref().and_then(|rel| {
        fs::symlink_metadata(rootfs.root().join(rel))
            .ok()
            .map(|m| (rel.clone(), m))
    });
    let Some((rel, meta)) = meta else {
        return if t.should_exist {
            vec![mismatch(
                format!("{}: existence", t.path),
                "exists",
                "does not exist",
            )]
        } else {
            vec![]
        };
    };
    if !t.should_exist {
        return vec![mismatch(
            format!("{}: existence", t.path),
            "does not exist",
            format!("exists ({})", go_mode_string(meta.mode())),
        )];
    }
    let mut out = Vec::new();
    let mode = go_mode_string(meta.mode());
    if let Some(p) = &t.permissions {
        if *p != mode {
            out.push(mismatch(format!("{}: permissions", t.path), p, &mode));
        }
    }
    if let Some(by) = &t.is_executable_by {
        let bits = match by.as_str() {
            "owner" => 0o100,
            "group" => 0o010,
            "other" => 0o001,
            _ => 0o111,
        };
        if meta.mode() & bits == 0 {
            out.push(mismatch(
                format!("{}: executable by {by}", t.path),
                "executable",
                &mode,
            ));
        }
    }
    let owner = rootfs.owner(&rel);
    let (uid, gid) = owner.map(|o| (o.uid, o.gid)).unwrap_or((0, 0));
    if let Some(want) = t.uid {
        if want != uid {
            out.push(mismatch(
                format!("{}: uid", t.path),
                want.to_string(),
                uid.to_string(),
            ));
        }
    }
    if let Some(want) = t.gid {
        if want != gid {
            out.push(mismatch(
                format!("{}: gid", t.path),
                want.to_string(),
                gid.to_string(),
            ));
        }
    }
    out
}

/// Regexes `want` must all match `text` (`expected`), or none of
/// `unwanted` (`excluded`); `what` names the text in messages.
pub fn match_regexes(
    what: &str,
    text: &str,
    want: &[String],
    unwanted: &[String],
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for r in want {
        // Validated when the config was read.
        let Ok(re) = Regex::new(r) else { continue };
        if !re.is_match(text) {
            out.push(mismatch(
                format!("{what}: expected to match /{r}/"),
                format!("a match of /{r}/"),
                shown(text),
            ));
        }
    }
    for r in unwanted {
        let Ok(re) = Regex::new(r) else { continue };
        if let Some(m) = re.find(text) {
            out.push(mismatch(
                format!("{what}: excluded /{r}/ matches"),
                format!("no match of /{r}/"),
                format!("matches {:?} in:\n{}", m.as_str(), shown(text)),
            ));
        }
    }
    out
}

/// `text` for messages: at most 40 lines.
fn shown(text: &str) -> String {
    if text.is_empty() {
        return "(empty)".to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 40 {
        return text.trim_end().to_string();
    }
    format!(
        "{}\n… ({} more lines)",
        lines[..40].join("\n"),
        lines.len() - 40
    )
}

pub fn file_content(rootfs: &Rootfs, t: &FileContentTest) -> Vec<Mismatch> {
    let what = format!("{}: content", t.path);
    let rel = match rootfs.resolve(Path::new(&t.path), true) {
        Ok(Some(rel)) => rel,
        Ok(None) => return vec![mismatch(what, "a readable file", "does not exist")],
        Err(e) => return vec![mismatch(what, "a readable file", format!("{e:#}"))],
    };
    let bytes = match fs::read(rootfs.root().join(&rel)) {
        Ok(b) => b,
        Err(e) => return vec![mismatch(what, "a readable file", e.to_string())],
    };
    match_regexes(
        &what,
        &String::from_utf8_lossy(&bytes),
        &t.expected_contents,
        &t.excluded_contents,
    )
}

fn check_pairs(
    kind: &str,
    want: &[EnvVar],
    have: &dyn Fn(&str) -> Option<String>,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for e in want {
        let Some(actual) = have(&e.key) else {
            out.push(mismatch(
                format!("{kind} {}", e.key),
                describe(e),
                "(not set)",
            ));
            continue;
        };
        let ok = if e.is_regex {
            Regex::new(&e.value).is_ok_and(|re| re.is_match(&actual))
        } else {
            e.value == actual
        };
        if !ok {
            out.push(mismatch(format!("{kind} {}", e.key), describe(e), actual));
        }
    }
    out
}

fn describe(e: &EnvVar) -> String {
    if e.is_regex {
        format!("a match of /{}/", e.value)
    } else {
        e.value.clone()
    }
}

fn list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub fn metadata(cfg: &ImageConfig, m: &MetadataTest) -> Vec<Mismatch> {
    let mut out = check_pairs("env", &m.env_vars, &|k| {
        cfg.env_value(k).map(str::to_string)
    });
    out.extend(check_pairs("label", &m.labels, &|k| {
        cfg.labels.get(k).cloned()
    }));
    if let Some(want) = &m.entrypoint {
        if *want != cfg.entrypoint {
            out.push(mismatch("entrypoint", list(want), list(&cfg.entrypoint)));
        }
    }
    if let Some(want) = &m.cmd {
        if *want != cfg.cmd {
            out.push(mismatch("cmd", list(want), list(&cfg.cmd)));
        }
    }
    if let Some(want) = &m.workdir {
        if *want != cfg.workdir {
            out.push(mismatch("workdir", want, &cfg.workdir));
        }
    }
    if let Some(want) = &m.user {
        if *want != cfg.user {
            out.push(mismatch("user", want, &cfg.user));
        }
    }
    for p in &m.exposed_ports {
        if !cfg.exposed_ports.contains(p) {
            out.push(mismatch(
                format!("exposedPorts {p}"),
                format!("{p} exposed"),
                list(&cfg.exposed_ports),
            ));
        }
    }
    for p in &m.unexposed_ports {
        if cfg.exposed_ports.contains(p) {
            out.push(mismatch(
                format!("unexposedPorts {p}"),
                format!("{p} not exposed"),
                list(&cfg.exposed_ports),
            ));
        }
    }
    for v in &m.volumes {
        if !cfg.volumes.contains(v) {
            out.push(mismatch(
                format!("volumes {v}"),
                format!("{v} a volume"),
                list(&cfg.volumes),
            ));
        }
    }
    for v in &m.unmounted_volumes {
        if cfg.volumes.contains(v) {
            out.push(mismatch(
                format!("unmountedVolumes {v}"),
                format!("{v} not a volume"),
                list(&cfg.volumes),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;
    use std::io;

    #[test]
    fn mode_strings_are_go_s() {
        assert_eq!(go_mode_string(libc::S_IFREG | 0o755), "-rwxr-xr-x");
        assert_eq!(go_mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(go_mode_string(libc::S_IFLNK | 0o777), "Lrwxrwxrwx");
        assert_eq!(go_mode_string(libc::S_IFDIR | 0o1777), "dtrwxrwxrwx");
        assert_eq!(go_mode_string(libc::S_IFREG | 0o4755), "urwxr-xr-x");
        assert_eq!(go_mode_string(libc::S_IFREG | 0o640), "-rw-r-----");
    }

    fn image() -> (tempfile::TempDir, Rootfs) {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Rootfs::create(dir.path().join("root")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o755);
        h.set_uid(65532);
        h.set_gid(65532);
        h.set_size(5);
        b.append_data(&mut h, "app", &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "link", "/app").unwrap();
        r.apply_tar(io::Cursor::new(b.into_inner().unwrap()), &mut Map::new())
            .unwrap();
        (dir, r)
    }

    fn existence(path: &str) -> FileExistenceTest {
        FileExistenceTest {
            name: "t".into(),
            path: path.into(),
            should_exist: true,
            permissions: None,
            uid: None,
            gid: None,
            is_executable_by: None,
        }
    }

    #[test]
    fn file_existence_checks_mode_owner_and_absence() {
        let (_d, r) = image();
        let mut t = existence("/app");
        t.permissions = Some("-rwxr-xr-x".into());
        t.uid = Some(65532);
        t.gid = Some(65532);
        t.is_executable_by = Some("other".into());
        assert_eq!(file_existence(&r, &t), vec![]);
        t.permissions = Some("-rw-r--r--".into());
        t.uid = Some(0);
        let problems = file_existence(&r, &t);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            (problems[0].expected.as_str(), problems[0].actual.as_str()),
            ("-rw-r--r--", "-rwxr-xr-x")
        );
        assert_eq!(
            (problems[1].expected.as_str(), problems[1].actual.as_str()),
            ("0", "65532")
        );
        let mut link = existence("/link");
        link.permissions = Some("Lrwxrwxrwx".into());
        assert_eq!(file_existence(&r, &link), vec![]);
        let mut gone = existence("/bin/sh");
        assert_eq!(file_existence(&r, &gone)[0].actual, "does not exist");
        gone.should_exist = false;
        assert_eq!(file_existence(&r, &gone), vec![]);
    }

    #[test]
    fn file_content_follows_symlinks_and_matches_regexes() {
        let (_d, r) = image();
        let t = FileContentTest {
            name: "c".into(),
            path: "/link".into(),
            expected_contents: vec!["^hel+o$".into()],
            excluded_contents: vec!["world".into()],
        };
        assert_eq!(file_content(&r, &t), vec![]);
        let t = FileContentTest {
            excluded_contents: vec!["l+".into()],
            expected_contents: vec!["bye".into()],
            ..t
        };
        let p = file_content(&r, &t);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].actual, "hello");
        assert!(p[1].actual.contains("\"ll\""), "{p:?}");
    }

    #[test]
    fn metadata_compares_lists_and_pairs() {
        let cfg = ImageConfig::from_json(&serde_json::json!({"config": {
            "Env": ["PATH=/usr/bin", "TZ=UTC"], "Entrypoint": ["/app"], "User": "65532",
            "Labels": {"org": "kiln"}, "ExposedPorts": {"8080/tcp": {}}, "WorkingDir": "/srv"}}));
        let ok = MetadataTest {
            env_vars: vec![EnvVar {
                key: "PATH".into(),
                value: "^/usr".into(),
                is_regex: true,
            }],
            labels: vec![EnvVar {
                key: "org".into(),
                value: "kiln".into(),
                is_regex: false,
            }],
            entrypoint: Some(vec!["/app".into()]),
            cmd: Some(vec![]),
            exposed_ports: vec!["8080/tcp".into()],
            workdir: Some("/srv".into()),
            user: Some("65532".into()),
            ..Default::default()
        };
        assert_eq!(metadata(&cfg, &ok), vec![]);
        let bad = MetadataTest {
            env_vars: vec![EnvVar {
                key: "HOME".into(),
                value: "/".into(),
                is_regex: false,
            }],
            entrypoint: Some(vec!["/bin/app".into()]),
            user: Some("root".into()),
            volumes: vec!["/data".into()],
            ..Default::default()
        };
        let p = metadata(&cfg, &bad);
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|m| (m.expected.as_str(), m.actual.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/", "(not set)"),
                ("[\"/bin/app\"]", "[\"/app\"]"),
                ("root", "65532"),
                ("/data a volume", "[]")
            ]
        );
    }
}
