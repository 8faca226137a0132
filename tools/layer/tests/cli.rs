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
        "\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"size\":{},\
         \"uncompressed_size\":{}}}",
        blob.len(),
        desc.uncompressed_size
    )));
    // A tar of whole 512-byte records, ending with two empty ones.
    assert_eq!(desc.uncompressed_size % 512, 0);

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

/// Writes `len` deterministic bytes: text, then random-looking bytes, so
/// that some chunks compress and some are stored.
fn mixed(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 88_172_645_463_325_252;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (out.len() / 300_000) % 2 == 0 {
            out.extend_from_slice(format!("word{} ", x % 1000).as_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn blob_bytes_do_not_depend_on_jobs_and_gnu_tools_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 9 MiB: 70+ gzip chunks, 3 zstd frames.
    fs::write(d.join("big"), mixed(9 << 20)).unwrap();
    fs::write(d.join("small"), b"hello\n").unwrap();
    for (compression, ext, check) in [("gzip", "gz", "gzip -t"), ("zstd", "zst", "zstd -q -t")] {
        let spec = serde_json::json!({
            "target": "//t:big", "compression": compression,
            "entries": [
                {"attr": "files", "kind": "file", "path": "/big", "source": d.join("big"), "mode": 420},
                {"attr": "files", "kind": "file", "path": "/small", "source": d.join("small"), "mode": 420}
            ]
        });
        fs::write(d.join("spec.json"), spec.to_string()).unwrap();
        let mut blobs = Vec::new();
        for jobs in ["1", "2", "7"] {
            let blob = format!("l{jobs}.tar.{ext}");
            run_ok(
                kiln_layer()
                    .args(["--spec", "spec.json", "--blob", &blob, "--jobs", jobs])
                    .args(["--descriptor", "l.json", "--listing", "l.listing.json"])
                    .current_dir(d),
            );
            blobs.push(fs::read(d.join(&blob)).unwrap());
        }
        assert!(
            blobs[0] == blobs[1] && blobs[0] == blobs[2],
            "{compression}"
        );
        // Readers we did not write: GNU gzip / zstd, and GNU tar.
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(format!("{check} l1.tar.{ext}"))
                .current_dir(d),
        );
        let listed = run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "tar -tvf l1.tar.{ext} && tar -xOf l1.tar.{ext} big | cmp - big"
                ))
                .current_dir(d),
        );
        assert!(String::from_utf8_lossy(&listed.stdout).contains("small"));
        let desc: LayerDescriptor =
            serde_json::from_slice(&fs::read(d.join("l.json")).unwrap()).unwrap();
        // `kiln-layer tar` gives the uncompressed tar the descriptor describes.
        run_ok(
            kiln_layer()
                .args([
                    "tar",
                    "--blob",
                    &format!("l1.tar.{ext}"),
                    "--descriptor",
                    "l.json",
                ])
                .args(["--out", "layer.tar"])
                .current_dir(d),
        );
        let tar = fs::read(d.join("layer.tar")).unwrap();
        assert_eq!(desc.uncompressed_size, tar.len() as u64);
        assert_eq!(desc.diff_id, sha256_bytes(&tar));
    }
}

#[test]
fn tar_from_a_blob_that_does_not_match_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("f"), b"data").unwrap();
    let spec = serde_json::json!({"target": "//t:l", "entries": [
        {"attr": "files", "kind": "file", "path": "/f", "source": d.join("f"), "mode": 420}]});
    fs::write(d.join("spec.json"), spec.to_string()).unwrap();
    run_ok(
        kiln_layer()
            .args(["--spec", "spec.json", "--blob", "l.tar.gz"])
            .args(["--descriptor", "l.json", "--listing", "l.listing.json"])
            .current_dir(d),
    );
    let mut desc: serde_json::Value =
        serde_json::from_slice(&fs::read(d.join("l.json")).unwrap()).unwrap();
    desc["uncompressed_size"] = serde_json::json!(1);
    fs::write(d.join("bad.json"), desc.to_string()).unwrap();
    let out = kiln_layer()
        .args([
            "tar",
            "--blob",
            "l.tar.gz",
            "--descriptor",
            "bad.json",
            "--out",
            "x.tar",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("kiln-layer: --blob l.tar.gz: decompresses to 2048 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("the descriptor says 1 bytes"), "{stderr}");
    assert!(!d.join("x.tar").exists());
}
