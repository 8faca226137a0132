//! Runs the kiln-index binary on image layouts made in a temporary directory.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use kiln_oci::{media_types, sha256_bytes, Descriptor, ImageManifest, Layout, LayoutWriter};
use serde_json::{json, Value};

/// Writes a one-layer image layout for `platform`, as kiln-image would.
fn image(dir: &Path, name: &str, platform: &str) {
    let w = LayoutWriter::new(dir.join(name)).unwrap();
    let layer = format!("layer of {name}").into_bytes();
    let layer_digest = w.add_blob_bytes(&layer).unwrap();
    let config = w
        .add_json(
            media_types::OCI_IMAGE_CONFIG,
            &json!({"platform": platform}),
        )
        .unwrap();
    let manifest = ImageManifest::new(
        config,
        vec![Descriptor::new(
            media_types::OCI_LAYER_TAR_GZIP,
            layer_digest,
            layer.len() as u64,
        )],
    );
    let mut desc = w
        .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
        .unwrap();
    desc.platform = Some(platform.parse().unwrap());
    desc.annotations = Some([(media_types::ANNOTATION_REF_NAME.into(), "x".into())].into());
    w.finish(vec![desc]).unwrap();
}

fn run(dir: &Path, spec: Value) -> Output {
    fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiln-index"))
        .args([
            "--spec",
            "spec.json",
            "--layout",
            "out_layout",
            "--digest",
            "out.digest",
        ])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn builds_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    image(d, "amd", "linux/amd64");
    image(d, "arm", "linux/arm64/v8");
    let out = run(
        d,
        json!({"target": "//t:image", "images": [{"layout": "arm"}, {"layout": "amd"}], "ref_name": "latest"}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let layout = Layout::open(d.join("out_layout")).unwrap();
    let top = layout.top().unwrap();
    assert_eq!(top.media_type, media_types::OCI_IMAGE_INDEX);
    assert_eq!(top.ref_name(), Some("latest"));
    assert!(top.platform.is_none());
    assert_eq!(
        fs::read_to_string(d.join("out.digest")).unwrap(),
        top.digest.to_string()
    );

    let index = layout.read_index(&top).unwrap();
    let platforms: Vec<String> = index
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(platforms, ["linux/arm64/v8", "linux/amd64"]); // input order
    for m in &index.manifests {
        assert!(m.annotations.is_none());
        let manifest = layout.read_manifest(m).unwrap();
        layout.read_blob(&manifest.config.digest).unwrap();
        for l in &manifest.layers {
            assert_eq!(
                sha256_bytes(&fs::read(layout.blob_path(&l.digest)).unwrap()),
                l.digest
            );
        }
    }
    // 2 × (manifest, config, layer) + the index.
    assert_eq!(
        fs::read_dir(d.join("out_layout/blobs/sha256"))
            .unwrap()
            .count(),
        7
    );
}

#[test]
fn duplicate_platform_is_an_error_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    image(d, "one", "linux/amd64");
    image(d, "two", "linux/amd64");
    let out = run(
        d,
        json!({"target": "//t:image", "images": [{"layout": "one"}, {"layout": "two"}], "ref_name": "latest"}),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap().trim_end(),
        "kiln-index: //t:image: images: one and two are both for platform linux/amd64"
    );
    assert!(!d.join("out_layout").exists());
    assert!(!d.join("out.digest").exists());
}

#[test]
fn image_without_platform_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let w = LayoutWriter::new(d.join("np")).unwrap();
    let config = w
        .add_json(media_types::OCI_IMAGE_CONFIG, &json!({}))
        .unwrap();
    let desc = w
        .add_json(
            media_types::OCI_IMAGE_MANIFEST,
            &ImageManifest::new(config, vec![]),
        )
        .unwrap();
    w.finish(vec![desc]).unwrap();
    let out = run(d, json!({"target": "//t:i", "images": [{"layout": "np"}]}));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(
            "kiln-index: //t:i: images: np: the manifest in index.json has no platform"
        ),
        "{err}"
    );
}
