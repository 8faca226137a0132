//! Test support for the integration tests of the rules_kiln tools (a
//! dev-dependency only): the external tools a test needs, the workspace's
//! binaries, layer fixtures and layout listings; [`registry`]: real
//! registries, test layouts pushed to them and an HTTP proxy in front.
//!
//! No silent skips: a test whose tool is missing prints a `SKIP` line that
//! the test harness does not capture, and panics instead when
//! `KILN_REQUIRE_TOOLS` is set (e2e/suites/rust.sh and CI set it).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiln_oci::blob_set::{BlobSet, Link};
use kiln_oci::{canonical, media_types, sha256_bytes, Digest, LayerDescriptor};
use serde_json::{json, Value};

pub mod grpc_cas;
pub mod registry;

/// True when `tool` runs: a path that is a file, or a command answering
/// `--version` or `version` (docker and go answer only the latter).
fn found(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).is_file();
    }
    ["--version", "version"].iter().any(|arg| {
        Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// True when every tool `test` needs is there. Otherwise prints
/// `SKIP test: needs …` to the real stderr and returns false, or panics
/// when `KILN_REQUIRE_TOOLS` is set.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !found(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: needs {}, not available", missing.join(", "));
    assert!(
        std::env::var_os("KILN_REQUIRE_TOOLS").is_none(),
        "{why} (KILN_REQUIRE_TOOLS is set)"
    );
    // Not through eprintln!: the harness captures that for passing tests.
    let _ = writeln!(std::io::stderr(), "SKIP {why}");
    false
}

/// A binary of the workspace built next to `own` (an `env!("CARGO_BIN_EXE_…")`
/// of the calling package). `cargo test` of the workspace builds every
/// member's binaries into one directory; a test of one package alone does
/// not, and then this panics saying so (never runs cargo itself).
pub fn sibling_bin(own: &str, name: &str) -> PathBuf {
    let dir = Path::new(own).parent().expect("a binary has a directory");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run the workspace's tests (`cargo test`, not `cargo test -p …`)",
        path.display()
    );
    path
}

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// The files below `dir`, relative to it.
pub fn files(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// A gzip tar (GNU headers) holding one file: `(gzip, tar)`.
pub fn gzip_tar(path: &str, content: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, path, content).unwrap();
    let tar = b.into_inner().unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&tar).unwrap();
    (e.finish().unwrap(), tar)
}

/// Writes a layer as kiln-layer's outputs are: `DIR/NAME.tar.gz` (`blob`),
/// its descriptor `NAME.json` and `NAME.listing.json`. Returns the
/// kiln-image `layers` entry.
pub fn write_layer(
    dir: &Path,
    name: &str,
    blob: &[u8],
    (diff_id, uncompressed_size): (Digest, u64),
    listing: &Value,
) -> Value {
    fs::write(dir.join(format!("{name}.tar.gz")), blob).unwrap();
    let desc = LayerDescriptor {
        media_type: media_types::OCI_LAYER_TAR_GZIP.into(),
        digest: sha256_bytes(blob),
        size: blob.len() as u64,
        diff_id,
        uncompressed_size,
    };
    fs::write(
        dir.join(format!("{name}.json")),
        canonical::to_vec(&desc).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join(format!("{name}.listing.json")),
        listing.to_string(),
    )
    .unwrap();
    json!({
        "blob": format!("{name}.tar.gz"),
        "descriptor": format!("{name}.json"),
        "listing": format!("{name}.listing.json"),
    })
}

/// A gzip layer holding `app/hello` (`content`): see [`write_layer`].
pub fn layer_fixture(dir: &Path, name: &str, content: &[u8]) -> Value {
    let (gz, tar) = gzip_tar("app/hello", content);
    let listing = json!([{"kind": "dir", "path": "app"}, {"kind": "file", "path": "app/hello"}]);
    write_layer(
        dir,
        name,
        &gz,
        (sha256_bytes(&tar), tar.len() as u64),
        &listing,
    )
}

/// Runs kiln-image (`bin`, its CARGO_BIN_EXE) in `dir` as the kiln_image rule
/// does (the spec written to `NAME.spec.json`, the outputs named after
/// `name`), then writes the OCI layout the rules' `oci_layout` output group
/// would (kiln_oci::blob_set) at `NAME_layout`, so that tests check the image
/// through what its consumers see. `spec`'s layers may carry `"blob"` (the
/// layer file): kiln-image does not read it; the layout writer does.
pub fn run_kiln_image(bin: &str, dir: &Path, name: &str, spec: &Value, extra: &[&str]) -> Output {
    let mut spec = spec.clone();
    // The layout's ref.name is the layout writer's business now.
    if let Some(o) = spec.as_object_mut() {
        o.remove("ref_name");
    }
    let mut blobs = Vec::new();
    if let Some(layers) = spec.get_mut("layers").and_then(Value::as_array_mut) {
        for l in layers {
            if let Some(blob) = l.as_object_mut().and_then(|o| o.remove("blob")) {
                blobs.push(json!({"blob": blob, "digest": l["descriptor"]}));
            }
        }
    }
    fs::write(dir.join(format!("{name}.spec.json")), spec.to_string()).unwrap();
    let out = Command::new(bin)
        .arg("--spec")
        .arg(format!("{name}.spec.json"))
        .arg("--manifest")
        .arg(format!("{name}.manifest.json"))
        .arg("--base-blobs")
        .arg(format!("{name}_base_blobs"))
        .arg("--config")
        .arg(format!("{name}.config.json"))
        .arg("--digest")
        .arg(format!("{name}.digest"))
        .arg("--descriptor")
        .arg(format!("{name}.descriptor.json"))
        .arg("--listing")
        .arg(format!("{name}.listing.json"))
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    if !out.status.success() {
        return out;
    }
    let config = fs::read(dir.join(format!("{name}.config.json"))).unwrap();
    fs::write(
        dir.join(format!("{name}.config.sha")),
        sha256_bytes(&config).to_string(),
    )
    .unwrap();
    blobs.push(
        json!({"blob": format!("{name}.config.json"), "digest": format!("{name}.config.sha")}),
    );
    let mut layouts = Vec::new();
    if dir.join(format!("{name}_base_blobs")).exists() {
        layouts.push(json!(format!("{name}_base_blobs")));
    }
    let set = json!({
        "target": spec["target"],
        "top": {"blob": format!("{name}.manifest.json"), "descriptor": format!("{name}.descriptor.json")},
        "blobs": blobs,
        "layouts": layouts,
        "ref_name": "latest",
    });
    let set = BlobSet::from_spec(serde_json::from_value(set).unwrap(), dir).unwrap();
    set.write_layout(&dir.join(format!("{name}_layout")), Link::HardOrCopy)
        .unwrap();
    out
}

/// Asserts the tool failed with exit status 1 (a refusal, not a crash);
/// returns its stderr.
#[track_caller]
pub fn assert_refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

/// Asserts the tool succeeded; returns its stderr.
#[track_caller]
pub fn assert_ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}
