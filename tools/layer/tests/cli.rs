//! Runs the kiln-layer binary on a spec in a temporary directory.

use std::fs;
use std::process::Command;

use kiln_oci::{sha256_bytes, LayerDescriptor, ListingEntry, ListingKind};

fn kiln_layer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln-layer"))
}

#[test]
fn builds_a_layer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("hello"), b"#!/bin/sh\necho hi\n").unwrap();
    let spec = serde_json::json!({
        "target": "//build/hello:layer",
        "compression": "gzip",
        "entries": [
            {"attr": "files", "kind": "file", "path": "/hello", "source": d.join("hello"), "mode": 493},
            {"attr": "symlinks", "kind": "symlink", "path": "/bin/hello", "target": "/hello"},
            {"attr": "empty_dirs", "kind": "dir", "path": "/data", "mode": 493},
            {"attr": "empty_files", "kind": "empty_file", "path": "/etc/marker", "mode": 420}
        ]
    });
    fs::write(d.join("spec.json"), spec.to_string()).unwrap();
    let out = kiln_layer()
        .args(["--spec", "spec.json", "--blob", "l.tar.gz"])
        .args(["--descriptor", "l.json", "--listing", "l.listing.json"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let blob = fs::read(d.join("l.tar.gz")).unwrap();
    let desc_bytes = fs::read(d.join("l.json")).unwrap();
    let desc: LayerDescriptor = serde_json::from_slice(&desc_bytes).unwrap();
    assert_eq!(desc.digest, sha256_bytes(&blob));
    assert_eq!(desc.size, blob.len() as u64);
    // Canonical: keys sorted, compact, no newline.
    let text = String::from_utf8(desc_bytes).unwrap();
    assert!(text.starts_with("{\"diff_id\":\"sha256:"), "{text}");
    assert!(text.ends_with(&format!(
        "\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"size\":{}}}",
        blob.len()
    )));

    let listing: Vec<ListingEntry> =
        serde_json::from_slice(&fs::read(d.join("l.listing.json")).unwrap()).unwrap();
    let paths: Vec<(&str, ListingKind)> =
        listing.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        paths,
        [
            ("bin", ListingKind::Dir),
            ("bin/hello", ListingKind::Symlink),
            ("data", ListingKind::Dir),
            ("etc", ListingKind::Dir),
            ("etc/marker", ListingKind::File),
            ("hello", ListingKind::File),
        ]
    );

    // Running again gives byte-identical outputs.
    let again = kiln_layer()
        .args(["--spec", "spec.json", "--blob", "l2.tar.gz"])
        .args(["--descriptor", "l2.json", "--listing", "l2.listing.json"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(fs::read(d.join("l2.tar.gz")).unwrap(), blob);
}

#[test]
fn failure_names_target_attr_and_source_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = serde_json::json!({
        "target": "//t:bad",
        "entries": [{"attr": "files", "kind": "file", "path": "/x", "source": "missing/file", "mode": 420}]
    });
    fs::write(d.join("spec.json"), spec.to_string()).unwrap();
    let out = kiln_layer()
        .args([
            "--spec",
            "spec.json",
            "--blob",
            "b",
            "--descriptor",
            "d",
            "--listing",
            "l",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("kiln-layer: //t:bad: files: \"/x\": source file missing/file: "),
        "{stderr}"
    );
    let left: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["spec.json"]);
}
