//! kiln-image on bases it did not write: OCI layouts with several platforms
//! (made with umoci), `docker save` tarballs (from the Docker engine, and
//! hand-made ones for the corner cases), plus the config additions: env
//! expansion, label_files, os_version, created, stamping, --config-digest.
//!
//! Tests that need umoci, skopeo or a Docker daemon are skipped (with a
//! message) when the tool is missing, unless KILN_REQUIRE_TOOLS is set.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_oci::{
    canonical, media_types, sha256_bytes, sha256_file, Descriptor, ImageIndex, ImageManifest,
    LayerDescriptor, Layout,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

/// True when `tool` is there (kiln_testsupport::require_tools: a SKIP line,
/// or a panic under KILN_REQUIRE_TOOLS). `docker` must also reach its daemon.
fn have(tool: &str, probe: &[&str]) -> bool {
    let test = std::thread::current().name().unwrap_or("bases").to_string();
    let daemon = tool != "docker"
        || Command::new(tool)
            .args(probe)
            .output()
            .is_ok_and(|o| o.status.success());
    kiln_testsupport::require_tools(&test, &[if daemon { tool } else { "docker info" }])
}

fn sh(dir: &Path, program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An uncompressed tar of `(path, content)` files (directories implied).
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _) in files {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    for d in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, format!("{}/", d.display()), &[][..])
            .unwrap();
    }
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(content.len() as u64);
        b.append_data(&mut h, path, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A real gzip layer as kiln-layer would write it; returns the spec entry.
fn layer(dir: &Path, name: &str, files: &[(&str, &str)]) -> Value {
    let tar = tar_of(files);
    let gz = gzip(&tar);
    fs::write(dir.join(format!("{name}.tar.gz")), &gz).unwrap();
    let desc = LayerDescriptor {
        media_type: media_types::OCI_LAYER_TAR_GZIP.into(),
        digest: sha256_bytes(&gz),
        size: gz.len() as u64,
        diff_id: sha256_bytes(&tar),
        uncompressed_size: tar.len() as u64,
    };
    fs::write(
        dir.join(format!("{name}.json")),
        canonical::to_vec(&desc).unwrap(),
    )
    .unwrap();
    let mut listing = Vec::new();
    for (path, _) in files {
        let mut acc = String::new();
        for comp in path.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(comp);
            let kind = if acc == *path { "file" } else { "dir" };
            let e = json!({"kind": kind, "path": acc});
            if !listing.contains(&e) {
                listing.push(e);
            }
        }
    }
    fs::write(
        dir.join(format!("{name}.listing.json")),
        Value::Array(listing).to_string(),
    )
    .unwrap();
    json!({
        "blob": format!("{name}.tar.gz"),
        "descriptor": format!("{name}.json"),
        "listing": format!("{name}.listing.json"),
    })
}

fn run_with(dir: &Path, name: &str, spec: &Value, extra: &[&str]) -> Output {
    kiln_testsupport::run_kiln_image(env!("CARGO_BIN_EXE_kiln-image"), dir, name, spec, extra)
}

fn run(dir: &Path, name: &str, spec: &Value) -> Output {
    run_with(dir, name, spec, &[])
}

#[track_caller]
fn fails(dir: &Path, name: &str, out: Output) -> String {
    let stderr = kiln_testsupport::assert_refused(&out);
    // A failed run leaves no output behind.
    for f in [
        format!("{name}_layout"),
        format!("{name}.config.json"),
        format!("{name}.digest"),
        format!("{name}.descriptor.json"),
        format!("{name}.listing.json"),
    ] {
        assert!(!dir.join(&f).exists(), "{f} was left behind");
    }
    stderr
}

/// The output image: its manifest, config JSON and layout.
fn image(dir: &Path, name: &str) -> (Layout, ImageManifest, Value) {
    let layout = Layout::open(dir.join(format!("{name}_layout"))).unwrap();
    let top = layout.top().unwrap();
    let manifest = layout.read_manifest(&top).unwrap();
    let config: Value =
        serde_json::from_slice(&layout.read_blob(&manifest.config.digest).unwrap()).unwrap();
    // Every blob the manifest names is there with its digest and size.
    for l in &manifest.layers {
        let (d, n) = sha256_file(&layout.blob_path(&l.digest)).unwrap();
        assert_eq!((d, n), (l.digest.clone(), l.size));
    }
    (layout, manifest, config)
}

fn spec(base: Value, platform: &str, layers: Vec<Value>, config: Value) -> Value {
    let p: kiln_oci::Platform = platform.parse().unwrap();
    json!({
        "target": "//t:img",
        "base": base,
        "layers": layers,
        "platform": p,
        "config": config,
        "ref_name": "latest",
    })
}

fn read_json_file(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// `umoci unpack` of the output: the root filesystem directory.
fn unpack(dir: &Path, name: &str) -> PathBuf {
    let bundle = format!("{name}_bundle");
    sh(
        dir,
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{name}_layout:latest"),
            &bundle,
        ],
    );
    dir.join(bundle).join("rootfs")
}

// ------------------------------------------------------- multi-platform OCI

/// A layout made by umoci with two images (tags amd64 and arm64), each with
/// a file /etc/arch naming its architecture. Its index.json entries carry no
/// platform: the tool reads it from each config.
fn umoci_layout(dir: &Path) -> PathBuf {
    sh(dir, "umoci", &["init", "--layout", "multi"]);
    for arch in ["amd64", "arm64"] {
        let root = dir.join(format!("root_{arch}"));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/arch"), arch).unwrap();
        let image = format!("multi:{arch}");
        sh(dir, "umoci", &["new", "--image", &image]);
        sh(
            dir,
            "umoci",
            &[
                "insert",
                "--rootless",
                "--image",
                &image,
                &format!("root_{arch}/etc"),
                "/etc",
            ],
        );
        sh(
            dir,
            "umoci",
            &[
                "config",
                "--image",
                &image,
                "--os",
                "linux",
                "--architecture",
                arch,
                "--config.env",
                &format!("ARCH={arch}"),
            ],
        );
    }
    dir.join("multi")
}

#[test]
fn oci_layout_with_two_platforms() {
    if !have("umoci", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    umoci_layout(d);
    let app = layer(d, "app", &[("app/run", "#!/bin/sh\n")]);
    let base = json!({"layout": "multi"});

    for (platform, arch) in [
        ("linux/arm64/v8", "arm64"),
        ("linux/arm64", "arm64"),
        ("linux/amd64", "amd64"),
    ] {
        kiln_testsupport::assert_ok(&run(
            d,
            "pick",
            &spec(
                base.clone(),
                platform,
                vec![app.clone()],
                json!({"entrypoint": ["/app/run"], "env": [["PATH", "/bin:$ARCH"]]}),
            ),
        ));
        let (layout, manifest, config) = image(d, "pick");
        assert_eq!(manifest.layers.len(), 2);
        // The base layer is umoci's, as it was (gzip, same digest).
        assert_eq!(
            manifest.layers[0].media_type,
            media_types::OCI_LAYER_TAR_GZIP
        );
        assert_eq!(
            config["config"]["Env"],
            json!([format!("ARCH={arch}"), format!("PATH=/bin:{arch}")])
        );
        let top = layout.top().unwrap();
        assert_eq!(top.platform.unwrap().to_string(), platform);
        if have("skopeo", &["--version"]) {
            let inspected: Value = serde_json::from_slice(&sh(
                d,
                "skopeo",
                &["inspect", "--config", "oci:pick_layout:latest"],
            ))
            .unwrap();
            assert_eq!(inspected["architecture"], arch);
        }
        let rootfs = unpack(d, "pick");
        assert_eq!(fs::read_to_string(rootfs.join("etc/arch")).unwrap(), arch);
        assert!(rootfs.join("app/run").is_file());
        fs::remove_dir_all(d.join("pick_bundle")).unwrap();
    }

    let e = fails(
        d,
        "none",
        run(d, "none", &spec(base, "linux/s390x", vec![], json!({}))),
    );
    assert!(
        e.starts_with("kiln-image: //t:img: base: ")
            && e.trim_end().ends_with(
                "no image for platform linux/s390x; there are images for: linux/amd64, linux/arm64"
            ),
        "{e}"
    );
}

#[test]
fn nested_index_and_oci_layout_in_a_tar() {
    if !have("umoci", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let multi = Layout::open(umoci_layout(d)).unwrap();
    // index.json → index → index → {amd64, arm64/v8}, platforms on the entries.
    let mut entries = multi.index_json().unwrap().manifests;
    for e in &mut entries {
        let arch = e.ref_name().unwrap().to_string();
        e.annotations = None;
        e.platform = Some(if arch == "arm64" {
            "linux/arm64/v8".parse().unwrap()
        } else {
            "linux/amd64".parse().unwrap()
        });
    }
    let add_index = |manifests: Vec<Descriptor>| {
        let bytes = canonical::to_vec(&ImageIndex::new(manifests)).unwrap();
        let digest = sha256_bytes(&bytes);
        fs::write(multi.blob_path(&digest), &bytes).unwrap();
        Descriptor::new(media_types::OCI_IMAGE_INDEX, digest, bytes.len() as u64)
    };
    let inner = add_index(entries);
    let outer = add_index(vec![inner]);
    fs::write(
        d.join("multi/index.json"),
        canonical::to_vec(&ImageIndex::new(vec![outer])).unwrap(),
    )
    .unwrap();

    kiln_testsupport::assert_ok(&run(
        d,
        "nested",
        &spec(json!({"layout": "multi"}), "linux/arm64", vec![], json!({})),
    ));
    let (_, manifest, config) = image(d, "nested");
    assert_eq!(config["config"]["Env"], json!(["ARCH=arm64"]));
    assert_eq!(manifest.layers.len(), 1);
    let e = fails(
        d,
        "bad",
        run(
            d,
            "bad",
            &spec(
                json!({"layout": "multi"}),
                "linux/arm/v7",
                vec![],
                json!({}),
            ),
        ),
    );
    assert!(
        e.trim_end().ends_with(
            "no image for platform linux/arm/v7; there are images for: linux/amd64, linux/arm64/v8"
        ),
        "{e}"
    );

    // The same layout packed in a tar, as docker_tar.
    sh(d, "tar", &["-cf", "multi.tar", "-C", "multi", "."]);
    kiln_testsupport::assert_ok(&run(
        d,
        "intar",
        &spec(
            json!({"docker_tar": "multi.tar"}),
            "linux/amd64",
            vec![],
            json!({}),
        ),
    ));
    let (_, tar_manifest, config) = image(d, "intar");
    assert_eq!(config["config"]["Env"], json!(["ARCH=amd64"]));
    assert_eq!(
        tar_manifest.layers[0].media_type,
        media_types::OCI_LAYER_TAR_GZIP
    );
    assert_ne!(tar_manifest.layers[0].digest, manifest.layers[0].digest);
}

// ------------------------------------------------------------- docker save

/// Removes a Docker image when dropped.
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", &self.0]).output();
    }
}

#[test]
fn docker_save_from_the_engine() {
    if !have("docker", &["info"]) || !have("umoci", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(
        d.join("root.tar"),
        tar_of(&[("etc/base.txt", "from docker"), ("bin/tool", "x")]),
    )
    .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("kiln-image-test-{}-{nanos}:base", std::process::id());
    let imported = DockerImage(name.clone());
    sh(
        d,
        "docker",
        &[
            "import",
            "-c",
            "ENV PATH=/usr/local/bin:/usr/bin",
            "-c",
            "ENV HOME=/root",
            "-c",
            "LABEL from=docker",
            "root.tar",
            &name,
        ],
    );
    sh(d, "docker", &["save", "-o", "saved.tar", &name]);
    drop(imported);

    let app = layer(d, "app", &[("app/run", "#!/bin/sh\n")]);
    kiln_testsupport::assert_ok(&run(
        d,
        "img",
        &spec(
            json!({"docker_tar": "saved.tar"}),
            "linux/amd64",
            vec![app],
            json!({
                // Not visible without a base listing: not an error.
                "entrypoint": ["/bin/sh"],
                "env": [
                    ["PATH", "$PATH:/app"],
                    ["MSG", "costs \\$5 in ${HOME}"],
                    ["HOME", "/home/app"],
                ],
                "labels": {"mine": "yes"},
            }),
        ),
    ));
    let (layout, manifest, config) = image(d, "img");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(manifest.layers.len(), 2);
    assert_eq!(diff_ids.len(), 2);
    // The legacy layer.tar is uncompressed: used as is, digest = diff_id.
    let base_layer = &manifest.layers[0];
    assert_eq!(base_layer.media_type, media_types::OCI_LAYER_TAR);
    assert_eq!(diff_ids[0], base_layer.digest.to_string());
    assert_eq!(
        sha256_file(&layout.blob_path(&base_layer.digest))
            .unwrap()
            .0,
        base_layer.digest
    );
    assert_eq!(
        config["config"]["Env"],
        json!([
            "PATH=/usr/local/bin:/usr/bin:/app",
            "HOME=/home/app",
            "MSG=costs $5 in /root"
        ])
    );
    assert_eq!(
        config["config"]["Labels"],
        json!({"from": "docker", "mine": "yes"})
    );
    let rootfs = unpack(d, "img");
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/base.txt")).unwrap(),
        "from docker"
    );
    assert!(rootfs.join("app/run").is_file());

    // `docker save | gzip` works the same, and leaves no temporary behind.
    fs::write(
        d.join("saved.tar.gz"),
        gzip(&fs::read(d.join("saved.tar")).unwrap()),
    )
    .unwrap();
    let before = fs::read_dir(d).unwrap().count();
    kiln_testsupport::assert_ok(&run(
        d,
        "gz",
        &spec(
            json!({"docker_tar": "saved.tar.gz"}),
            "linux/amd64",
            vec![],
            json!({}),
        ),
    ));
    let (_, gz_manifest, _) = image(d, "gz");
    assert_eq!(gz_manifest.layers[0], manifest.layers[0]);
    // The new outputs, and nothing else (no scratch file): manifest, base
    // blobs, config, digest, descriptor, listing, spec, and the test's
    // layout and config digest.
    assert_eq!(fs::read_dir(d).unwrap().count(), before + 9);

    // What the base does not show is still checked in our layers.
    let e = fails(
        d,
        "dir",
        run(
            d,
            "dir",
            &spec(
                json!({"docker_tar": "saved.tar"}),
                "linux/amd64",
                vec![layer(d, "app2", &[("app/run", "x")])],
                json!({"entrypoint": ["/app"]}),
            ),
        ),
    );
    assert_eq!(
        e.trim_end(),
        "kiln-image: //t:img: entrypoint: \"/app\" is a directory in the image, not a file"
    );
}

/// A hand-made `docker save` tarball: `layers` are (archive path, bytes),
/// `diff_ids` what the config claims.
fn docker_tar(path: &Path, images: usize, layers: &[(&str, Vec<u8>)], diff_ids: &[String]) {
    let config = canonical::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256_bytes(&config).hex());
    let entry = json!({
        "Config": config_name,
        "RepoTags": ["x:y"],
        "Layers": layers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
    });
    let manifest = Value::Array(vec![entry; images]).to_string();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    for (name, bytes) in layers {
        add(name, bytes);
    }
    add(&config_name, &config);
    add("manifest.json", manifest.as_bytes());
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

#[test]
fn docker_save_layers_and_diff_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plain = tar_of(&[("a", "plain layer")]);
    let inner = tar_of(&[("b", "gzip layer")]);
    let gz = gzip(&inner);
    let gz_name = format!("blobs/sha256/{}", sha256_bytes(&gz).hex());
    let good_ids = [
        sha256_bytes(&plain).to_string(),
        sha256_bytes(&inner).to_string(),
    ];
    docker_tar(
        &d.join("good.tar"),
        1,
        &[("0123/layer.tar", plain.clone()), (&gz_name, gz.clone())],
        &good_ids,
    );
    kiln_testsupport::assert_ok(&run(
        d,
        "good",
        &spec(
            json!({"docker_tar": "good.tar"}),
            "linux/amd64",
            vec![],
            json!({}),
        ),
    ));
    let (_, manifest, config) = image(d, "good");
    assert_eq!(manifest.layers[0].media_type, media_types::OCI_LAYER_TAR);
    assert_eq!(manifest.layers[0].digest, sha256_bytes(&plain));
    assert_eq!(
        manifest.layers[1].media_type,
        media_types::OCI_LAYER_TAR_GZIP
    );
    assert_eq!(manifest.layers[1].digest, sha256_bytes(&gz));
    assert_eq!(manifest.layers[1].size, gz.len() as u64);
    assert_eq!(config["rootfs"]["diff_ids"], json!(good_ids));

    // An uncompressed layer whose bytes are not what the config says.
    let wrong = sha256_bytes(b"something else").to_string();
    docker_tar(
        &d.join("bad.tar"),
        1,
        &[("0123/layer.tar", plain.clone())],
        std::slice::from_ref(&wrong),
    );
    let e = fails(
        d,
        "bad",
        run(
            d,
            "bad",
            &spec(
                json!({"docker_tar": "bad.tar"}),
                "linux/amd64",
                vec![],
                json!({}),
            ),
        ),
    );
    assert_eq!(
        e.trim_end(),
        format!(
            "kiln-image: //t:img: base: docker_tar bad.tar: layer 0 (0123/layer.tar): its content has diff_id {} but the image config says {wrong}",
            sha256_bytes(&plain)
        )
    );

    // A gzip layer: the diff_id is checked on the decompressed stream.
    docker_tar(
        &d.join("badgz.tar"),
        1,
        &[(&gz_name, gz.clone())],
        std::slice::from_ref(&wrong),
    );
    let e = fails(
        d,
        "badgz",
        run(
            d,
            "badgz",
            &spec(
                json!({"docker_tar": "badgz.tar"}),
                "linux/amd64",
                vec![],
                json!({}),
            ),
        ),
    );
    assert!(
        e.contains(&format!(
            "its content has diff_id {} but the image config says {wrong}",
            sha256_bytes(&inner)
        )),
        "{e}"
    );

    // Exactly one image per tarball.
    docker_tar(
        &d.join("two.tar"),
        2,
        &[("0123/layer.tar", plain)],
        &good_ids[..1],
    );
    let e = fails(
        d,
        "two",
        run(
            d,
            "two",
            &spec(
                json!({"docker_tar": "two.tar"}),
                "linux/amd64",
                vec![],
                json!({}),
            ),
        ),
    );
    assert!(e.contains("manifest.json lists 2 images"), "{e}");

    // Both or neither of layout and docker_tar; unknown keys.
    for (base, msg) in [
        (
            json!({"layout": "x", "docker_tar": "good.tar"}),
            "exactly one of \"layout\" and \"docker_tar\"",
        ),
        (json!({"listing": null}), "exactly one of"),
        (
            json!({"docker_tar": "good.tar", "tag": "x"}),
            "unknown field `tag`",
        ),
    ] {
        let e = fails(
            d,
            "keys",
            run(d, "keys", &spec(base, "linux/amd64", vec![], json!({}))),
        );
        assert!(e.contains(msg), "{e}");
    }
}

// ------------------------------------------------------ config additions

#[test]
fn label_files_os_version_created_and_config_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("notes.txt"), "multi\nline\n").unwrap();
    fs::write(d.join("bin.dat"), [0xc3, 0x28]).unwrap();
    let s = spec(
        Value::Null,
        "windows/amd64",
        vec![],
        json!({
            "labels": {"a": "1"},
            "label_files": {"notes": "notes.txt"},
            "os_version": "10.0.17763.1040",
            "created": "2024-01-02T05:04:05.50+02:00",
        }),
    );
    kiln_testsupport::assert_ok(&run_with(
        d,
        "img",
        &s,
        &["--config-digest", "img.config.sha256"],
    ));
    let (layout, manifest, config) = image(d, "img");
    assert_eq!(
        config["config"]["Labels"],
        json!({"a": "1", "notes": "multi\nline\n"})
    );
    assert_eq!(config["os.version"], "10.0.17763.1040");
    assert_eq!(config["created"], "2024-01-02T03:04:05.5Z");
    let index = read_json_file(&layout.dir().join("index.json"));
    let platform =
        json!({"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1040"});
    assert_eq!(index["manifests"][0]["platform"], platform);
    assert_eq!(
        index["manifests"][0]["annotations"][media_types::ANNOTATION_REF_NAME],
        "latest"
    );
    let descriptor = read_json_file(&d.join("img.descriptor.json"));
    assert_eq!(descriptor["platform"], platform);
    assert!(descriptor.get("annotations").is_none());
    // --config-digest: the sha256 of the config file, 64 hex digits, no newline.
    let config_sha = fs::read_to_string(d.join("img.config.sha256")).unwrap();
    let (digest, _) = sha256_file(&d.join("img.config.json")).unwrap();
    assert_eq!(config_sha, digest.hex());
    assert_eq!(manifest.config.digest, digest);
    if Command::new("sha256sum").arg("--version").output().is_ok() {
        let out = sh(d, "sha256sum", &["img.config.json"]);
        assert!(String::from_utf8(out).unwrap().starts_with(&config_sha));
    }

    // Created: every accepted spelling, written as RFC 3339 UTC; history too.
    let l = layer(d, "l", &[("f", "x")]);
    for (created, want) in [
        ("1704164645", "2024-01-02T03:04:05Z"),
        ("1704164645.5", "2024-01-02T03:04:05.5Z"),
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-01T22:04:05-05:00", "2024-01-02T03:04:05Z"),
        ("0", "1970-01-01T00:00:00Z"),
    ] {
        kiln_testsupport::assert_ok(&run(
            d,
            "t",
            &spec(
                Value::Null,
                "linux/amd64",
                vec![l.clone()],
                json!({"created": created}),
            ),
        ));
        let (_, _, config) = image(d, "t");
        assert_eq!(config["created"], want);
        assert_eq!(config["history"][0]["created"], want);
    }
    kiln_testsupport::assert_ok(&run(
        d,
        "t",
        &spec(Value::Null, "linux/amd64", vec![], json!({})),
    ));
    assert_eq!(image(d, "t").2["created"], "1970-01-01T00:00:00Z");

    let e = fails(
        d,
        "bad",
        run(
            d,
            "bad",
            &spec(
                Value::Null,
                "linux/amd64",
                vec![],
                json!({"created": "yesterday"}),
            ),
        ),
    );
    assert!(
        e.starts_with("kiln-image: //t:img: creation_time: \"yesterday\" is not a time"),
        "{e}"
    );

    let e = fails(
        d,
        "bad",
        run(
            d,
            "bad",
            &spec(
                Value::Null,
                "linux/amd64",
                vec![],
                json!({"label_files": {"bin": "bin.dat"}}),
            ),
        ),
    );
    assert_eq!(
        e.trim_end(),
        "kiln-image: //t:img: label_files: bin: bin.dat is not UTF-8 text"
    );
    let e = fails(
        d,
        "bad",
        run(
            d,
            "bad",
            &spec(
                Value::Null,
                "linux/amd64",
                vec![],
                json!({"labels": {"notes": "x"}, "label_files": {"notes": "notes.txt"}}),
            ),
        ),
    );
    assert_eq!(
        e.trim_end(),
        "kiln-image: //t:img: label_files: label \"notes\" is set by both labels and label_files"
    );
    let e = fails(
        d,
        "bad",
        run(
            d,
            "bad",
            &spec(
                Value::Null,
                "linux/amd64",
                vec![],
                json!({"env": [["", "x"]]}),
            ),
        ),
    );
    assert!(
        e.starts_with("kiln-image: //t:img: env: \"\" is not a valid variable name"),
        "{e}"
    );
}

#[test]
fn stamping_on_and_off() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(
        d.join("stable-status.txt"),
        "BUILD_USER alice\nSTABLE_GIT_COMMIT abc123\n",
    )
    .unwrap();
    fs::write(
        d.join("volatile-status.txt"),
        "BUILD_TIMESTAMP 1704164645\n",
    )
    .unwrap();
    fs::write(d.join("commit.txt"), "{STABLE_GIT_COMMIT}").unwrap();
    let l = layer(d, "l", &[("bin/alice", "x")]);
    let config = json!({
        "entrypoint": ["/bin/{BUILD_USER}"],
        "cmd": ["--at={BUILD_TIMESTAMP}"],
        "env": [["BY", "{BUILD_USER}"], ["HOME", "/home/$BY"]],
        "labels": {"commit": "{STABLE_GIT_COMMIT}", "literal": "{{x}}"},
        "label_files": {"from_file": "commit.txt"},
        "user": "{BUILD_USER}",
        "workdir": "/w/{BUILD_USER}",
        "volumes": ["/v/{BUILD_USER}"],
        "created": "{BUILD_TIMESTAMP}",
    });
    let mut s = spec(Value::Null, "linux/amd64", vec![l.clone()], config.clone());
    s["stamp"] = json!(["stable-status.txt", "volatile-status.txt"]);
    kiln_testsupport::assert_ok(&run(d, "on", &s));
    let (_, _, c) = image(d, "on");
    assert_eq!(c["created"], "2024-01-02T03:04:05Z");
    assert_eq!(c["history"][0]["created"], "2024-01-02T03:04:05Z");
    let rc = &c["config"];
    assert_eq!(rc["Entrypoint"], json!(["/bin/alice"]));
    assert_eq!(rc["Cmd"], json!(["--at=1704164645"]));
    assert_eq!(rc["Env"], json!(["BY=alice", "HOME=/home/alice"]));
    assert_eq!(
        rc["Labels"],
        json!({"commit": "abc123", "from_file": "{STABLE_GIT_COMMIT}", "literal": "{x}"})
    );
    assert_eq!(rc["User"], "alice");
    assert_eq!(rc["WorkingDir"], "/w/alice");
    assert_eq!(rc["Volumes"], json!({"/v/alice": {}}));

    // Unknown key: error naming the attribute and the key.
    let mut bad = s.clone();
    bad["config"]["env"] = json!([["FOO", "{NOPE}"]]);
    let e = fails(d, "bad", run(d, "bad", &bad));
    assert!(
        e.starts_with("kiln-image: //t:img: env[FOO]: unknown stamp variable {NOPE}"),
        "{e}"
    );
    let mut bad = s.clone();
    bad["stamp"] = json!(["missing-status.txt"]);
    let e = fails(d, "bad", run(d, "bad", &bad));
    assert!(e.starts_with("kiln-image: //t:img: stamp: "), "{e}");

    // Off: braces stay as written (created must then be a time).
    let mut config_off = config;
    config_off["created"] = json!("1704164645");
    config_off["entrypoint"] = json!(["/bin/alice"]);
    kiln_testsupport::assert_ok(&run(
        d,
        "off",
        &spec(Value::Null, "linux/amd64", vec![l], config_off),
    ));
    let (_, _, c) = image(d, "off");
    let rc = &c["config"];
    assert_eq!(rc["Cmd"], json!(["--at={BUILD_TIMESTAMP}"]));
    assert_eq!(
        rc["Env"],
        json!(["BY={BUILD_USER}", "HOME=/home/{BUILD_USER}"])
    );
    assert_eq!(
        rc["Labels"],
        json!({"commit": "{STABLE_GIT_COMMIT}", "from_file": "{STABLE_GIT_COMMIT}", "literal": "{{x}}"})
    );
}
