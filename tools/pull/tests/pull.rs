//! kiln-pull against a real registry (distribution 2.8), run as the binary
//! the repository rule runs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use kiln_oci::{media_types, Digest};
use kiln_testsupport::registry::{
    auth_registry_with_image, basic_auth, docker_config, run_ok, skopeo_push, write_layout, Action,
    Proxy, Registry, TestLayout,
};

const PULL: &str = env!("CARGO_BIN_EXE_kiln-pull");

/// Runs kiln-pull with `DOCKER_CONFIG=docker_config` (never the user's own
/// config) and `extra_path` in front of PATH.
fn kiln_pull(args: &[&str], docker_config: &Path, extra_path: Option<&Path>) -> Output {
    let mut cmd = Command::new(PULL);
    cmd.args(args).env("DOCKER_CONFIG", docker_config);
    if let Some(dir) = extra_path {
        let mut path = OsString::from(dir);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        cmd.env("PATH", path);
    }
    cmd.output().expect("running kiln-pull")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "kiln-pull failed: {}", stderr(&out));
    out
}

fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "kiln-pull succeeded: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("kiln-pull: "), "{err}");
    err
}

use kiln_testsupport::files;

fn blob(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Nothing but `expected` in `dir`: no output and no temporary left behind.
fn only(dir: &Path, expected: &[&str]) {
    let names: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, expected, "in {}", dir.display());
}

struct Setup {
    registry: Registry,
    layout: TestLayout,
    tmp: tempfile::TempDir,
    /// An empty DOCKER_CONFIG.
    no_config: tempfile::TempDir,
}

fn setup(platforms: &[&str], index: bool) -> Setup {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("src"), platforms, index, "v1");
    skopeo_push(
        &layout,
        "v1",
        &format!("{}/kiln/base:v1", registry.addr),
        None,
    );
    Setup {
        registry,
        layout,
        tmp,
        no_config: tempfile::tempdir().unwrap(),
    }
}

#[test]
fn pull_index_by_digest_keeps_requested_platforms_only() {
    let s = setup(&["linux/amd64", "linux/arm64/v8", "linux/s390x"], true);
    let image = format!("{}/kiln/base", s.registry.addr);
    let work = s.tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = work.join("layout");
    let digest = s.layout.top.digest.to_string();
    let o = ok(kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            &digest,
            "--tag",
            "v1",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            "--output",
            out.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    let (amd, arm, s390) = (
        s.layout.image("linux/amd64"),
        s.layout.image("linux/arm64/v8"),
        s.layout.image("linux/s390x"),
    );
    assert!(
        stderr(&o).contains(&format!(
            "kiln-pull: pulled {image}@{digest} (linux/amd64, linux/arm64/v8): 3 layer blobs"
        )),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());

    // The index (original bytes), the two manifests and configs; no layer,
    // nothing of s390x.
    let expected: BTreeSet<String> = [
        "oci-layout".to_string(),
        "index.json".to_string(),
        "kiln-source.json".to_string(),
        blob(&s.layout.top.digest),
        blob(&amd.manifest.digest),
        blob(&amd.config.digest),
        blob(&arm.manifest.digest),
        blob(&arm.config.digest),
    ]
    .into();
    assert_eq!(files(&out), expected);
    assert_eq!(
        std::fs::read(out.join(blob(&s.layout.top.digest))).unwrap(),
        s.layout.top_bytes
    );
    assert_eq!(
        std::fs::read_to_string(out.join("index.json")).unwrap(),
        format!(
            r#"{{"manifests":[{{"annotations":{{"org.opencontainers.image.ref.name":"v1"}},"digest":"{digest}","mediaType":"{}","size":{}}}],"mediaType":"{}","schemaVersion":2}}"#,
            media_types::OCI_IMAGE_INDEX,
            s.layout.top.size,
            media_types::OCI_IMAGE_INDEX
        )
    );
    // kiln-source.json: every layer of the kept images, once; canonical.
    let layers = [&amd.layers[0], &amd.layers[1], &arm.layers[1]];
    let mut blobs = serde_json::Map::new();
    for l in layers {
        blobs.insert(
            l.digest.to_string(),
            serde_json::json!({
                "mediaType": l.media_type,
                "size": l.size,
                "registry": s.registry.addr,
                "repository": "kiln/base",
            }),
        );
    }
    assert!(!blobs.contains_key(&s390.layers[1].digest.to_string()));
    let source = serde_json::json!({"blobs": blobs});
    assert_eq!(
        std::fs::read(out.join("kiln-source.json")).unwrap(),
        kiln_oci::canonical::to_vec(&source).unwrap()
    );
    only(&work, &["layout"]);

    // fetch-blobs: a complete layout that skopeo and umoci read.
    let full = work.join("full");
    let o = ok(kiln_pull(
        &[
            "fetch-blobs",
            "--layout",
            out.to_str().unwrap(),
            "--output",
            full.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    let total: u64 = layers.iter().map(|l| l.size).sum();
    assert!(
        stderr(&o).contains(&format!(
            "kiln-pull: fetched 3 blobs ({total} bytes) from {image}"
        )),
        "{}",
        stderr(&o)
    );
    let mut expected_full = expected.clone();
    expected_full.remove("kiln-source.json");
    for l in layers {
        expected_full.insert(blob(&l.digest));
    }
    assert_eq!(files(&full), expected_full);
    assert_eq!(
        std::fs::read(full.join("index.json")).unwrap(),
        std::fs::read(out.join("index.json")).unwrap()
    );
    for l in layers {
        assert_eq!(
            kiln_oci::sha256_file(&full.join(blob(&l.digest))).unwrap(),
            (l.digest.clone(), l.size)
        );
    }
    for (arch, want) in [("amd64", "amd64"), ("arm64", "arm64")] {
        let o = run_ok(
            "skopeo",
            &[
                "--override-arch",
                arch,
                "inspect",
                &format!("oci:{}:v1", full.display()),
            ],
        );
        let inspect: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(inspect["Architecture"], want);
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    }
    only(&work, &["layout", "full"]);

    // umoci cannot unpack an index ("tag is ambiguous"): skopeo picks the
    // arm64 image out of the layout (reading and verifying every blob it
    // copies), then umoci unpacks that.
    let arm64 = s.tmp.path().join("arm64");
    run_ok(
        "skopeo",
        &[
            "--override-arch",
            "arm64",
            "copy",
            &format!("oci:{}:v1", full.display()),
            &format!("oci:{}:arm64", arm64.display()),
        ],
    );
    let bundle = s.tmp.path().join("bundle");
    run_ok(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:arm64", arm64.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/kiln-arm64")).unwrap(),
        b"linux/arm64/v8"
    );
}

#[test]
fn single_manifest_fetch_blobs_unpacks_with_umoci() {
    let s = setup(&["linux/arm64/v8"], false);
    let image = format!("{}/kiln/base", s.registry.addr);
    let digest = s.layout.top.digest.to_string();
    let out = s.tmp.path().join("layout");
    ok(kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            &digest,
            "--tag",
            "v1",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            "--output",
            out.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["platform"],
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
    );
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    let full = s.tmp.path().join("full");
    ok(kiln_pull(
        &[
            "fetch-blobs",
            "--layout",
            out.to_str().unwrap(),
            "--output",
            full.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    let bundle = s.tmp.path().join("bundle");
    run_ok(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", full.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/kiln-arm64")).unwrap(),
        b"linux/arm64/v8"
    );
    assert_eq!(
        std::fs::metadata(bundle.join("rootfs/etc/kiln-base"))
            .unwrap()
            .len(),
        300 * 1024
    );
    let o = run_ok(
        "skopeo",
        &["inspect", &format!("oci:{}:v1", full.display())],
    );
    let inspect: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());

    // A single manifest for another platform than the ones asked for.
    let other = s.tmp.path().join("other");
    let err = failed(kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            other.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    assert_eq!(
        err,
        format!(
            "kiln-pull: {image}: image manifest {digest} is for linux/arm64/v8, not for linux/amd64\n"
        )
    );
    assert!(!other.exists());
}

#[test]
fn tags_need_allow_tag() {
    let s = setup(&["linux/amd64"], false);
    let image = format!("{}/kiln/base", s.registry.addr);
    let out = s.tmp.path().join("layout");
    let args = |extra: &[&'static str]| {
        let mut a: Vec<String> = [
            "--image",
            &image,
            "--tag",
            "v1",
            "--platform",
            "linux/amd64",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push("--output".into());
        a.push(out.display().to_string());
        a
    };
    let refused = args(&[]);
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let err = failed(kiln_pull(&refused, s.no_config.path(), None));
    assert!(
        err.starts_with(&format!(
            "kiln-pull: {image}: --tag \"v1\" without --digest: pulling by tag is not reproducible"
        )),
        "{err}"
    );
    assert!(err.contains("--allow-tag"), "{err}");
    assert!(!out.exists());

    let allowed = args(&["--allow-tag"]);
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let o = ok(kiln_pull(&allowed, s.no_config.path(), None));
    let digest = s.layout.top.digest.to_string();
    assert!(
        stderr(&o).contains(&format!(
            "kiln-pull: warning: {image}: pulled by tag \"v1\", so the build is not reproducible: the tag resolved to {digest}"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("resolved-digest")).unwrap(),
        digest
    );

    // Bad values are refused before anything else, naming the flag.
    let err = failed(kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            "sha256:abc",
            "--platform",
            "linux/amd64",
            "--output",
            "x",
        ],
        s.no_config.path(),
        None,
    ));
    assert!(
        err.contains(": --digest: invalid digest \"sha256:abc\""),
        "{err}"
    );
    let err = failed(kiln_pull(
        &[
            "--image",
            "Kiln/Base",
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            "x",
        ],
        s.no_config.path(),
        None,
    ));
    assert!(err.starts_with("kiln-pull: Kiln/Base: --image: "), "{err}");
    let err = failed(kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            &digest,
            "--platform",
            "linux",
            "--output",
            "x",
        ],
        s.no_config.path(),
        None,
    ));
    assert!(
        err.contains("--platform: invalid platform \"linux\""),
        "{err}"
    );
}

#[test]
fn missing_platform_is_an_error_listing_what_the_index_has() {
    let s = setup(&["linux/amd64", "linux/arm64/v8"], true);
    let image = format!("{}/kiln/base", s.registry.addr);
    let digest = s.layout.top.digest.to_string();
    let out = s.tmp.path().join("layout");
    let err = failed(kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/ppc64le",
            "--output",
            out.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    assert_eq!(
        err,
        format!(
            "kiln-pull: {image}: image index {digest}: no image for platform linux/ppc64le; \
             there are images for: linux/amd64, linux/arm64/v8\n"
        )
    );
    assert!(!out.exists());
    only(s.tmp.path(), &["src"]);
}

#[test]
fn basic_auth_from_docker_config_auths() {
    let (registry, tmp, layout) = auth_registry_with_image("kiln", "s3cret-pw");
    let image = format!("{}/kiln/base", registry.addr);
    let digest = layout.top.digest.to_string();
    let good = tmp.path().join("good");
    docker_config(
        &good,
        &serde_json::json!({"auths": {registry.addr.clone(): {"auth": basic_auth("kiln", "s3cret-pw")}}}),
    );
    let out = tmp.path().join("layout");
    let pull = |config: &Path, out: &Path| {
        kiln_pull(
            &[
                "--image",
                &image,
                "--digest",
                &digest,
                "--platform",
                "linux/amd64",
                "--output",
                out.to_str().unwrap(),
            ],
            config,
            None,
        )
    };
    ok(pull(&good, &out));
    // The credentials serve fetch-blobs too.
    let full = tmp.path().join("full");
    ok(kiln_pull(
        &[
            "fetch-blobs",
            "--layout",
            out.to_str().unwrap(),
            "--output",
            full.to_str().unwrap(),
        ],
        &good,
        None,
    ));
    assert!(full.join(blob(&layout.images[0].layers[1].digest)).exists());

    let bad = tmp.path().join("bad");
    docker_config(
        &bad,
        &serde_json::json!({"auths": {registry.addr.clone(): {"auth": basic_auth("kiln", "wrong-pw")}}}),
    );
    let out = tmp.path().join("refused");
    let err = failed(pull(&bad, &out));
    assert!(
        err.starts_with(&format!(
            "kiln-pull: {image}: registry {}, repository kiln/base: fetching manifest {digest}: \
             HTTP 401 Unauthorized from http://{}/v2/kiln/base/manifests/{digest}: ",
            registry.addr, registry.addr
        )),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "(the registry was accessed using credentials for user \"kiln\" from auths[\"{}\"] in {})\n",
            registry.addr,
            bad.join("config.json").display()
        )),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");
    assert!(!out.exists());

    let empty = tempfile::tempdir().unwrap();
    let err = failed(pull(empty.path(), &out));
    assert!(
        err.contains(&format!(
            "(the registry was accessed anonymously: no credentials for {}: there is no {})",
            registry.addr,
            empty.path().join("config.json").display()
        )),
        "{err}"
    );
}

#[test]
fn credential_helper_on_path() {
    let registry = Registry::start_with_htpasswd("kiln", "helper-pw");
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("src"), &["linux/amd64"], false, "v1");
    skopeo_push(
        &layout,
        "v1",
        &format!("{}/kiln/base:v1", registry.addr),
        Some("kiln:helper-pw"),
    );
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n\
             [ \"$1\" = get ] || exit 2\n\
             host=$(cat)\n\
             echo \"$host\" >> \"{}\"\n\
             if [ \"$host\" = \"{}\" ]; then\n\
               printf '{{\"ServerURL\":\"%s\",\"Username\":\"kiln\",\"Secret\":\"helper-pw\"}}' \"$host\"\n\
             else\n\
               echo 'credentials not found in native keychain'; exit 1\n\
             fi\n",
            tmp.path().join("asked").display(),
            registry.addr
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let image = format!("{}/kiln/base", registry.addr);
    let digest = layout.top.digest.to_string();
    let config = tmp.path().join("docker");
    docker_config(
        &config,
        &serde_json::json!({
            "credHelpers": {registry.addr.clone(): "kilntest"},
            "auths": {registry.addr.clone(): {"auth": basic_auth("kiln", "not-used")}}
        }),
    );
    let out = tmp.path().join("layout");
    ok(kiln_pull(
        &[
            "--image",
            &image,
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().unwrap(),
        ],
        &config,
        Some(&bin),
    ));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("asked")).unwrap(),
        format!("{}\n", registry.addr)
    );

    // A credsStore that has nothing for the registry: anonymous, and the
    // refusal says which helper was asked.
    let store = tmp.path().join("store");
    docker_config(
        &store,
        &serde_json::json!({"credsStore": "kilntest", "credHelpers": {"other.example": "kilntest"}}),
    );
    let other = tmp.path().join("other-registry");
    std::fs::write(tmp.path().join("asked"), "").unwrap();
    let proxy = Proxy::start(&registry.addr, |_| Action::Forward { corrupt: false });
    let via_proxy = format!("{}/kiln/base", proxy.addr);
    let err = failed(kiln_pull(
        &[
            "--image",
            &via_proxy,
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            other.to_str().unwrap(),
        ],
        &store,
        Some(&bin),
    ));
    assert!(
        err.contains(&format!(
            "HTTP 401 Unauthorized from http://{}/v2/kiln/base/manifests/{digest}",
            proxy.addr
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "(the registry was accessed anonymously: no credentials for {} in {} \
             (credential helper docker-credential-kilntest (credsStore in {}) has none for {}))",
            proxy.addr,
            store.join("config.json").display(),
            store.join("config.json").display(),
            proxy.addr
        )),
        "{err}"
    );
    assert!(!other.exists());
}

#[test]
fn corrupted_blobs_leave_no_output() {
    let s = setup(&["linux/amd64"], false);
    let image = &s.layout.images[0];
    let digest = s.layout.top.digest.to_string();
    let work = s.tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();

    // The config is fetched by the pull itself.
    let proxy = Proxy::corrupting(&s.registry.addr, &image.config.digest);
    let via_proxy = format!("{}/kiln/base", proxy.addr);
    let out = work.join("layout");
    let err = failed(kiln_pull(
        &[
            "--image",
            &via_proxy,
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    assert!(
        err.starts_with(&format!(
            "kiln-pull: {via_proxy}: registry {}, repository kiln/base: fetching blob {}: blob {} is corrupt: \
             the bytes that arrived have digest sha256:",
            proxy.addr, image.config.digest, image.config.digest
        )),
        "{err}"
    );
    only(&work, &[]);
    drop(proxy);

    // A layer is fetched by fetch-blobs: the pull works, fetch-blobs fails.
    let layer = &image.layers[1];
    let proxy = Proxy::corrupting(&s.registry.addr, &layer.digest);
    let via_proxy = format!("{}/kiln/base", proxy.addr);
    ok(kiln_pull(
        &[
            "--image",
            &via_proxy,
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    let full = work.join("full");
    let err = failed(kiln_pull(
        &[
            "fetch-blobs",
            "--layout",
            out.to_str().unwrap(),
            "--output",
            full.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    assert!(
        err.starts_with(&format!(
            "kiln-pull: {via_proxy}: registry {}, repository kiln/base: fetching blob {}: blob {} is corrupt",
            proxy.addr, layer.digest, layer.digest
        )),
        "{err}"
    );
    only(&work, &["layout"]);
    // Pointed at the registry itself, the same layout completes.
    let source_path = out.join("kiln-source.json");
    let source = std::fs::read_to_string(&source_path).unwrap();
    std::fs::write(&source_path, source.replace(&proxy.addr, &s.registry.addr)).unwrap();
    ok(kiln_pull(
        &[
            "fetch-blobs",
            "--layout",
            out.to_str().unwrap(),
            "--output",
            full.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    assert!(full.join(blob(&layer.digest)).exists());
}

#[test]
fn fetch_blobs_takes_each_blob_from_its_own_source() {
    let s = setup(&["linux/amd64"], false);
    let image = &s.layout.images[0];
    let digest = s.layout.top.digest.to_string();
    // The same image in a second registry, reached through a recording proxy.
    let other = Registry::start();
    skopeo_push(
        &s.layout,
        "v1",
        &format!("{}/kiln/other:v1", other.addr),
        None,
    );
    let proxy = Proxy::start(&other.addr, |_| Action::Forward { corrupt: false });
    let work = s.tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = work.join("layout");
    ok(kiln_pull(
        &[
            "--image",
            &format!("{}/kiln/base", s.registry.addr),
            "--digest",
            &digest,
            "--platform",
            "linux/amd64",
            "--output",
            out.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    // As kiln-index would write it for images on two bases: the second
    // layer comes from the other registry.
    let own = &image.layers[1];
    let mut sources = kiln_oci::Sources::load(&out).unwrap().unwrap();
    let entry = sources.blobs.get_mut(&own.digest).unwrap();
    entry.registry = proxy.addr.clone();
    entry.repository = "kiln/other".into();
    sources.write_to(&out).unwrap();

    let full = work.join("full");
    let o = ok(kiln_pull(
        &[
            "fetch-blobs",
            "--layout",
            out.to_str().unwrap(),
            "--output",
            full.to_str().unwrap(),
        ],
        s.no_config.path(),
        None,
    ));
    let mut from = [
        format!("{}/kiln/base", s.registry.addr),
        format!("{}/kiln/other", proxy.addr),
    ];
    from.sort();
    assert!(
        stderr(&o).contains("fetched 2 blobs (")
            && stderr(&o).contains(&format!(") from {}, {}\n", from[0], from[1])),
        "{}",
        stderr(&o)
    );
    let gets: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path().contains("/blobs/"))
        .map(|r| r.path().to_string())
        .collect();
    assert_eq!(gets, [format!("/v2/kiln/other/blobs/{}", own.digest)]);
    for l in &image.layers {
        assert_eq!(
            kiln_oci::sha256_file(&full.join(blob(&l.digest))).unwrap(),
            (l.digest.clone(), l.size)
        );
    }
    assert!(!full.join("kiln-source.json").exists());
}
