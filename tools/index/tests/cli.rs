//! Runs the kiln-index binary on manifest descriptors made in a temporary
//! directory, then checks the index it writes.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use kiln_oci::{canonical, media_types, sha256_bytes, Descriptor, ImageIndex};
use serde_json::{json, Value};

/// Writes the manifest descriptor kiln-image would write for `platform`.
fn image(dir: &Path, name: &str, platform: Option<&str>) -> Descriptor {
    let manifest = format!("manifest of {name}").into_bytes();
    let mut desc = Descriptor::new(
        media_types::OCI_IMAGE_MANIFEST,
        sha256_bytes(&manifest),
        manifest.len() as u64,
    );
    desc.platform = platform.map(|p| p.parse().unwrap());
    fs::write(dir.join(name), canonical::to_vec(&desc).unwrap()).unwrap();
    desc
}

fn run(dir: &Path, spec: Value) -> Output {
    fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiln-index"))
        .args([
            "--spec",
            "spec.json",
            "--index",
            "out.index.json",
            "--descriptor",
            "out.descriptor.json",
            "--digest",
            "out.digest",
        ])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn no_outputs(dir: &Path) {
    for f in ["out.index.json", "out.descriptor.json", "out.digest"] {
        assert!(!dir.join(f).exists(), "{f} was left behind");
    }
}

#[test]
fn builds_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let amd = image(d, "amd", Some("linux/amd64"));
    let arm = image(d, "arm", Some("linux/arm64/v8"));
    let out = run(
        d,
        json!({"target": "//t:image", "images": [{"descriptor": "arm"}, {"descriptor": "amd"}]}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = fs::read(d.join("out.index.json")).unwrap();
    let desc: Descriptor =
        serde_json::from_slice(&fs::read(d.join("out.descriptor.json")).unwrap()).unwrap();
    assert_eq!(desc.media_type, media_types::OCI_IMAGE_INDEX);
    assert_eq!(desc.digest, sha256_bytes(&bytes));
    assert_eq!(desc.size, bytes.len() as u64);
    assert_eq!(
        fs::read_to_string(d.join("out.digest")).unwrap(),
        desc.digest.to_string()
    );
    // Canonical JSON, children in input order, platforms kept.
    let index: ImageIndex = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(canonical::to_vec(&index).unwrap(), bytes);
    assert_eq!(index.manifests, vec![arm, amd]);
}

#[test]
fn duplicate_platform_is_an_error_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    image(d, "one", Some("linux/amd64"));
    image(d, "two", Some("linux/amd64"));
    let out = run(
        d,
        json!({"target": "//t:image", "images": [{"descriptor": "one"}, {"descriptor": "two"}]}),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap().trim_end(),
        "kiln-index: //t:image: images: one and two are both for platform linux/amd64"
    );
    no_outputs(d);
}

#[test]
fn image_without_platform_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    image(d, "np", None);
    let out = run(
        d,
        json!({"target": "//t:i", "images": [{"descriptor": "np"}]}),
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("kiln-index: //t:i: images: np: the manifest descriptor has no platform"),
        "{err}"
    );
    no_outputs(d);
}
