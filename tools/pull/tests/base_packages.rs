//! `kiln-pull base-packages` against a real registry (distribution 2.8):
//! the Debian packages of a shallow layout's image, its layers streamed
//! from the registry and verified.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use kiln_oci::{media_types, Descriptor, ImageManifest, LayoutWriter};
use kiln_testsupport::registry::{
    layer_bytes, skopeo_push, Action, Proxy, Registry, TestImage, TestLayout,
};

const PULL: &str = env!("CARGO_BIN_EXE_kiln-pull");

fn kiln_pull(args: &[&str], docker_config: &Path) -> Output {
    Command::new(PULL)
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .expect("running kiln-pull")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A one-platform image: a layer with two dpkg status paragraphs, then a
/// layer replacing one package's (a later layer wins) and adding a file.
fn debian_layout(dir: &Path) -> TestLayout {
    let w = LayoutWriter::new(dir).expect("layout writer");
    let layers: Vec<Vec<u8>> = vec![
        layer_bytes(
            "var/lib/dpkg/status",
            b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n\n\
              Package: tzdata\nStatus: install ok installed\nVersion: 2024a\nArchitecture: all\n",
        ),
        layer_bytes(
            "var/lib/dpkg/status.d/tzdata",
            b"Package: tzdata\nVersion: 2025b\nArchitecture: all\n",
        ),
    ];
    let descs: Vec<Descriptor> = layers
        .iter()
        .map(|l| {
            Descriptor::new(
                media_types::OCI_LAYER_TAR_GZIP,
                w.add_blob_bytes(l).expect("blob"),
                l.len() as u64,
            )
        })
        .collect();
    let config = w
        .add_json(
            media_types::OCI_IMAGE_CONFIG,
            &serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
        )
        .expect("config");
    let manifest = ImageManifest::new(config.clone(), descs.clone());
    let mut top = w
        .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
        .expect("manifest");
    let top_bytes = std::fs::read(w.blob_path(&top.digest)).expect("top");
    top.annotations = Some(BTreeMap::from([(
        media_types::ANNOTATION_REF_NAME.to_string(),
        "v1".to_string(),
    )]));
    w.finish(vec![top.clone()]).expect("finish");
    top.annotations = None;
    let mut with_platform = top.clone();
    with_platform.platform = Some("linux/amd64".parse().expect("platform"));
    TestLayout {
        dir: dir.to_path_buf(),
        top,
        top_bytes,
        images: vec![TestImage {
            platform: "linux/amd64".parse().expect("platform"),
            manifest: with_platform,
            config,
            layers: descs,
        }],
    }
}

/// Pulls the pushed image through `registry` (an address) into a shallow layout.
fn pull(registry: &str, layout: &TestLayout, out: &Path, config: &Path) {
    let image = format!("{registry}/kiln/deb");
    let digest = layout.top.digest.to_string();
    let o = kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().expect("path"),
        ],
        config,
    );
    assert!(o.status.success(), "pull: {}", stderr(&o));
}

#[test]
fn base_packages_streams_the_layers_and_lists_the_packages() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let no_config = tempfile::tempdir().expect("config");
    let src = debian_layout(&tmp.path().join("src"));
    skopeo_push(&src, "v1", &format!("{}/kiln/deb:v1", registry.addr), None);
    // Through a proxy that records the requests (kiln-source.json names it).
    let proxy = Proxy::start(&registry.addr, |_| Action::Forward { corrupt: false });
    let shallow = tmp.path().join("shallow");
    pull(&proxy.addr, &src, &shallow, no_config.path());
    assert!(shallow.join("kiln-source.json").exists());

    let out = tmp.path().join("packages.json");
    let o = kiln_pull(
        &[
            "base-packages",
            "--layout",
            shallow.to_str().expect("path"),
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().expect("path"),
        ],
        no_config.path(),
    );
    assert!(o.status.success(), "base-packages: {}", stderr(&o));
    assert!(
        stderr(&o).contains("2 Debian packages in linux/amd64")
            && stderr(&o).contains("2 layers streamed"),
        "{}",
        stderr(&o)
    );
    let bytes = std::fs::read(&out).expect("packages.json");
    let packages = kiln_oci::sbom::BasePackages::from_json(&bytes).expect("parse");
    assert_eq!(packages.manifest, src.top.digest);
    let layers: Vec<_> = src.images[0]
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect();
    assert_eq!(packages.layers, layers);
    let got: Vec<(&str, &str, &str)> = packages
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.source.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("libc6", "2.36-9", "/var/lib/dpkg/status"),
            ("tzdata", "2025b", "/var/lib/dpkg/status.d/tzdata"),
        ]
    );
    // Canonical bytes, and no layer kept: the shallow layout is unchanged.
    assert_eq!(bytes, packages.to_json().expect("json"));
    for l in &layers {
        assert!(!shallow.join("blobs/sha256").join(l.hex()).exists());
    }
    let requests = proxy.requests();
    for l in &layers {
        let path = format!("/v2/kiln/deb/blobs/{l}");
        assert!(
            requests
                .iter()
                .any(|r| r.method == "GET" && r.path() == path),
            "layer {l} not fetched"
        );
    }
}

#[test]
fn base_packages_refuses_a_corrupt_layer_and_writes_nothing() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let no_config = tempfile::tempdir().expect("config");
    let src = debian_layout(&tmp.path().join("src"));
    skopeo_push(&src, "v1", &format!("{}/kiln/deb:v1", registry.addr), None);
    let layer = src.images[0].layers[1].digest.clone();
    let proxy = Proxy::corrupting(&registry.addr, &layer);
    let shallow = tmp.path().join("shallow");
    pull(&proxy.addr, &src, &shallow, no_config.path());
    let out = tmp.path().join("packages.json");
    let o = kiln_pull(
        &[
            "base-packages",
            "--layout",
            shallow.to_str().expect("path"),
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().expect("path"),
        ],
        no_config.path(),
    );
    assert!(!o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("layer 1 ({layer})")) && err.contains("is corrupt"),
        "{err}"
    );
    assert!(!out.exists());
}
