//! kiln-image on shallow bases: OCI layouts without their layer blobs, with
//! a `kiln-source.json` saying where those are (as kiln-pull writes them).
//! The layouts are made here by hand; tools/push/tests/shallow.rs runs the
//! whole chain against real registries.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Output;

use kiln_oci::{
    media_types, sha256_bytes, Descriptor, ImageIndex, ImageManifest, Layout, LayoutWriter,
    SourceBlob, Sources, SOURCE_FILE,
};
use kiln_testsupport::{gzip_tar, layer_fixture};
use serde_json::{json, Value};

/// A pulled base: an index of linux/amd64, linux/arm64/v8 and linux/s390x,
/// each with a layer shared by all (Docker media type, as Docker Hub images
/// have) and one of its own.
struct Base {
    /// Layers of each platform, in manifest order.
    layers: Vec<(String, Vec<Descriptor>)>,
    /// Manifest and config digests of each platform.
    docs: Vec<(String, Descriptor, Descriptor)>,
}

impl Base {
    fn layers(&self, platform: &str) -> &[Descriptor] {
        &self.layers.iter().find(|(p, _)| p == platform).unwrap().1
    }

    fn docs(&self, platform: &str) -> (&Descriptor, &Descriptor) {
        let (_, m, c) = self.docs.iter().find(|(p, _, _)| p == platform).unwrap();
        (m, c)
    }
}

fn complete_base(dir: &Path) -> Base {
    let w = LayoutWriter::new(dir).unwrap();
    let (shared, shared_tar) = gzip_tar("etc/base", b"base");
    let shared_desc = Descriptor::new(
        media_types::DOCKER_LAYER_TAR_GZIP,
        w.add_blob_bytes(&shared).unwrap(),
        shared.len() as u64,
    );
    let mut entries = Vec::new();
    let mut layers = Vec::new();
    let mut docs = Vec::new();
    for platform in ["linux/amd64", "linux/arm64/v8", "linux/s390x"] {
        let p: kiln_oci::Platform = platform.parse().unwrap();
        let (own, own_tar) = gzip_tar(&format!("etc/{}", p.architecture), platform.as_bytes());
        let own_desc = Descriptor::new(
            media_types::OCI_LAYER_TAR_GZIP,
            w.add_blob_bytes(&own).unwrap(),
            own.len() as u64,
        );
        let mut config = json!({
            "architecture": p.architecture,
            "os": p.os,
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [
                sha256_bytes(&shared_tar).to_string(),
                sha256_bytes(&own_tar).to_string(),
            ]},
            "history": [{"created_by": "base"}, {"created_by": "own"}],
        });
        if let Some(v) = &p.variant {
            config["variant"] = json!(v);
        }
        let config = w.add_json(media_types::OCI_IMAGE_CONFIG, &config).unwrap();
        let l = vec![shared_desc.clone(), own_desc];
        let mut m = w
            .add_json(
                media_types::OCI_IMAGE_MANIFEST,
                &ImageManifest::new(config.clone(), l.clone()),
            )
            .unwrap();
        docs.push((platform.to_string(), m.clone(), config));
        m.platform = Some(p);
        entries.push(m);
        layers.push((platform.to_string(), l));
    }
    let index = w
        .add_json(media_types::OCI_IMAGE_INDEX, &ImageIndex::new(entries))
        .unwrap();
    w.finish(vec![index]).unwrap();
    Base { layers, docs }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn source(d: &Descriptor) -> SourceBlob {
    SourceBlob {
        media_type: d.media_type.clone(),
        size: d.size,
        registry: "registry.example:5000".into(),
        repository: "kiln/base".into(),
    }
}

/// What kiln-pull makes of `complete` when asked for linux/amd64 and
/// linux/arm64: no layers, nothing of linux/s390x, the layers listed.
fn shallow_base(base: &Base, complete: &Path, shallow: &Path) {
    copy_dir(complete, shallow);
    let layout = Layout::open(shallow).unwrap();
    let mut sources = Sources::default();
    for (_, layers) in &base.layers {
        for l in layers {
            let _ = fs::remove_file(layout.blob_path(&l.digest));
        }
    }
    for platform in ["linux/amd64", "linux/arm64/v8"] {
        for l in base.layers(platform) {
            sources.add(l.digest.clone(), source(l)).unwrap();
        }
    }
    let (m, c) = base.docs("linux/s390x");
    fs::remove_file(layout.blob_path(&m.digest)).unwrap();
    fs::remove_file(layout.blob_path(&c.digest)).unwrap();
    sources.write_to(shallow).unwrap();
}

/// A new layer (tar.gz, descriptor, listing) named `name` in `dir`.
fn layer(dir: &Path, name: &str) -> Value {
    layer_fixture(dir, name, name.as_bytes())
}

fn run(dir: &Path, name: &str, base: &str, platform: &str, layer: &Value) -> Output {
    let spec = json!({
        "target": "//t:img",
        "base": {"layout": base},
        "layers": [layer],
        "platform": platform.parse::<kiln_oci::Platform>().unwrap(),
        "config": {"entrypoint": ["/app/hello"], "env": [["PATH", "$PATH:/app"]]},
        "ref_name": "latest",
    });
    kiln_testsupport::run_kiln_image(env!("CARGO_BIN_EXE_kiln-image"), dir, name, &spec, &[])
}

#[track_caller]
fn fails(dir: &Path, name: &str, out: Output) -> String {
    let stderr = kiln_testsupport::assert_refused(&out);
    assert!(!dir.join(format!("{name}_layout")).exists());
    assert!(!dir.join(format!("{name}.digest")).exists());
    stderr
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    fs::read(dir.join(file)).unwrap()
}

fn blobs(layout: &Path) -> BTreeSet<String> {
    fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

#[test]
fn shallow_and_complete_bases_give_the_same_image() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base = complete_base(&d.join("complete"));
    shallow_base(&base, &d.join("complete"), &d.join("shallow"));
    let l = layer(d, "app");

    kiln_testsupport::assert_ok(&run(d, "full", "complete", "linux/arm64", &l));
    kiln_testsupport::assert_ok(&run(d, "thin", "shallow", "linux/arm64", &l));
    // Byte for byte the same image: config, manifest digest, descriptor.
    for f in ["digest", "config.json", "descriptor.json", "listing.json"] {
        assert_eq!(
            read(d, &format!("full.{f}")),
            read(d, &format!("thin.{f}")),
            "{f}"
        );
    }
    assert_eq!(
        read(d, "full_layout/index.json"),
        read(d, "thin_layout/index.json")
    );

    // The complete base gives a complete image, the shallow one an image
    // without the base layers, listed with their source (with the media
    // type our manifest gives them: Docker's gzip layer became OCI's).
    let full = Layout::open(d.join("full_layout")).unwrap();
    let manifest = full.read_manifest(&full.top().unwrap()).unwrap();
    let base_layers = &manifest.layers[..2];
    assert_eq!(base_layers[0].media_type, media_types::OCI_LAYER_TAR_GZIP);
    assert!(!d.join("full_layout").join(SOURCE_FILE).exists());
    let mut expected = Sources::default();
    for l in base_layers {
        expected.add(l.digest.clone(), source(l)).unwrap();
    }
    assert_eq!(
        read(d, &format!("thin_layout/{SOURCE_FILE}")),
        expected.to_bytes().unwrap()
    );
    let full_blobs = blobs(&d.join("full_layout"));
    let thin_blobs = blobs(&d.join("thin_layout"));
    let absent: BTreeSet<String> = base_layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(
        full_blobs
            .difference(&thin_blobs)
            .cloned()
            .collect::<BTreeSet<_>>(),
        absent
    );
    assert_eq!(thin_blobs.len(), 3, "config, manifest, our layer");

    // An image on the shallow image stays shallow, with the same entries;
    // on the complete one it is complete; both are the same image.
    let l2 = layer(d, "more");
    kiln_testsupport::assert_ok(&run(d, "full2", "full_layout", "linux/arm64/v8", &l2));
    kiln_testsupport::assert_ok(&run(d, "thin2", "thin_layout", "linux/arm64/v8", &l2));
    assert_eq!(read(d, "full2.digest"), read(d, "thin2.digest"));
    assert_eq!(read(d, "full2.config.json"), read(d, "thin2.config.json"));
    assert!(!d.join("full2_layout").join(SOURCE_FILE).exists());
    assert_eq!(
        read(d, &format!("thin2_layout/{SOURCE_FILE}")),
        expected.to_bytes().unwrap()
    );
}

#[test]
fn a_platform_that_was_not_pulled_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base = complete_base(&d.join("complete"));
    shallow_base(&base, &d.join("complete"), &d.join("shallow"));
    let l = layer(d, "app");
    kiln_testsupport::assert_ok(&run(d, "amd", "shallow", "linux/amd64", &l));

    let err = fails(d, "s390x", run(d, "s390x", "shallow", "linux/s390x", &l));
    assert_eq!(
        err,
        "kiln-image: //t:img: base: shallow: platform linux/s390x was not pulled; \
         add it to the platforms of kiln.pull(...)\n"
    );
    // A platform the image does not have at all is another error.
    let err = fails(d, "ppc", run(d, "ppc", "shallow", "linux/ppc64le", &l));
    assert!(
        err.contains("no image for platform linux/ppc64le; there are images for: linux/amd64, linux/arm64/v8, linux/s390x"),
        "{err}"
    );
    // The manifest there but not its config: not pulled either.
    let (_, config) = base.docs("linux/amd64");
    let layout = Layout::open(d.join("shallow")).unwrap();
    fs::remove_file(layout.blob_path(&config.digest)).unwrap();
    let err = fails(d, "amd2", run(d, "amd2", "shallow", "linux/amd64", &l));
    assert!(
        err.ends_with(
            "platform linux/amd64 was not pulled; add it to the platforms of kiln.pull(...)\n"
        ),
        "{err}"
    );
}

#[test]
fn a_base_blob_neither_present_nor_listed_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let base = complete_base(&d.join("complete"));
    shallow_base(&base, &d.join("complete"), &d.join("shallow"));
    let own = &base.layers("linux/amd64")[1];
    let mut sources = Sources::load(&d.join("shallow")).unwrap().unwrap();
    sources.blobs.remove(&own.digest);
    sources.write_to(&d.join("shallow")).unwrap();
    let l = layer(d, "app");
    let err = fails(d, "amd", run(d, "amd", "shallow", "linux/amd64", &l));
    assert_eq!(
        err,
        format!(
            "kiln-image: //t:img: base: shallow: blob {} is neither in the layout \
             nor listed in its {SOURCE_FILE}\n",
            own.digest
        )
    );
    // The arm64 image does not need that blob.
    kiln_testsupport::assert_ok(&run(d, "arm", "shallow", "linux/arm64", &l));
}
