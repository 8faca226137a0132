//! The SPDX 2.3 JSON SBOM of one image: what its layers hold (the Debian
//! packages dpkg's status records, each regular file the image's own layers
//! add, the Go build info of Go binaries) and the base it was built on.
//!
//! The document is a function of the image's content: no clock is read
//! (`creationInfo.created` is the image config's `created`, the epoch unless
//! stamped), and `documentNamespace` is derived from the document's own hash.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::compression::{self, Compression};
use crate::go_buildinfo::{self, BuildInfo};
use crate::Digest;

/// Where dpkg-less images (distroless-style bases, `static_base`) keep one
/// status paragraph per package.
const STATUS_DIR: &str = "var/lib/dpkg/status.d/";
/// dpkg's own database, in images built from a Debian base.
const STATUS_FILE: &str = "var/lib/dpkg/status";
/// Go binaries larger than this are hashed but not searched for build info.
const MAX_BUILDINFO_SCAN: u64 = 512 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The status file it was read from (for `sourceInfo`).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub sha256: String,
    pub sha1: String,
    pub size: u64,
    pub go: Option<BuildInfo>,
}

/// What the layers hold, accumulated layer by layer (later layers win).
#[derive(Debug, Default)]
pub struct Contents {
    /// By package name.
    pub packages: BTreeMap<String, DebPackage>,
    /// Regular files of the image's own layers, by path (no leading `/`).
    pub files: BTreeMap<String, FileEntry>,
    /// Layers whose bytes the build does not have (a pulled base's).
    pub unavailable_layers: Vec<Digest>,
}

/// The Debian packages of a base whose layer bytes the build does not
/// have (a pulled base): read by `kiln-pull base-packages` from the layers
/// streamed from the registry, and given to the SBOM of every image on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasePackages {
    /// The base's platform manifest.
    pub manifest: Digest,
    /// Its layers, in order: the first layers of every image on it.
    pub layers: Vec<Digest>,
    /// What dpkg's status records once all of them are applied, by name.
    pub packages: Vec<DebPackage>,
}

impl BasePackages {
    /// The packages of `contents` (the base's layers, read as not own).
    pub fn new(manifest: Digest, layers: Vec<Digest>, contents: &Contents) -> BasePackages {
        BasePackages {
            manifest,
            layers,
            packages: contents.packages.values().cloned().collect(),
        }
    }

    /// Canonical JSON: the same packages give the same bytes.
    pub fn to_json(&self) -> anyhow::Result<Vec<u8>> {
        crate::canonical::to_vec(self)
    }

    pub fn from_json(bytes: &[u8]) -> anyhow::Result<BasePackages> {
        serde_json::from_slice(bytes).context("parsing the base packages JSON")
    }

    /// Checks that an image's layers start with the base's: packages read
    /// from another platform's or another base's layers would be wrong.
    pub fn check_prefix_of(&self, image_layers: &[Digest]) -> anyhow::Result<()> {
        if image_layers.len() < self.layers.len()
            || image_layers[..self.layers.len()] != self.layers[..]
        {
            bail!(
                "the base packages (of manifest {}) are of layers {} but the image's layers start {}",
                self.manifest,
                list(&self.layers),
                list(&image_layers[..self.layers.len().min(image_layers.len())])
            );
        }
        Ok(())
    }
}

fn list(digests: &[Digest]) -> String {
    if digests.is_empty() {
        return "(none)".to_string();
    }
    digests
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The packages of a dpkg status text: every paragraph with `Package`,
/// `Version` and `Architecture`, skipping those whose `Status` says they
/// are not installed.
pub fn parse_status(text: &str, source: &str) -> Vec<DebPackage> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for line in paragraph.lines() {
            if line.starts_with([' ', '\t']) {
                continue; // continuation of a multi-line field
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim(), v.trim());
            }
        }
        if let Some(status) = fields.get("Status") {
            if !status.ends_with(" installed") {
                continue;
            }
        }
        if let (Some(name), Some(version), Some(arch)) = (
            fields.get("Package"),
            fields.get("Version"),
            fields.get("Architecture"),
        ) {
            out.push(DebPackage {
                name: name.to_string(),
                version: version.to_string(),
                architecture: arch.to_string(),
                source: format!("/{source}"),
            });
        }
    }
    out
}

impl Contents {
    /// Applies a base's packages as if its layers had been read here (they
    /// come first: later layers may replace or remove them).
    pub fn add_base_packages(&mut self, base: &BasePackages) {
        for pkg in &base.packages {
            self.packages.insert(pkg.name.clone(), pkg.clone());
        }
    }

    /// Reads one layer blob (any compression `kiln_oci::compression` reads):
    /// dpkg status files from every layer, regular files from `own` layers.
    pub fn add_layer(&mut self, blob: impl Read + Send, own: bool) -> anyhow::Result<()> {
        let mut input = std::io::BufReader::with_capacity(256 * 1024, blob);
        let head = std::io::BufRead::fill_buf(&mut input).context("reading the layer")?;
        let format = Compression::detect(head);
        let decoded = compression::decoder(format, input).context("decompressing the layer")?;
        let mut archive = tar::Archive::new(decoded);
        for entry in archive.entries().context("reading the layer's tar")? {
            let mut entry = entry.context("reading the layer's tar")?;
            let raw = entry
                .path()
                .context("a tar entry's name")?
                .to_string_lossy()
                .into_owned();
            let path = normalise(&raw);
            let (dir, base) = match path.rsplit_once('/') {
                Some((d, b)) => (format!("{d}/"), b.to_string()),
                None => (String::new(), path.clone()),
            };
            if let Some(hidden) = base.strip_prefix(".wh.") {
                // A whiteout: what a lower layer had at that path is gone.
                if hidden == ".wh..opq" || hidden == ".opq" {
                    self.files.retain(|p, _| !p.starts_with(&dir));
                } else {
                    let gone = format!("{dir}{hidden}");
                    self.files.remove(&gone);
                    if let Some(pkg) = gone.strip_prefix(STATUS_DIR) {
                        self.packages.remove(pkg);
                    }
                }
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_hard_link() && own {
                // The same regular file under a second name.
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| normalise(&t.to_string_lossy()));
                match target.and_then(|t| self.files.get(&t).cloned()) {
                    Some(file) => self.files.insert(path, file),
                    None => self.files.remove(&path),
                };
                continue;
            }
            if !kind.is_file()
                && !matches!(kind, tar::EntryType::Continuous | tar::EntryType::GNUSparse)
            {
                if own {
                    self.files.remove(&path);
                }
                continue;
            }
            let status = path == STATUS_FILE
                || (path.starts_with(STATUS_DIR)
                    && !path[STATUS_DIR.len()..].contains('/')
                    && !path.ends_with(".md5sums"));
            if !own && !status {
                continue;
            }
            let size = entry.header().size().unwrap_or(0);
            let mut sha256 = sha2::Sha256::new();
            let mut sha1 = sha1::Sha1::new();
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut first = true;
            let mut keep = status;
            loop {
                let n = entry
                    .read(&mut buf)
                    .with_context(|| format!("reading /{path}"))?;
                if n == 0 {
                    break;
                }
                if first {
                    keep |= buf[..n].starts_with(b"\x7fELF") && size <= MAX_BUILDINFO_SCAN;
                    first = false;
                }
                sha256.update(&buf[..n]);
                sha1.update(&buf[..n]);
                if keep {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
            if status {
                let text = String::from_utf8_lossy(&kept);
                for pkg in parse_status(&text, &path) {
                    self.packages.insert(pkg.name.clone(), pkg);
                }
            }
            if own {
                let go = if kept.starts_with(b"\x7fELF") {
                    go_buildinfo::parse(&kept)
                } else {
                    None
                };
                self.files.insert(
                    path,
                    FileEntry {
                        sha256: hex::encode(sha256.finalize()),
                        sha1: hex::encode(sha1.finalize()),
                        size,
                        go,
                    },
                );
            }
        }
        Ok(())
    }
}

fn normalise(raw: &str) -> String {
    let mut p = raw;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    p.trim_end_matches('/').to_string()
}

/// The image the SBOM is of.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The target's label.
    pub name: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    pub digest: Digest,
    /// RFC 3339 (the config's `created`).
    pub created: String,
}

/// The image it was built on.
#[derive(Debug, Clone)]
pub struct Base {
    pub name: String,
    pub digest: Digest,
}

/// An SPDX identifier: `SPDXRef-` then letters, digits, `.` and `-`.
fn spdx_id(kind: &str, n: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{n}-{clean}")
}

/// Percent-encodes a purl component (RFC 3986 unreserved kept).
fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn purl_ref(locator: String) -> Value {
    json!([{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator}])
}

/// SPDX wants `YYYY-MM-DDThh:mm:ssZ`: fractions of a second are dropped.
fn spdx_time(created: &str) -> String {
    match created.split_once('.') {
        Some((secs, _)) if created.ends_with('Z') => format!("{secs}Z"),
        _ => created.to_string(),
    }
}

fn image_package(id: &str, name: &str, digest: &Digest) -> Value {
    let short = name
        .rsplit([':', '/'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": digest.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": digest.hex()}],
        "externalRefs": purl_ref(format!("pkg:oci/{}@{}", purl_encode(&short), purl_encode(&digest.to_string()))),
    })
}

/// A Go module (or main package) as an SPDX package. `version` is `None`
/// when the binary records none; `purl` false when there is no module or
/// package path to name (a purl needs a non-empty name).
fn go_module_package(
    id: String,
    path: &str,
    version: Option<&str>,
    purl: bool,
    comment: Option<String>,
) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": path,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "LIBRARY",
    });
    if let Some(v) = version {
        p["versionInfo"] = Value::String(v.to_string());
    }
    if purl {
        let name = path
            .split('/')
            .map(purl_encode)
            .collect::<Vec<_>>()
            .join("/");
        let locator = match version {
            Some(v) => format!("pkg:golang/{name}@{}", purl_encode(v)),
            None => format!("pkg:golang/{name}"),
        };
        p["externalRefs"] = purl_ref(locator);
    }
    if let Some(c) = comment {
        p["comment"] = Value::String(c);
    }
    p
}

/// What names a Go binary's main module in the SBOM: its module path and
/// version when the binary records them (built by the go command); else its
/// main package's import path, without a version; else, for binaries that
/// record neither (linked without the go command, as rules_go does), the
/// binary's path in the image, with no purl (a purl cannot be empty).
fn go_main_package(id: String, file: &str, go: &BuildInfo) -> Value {
    let built = if go.go_version.is_empty() {
        String::new()
    } else {
        format!(", built with {}", go.go_version)
    };
    match &go.main {
        Some(m) if !m.path.is_empty() => go_module_package(
            id,
            &m.path,
            Some(&m.version),
            true,
            Some(format!(
                "main module of /{file}, package {}{built}",
                go.path
            )),
        ),
        _ if is_import_path(&go.path) => go_module_package(
            id,
            &go.path,
            None,
            true,
            Some(format!(
                "main package of /{file}{built}; the binary records no module"
            )),
        ),
        _ => go_module_package(
            id,
            &format!("/{file}"),
            None,
            false,
            Some(format!(
                "main package of /{file}{built}; the binary records neither module nor import path (linked without the go command)"
            )),
        ),
    }
}

/// An import path a purl can name: not empty, not the go command's
/// `command-line-arguments` stand-in, no empty, `.` or `..` segments.
fn is_import_path(path: &str) -> bool {
    path != "command-line-arguments"
        && !path.is_empty()
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The SPDX 2.3 document (canonical JSON: sorted keys, no insignificant
/// whitespace).
pub fn document(
    subject: &Subject,
    base: Option<&Base>,
    contents: &Contents,
    creator: &str,
) -> anyhow::Result<Vec<u8>> {
    let image_id = "SPDXRef-image";
    let mut image = image_package(image_id, &subject.name, &subject.digest);
    image["comment"] = Value::String(format!("platform {}", subject.platform));
    if !contents.unavailable_layers.is_empty() {
        let layers: Vec<String> = contents
            .unavailable_layers
            .iter()
            .map(|d| d.to_string())
            .collect();
        image["comment"] = Value::String(format!(
            "platform {}; the Debian packages of base layers {} are not listed: their bytes stay in the registry (a pulled base)",
            subject.platform,
            layers.join(", ")
        ));
    }
    if !contents.files.is_empty() {
        // The image CONTAINS its files, which SPDX allows of a package whose
        // files were analysed: with the verification code (the SHA-1 of
        // the files' sorted SHA-1s).
        let mut sha1s: Vec<&str> = contents.files.values().map(|f| f.sha1.as_str()).collect();
        sha1s.sort_unstable();
        let code = hex::encode(sha1::Sha1::digest(sha1s.concat().as_bytes()));
        image["filesAnalyzed"] = Value::Bool(true);
        image["packageVerificationCode"] = json!({"packageVerificationCodeValue": code});
    }
    let mut packages = vec![image];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id})];
    let rel = |a: &str, kind: &str, b: &str| json!({"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b});
    if let Some(base) = base {
        packages.push(image_package("SPDXRef-base", &base.name, &base.digest));
        relationships.push(rel(image_id, "DESCENDANT_OF", "SPDXRef-base"));
    }
    for (n, pkg) in contents.packages.values().enumerate() {
        let id = spdx_id("deb", n, &pkg.name);
        packages.push(json!({
            "SPDXID": id,
            "name": pkg.name,
            "versionInfo": pkg.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("dpkg status {}", pkg.source),
            "externalRefs": purl_ref(format!(
                "pkg:deb/debian/{}@{}?arch={}",
                purl_encode(&pkg.name), purl_encode(&pkg.version), purl_encode(&pkg.architecture))),
        }));
        relationships.push(rel(image_id, "CONTAINS", &id));
    }
    let mut files = Vec::new();
    for (n, (path, entry)) in contents.files.iter().enumerate() {
        let id = spdx_id("file", n, path);
        let mut file = json!({
            "SPDXID": id,
            "fileName": format!("./{path}"),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": entry.sha1},
                {"algorithm": "SHA256", "checksumValue": entry.sha256},
            ],
        });
        relationships.push(rel(image_id, "CONTAINS", &id));
        if let Some(go) = &entry.go {
            file["fileTypes"] = json!(["BINARY"]);
            file["comment"] = Value::String(if go.path.is_empty() {
                format!("Go binary built with {}", go.go_version)
            } else {
                format!("Go binary built with {} from {}", go.go_version, go.path)
            });
            let main_id = spdx_id("go", n, "main");
            packages.push(go_main_package(main_id.clone(), path, go));
            relationships.push(rel(&id, "GENERATED_FROM", &main_id));
            let std_id = spdx_id("go", n, "stdlib");
            packages.push(go_module_package(
                std_id.clone(),
                "stdlib",
                Some(&go.go_version)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.as_str()),
                true,
                None,
            ));
            relationships.push(rel(&main_id, "DEPENDS_ON", &std_id));
            for (j, dep) in go.deps.iter().enumerate() {
                let dep_id = spdx_id("go", n, &format!("dep-{j}"));
                let used = dep.replaced_by.as_deref().unwrap_or(dep);
                let comment = dep.replaced_by.as_ref().map(|r| {
                    format!(
                        "{}@{} replaced by {}@{}",
                        dep.path, dep.version, r.path, r.version
                    )
                });
                packages.push(go_module_package(
                    dep_id.clone(),
                    &used.path,
                    Some(&used.version),
                    is_import_path(&used.path),
                    comment,
                ));
                relationships.push(rel(&main_id, "DEPENDS_ON", &dep_id));
            }
        }
        files.push(file);
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{} ({})", subject.name, subject.platform),
        "documentNamespace": "",
        "creationInfo": {"created": spdx_time(&subject.created), "creators": [format!("Tool: {creator}")]},
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    // The namespace must be unique per document: the hash of everything
    // else makes it so, and keeps the bytes the same on every machine.
    let without = crate::canonical::to_vec(&doc)?;
    doc["documentNamespace"] = Value::String(format!(
        "https://rules-kiln.invalid/spdx/{}",
        hex::encode(sha2::Sha256::digest(&without))
    ));
    crate::canonical::to_vec(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    const STATUS: &[u8] = b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u9\nArchitecture: amd64\nDescription: GNU C\n multi-line\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n";

    fn contents() -> Contents {
        let mut c = Contents::default();
        let base = layer(&[
            (
                "var/lib/dpkg/status.d/tzdata",
                b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
            ),
            ("var/lib/dpkg/status.d/tzdata.md5sums", b"x  y\n"),
            ("var/lib/dpkg/status", STATUS),
            ("etc/base-file", b"not ours"),
        ]);
        c.add_layer(&base[..], false).expect("base layer");
        let own = layer(&[("./app/server", b"hello"), ("etc/config", b"a=1\n")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &own).expect("gzip");
        c.add_layer(&gz.finish().expect("gzip")[..], true)
            .expect("own layer");
        c
    }

    #[test]
    fn status_paragraphs_give_installed_packages() {
        let pkgs = parse_status(
            std::str::from_utf8(STATUS).expect("utf-8"),
            "var/lib/dpkg/status",
        );
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].name, "libc6");
        assert_eq!(pkgs[0].version, "2.36-9+deb12u9");
        assert_eq!(pkgs[0].architecture, "amd64");
    }

    #[test]
    fn layers_give_packages_from_all_and_files_from_own() {
        let c = contents();
        assert_eq!(c.packages.keys().collect::<Vec<_>>(), ["libc6", "tzdata"]);
        assert_eq!(
            c.files.keys().collect::<Vec<_>>(),
            ["app/server", "etc/config"]
        );
        assert_eq!(
            c.files["app/server"].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            c.files["app/server"].sha1,
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
    }

    #[test]
    fn a_hard_link_is_the_file_it_links_to() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_cksum();
        b.append_data(&mut h, "bin/tool", &b"hello"[..])
            .expect("file");
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Link);
        l.set_size(0);
        b.append_link(&mut l, "bin/alias", "bin/tool")
            .expect("link");
        let mut c = Contents::default();
        c.add_layer(&b.into_inner().expect("tar")[..], true)
            .expect("layer");
        assert_eq!(c.files["bin/alias"], c.files["bin/tool"]);
    }

    #[test]
    fn whiteouts_remove_files_and_packages() {
        let mut c = contents();
        let wh = layer(&[
            ("app/.wh.server", b""),
            ("var/lib/dpkg/status.d/.wh.tzdata", b""),
        ]);
        c.add_layer(&wh[..], true).expect("whiteouts");
        assert!(!c.files.contains_key("app/server"));
        assert!(!c.packages.contains_key("tzdata"));
    }

    fn doc(c: &Contents) -> Value {
        let subject = Subject {
            name: "//svc:image".into(),
            platform: "linux/amd64".into(),
            digest: crate::sha256_bytes(b"manifest"),
            created: "1970-01-01T00:00:00.5Z".into(),
        };
        let base = Base {
            name: "//base:base".into(),
            digest: crate::sha256_bytes(b"base"),
        };
        let bytes = document(&subject, Some(&base), c, "rules_kiln-test").expect("document");
        assert_eq!(
            bytes,
            document(&subject, Some(&base), c, "rules_kiln-test").expect("again")
        );
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn document_is_spdx_2_3_deterministic_and_lists_everything() {
        let d = doc(&contents());
        assert_eq!(d["spdxVersion"], "SPDX-2.3");
        assert_eq!(d["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        let ns = d["documentNamespace"].as_str().expect("namespace");
        assert!(
            ns.starts_with("https://rules-kiln.invalid/spdx/") && ns.len() > 40,
            "{ns}"
        );
        let names: Vec<&str> = d["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["//svc:image", "//base:base", "libc6", "tzdata"]);
        let libc = &d["packages"][2];
        assert_eq!(libc["versionInfo"], "2.36-9+deb12u9");
        assert_eq!(
            libc["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64"
        );
        assert_eq!(d["files"][0]["fileName"], "./app/server");
        let rels = d["relationships"].as_array().expect("relationships");
        assert!(rels.iter().any(|r| r["relationshipType"] == "DESCENDANT_OF"
            && r["relatedSpdxElement"] == "SPDXRef-base"));
        for id in d["packages"]
            .as_array()
            .expect("p")
            .iter()
            .chain(d["files"].as_array().expect("f"))
        {
            let id = id["SPDXID"].as_str().expect("id");
            assert!(
                id.starts_with("SPDXRef-")
                    && id[8..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "{id}"
            );
        }
    }

    /// A purl as the purl spec has it: `pkg:TYPE/[NAMESPACE/]NAME[@VERSION]`,
    /// a non-empty name, no empty segments, every segment percent-encoded.
    fn assert_valid_purl(purl: &str) {
        let rest = purl.strip_prefix("pkg:").expect("scheme pkg:");
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
        for q in qualifiers.split('&').filter(|q| !q.is_empty()) {
            let (k, v) = q.split_once('=').expect("qualifier key=value");
            assert!(!k.is_empty() && !v.is_empty(), "qualifier {q:?}: {purl}");
        }
        let (body, version) = match rest.split_once('@') {
            Some((b, v)) => (b, Some(v)),
            None => (rest, None),
        };
        let mut segments = body.split('/');
        let kind = segments.next().expect("type");
        assert!(
            !kind.is_empty()
                && kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".+-".contains(c)),
            "{purl}"
        );
        let segments: Vec<&str> = segments.collect();
        assert!(!segments.is_empty(), "no name: {purl}");
        let unreserved = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~%".contains(c))
        };
        for seg in &segments {
            assert!(
                !seg.is_empty() && *seg != "." && *seg != ".." && unreserved(seg),
                "segment {seg:?}: {purl}"
            );
        }
        if let Some(v) = version {
            assert!(!v.is_empty() && unreserved(v), "version {v:?}: {purl}");
        }
    }

    fn go_packages(go: BuildInfo) -> Vec<Value> {
        let mut c = contents();
        c.files.get_mut("app/server").expect("server").go = Some(go);
        let d = doc(&c);
        let packages = d["packages"].as_array().expect("packages").clone();
        for p in &packages {
            if let Some(refs) = p["externalRefs"].as_array() {
                for r in refs {
                    assert_valid_purl(r["referenceLocator"].as_str().expect("locator"));
                }
            }
            assert!(!p["name"].as_str().expect("name").is_empty(), "{p}");
        }
        packages
    }

    fn go_info(path: &str, main: Option<(&str, &str)>) -> BuildInfo {
        BuildInfo {
            go_version: "go1.22.5".into(),
            path: path.into(),
            main: main.map(|(path, version)| go_buildinfo::Module {
                path: path.into(),
                version: version.into(),
                sum: String::new(),
                replaced_by: None,
            }),
            deps: vec![],
            settings: vec![],
        }
    }

    #[test]
    fn a_go_binary_without_module_information_gets_a_named_package_and_valid_purls() {
        // Linked without the go command (rules_go): no path, no module.
        let packages = go_packages(go_info("", None));
        let main = packages
            .iter()
            .find(|p| p["SPDXID"].as_str().is_some_and(|id| id.ends_with("-main")))
            .expect("main package");
        assert_eq!(main["name"], "/app/server");
        assert!(main.get("externalRefs").is_none(), "{main}");
        assert!(main.get("versionInfo").is_none(), "{main}");
        // The go command outside a module: the stand-in path is no purl.
        let packages = go_packages(go_info("command-line-arguments", None));
        assert!(packages.iter().any(|p| p["name"] == "/app/server"));
        // An import path without a module: a purl without a version.
        let packages = go_packages(go_info("example.com/svc/cmd/api", None));
        let main = packages
            .iter()
            .find(|p| p["name"] == "example.com/svc/cmd/api")
            .expect("main package");
        assert_eq!(
            main["externalRefs"][0]["referenceLocator"],
            "pkg:golang/example.com/svc/cmd/api"
        );
        // A module: its path and version, as the go command records them.
        let packages = go_packages(go_info(
            "example.com/svc/cmd/api",
            Some(("example.com/svc", "v1.2.3")),
        ));
        assert!(packages.iter().any(
            |p| p["externalRefs"][0]["referenceLocator"] == "pkg:golang/example.com/svc@v1.2.3"
        ));
    }

    #[test]
    fn base_packages_round_trip_and_seed_the_contents() {
        let mut base = Contents::default();
        let status = layer(&[(
            "var/lib/dpkg/status.d/tzdata",
            b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
        )]);
        base.add_layer(&status[..], false).expect("base layer");
        let layers = vec![crate::sha256_bytes(b"l0"), crate::sha256_bytes(b"l1")];
        let bp = BasePackages::new(crate::sha256_bytes(b"m"), layers.clone(), &base);
        let json = bp.to_json().expect("json");
        assert_eq!(json, bp.to_json().expect("again"));
        let back = BasePackages::from_json(&json).expect("parse");
        assert_eq!(back, bp);
        assert_eq!(back.packages[0].source, "/var/lib/dpkg/status.d/tzdata");
        assert!(BasePackages::from_json(b"{\"manifest\": 1}").is_err());

        // Seeded first, a later layer's whiteout still removes the package.
        let mut c = Contents::default();
        c.add_base_packages(&back);
        assert_eq!(c.packages.keys().collect::<Vec<_>>(), ["tzdata"]);
        let wh = layer(&[("var/lib/dpkg/status.d/.wh.tzdata", b"")]);
        c.add_layer(&wh[..], true).expect("whiteout");
        assert!(c.packages.is_empty());
    }

    #[test]
    fn base_packages_must_be_of_the_images_first_layers() {
        let l = |s: &[u8]| crate::sha256_bytes(s);
        let bp = BasePackages {
            manifest: l(b"m"),
            layers: vec![l(b"a"), l(b"b")],
            packages: Vec::new(),
        };
        bp.check_prefix_of(&[l(b"a"), l(b"b"), l(b"own")])
            .expect("a prefix");
        bp.check_prefix_of(&[l(b"a"), l(b"b")])
            .expect("all of them");
        let err = bp
            .check_prefix_of(&[l(b"b"), l(b"a"), l(b"own")])
            .expect_err("another order");
        assert!(err.to_string().contains("start"), "{err}");
        assert!(bp.check_prefix_of(&[l(b"a")]).is_err());
    }

    #[test]
    fn the_namespace_follows_the_content() {
        let a = doc(&contents());
        let mut c = contents();
        c.files.remove("etc/config");
        let b = doc(&c);
        assert_ne!(a["documentNamespace"], b["documentNamespace"]);
    }
}

/// The digest of the image an SBOM of [`document`] is of (the
/// `SPDXRef-image` package's version), for the push that attaches it.
pub fn subject_digest(document: &[u8]) -> anyhow::Result<Digest> {
    let doc: Value = serde_json::from_slice(document).context("parsing the SPDX document")?;
    let image = doc
        .get("packages")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("SPDXID").and_then(Value::as_str) == Some("SPDXRef-image"))
        })
        .ok_or_else(|| anyhow::anyhow!("no SPDXRef-image package: not an SBOM rules_kiln wrote"))?;
    let version = image
        .get("versionInfo")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the SPDXRef-image package has no versionInfo"))?;
    version
        .parse()
        .map_err(|e| anyhow::anyhow!("the SPDXRef-image version {version:?} is not a digest: {e}"))
}

#[cfg(test)]
mod subject_tests {
    #[test]
    fn the_subject_is_read_back_from_the_document() {
        let subject = super::Subject {
            name: "//a:b".into(),
            platform: "linux/arm64".into(),
            digest: crate::sha256_bytes(b"m"),
            created: "1970-01-01T00:00:00Z".into(),
        };
        let doc = super::document(&subject, None, &super::Contents::default(), "t").expect("doc");
        assert_eq!(
            super::subject_digest(&doc).expect("subject"),
            subject.digest
        );
        assert!(super::subject_digest(b"{}").is_err());
    }
}
