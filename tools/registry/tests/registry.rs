//! kiln-registry against a real registry (distribution 2.8): manifests and
//! blobs, corruption, Basic auth, token auth, mounts and cross-registry
//! copies.

use kiln_oci::{media_types, sha256_bytes, Digest};
use kiln_registry::{Client, ClientOptions, DockerConfig, ImageRef, RepoRef, Target, Transfer};
use kiln_testsupport::registry::{
    auth_registry_with_image, basic_auth, docker_config, run_ok, skopeo_digest, skopeo_push,
    write_layout, Action, Proxy, Registry, Request,
};

fn client(config: DockerConfig) -> Client {
    Client::new(ClientOptions {
        docker_config: config,
        user_agent: "kiln-registry-test".into(),
    })
    .expect("client")
}

fn repo(addr: &str, path: &str) -> RepoRef {
    RepoRef::parse(&format!("{addr}/{path}")).expect("repository")
}

fn by_digest(repo: &RepoRef, d: &Digest) -> ImageRef {
    ImageRef::new(repo.clone(), Target::Digest(d.clone()))
}

fn config_with(json: serde_json::Value) -> (tempfile::TempDir, DockerConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    docker_config(dir.path(), &json);
    let config = DockerConfig::load(dir.path()).expect("config");
    (dir, config)
}

fn message(e: anyhow::Error) -> String {
    format!("{e:#}")
}

#[tokio::test(flavor = "current_thread")]
async fn manifests_and_blobs() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(
        &tmp.path().join("src"),
        &["linux/amd64", "linux/arm64/v8"],
        true,
        "v1",
    );
    skopeo_push(
        &layout,
        "v1",
        &format!("{}/kiln/base:v1", registry.addr),
        None,
    );
    let base = repo(&registry.addr, "kiln/base");
    let c = client(DockerConfig::empty());

    // By tag: the index exactly as pushed.
    let m = c
        .get_manifest(&ImageRef::new(base.clone(), Target::tag("v1").unwrap()))
        .await
        .unwrap();
    assert_eq!(m.media_type, media_types::OCI_IMAGE_INDEX);
    assert_eq!(m.digest, layout.top.digest);
    assert_eq!(m.bytes, layout.top_bytes);
    // By digest.
    let amd = layout.image("linux/amd64");
    let m = c
        .get_manifest(&by_digest(&base, &amd.manifest.digest))
        .await
        .unwrap();
    assert_eq!(m.media_type, media_types::OCI_IMAGE_MANIFEST);
    assert_eq!(m.bytes.len() as u64, amd.manifest.size);
    // Missing: the error names registry, repository, operation and status.
    let missing = sha256_bytes(b"missing");
    let err = message(
        c.get_manifest(&by_digest(&base, &missing))
            .await
            .unwrap_err(),
    );
    assert!(
        err.starts_with(&format!(
            "registry {}, repository kiln/base: fetching manifest {missing}: HTTP 404 Not Found from http://{}/v2/kiln/base/manifests/{missing}: ",
            registry.addr, registry.addr
        )),
        "{err}"
    );
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");

    // Blobs: into memory, into a file, with a wrong size.
    let mut config = Vec::new();
    let n = c
        .fetch_blob(
            &base,
            &amd.config.digest,
            Some(amd.config.size),
            &mut config,
        )
        .await
        .unwrap();
    assert_eq!(n, amd.config.size);
    assert_eq!(sha256_bytes(&config), amd.config.digest);
    let layer = &amd.layers[0];
    let dest = tmp.path().join("layer");
    let n = c
        .fetch_blob_to_file(&base, &layer.digest, Some(layer.size), &dest)
        .await
        .unwrap();
    assert_eq!(n, layer.size);
    assert_eq!(
        kiln_oci::sha256_file(&dest).unwrap(),
        (layer.digest.clone(), layer.size)
    );
    let err = message(
        c.fetch_blob(&base, &layer.digest, Some(layer.size - 1), &mut Vec::new())
            .await
            .unwrap_err(),
    );
    assert!(err.contains("descriptor says"), "{err}");
    let err = message(
        c.fetch_blob(&base, &missing, None, &mut Vec::new())
            .await
            .unwrap_err(),
    );
    assert!(
        err.contains(&format!("fetching blob {missing}: HTTP 404")),
        "{err}"
    );

    assert!(c.blob_exists(&base, &layer.digest).await.unwrap());
    assert!(!c.blob_exists(&base, &missing).await.unwrap());
    assert!(!c
        .blob_exists(&repo(&registry.addr, "kiln/other"), &layer.digest)
        .await
        .unwrap());
}

#[tokio::test(flavor = "current_thread")]
async fn corrupt_blob_is_refused_and_nothing_is_written() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("src"), &["linux/amd64"], false, "v1");
    skopeo_push(
        &layout,
        "v1",
        &format!("{}/kiln/base:v1", registry.addr),
        None,
    );
    let layer = layout.images[0].layers[0].clone();
    let proxy = Proxy::corrupting(&registry.addr, &layer.digest);
    let c = client(DockerConfig::empty());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("blob");
    let err = message(
        c.fetch_blob_to_file(
            &repo(&proxy.addr, "kiln/base"),
            &layer.digest,
            Some(layer.size),
            &dest,
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.contains(&format!(
            "fetching blob {}: blob {} is corrupt: the bytes that arrived have digest sha256:",
            layer.digest, layer.digest
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing left behind"
    );
    // Through the proxy, uncorrupted blobs still come through.
    let config = &layout.images[0].config;
    let mut bytes = Vec::new();
    c.fetch_blob(
        &repo(&proxy.addr, "kiln/base"),
        &config.digest,
        Some(config.size),
        &mut bytes,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn basic_auth_from_docker_config() {
    let (registry, _tmp, layout) = auth_registry_with_image("kiln", "s3cret-pw");
    let base = repo(&registry.addr, "kiln/base");
    let top = by_digest(&base, &layout.top.digest);

    let (_dir, good) = config_with(serde_json::json!({
        "auths": {registry.addr.clone(): {"auth": basic_auth("kiln", "s3cret-pw")}}
    }));
    let c = client(good);
    let m = c.get_manifest(&top).await.unwrap();
    assert_eq!(m.digest, layout.top.digest);
    let config = &layout.images[0].config;
    let mut bytes = Vec::new();
    c.fetch_blob(&base, &config.digest, Some(config.size), &mut bytes)
        .await
        .unwrap();

    let (dir, bad) = config_with(serde_json::json!({
        "auths": {registry.addr.clone(): {"auth": basic_auth("kiln", "wrong-pw")}}
    }));
    let err = message(client(bad).get_manifest(&top).await.unwrap_err());
    let config_path = dir.path().join("config.json");
    assert!(
        err.contains(&format!(
            "registry {}, repository kiln/base: fetching manifest {}: HTTP 401 Unauthorized from",
            registry.addr, layout.top.digest
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "(the registry was accessed using credentials for user \"kiln\" from auths[\"{}\"] in {})",
            registry.addr,
            config_path.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("wrong-pw") && !err.contains("s3cret"),
        "{err}"
    );

    let err = message(
        client(DockerConfig::empty())
            .get_manifest(&top)
            .await
            .unwrap_err(),
    );
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        err.contains(&format!(
            "accessed anonymously: no credentials for {}",
            registry.addr
        )),
        "{err}"
    );
}

const TOKEN: &str = "kiln-good-token";

/// A registry that wants bearer tokens from `/token` on the same address
/// (the proxy plays both); `grant` decides whether a token request gets one.
fn token_registry(
    upstream: &str,
    grant: impl Fn(&Request) -> bool + Send + Sync + 'static,
) -> Proxy {
    Proxy::start(upstream, move |r| {
        if r.path() == "/token" {
            if grant(r) {
                Action::Respond {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#).into_bytes(),
                }
            } else {
                Action::Respond {
                    status: 401,
                    headers: vec![],
                    body: br#"{"details":"incorrect username or password"}"#.to_vec(),
                }
            }
        } else if r.header("authorization") == Some(&format!("Bearer {TOKEN}")) {
            Action::Forward { corrupt: false }
        } else {
            let host = r.header("host").unwrap_or_default().to_string();
            Action::Respond {
                status: 401,
                headers: vec![(
                    "WWW-Authenticate".into(),
                    format!(
                        r#"Bearer realm="http://{host}/token",service="kiln-test",scope="repository:kiln/base:pull""#
                    ),
                )],
                body:
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_vec(),
            }
        }
    })
}

fn token_requests(proxy: &Proxy) -> Vec<Request> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/token")
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn bearer_tokens() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("src"), &["linux/amd64"], false, "v1");
    skopeo_push(
        &layout,
        "v1",
        &format!("{}/kiln/base:v1", registry.addr),
        None,
    );
    let config = layout.images[0].config.clone();
    let scope = "scope=repository%3Akiln%2Fbase%3Apull";

    // Anonymous: a token without credentials, asked once for the scope.
    let proxy = token_registry(&registry.addr, |r| r.header("authorization").is_none());
    let base = repo(&proxy.addr, "kiln/base");
    let c = client(DockerConfig::empty());
    c.get_manifest(&by_digest(&base, &layout.top.digest))
        .await
        .unwrap();
    c.fetch_blob(&base, &config.digest, Some(config.size), &mut Vec::new())
        .await
        .unwrap();
    let asked = token_requests(&proxy);
    assert_eq!(asked.len(), 1, "the token is cached per scope: {asked:?}");
    assert_eq!(asked[0].method, "GET");
    assert!(
        asked[0].query().contains("service=kiln-test"),
        "{}",
        asked[0].query()
    );
    assert!(asked[0].query().contains(scope), "{}", asked[0].query());

    // User and password: Basic auth on the token request.
    let basic = format!("Basic {}", basic_auth("kiln", "pw"));
    let expected = basic.clone();
    let proxy = token_registry(&registry.addr, move |r| {
        r.header("authorization") == Some(expected.as_str()) && r.query().contains("account=kiln")
    });
    let (_d, cfg) = config_with(serde_json::json!({
        "auths": {proxy.addr.clone(): {"auth": basic_auth("kiln", "pw")}}
    }));
    let base = repo(&proxy.addr, "kiln/base");
    client(cfg)
        .get_manifest(&by_digest(&base, &layout.top.digest))
        .await
        .unwrap();
    assert_eq!(token_requests(&proxy).len(), 1);

    // An identity token: exchanged with grant_type=refresh_token (POST).
    let proxy = token_registry(&registry.addr, |r| {
        let body = String::from_utf8_lossy(&r.body);
        r.method == "POST"
            && body.contains("grant_type=refresh_token")
            && body.contains("refresh_token=kiln-refresh")
            && body.contains("service=kiln-test")
            && body.contains("scope=repository%3Akiln%2Fbase%3Apull")
    });
    let (_d, cfg) = config_with(serde_json::json!({
        "auths": {proxy.addr.clone(): {"identitytoken": "kiln-refresh"}}
    }));
    let base = repo(&proxy.addr, "kiln/base");
    client(cfg)
        .get_manifest(&by_digest(&base, &layout.top.digest))
        .await
        .unwrap();

    // The token service refuses: the error says who asked, with what.
    let proxy = token_registry(&registry.addr, |_| false);
    let (dir, cfg) = config_with(serde_json::json!({
        "auths": {proxy.addr.clone(): {"auth": basic_auth("kiln", "bad-pw")}}
    }));
    let base = repo(&proxy.addr, "kiln/base");
    let err = message(
        client(cfg)
            .get_manifest(&by_digest(&base, &layout.top.digest))
            .await
            .unwrap_err(),
    );
    assert!(
        err.contains(&format!(
            "registry {}, repository kiln/base: fetching manifest {}: getting a token for \"repository:kiln/base:pull\" from the token service http://{}/token of {} using credentials for user \"kiln\" from auths[\"{}\"] in {}: HTTP 401 Unauthorized from http://{}/token?",
            proxy.addr,
            layout.top.digest,
            proxy.addr,
            proxy.addr,
            proxy.addr,
            dir.path().join("config.json").display(),
            proxy.addr
        )),
        "{err}"
    );
    assert!(err.contains("incorrect username or password"), "{err}");
    assert!(!err.contains("bad-pw"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn mount_within_a_registry() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("src"), &["linux/amd64"], false, "v1");
    skopeo_push(&layout, "v1", &format!("{}/kiln/a:v1", registry.addr), None);
    let (a, b) = (
        repo(&registry.addr, "kiln/a"),
        repo(&registry.addr, "kiln/b"),
    );
    let layer = layout.images[0].layers[1].clone();
    let c = client(DockerConfig::empty());

    assert!(!c.blob_exists(&b, &layer.digest).await.unwrap());
    assert!(c.mount_blob(&b, &layer.digest, &a).await.unwrap());
    assert!(c.blob_exists(&b, &layer.digest).await.unwrap());
    // A blob `a` lacks: 202, not mounted (the upload session is cancelled).
    let missing = sha256_bytes(b"not there");
    assert!(!c.mount_blob(&b, &missing, &a).await.unwrap());
    // Across registries: refused before any request.
    let err = message(
        c.mount_blob(&b, &layer.digest, &repo("127.0.0.1:1", "kiln/a"))
            .await
            .unwrap_err(),
    );
    assert!(err.contains("mounted within one registry only"), "{err}");

    let config = layout.images[0].config.clone();
    let c2 = repo(&registry.addr, "kiln/c");
    assert_eq!(
        c.ensure_blob(&a, &c2, &config.digest, config.size)
            .await
            .unwrap(),
        Transfer::Mounted
    );
    assert_eq!(
        c.ensure_blob(&a, &c2, &config.digest, config.size)
            .await
            .unwrap(),
        Transfer::Exists
    );
}

#[tokio::test(flavor = "current_thread")]
async fn copy_across_registries() {
    let (one, two) = (Registry::start(), Registry::start());
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("src"), &["linux/arm64/v8"], false, "v1");
    skopeo_push(&layout, "v1", &format!("{}/kiln/base:v1", one.addr), None);
    let src = repo(&one.addr, "kiln/base");
    let dest = repo(&two.addr, "kiln/copy");
    let image = &layout.images[0];
    let c = client(DockerConfig::empty());

    // A corrupted source: the upload is aborted, nothing lands.
    let layer = image.layers[0].clone();
    let proxy = Proxy::corrupting(&one.addr, &layer.digest);
    let err = message(
        c.copy_blob(
            &repo(&proxy.addr, "kiln/base"),
            &dest,
            &layer.digest,
            layer.size,
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.contains(&format!(
            "fetching blob {}: blob {} is corrupt",
            layer.digest, layer.digest
        )),
        "{err}"
    );
    assert!(!c.blob_exists(&dest, &layer.digest).await.unwrap());

    for blob in std::iter::once(&image.config).chain(&image.layers) {
        assert_eq!(
            c.ensure_blob(&src, &dest, &blob.digest, blob.size)
                .await
                .unwrap(),
            Transfer::Copied
        );
    }
    let m = c
        .get_manifest(&by_digest(&src, &image.manifest.digest))
        .await
        .unwrap();
    let pushed = c
        .put_manifest(
            &ImageRef::new(dest.clone(), Target::tag("v1").unwrap()),
            &m.bytes,
            &m.media_type,
        )
        .await
        .unwrap();
    assert_eq!(pushed, image.manifest.digest);
    assert_eq!(
        skopeo_digest(&format!("{}/kiln/copy:v1", two.addr)),
        image.manifest.digest
    );
    // skopeo reads every blob back and checks its digest.
    let out = tmp.path().join("copied");
    run_ok(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/kiln/copy:v1", two.addr),
            &format!("oci:{}:v1", out.display()),
        ],
    );
    let out = run_ok("skopeo", &["inspect", &format!("oci:{}:v1", out.display())]);
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["Architecture"], "arm64");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_copy_whose_source_breaks_mid_body_starts_again() {
    let (one, two) = (Registry::start(), Registry::start());
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("src"), &["linux/amd64"], false, "v1");
    skopeo_push(&layout, "v1", &format!("{}/kiln/base:v1", one.addr), None);
    let layer = layout.images[0].layers[0].clone();
    let suffix = format!("/blobs/{}", layer.digest);
    let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = cuts.clone();
    // The first GET of the layer breaks off halfway; later ones go through.
    let proxy = Proxy::start(&one.addr, move |r| {
        let layer_get = r.method == "GET" && r.path().ends_with(&suffix);
        if layer_get && counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Action::ForwardCut
        } else {
            Action::Forward { corrupt: false }
        }
    });
    let dest = repo(&two.addr, "kiln/copy");
    let c = client(DockerConfig::empty());
    c.copy_blob(
        &repo(&proxy.addr, "kiln/base"),
        &dest,
        &layer.digest,
        layer.size,
    )
    .await
    .unwrap();
    assert_eq!(cuts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(c.blob_exists(&dest, &layer.digest).await.unwrap());
}
