//! Runs the kiln-index binary on image layouts made in a temporary directory.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use kiln_oci::{
    media_types, sha256_bytes, Descriptor, ImageManifest, Layout, LayoutWriter, SourceBlob,
    Sources, SOURCE_FILE,
};
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

/// Writes an image layout for `platform` whose layers are `layers`
/// (`(content, Some(registry))` = absent from the layout, listed in its
/// kiln-source.json with that registry; `None` = present), as kiln-image
/// writes an image on a pulled base.
fn shallow_image(dir: &Path, name: &str, platform: &str, layers: &[(&str, Option<&str>)]) {
    let w = LayoutWriter::new(dir.join(name)).unwrap();
    let mut sources = Sources::default();
    let mut descs = Vec::new();
    for (content, registry) in layers {
        let digest = sha256_bytes(content.as_bytes());
        let desc = Descriptor::new(
            media_types::OCI_LAYER_TAR_GZIP,
            digest.clone(),
            content.len() as u64,
        );
        match registry {
            Some(registry) => sources
                .add(
                    digest,
                    SourceBlob {
                        media_type: desc.media_type.clone(),
                        size: desc.size,
                        registry: registry.to_string(),
                        repository: "base".into(),
                    },
                )
                .unwrap(),
            None => {
                w.add_blob_bytes(content.as_bytes()).unwrap();
            }
        }
        descs.push(desc);
    }
    let config = w
        .add_json(media_types::OCI_IMAGE_CONFIG, &json!({"name": name}))
        .unwrap();
    let mut desc = w
        .add_json(
            media_types::OCI_IMAGE_MANIFEST,
            &ImageManifest::new(config, descs),
        )
        .unwrap();
    desc.platform = Some(platform.parse().unwrap());
    if !sources.is_empty() {
        sources.write_to(w.path()).unwrap();
    }
    w.finish(vec![desc]).unwrap();
}

fn listed(layout: &Path) -> Vec<(String, String)> {
    match Sources::load(layout).unwrap() {
        None => Vec::new(),
        Some(s) => s
            .blobs
            .iter()
            .map(|(d, b)| (d.to_string(), b.registry.clone()))
            .collect(),
    }
}

#[test]
fn shallow_images_make_a_shallow_index() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let digest = |s: &str| sha256_bytes(s.as_bytes()).to_string();
    // Two bases in two registries; `shared` is a layer of both.
    shallow_image(
        d,
        "amd",
        "linux/amd64",
        &[("shared", Some("r1.example")), ("amd", None)],
    );
    shallow_image(
        d,
        "arm",
        "linux/arm64/v8",
        &[
            ("shared", Some("r1.example")),
            ("other", Some("r2.example")),
            ("arm", None),
        ],
    );
    let out = run(
        d,
        json!({"target": "//t:i", "images": [{"layout": "amd"}, {"layout": "arm"}]}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = vec![
        (digest("shared"), "r1.example".to_string()),
        (digest("other"), "r2.example".to_string()),
    ];
    want.sort();
    assert_eq!(listed(&d.join("out_layout")), want);
    let layout = Layout::open(d.join("out_layout")).unwrap();
    for present in ["amd", "arm"] {
        assert!(layout.blob_path(&sha256_bytes(present.as_bytes())).exists());
    }
    for absent in ["shared", "other"] {
        assert!(!layout.blob_path(&sha256_bytes(absent.as_bytes())).exists());
    }

    // A blob that one input holds is copied, even if another lacks it.
    shallow_image(
        d,
        "s390x",
        "linux/s390x",
        &[("shared", None), ("s390x", None)],
    );
    fs::remove_dir_all(d.join("out_layout")).unwrap();
    let out = run(
        d,
        json!({"target": "//t:i", "images": [{"layout": "amd"}, {"layout": "arm"}, {"layout": "s390x"}]}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        listed(&d.join("out_layout")),
        [(digest("other"), "r2.example".to_string())]
    );
    assert!(Layout::open(d.join("out_layout"))
        .unwrap()
        .blob_path(&sha256_bytes(b"shared"))
        .exists());

    // Complete inputs make a complete index (no kiln-source.json).
    fs::remove_dir_all(d.join("out_layout")).unwrap();
    let out = run(
        d,
        json!({"target": "//t:i", "images": [{"layout": "s390x"}]}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("out_layout").join(SOURCE_FILE).exists());

    // Absent and not listed: an error naming the blob.
    shallow_image(
        d,
        "bad",
        "linux/ppc64le",
        &[("x", Some("r1.example")), ("y", None)],
    );
    let bad = Layout::open(d.join("bad")).unwrap();
    fs::remove_file(bad.blob_path(&sha256_bytes(b"y"))).unwrap();
    fs::remove_dir_all(d.join("out_layout")).unwrap();
    let out = run(d, json!({"target": "//t:i", "images": [{"layout": "bad"}]}));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "kiln-index: //t:i: images: bad: blob {} is neither in the layout nor listed in its {SOURCE_FILE}\n",
            digest("y")
        )
    );
    assert!(!d.join("out_layout").exists());
}
