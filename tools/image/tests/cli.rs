//! Runs the kiln-image binary on specs in a temporary directory: a scratch
//! image, an image on top of it, and failures.

use std::fs;
use std::path::Path;
use std::process::Output;

use kiln_oci::{media_types, sha256_bytes, sha256_file, Layout, ListingEntry};
use serde_json::{json, Value};

/// Writes a fake layer (the image tool never looks inside blobs).
fn layer(dir: &Path, name: &str, listing: Value) -> Value {
    let bytes = format!("layer {name}").into_bytes();
    kiln_testsupport::write_layer(
        dir,
        name,
        &bytes,
        (sha256_bytes(name.as_bytes()), name.len() as u64),
        &listing,
    )
}

fn run(dir: &Path, name: &str, spec: Value) -> Output {
    kiln_testsupport::run_kiln_image(env!("CARGO_BIN_EXE_kiln-image"), dir, name, &spec, &[])
}

fn ok(out: Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr_of(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn scratch_then_child() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let l1 = layer(
        d,
        "l1",
        json!([
            {"kind": "symlink", "path": "bin", "target": "usr/bin"},
            {"kind": "dir", "path": "usr"},
            {"kind": "dir", "path": "usr/bin"},
            {"kind": "file", "path": "usr/bin/app"},
        ]),
    );
    ok(run(
        d,
        "base",
        json!({
            "target": "//t:base",
            "base": null,
            "layers": [l1],
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            "config": {"entrypoint": ["/bin/app"], "env": [["PATH", "/usr/bin"]], "ports": ["8080"]},
            "ref_name": "latest",
        }),
    ));

    // The layout is complete and self-consistent.
    let layout = Layout::open(d.join("base_layout")).unwrap();
    let top = layout.top().unwrap();
    assert_eq!(top.media_type, media_types::OCI_IMAGE_MANIFEST);
    assert_eq!(top.ref_name(), Some("latest"));
    assert_eq!(top.platform.as_ref().unwrap().to_string(), "linux/arm64/v8");
    assert_eq!(
        fs::read_to_string(d.join("base.digest")).unwrap(),
        top.digest.to_string()
    );
    let manifest = layout.read_manifest(&top).unwrap();
    let config_bytes = layout.read_blob(&manifest.config.digest).unwrap();
    assert_eq!(config_bytes, fs::read(d.join("base.config.json")).unwrap());
    for l in &manifest.layers {
        let (digest, size) = sha256_file(&layout.blob_path(&l.digest)).unwrap();
        assert_eq!((digest, size), (l.digest.clone(), l.size));
    }
    // kiln-layers.json: what kiln-load needs of our layers without
    // decompressing them, from their descriptors.
    let sizes = kiln_oci::layer_sizes::LayerSizes::load(layout.dir()).unwrap();
    let recorded = &sizes.layers[&manifest.layers[0].digest];
    assert_eq!(recorded.diff_id, sha256_bytes(b"l1"));
    assert_eq!(recorded.uncompressed_size, 2);
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!([sha256_bytes(b"l1").to_string()])
    );
    let descriptor: Value =
        serde_json::from_slice(&fs::read(d.join("base.descriptor.json")).unwrap()).unwrap();
    assert_eq!(descriptor["digest"], top.digest.to_string());
    assert_eq!(descriptor["platform"]["os"], "linux");

    // A child image on top of the base.
    let l2 = layer(d, "l2", json!([{"kind": "file", "path": "usr/bin/tool"}]));
    let child_spec = json!({
        "target": "//t:child",
        "base": {"layout": "base_layout", "listing": "base.listing.json"},
        "layers": [l2],
        "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        "config": {"cmd": ["/usr/bin/tool"], "env": [["A", "1"], ["PATH", "/bin"]]},
        "ref_name": "child",
    });
    ok(run(d, "child", child_spec.clone()));
    let child = Layout::open(d.join("child_layout")).unwrap();
    let top = child.top().unwrap();
    let manifest = child.read_manifest(&top).unwrap();
    assert_eq!(manifest.layers.len(), 2);
    for l in &manifest.layers {
        assert!(child.blob_path(&l.digest).is_file());
    }
    let config: Value =
        serde_json::from_slice(&child.read_blob(&manifest.config.digest).unwrap()).unwrap();
    assert_eq!(config["config"]["Env"], json!(["PATH=/bin", "A=1"]));
    assert_eq!(config["config"]["Entrypoint"], json!(["/bin/app"]));
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
    assert_eq!(config["history"][1]["created_by"], "rules_kiln //t:child");
    let listing: Vec<ListingEntry> =
        serde_json::from_slice(&fs::read(d.join("child.listing.json")).unwrap()).unwrap();
    let paths: Vec<&str> = listing.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["bin", "usr", "usr/bin", "usr/bin/app", "usr/bin/tool"]
    );

    // Reproducible: the same inputs give the same manifest digest.
    ok(run(d, "child", child_spec));
    assert_eq!(
        fs::read_to_string(d.join("child.digest")).unwrap(),
        top.digest.to_string()
    );
}

#[test]
fn errors_name_target_and_attribute() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let l1 = layer(d, "l1", json!([{"kind": "file", "path": "app"}]));
    let spec = |config: Value| {
        json!({
            "target": "//t:bad",
            "base": null,
            "layers": [l1.clone()],
            "platform": {"os": "linux", "architecture": "amd64"},
            "config": config,
        })
    };
    let e = stderr_of(run(d, "bad", spec(json!({"entrypoint": ["/missing"]}))));
    assert_eq!(
        e.trim_end(),
        "kiln-image: //t:bad: entrypoint: \"/missing\" is not in the image"
    );
    assert!(!d.join("bad_layout").exists());
    assert!(!d.join("bad.digest").exists());

    let e = stderr_of(run(d, "bad", spec(json!({"ports": ["http"]}))));
    assert!(
        e.starts_with("kiln-image: //t:bad: ports: \"http\" is not a port"),
        "{e}"
    );

    let e = stderr_of(run(d, "bad", spec(json!({"env": [["A=B", "x"]]}))));
    assert!(e.starts_with("kiln-image: //t:bad: env: "), "{e}");

    let mut missing_base = spec(json!({}));
    missing_base["base"] = json!({"layout": "nope", "listing": null});
    let e = stderr_of(run(d, "bad", missing_base));
    assert!(
        e.starts_with("kiln-image: //t:bad: base: nope is not an OCI layout"),
        "{e}"
    );

    // Unknown base listing: the entrypoint check is skipped for what it hides.
    ok(run(d, "scratch", spec(json!({}))));
    let mut on_unknown = spec(json!({"entrypoint": ["/bin/sh"]}));
    on_unknown["base"] = json!({"layout": "scratch_layout", "listing": null});
    ok(run(d, "on_unknown", on_unknown));

    // A base whose listing holds only some of its files (a kiln image on a
    // pulled base lists its own layers): what the listing lacks may be there.
    let mut on_partial = spec(json!({"entrypoint": ["/bin/sh"]}));
    on_partial["base"] = json!({"layout": "scratch_layout", "listing": "scratch.listing.json", "listing_complete": false});
    ok(run(d, "on_partial", on_partial.clone()));
    on_partial["base"]["listing_complete"] = json!(true);
    let e = stderr_of(run(d, "on_partial", on_partial));
    assert_eq!(
        e.trim_end(),
        "kiln-image: //t:bad: entrypoint: \"/bin/sh\" is not in the image"
    );
}
