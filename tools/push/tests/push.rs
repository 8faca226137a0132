//! kiln-push against a real registry (Debian's docker-registry), checked
//! with skopeo. A missing docker-registry or skopeo is a printed SKIP, and a
//! failure under KILN_REQUIRE_TOOLS (set by e2e/suites/rust.sh).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_oci::media_types;
use kiln_oci::{sha256_bytes, Descriptor, Digest, ImageIndex, ImageManifest, LayoutWriter};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// True when the test's tools are there (see kiln_testsupport::require_tools:
/// a SKIP line, or a panic under KILN_REQUIRE_TOOLS).
fn tools_available(tools: &[&str]) -> bool {
    let test = std::thread::current().name().unwrap_or("push").to_string();
    kiln_testsupport::require_tools(&test, tools)
}

use kiln_testsupport::free_port;

/// A docker-registry process on a loopback port, with storage in a temp dir;
/// killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(read_only: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let maintenance = if read_only {
            "  maintenance:\n    readonly:\n      enabled: true\n"
        } else {
            ""
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n{maintenance}\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The raw manifest at `reference` (`name:tag` or `name@digest`), via skopeo.
fn skopeo_raw(registry: &Registry, reference: &str) -> Option<Vec<u8>> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{reference}", registry.host()))
        .output()
        .expect("running skopeo");
    out.status.success().then_some(out.stdout)
}

struct Image {
    descriptor: Descriptor,
    blobs: Vec<Digest>,
}

/// Writes one image (config + layers of `layer_sizes` pseudo-random bytes)
/// into `w`. Registries do not look inside layers, so they need not be tars.
fn add_image(w: &LayoutWriter, seed: &str, platform: &str, layer_sizes: &[usize]) -> Image {
    let mut layers = Vec::new();
    for (i, &size) in layer_sizes.iter().enumerate() {
        let mut bytes = Vec::with_capacity(size);
        let mut block = sha256_bytes(format!("{seed}-{i}").as_bytes())
            .hex()
            .to_string();
        while bytes.len() < size {
            bytes.extend_from_slice(block.as_bytes());
            block = sha256_bytes(block.as_bytes()).hex().to_string();
        }
        bytes.truncate(size);
        let digest = w.add_blob_bytes(&bytes).unwrap();
        layers.push(Descriptor::new(
            media_types::OCI_LAYER_TAR_GZIP,
            digest,
            size as u64,
        ));
    }
    let p: kiln_oci::Platform = platform.parse().unwrap();
    let config = w
        .add_json(
            media_types::OCI_IMAGE_CONFIG,
            &serde_json::json!({
                "architecture": p.architecture, "os": p.os, "seed": seed,
                "rootfs": {"type": "layers", "diff_ids": []}
            }),
        )
        .unwrap();
    let mut blobs = vec![config.digest.clone()];
    blobs.extend(layers.iter().map(|l| l.digest.clone()));
    let manifest = ImageManifest::new(config, layers);
    let mut descriptor = w
        .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
        .unwrap();
    descriptor.platform = Some(p);
    Image { descriptor, blobs }
}

fn single_image_layout(dir: &Path, seed: &str) -> Image {
    let w = LayoutWriter::new(dir).unwrap();
    let image = add_image(&w, seed, "linux/amd64", &[1000, 3 * 1024 * 1024 + 17]);
    w.finish(vec![image.descriptor.clone()]).unwrap();
    image
}

fn push(layout: &Path, repository: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln-push"))
        .arg("--layout")
        .arg(layout)
        .arg("--repository")
        .arg(repository)
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines_with<'a>(stderr: &'a str, word: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.starts_with(&format!("kiln-push: {word} ")))
        .collect()
}

#[test]
fn pushes_an_image_then_finds_everything_present() {
    if !tools_available(&[REGISTRY, "skopeo"]) {
        return;
    }
    let registry = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = single_image_layout(&layout, "single");
    let digest_file = tmp.path().join("out").join("digest");
    std::fs::create_dir(digest_file.parent().unwrap()).unwrap();
    let repository = format!("{}/kiln/hello", registry.host());

    let out = push(
        &layout,
        &repository,
        &[
            "--tag",
            "latest",
            "--tag",
            "v1",
            "--digest-file",
            digest_file.to_str().unwrap(),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "kiln-push failed:\n{stderr}");
    let expected = format!("{repository}@{}\n", image.descriptor.digest);
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        image.descriptor.digest.to_string()
    );
    let pushed = lines_with(&stderr, "pushed");
    for blob in &image.blobs {
        assert!(
            pushed.iter().any(|l| l.contains(&format!("blob {blob} ("))),
            "no 'pushed' line for {blob}:\n{stderr}"
        );
    }
    assert!(lines_with(&stderr, "exists").is_empty(), "{stderr}");
    assert!(
        stderr.contains(&format!("tagged {repository}:latest")),
        "{stderr}"
    );

    for tag in ["latest", "v1"] {
        let raw = skopeo_raw(&registry, &format!("kiln/hello:{tag}")).expect("tag missing");
        assert_eq!(sha256_bytes(&raw), image.descriptor.digest, "tag {tag}");
    }

    // Second push: the tag names the digest already, which one HEAD
    // finds: nothing is uploaded, checked blob by blob or tagged again.
    let out = push(&layout, &repository, &["--tag", "latest"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "second kiln-push failed:\n{stderr}");
    assert!(lines_with(&stderr, "pushed").is_empty(), "{stderr}");
    assert!(lines_with(&stderr, "exists").is_empty(), "{stderr}");
    assert!(lines_with(&stderr, "tagged").is_empty(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "kiln-push: up to date: {repository} (every tag names {})",
            image.descriptor.digest
        )),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), expected);

    // A new tag for the same content: the manifest is found by digest, no
    // blob is looked at, only the tag is written.
    let out = push(&layout, &repository, &["--tag", "latest", "--tag", "v2"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "third kiln-push failed:\n{stderr}");
    assert!(lines_with(&stderr, "pushed").is_empty(), "{stderr}");
    let exists = lines_with(&stderr, "exists");
    assert_eq!(exists.len(), 1, "{stderr}");
    assert!(exists[0].contains(&format!("manifest {} (", image.descriptor.digest)));
    assert_eq!(
        lines_with(&stderr, "tagged"),
        vec![format!("kiln-push: tagged {repository}:v2").as_str()]
    );
    let raw = skopeo_raw(&registry, "kiln/hello:v2").expect("tag v2 missing");
    assert_eq!(sha256_bytes(&raw), image.descriptor.digest);
}

#[test]
fn pushes_an_index_with_its_manifests() {
    if !tools_available(&[REGISTRY, "skopeo"]) {
        return;
    }
    let registry = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let w = LayoutWriter::new(&layout).unwrap();
    let amd64 = add_image(&w, "multi", "linux/amd64", &[500]);
    let arm64 = add_image(&w, "multi", "linux/arm64/v8", &[600]);
    let index = ImageIndex::new(vec![amd64.descriptor.clone(), arm64.descriptor.clone()]);
    let index_desc = w.add_json(media_types::OCI_IMAGE_INDEX, &index).unwrap();
    w.finish(vec![index_desc.clone()]).unwrap();

    let repository = format!("{}/multi", registry.host());
    let out = push(&layout, &repository, &["--tag", "1.0"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "kiln-push failed:\n{stderr}");
    assert_eq!(
        text(&out.stdout),
        format!("{repository}@{}\n", index_desc.digest)
    );
    // Children go up before the index that names them.
    let manifest_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" manifest "))
        .collect();
    assert_eq!(manifest_lines.len(), 3, "{stderr}");
    assert!(manifest_lines[2].contains(&index_desc.digest.to_string()));

    let raw = skopeo_raw(&registry, "multi:1.0").expect("tag missing");
    assert_eq!(sha256_bytes(&raw), index_desc.digest);
    for child in [&amd64, &arm64] {
        let d = &child.descriptor.digest;
        let raw = skopeo_raw(&registry, &format!("multi@{d}")).expect("child missing");
        assert_eq!(&sha256_bytes(&raw), d);
    }
}

#[test]
fn unreachable_registry_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    single_image_layout(&layout, "closed");
    let port = free_port(); // nothing listens there
    let digest_file = tmp.path().join("digest");
    let out = push(
        &layout,
        &format!("127.0.0.1:{port}/app"),
        &[
            "--tag",
            "latest",
            "--digest-file",
            digest_file.to_str().unwrap(),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&format!("registry 127.0.0.1:{port}, repository app")),
        "{stderr}"
    );
    assert!(stderr.contains("cannot reach the registry"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("tagged"), "{stderr}");
    assert!(!digest_file.exists());
}

#[test]
fn refused_manifest_leaves_no_tag() {
    if !tools_available(&[REGISTRY, "skopeo"]) {
        return;
    }
    let registry = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let w = LayoutWriter::new(&layout).unwrap();
    let config = w
        .add_json(
            media_types::OCI_IMAGE_CONFIG,
            &serde_json::json!({"os": "linux"}),
        )
        .unwrap();
    // The registry refuses a manifest whose mediaType field contradicts the
    // Content-Type it is sent with.
    let mut manifest = ImageManifest::new(config, vec![]);
    manifest.media_type = media_types::DOCKER_MANIFEST_V2.to_string();
    let desc = w
        .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
        .unwrap();
    w.finish(vec![desc]).unwrap();

    let out = push(
        &layout,
        &format!("{}/broken", registry.host()),
        &["--tag", "latest"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&format!(
            "registry {}, repository broken: uploading manifest",
            registry.host()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 400"), "{stderr}");
    assert!(stderr.contains("MANIFEST_INVALID"), "{stderr}");
    assert!(skopeo_raw(&registry, "broken:latest").is_none());
}

#[test]
fn a_corrupt_layer_is_named_with_the_manifest_naming_it_and_no_tag_is_written() {
    if !tools_available(&[REGISTRY, "skopeo"]) {
        return;
    }
    let registry = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = single_image_layout(&layout, "corrupt");
    // One byte of the small layer changed: same size, another digest.
    let layer = &image.blobs[1];
    let path = layout.join("blobs/sha256").join(layer.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let out = push(
        &layout,
        &format!("{}/corrupt", registry.host()),
        &["--tag", "latest"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "blob {layer} ({}), layer of image manifest {}, is corrupt: its content has digest {}",
            path.display(),
            image.descriptor.digest,
            sha256_bytes(&bytes)
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("index.json"), "{stderr}");
    assert!(skopeo_raw(&registry, "corrupt:latest").is_none());
}

#[test]
fn read_only_registry_reports_status_and_body() {
    if !tools_available(&[REGISTRY]) {
        return;
    }
    let registry = Registry::start(true);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    single_image_layout(&layout, "readonly");
    let out = push(&layout, &format!("{}/ro", registry.host()), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "registry {}, repository ro: uploading blob",
            registry.host()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 405"), "{stderr}");
    assert!(stderr.contains("Method not allowed"), "{stderr}");
}

#[test]
fn invalid_names_fail_before_any_network_call() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    single_image_layout(&layout, "names");
    let port = free_port();
    // A listener that records whether anyone connected.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();

    let cases: [(String, Vec<&str>, &str); 4] = [
        (
            format!("127.0.0.1:{port}/Upper"),
            vec![],
            "--repository \"127.0.0.1:",
        ),
        (
            "noregistry".to_string(),
            vec![],
            "--repository \"noregistry\"",
        ),
        ("127.0.0.1:70000/app".to_string(), vec![], "port \"70000\""),
        (
            format!("127.0.0.1:{port}/app"),
            vec!["--tag", "ok", "--tag", "-bad"],
            "--tag \"-bad\"",
        ),
    ];
    for (repository, extra, want) in cases {
        let out = push(&layout, &repository, &extra);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{repository}: {stderr}");
        assert!(
            stderr.contains(want),
            "{repository}: {stderr:?} lacks {want:?}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "kiln-push connected despite invalid names"
    );
}

#[test]
fn missing_blob_is_reported_before_pushing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = single_image_layout(&layout, "missing");
    let victim: PathBuf = layout.join("blobs/sha256").join(image.blobs[1].hex());
    std::fs::remove_file(&victim).unwrap();
    let out = push(&layout, &format!("127.0.0.1:{}/app", free_port()), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("blob {} is missing", image.blobs[1])),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot reach"), "{stderr}");
}

#[test]
fn stamped_repository_and_tags_are_expanded() {
    if !tools_available(&[REGISTRY, "skopeo"]) {
        return;
    }
    let registry = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = single_image_layout(&layout, "stamped");
    let stable = tmp.path().join("stable-status.txt");
    let volatile = tmp.path().join("volatile-status.txt");
    std::fs::write(
        &stable,
        "STABLE_TEAM kiln\nBUILD_EMBED_LABEL 1.2.3\nBAD Not Valid\n",
    )
    .unwrap();
    std::fs::write(&volatile, "BUILD_TIMESTAMP 1700000000\n").unwrap();
    let stamps = [
        "--stamp",
        stable.to_str().unwrap(),
        "--stamp",
        volatile.to_str().unwrap(),
    ];

    let repository = format!("{}/{{STABLE_TEAM}}/app", registry.host());
    let tags = [
        "--tag",
        "v{BUILD_EMBED_LABEL}-{BUILD_TIMESTAMP}",
        "--tag",
        "latest",
    ];
    let out = push(&layout, &repository, &[&stamps[..], &tags].concat());
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let expanded = format!("{}/kiln/app", registry.host());
    assert_eq!(
        text(&out.stdout),
        format!("{expanded}@{}\n", image.descriptor.digest)
    );
    assert_eq!(
        lines_with(&stderr, "tagged"),
        [
            format!("kiln-push: tagged {expanded}:v1.2.3-1700000000"),
            format!("kiln-push: tagged {expanded}:latest"),
        ]
    );
    for tag in ["v1.2.3-1700000000", "latest"] {
        let raw = skopeo_raw(&registry, &format!("kiln/app:{tag}")).expect(tag);
        assert_eq!(sha256_bytes(&raw), image.descriptor.digest, "{tag}");
    }

    // Errors name the flag and the value as given (and the stamped value).
    for (repository, extra, want) in [
        (
            repository.clone(),
            [&stamps[..], &["--tag", "{NOPE}"]].concat(),
            "kiln-push: --tag \"{NOPE}\": unknown stamp variable {NOPE}",
        ),
        (
            format!("{}/{{BAD}}", registry.host()),
            stamps.to_vec(),
            "}\" (stamped: \"127.0.0.1:",
        ),
        // No --stamp: a placeholder is an invalid tag.
        (
            repository.clone(),
            vec!["--tag", "v{BUILD_EMBED_LABEL}"],
            "kiln-push: --repository \"127.0.0.1:",
        ),
        (
            expanded.clone(),
            vec!["--tag", "v{BUILD_EMBED_LABEL}"],
            "kiln-push: --tag \"v{BUILD_EMBED_LABEL}\": ",
        ),
    ] {
        let out = push(&layout, &repository, &extra);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "{stderr:?} lacks {want:?}");
        assert!(!stderr.contains("pushed"), "{stderr}");
    }
}

/// An SBOM of `image` as the image rule writes it (kiln_oci::sbom).
fn write_sbom(path: &Path, image: &Image) {
    let subject = kiln_oci::sbom::Subject {
        name: "//test:image".into(),
        platform: "linux/amd64".into(),
        digest: image.descriptor.digest.clone(),
        created: "1970-01-01T00:00:00Z".into(),
    };
    let doc = kiln_oci::sbom::document(&subject, None, &Default::default(), "test").unwrap();
    std::fs::write(path, doc).unwrap();
}

#[test]
fn attaches_sboms_signs_and_a_second_push_writes_nothing() {
    if !tools_available(&[REGISTRY, "skopeo"]) {
        return;
    }
    let registry = Registry::start(false);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = single_image_layout(&layout, "signed");
    let sbom = tmp.path().join("image.spdx.json");
    write_sbom(&sbom, &image);
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cosign/cosign.key");
    let repository = format!("{}/kiln/signed", registry.host());
    let args = [
        "--tag",
        "v1",
        "--sbom",
        sbom.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
    ];
    let run = |password: &str| {
        Command::new(env!("CARGO_BIN_EXE_kiln-push"))
            .arg("--layout")
            .arg(&layout)
            .arg("--repository")
            .arg(&repository)
            .args(args)
            .env("COSIGN_PASSWORD", password)
            .output()
            .unwrap()
    };

    let out = run("not the password");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("wrong password"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        skopeo_raw(&registry, "kiln/signed:v1").is_none(),
        "nothing pushed"
    );

    let out = run("pw");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "kiln-push failed:\n{stderr}");
    assert_eq!(lines_with(&stderr, "attached").len(), 1, "{stderr}");
    assert_eq!(lines_with(&stderr, "signed").len(), 1, "{stderr}");
    let hex = image.descriptor.digest.hex();
    let fallback: serde_json::Value = serde_json::from_slice(
        &skopeo_raw(&registry, &format!("kiln/signed:sha256-{hex}")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        fallback["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    let referrer = fallback["manifests"][0]["digest"].as_str().unwrap();
    let artifact: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&registry, &format!("kiln/signed@{referrer}")).unwrap())
            .unwrap();
    assert_eq!(
        artifact["subject"]["digest"],
        image.descriptor.digest.to_string()
    );
    let signature: serde_json::Value = serde_json::from_slice(
        &skopeo_raw(&registry, &format!("kiln/signed:sha256-{hex}.sig")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        signature["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );

    let out = run("pw");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "second kiln-push failed:\n{stderr}");
    assert_eq!(lines_with(&stderr, "up to date:").len(), 1, "{stderr}");
    assert_eq!(
        lines_with(&stderr, "exists")
            .iter()
            .filter(|l| l.contains("signature"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("0 manifests written") || !stderr.contains("manifests written"),
        "{stderr}"
    );
    assert!(
        lines_with(&stderr, "pushed").is_empty() && lines_with(&stderr, "signed").is_empty(),
        "{stderr}"
    );
}
