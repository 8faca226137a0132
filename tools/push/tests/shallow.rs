//! Shallow base images end to end, against real registries (Debian's
//! docker-registry): a two-platform base pushed with skopeo, pulled shallow
//! by kiln-pull, an image built on it by kiln-image (a spec as the rules
//! write it), indexed by kiln-index, and pushed by kiln-push, which must get
//! the base layers to the destination registry-side only (mounted within a
//! registry, copied across) and never upload them from local bytes. skopeo
//! (a tool we did not write) then checks that what was pushed is complete.
//!
//! kiln-pull, kiln-image and kiln-index are other packages' binaries, found
//! next to kiln-push (`cargo test` of the workspace builds them all).
//! Nothing is skipped: a missing docker-registry, skopeo or htpasswd fails
//! the test with what to install.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kiln_oci::blob_set::{BlobSet, Link};
use kiln_oci::{Digest, Layout, Sources};
use kiln_testsupport::registry::{
    basic_auth, docker_config, run_ok, skopeo_digest, skopeo_push, write_layout, Action, Proxy,
    Registry,
};
use kiln_testsupport::{files, layer_fixture, run_kiln_image, sibling_bin};
use serde_json::json;

/// Runs tool `name` in `dir` with `DOCKER_CONFIG=docker_config`.
fn tool(name: &str, dir: &Path, args: &[&str], docker_config: &Path) -> Output {
    let program = sibling_bin(env!("CARGO_BIN_EXE_kiln-push"), name);
    Command::new(&program)
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(out: Output) -> String {
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "failed:\n{stderr}");
    stderr
}

/// `kiln-push: <word> …` lines.
fn lines<'a>(stderr: &'a str, word: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.starts_with(&format!("kiln-push: {word} ")))
        .collect()
}

/// The blob digests named by `kiln-push: <word> blob …` lines.
fn blob_lines(stderr: &str, word: &str) -> BTreeSet<String> {
    lines(stderr, word)
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("kiln-push: {word} blob ")))
        .map(|rest| rest.split(' ').next().unwrap().to_string())
        .collect()
}

fn set(digests: &[&Digest]) -> BTreeSet<String> {
    digests.iter().map(|d| d.to_string()).collect()
}

/// A new layer for `arch` (gzip tar, descriptor, listing) in `dir`, named
/// as kiln-layer's outputs are.
fn layer(dir: &Path, arch: &str) -> serde_json::Value {
    let content = format!("hello from {arch}\n");
    layer_fixture(dir, &format!("app_{arch}"), content.as_bytes())
}

/// kiln-image on `base` for `platform`, as the kiln_image rule runs it;
/// the layout (what the oci_layout output group writes) is `<name>_layout`.
fn image(dir: &Path, name: &str, base: &str, platform: &str, _docker_config: &Path) {
    let arch = platform.split('/').nth(1).unwrap();
    let spec = json!({
        // The same target for every image: it is part of the config's history.
        "target": format!("//app:image_{arch}"),
        "base": {"layout": base, "listing": null},
        "layers": [layer(dir, arch)],
        "platform": platform.parse::<kiln_oci::Platform>().unwrap(),
        "config": {"entrypoint": ["/app/hello"], "env": [["PATH", "$PATH:/app"]]},
    });
    let bin = sibling_bin(env!("CARGO_BIN_EXE_kiln-push"), "kiln-image");
    ok(run_kiln_image(bin.to_str().unwrap(), dir, name, &spec, &[]));
}

/// kiln-index of `images` (image layouts `<image>_layout`, whose manifest
/// descriptors are `<image>.descriptor.json`) into `<name>_layout`, as the
/// image_index rule and its oci_layout output group make it.
fn index(dir: &Path, name: &str, images: &[&str], docker_config: &Path) {
    let stems: Vec<&str> = images
        .iter()
        .map(|l| l.strip_suffix("_layout").expect("an image layout"))
        .collect();
    let descriptors: Vec<_> = stems
        .iter()
        .map(|s| json!({"descriptor": format!("{s}.descriptor.json")}))
        .collect();
    let spec = json!({"target": "//app:index", "images": descriptors});
    fs::write(dir.join(format!("{name}.spec.json")), spec.to_string()).unwrap();
    ok(tool(
        "kiln-index",
        dir,
        &[
            "--spec",
            &format!("{name}.spec.json"),
            "--index",
            &format!("{name}.index.json"),
            "--descriptor",
            &format!("{name}.descriptor.json"),
            "--digest",
            &format!("{name}.digest"),
        ],
        docker_config,
    ));
    let set = json!({
        "target": "//app:index",
        "top": {"blob": format!("{name}.index.json"), "descriptor": format!("{name}.descriptor.json")},
        "layouts": images,
        "ref_name": "v1",
    });
    let set = BlobSet::from_spec(serde_json::from_value(set).unwrap(), dir).unwrap();
    set.write_layout(&dir.join(format!("{name}_layout")), Link::HardOrCopy)
        .unwrap();
}

fn push(dir: &Path, layout: &str, repository: &str, docker_config: &Path) -> Output {
    tool(
        "kiln-push",
        dir,
        &[
            "--layout",
            layout,
            "--repository",
            repository,
            "--tag",
            "v1",
        ],
        docker_config,
    )
}

/// `skopeo copy --all` of `docker://reference` into an OCI layout: skopeo
/// fetches every manifest and blob and checks their digests, so this
/// succeeds only if the pushed image is complete.
fn skopeo_copy_all(reference: &str, dest: &Path, creds: Option<&str>) {
    let src = format!("docker://{reference}");
    let dest = format!("oci:{}:copy", dest.display());
    let mut args = vec!["copy", "--all", "--src-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--src-creds", c]);
    }
    args.extend([src.as_str(), dest.as_str()]);
    run_ok("skopeo", &args);
}

#[test]
fn shallow_base_to_push_mounts_copies_and_finds() {
    let a = Registry::start();
    let b = Registry::start();
    // Registry A is reached through a recording proxy, which can also play
    // a registry that declines mounts (answers 202 with a session).
    let refuse_mounts = Arc::new(AtomicBool::new(false));
    let proxy = {
        let refuse = refuse_mounts.clone();
        Proxy::start(&a.addr, move |r| {
            if refuse.load(Ordering::SeqCst) && r.method == "POST" && r.query().contains("mount=") {
                let repo = r.path().trim_start_matches("/v2/");
                let repo = repo.trim_end_matches("/blobs/uploads/");
                Action::Respond {
                    status: 202,
                    headers: vec![(
                        "Location".into(),
                        format!("/v2/{repo}/blobs/uploads/0b5a3c7e-6b3c-4c1e-9f3a-2f1e0d9c8b7a"),
                    )],
                    body: Vec::new(),
                }
            } else {
                Action::Forward { corrupt: false }
            }
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let no_config = tempfile::tempdir().unwrap();
    let nc = no_config.path();

    // The base: three platforms in registry A, two of them pulled.
    let base = write_layout(
        &d.join("src"),
        &["linux/amd64", "linux/arm64/v8", "linux/s390x"],
        true,
        "v1",
    );
    skopeo_push(&base, "v1", &format!("{}/base:v1", a.addr), None);
    let top = base.top.digest.to_string();
    ok(tool(
        "kiln-pull",
        d,
        &[
            "--image",
            &format!("{}/base", proxy.addr),
            "--digest",
            &top,
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            "--output",
            "pulled",
        ],
        nc,
    ));
    let (amd, arm) = (base.image("linux/amd64"), base.image("linux/arm64/v8"));
    let base_layers = set(&[
        &amd.layers[0].digest,
        &amd.layers[1].digest,
        &arm.layers[1].digest,
    ]);

    // Images on the shallow base, and on the complete one (fetch-blobs):
    // the same bytes.
    ok(tool(
        "kiln-pull",
        d,
        &["fetch-blobs", "--layout", "pulled", "--output", "full"],
        nc,
    ));
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        image(d, &format!("img_{arch}"), "pulled", platform, nc);
        image(d, &format!("full_{arch}"), "full", platform, nc);
        for f in ["digest", "config.json", "descriptor.json"] {
            assert_eq!(
                fs::read(d.join(format!("img_{arch}.{f}"))).unwrap(),
                fs::read(d.join(format!("full_{arch}.{f}"))).unwrap(),
                "{arch} {f}"
            );
        }
        assert!(!d
            .join(format!("full_{arch}_layout/kiln-source.json"))
            .exists());
    }
    index(d, "app", &["img_amd64_layout", "img_arm64_layout"], nc);
    index(
        d,
        "full_app",
        &["full_amd64_layout", "full_arm64_layout"],
        nc,
    );
    assert_eq!(
        fs::read(d.join("app.digest")).unwrap(),
        fs::read(d.join("full_app.digest")).unwrap()
    );
    let index_digest = fs::read_to_string(d.join("app.digest")).unwrap();

    // The index layout lacks exactly the base layers, listed with their
    // source.
    let sources = Sources::load(&d.join("app_layout")).unwrap().unwrap();
    assert_eq!(
        sources
            .blobs
            .keys()
            .map(|k| k.to_string())
            .collect::<BTreeSet<_>>(),
        base_layers
    );
    for blob in sources.blobs.values() {
        assert_eq!(
            (blob.registry.as_str(), blob.repository.as_str()),
            (proxy.addr.as_str(), "base")
        );
    }
    let app = Layout::open(d.join("app_layout")).unwrap();
    for digest in sources.blobs.keys() {
        assert!(!app.blob_path(digest).exists());
    }
    // `fetch-blobs` (what the rules run before loading into Docker) makes
    // it the index built on the complete base, file for file.
    ok(tool(
        "kiln-pull",
        d,
        &[
            "fetch-blobs",
            "--layout",
            "app_layout",
            "--output",
            "app_full",
        ],
        nc,
    ));
    assert_eq!(
        files(&d.join("app_full")),
        files(&d.join("full_app_layout"))
    );
    assert_eq!(
        fs::read(d.join("app_full/index.json")).unwrap(),
        fs::read(d.join("full_app_layout/index.json")).unwrap()
    );
    // On a complete layout it is a (checked) copy.
    let stderr = ok(tool(
        "kiln-pull",
        d,
        &[
            "fetch-blobs",
            "--layout",
            "full_app_layout",
            "--output",
            "full_again",
        ],
        nc,
    ));
    assert!(
        stderr.contains("it is complete, copied as it is"),
        "{stderr}"
    );
    assert_eq!(
        files(&d.join("full_again")),
        files(&d.join("full_app_layout"))
    );

    // (a) Same registry: the base layers are mounted, nothing of them is
    // uploaded or even downloaded.
    let before = proxy.requests().len();
    let stderr = ok(push(d, "app_layout", &format!("{}/app", proxy.addr), nc));
    assert_eq!(blob_lines(&stderr, "mounted"), base_layers, "{stderr}");
    for l in lines(&stderr, "mounted") {
        assert!(l.ends_with(&format!("from {}/base", proxy.addr)), "{l}");
    }
    assert!(lines(&stderr, "copied").is_empty(), "{stderr}");
    assert!(
        blob_lines(&stderr, "pushed").is_disjoint(&base_layers),
        "{stderr}"
    );
    assert_eq!(
        blob_lines(&stderr, "pushed").len(),
        4,
        "2 configs, 2 layers: {stderr}"
    );
    assert_eq!(lines(&stderr, "pushed manifest").len(), 3, "{stderr}");
    let requests = proxy.requests()[before..].to_vec();
    for r in &requests {
        let touches_base = base_layers.iter().any(|d| r.target.contains(d.as_str()));
        let upload = r.method == "PUT" || r.method == "PATCH";
        assert!(
            !(touches_base && (upload || r.method == "GET")),
            "{} {} moved a base layer",
            r.method,
            r.target
        );
        if r.method == "PUT" && r.path().contains("/blobs/uploads/") {
            assert!(r.body.len() < 300 * 1024, "a base-layer-sized upload");
        }
    }
    let mounts = requests
        .iter()
        .filter(|r| {
            r.method == "POST" && r.query().contains("mount=") && r.query().contains("from=base")
        })
        .count();
    assert_eq!(mounts, 3);
    assert_eq!(
        skopeo_digest(&format!("{}/app:v1", a.addr)).to_string(),
        index_digest
    );
    skopeo_copy_all(&format!("{}/app:v1", a.addr), &d.join("copy_a"), None);

    // (b) Another registry: the base layers are copied from the source.
    let stderr = ok(push(d, "app_layout", &format!("{}/app", b.addr), nc));
    assert_eq!(blob_lines(&stderr, "copied"), base_layers, "{stderr}");
    for l in lines(&stderr, "copied") {
        assert!(l.ends_with(&format!("from {}/base", proxy.addr)), "{l}");
    }
    assert!(lines(&stderr, "mounted").is_empty(), "{stderr}");
    assert_eq!(blob_lines(&stderr, "pushed").len(), 4, "{stderr}");
    skopeo_copy_all(&format!("{}/app:v1", b.addr), &d.join("copy_b"), None);
    // What skopeo copied out has the base layers, byte for byte.
    let copied = Layout::open(d.join("copy_b")).unwrap();
    for layer in [&amd.layers[0], &amd.layers[1], &arm.layers[1]] {
        assert_eq!(
            kiln_oci::sha256_file(&copied.blob_path(&layer.digest)).unwrap(),
            (layer.digest.clone(), layer.size)
        );
    }

    // (c) Again, to both: the tag names the index already; nothing is
    // looked at blob by blob, nothing moves.
    for repository in [format!("{}/app", proxy.addr), format!("{}/app", b.addr)] {
        let before = proxy.requests().len();
        let stderr = ok(push(d, "app_layout", &repository, nc));
        assert!(
            stderr.contains(&format!(
                "kiln-push: up to date: {repository} (every tag names {index_digest})"
            )),
            "{stderr}"
        );
        for word in ["exists", "pushed", "mounted", "copied", "tagged"] {
            assert!(lines(&stderr, word).is_empty(), "{stderr}");
        }
        if repository.starts_with(&proxy.addr) {
            let methods: Vec<String> = proxy.requests()[before..]
                .iter()
                .map(|r| r.method.clone())
                .collect();
            assert_eq!(methods, vec!["GET", "HEAD"], "GET /v2/, HEAD of the tag");
        }
    }

    // A registry that declines the mount (202): the blob is copied, and the
    // upload session it opened instead is cancelled.
    refuse_mounts.store(true, Ordering::SeqCst);
    let before = proxy.requests().len();
    let stderr = ok(push(d, "app_layout", &format!("{}/app2", proxy.addr), nc));
    assert_eq!(blob_lines(&stderr, "copied"), base_layers, "{stderr}");
    assert!(lines(&stderr, "mounted").is_empty(), "{stderr}");
    let requests = proxy.requests()[before..].to_vec();
    let declined = requests
        .iter()
        .filter(|r| r.method == "POST" && r.query().contains("mount="))
        .count();
    let cancelled = requests.iter().filter(|r| r.method == "DELETE").count();
    assert_eq!((declined, cancelled), (3, 3));
    skopeo_copy_all(&format!("{}/app2:v1", a.addr), &d.join("copy_a2"), None);

    // The complete index pushes its base layers as ordinary blobs.
    let stderr = ok(push(
        d,
        "full_app_layout",
        &format!("{}/complete", b.addr),
        nc,
    ));
    assert!(blob_lines(&stderr, "exists").is_empty(), "{stderr}");
    assert_eq!(blob_lines(&stderr, "pushed").len(), 7, "{stderr}");
    assert!(lines(&stderr, "copied").is_empty(), "{stderr}");
}

#[test]
fn push_with_basic_auth_from_docker_config() {
    let a = Registry::start();
    let c = Registry::start_with_htpasswd("kiln", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let no_config = tempfile::tempdir().unwrap();
    let nc = no_config.path();

    let base = write_layout(&d.join("src"), &["linux/amd64"], false, "v1");
    skopeo_push(&base, "v1", &format!("{}/kiln/base:v1", a.addr), None);
    ok(tool(
        "kiln-pull",
        d,
        &[
            "--image",
            &format!("{}/kiln/base", a.addr),
            "--digest",
            &base.top.digest.to_string(),
            "--platform",
            "linux/amd64",
            "--output",
            "pulled",
        ],
        nc,
    ));
    image(d, "img", "pulled", "linux/amd64", nc);
    let layers = &base.image("linux/amd64").layers;
    let base_layers = set(&[&layers[0].digest, &layers[1].digest]);
    let repository = format!("{}/kiln/app", c.addr);

    // Without credentials the registry refuses, and the error says how it
    // was accessed.
    let out = push(d, "img_layout", &repository, nc);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("anonymously"), "{stderr}");
    assert!(lines(&stderr, "tagged").is_empty(), "{stderr}");

    // With `auths` in $DOCKER_CONFIG/config.json.
    let config = tempfile::tempdir().unwrap();
    docker_config(
        config.path(),
        &json!({"auths": {c.addr.clone(): {"auth": basic_auth("kiln", "s3cret")}}}),
    );
    let out = push(d, "img_layout", &repository, config.path());
    let stderr = ok(out);
    assert_eq!(blob_lines(&stderr, "copied"), base_layers, "{stderr}");
    assert_eq!(
        lines(&stderr, "tagged"),
        [format!("kiln-push: tagged {repository}:v1")]
    );
    let digest = fs::read_to_string(d.join("img.digest")).unwrap();
    skopeo_copy_all(
        &format!("{repository}:v1"),
        &d.join("copy"),
        Some("kiln:s3cret"),
    );
    let copied = Layout::open(d.join("copy")).unwrap();
    let top = copied.top().unwrap();
    assert_eq!(top.digest.to_string(), digest);
}
