//! kiln-push through a proxy that plays counted faults ([`Faults`]) in
//! front of a real registry (Debian's docker-registry): a push whose faults
//! pass succeeds with the exact content and its tag; a push whose faults
//! never stop fails naming what it was pushing and the status, and leaves
//! no tag. The registry behind the proxy is checked directly.
//!
//! A missing docker-registry is a printed SKIP, and a failure under
//! KILN_REQUIRE_TOOLS (set by e2e/suites/rust.sh).

use std::path::Path;
use std::process::{Command, Output};

use kiln_oci::{sha256_bytes, Digest};
use kiln_testsupport::registry::{
    http_get, write_layout, Fault, Faults, Kind, Proxy, Registry, TestLayout,
};

const REGISTRY: &str = "/usr/bin/docker-registry";

fn tools_available() -> bool {
    let test = std::thread::current().name().unwrap_or("push").to_string();
    kiln_testsupport::require_tools(&test, &[REGISTRY])
}

/// `kiln-push --layout … --repository … --tag latest` with `env`, and no
/// Docker config of the host's.
fn push(dir: &Path, layout: &TestLayout, repository: &str, env: &[(&str, &str)]) -> Output {
    let docker_config = dir.join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiln-push"))
        .arg("--layout")
        .arg(&layout.dir)
        .args(["--repository", repository, "--tag", "latest"])
        .env("DOCKER_CONFIG", &docker_config)
        .env_remove("KILN_REGISTRY_ATTEMPTS")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every blob of the layout's image, with its size.
fn blobs(layout: &TestLayout) -> Vec<(Digest, u64)> {
    let image = &layout.images[0];
    std::iter::once(&image.config)
        .chain(&image.layers)
        .map(|d| (d.digest.clone(), d.size))
        .collect()
}

/// What the real registry answers to `GET /v2/kiln/app/<what>`.
fn stored(registry: &Registry, what: &str) -> (u16, Vec<u8>) {
    http_get(&registry.addr, &format!("/v2/kiln/app/{what}"))
}

#[test]
fn a_push_through_transient_faults_succeeds_with_the_exact_content_and_its_tag() {
    if !tools_available() {
        return;
    }
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("layout"), &["linux/amd64"], false, "v1");
    let faults = Faults::new()
        .first(1, Kind::Ping, Fault::status(503))
        .first(1, Kind::ManifestHead, Fault::status_retry_after(429, "1"))
        .first(1, Kind::BlobHead, Fault::status(502))
        .first(1, Kind::UploadStart, Fault::status(429))
        .first(1, Kind::BlobPut, Fault::Reset)
        .first(1, Kind::BlobPut, Fault::ForwardThenReset)
        .first(1, Kind::ManifestPut, Fault::status(500))
        .first(1, Kind::ManifestPut, Fault::Reset);
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let repository = format!("{}/kiln/app", proxy.addr);

    let out = push(tmp.path(), &layout, &repository, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "kiln-push failed:\n{stderr}");
    assert_eq!(
        text(&out.stdout),
        format!("{repository}@{}\n", layout.top.digest)
    );
    assert_eq!(faults.log().len(), 8, "faults played: {:?}", faults.log());
    // Each fault was retried, and said so; the registry's wish was waited.
    let retries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("kiln-push: retrying "))
        .collect();
    assert_eq!(retries.len(), 8, "{stderr}");
    assert!(
        retries.contains(
            &format!(
                "kiln-push: retrying HEAD http://{}/v2/kiln/app/manifests/latest in 1.0 s \
                 (try 2 of 5): HTTP 429 Too Many Requests",
                proxy.addr
            )
            .as_str()
        ),
        "{stderr}"
    );
    // The reset upload broke off with half its body sent.
    let puts = proxy.requests_of(Kind::BlobPut);
    assert!(
        puts.iter().any(|r| {
            let announced: usize = r.header("content-length").unwrap().parse().unwrap();
            r.body.len() == announced / 2
        }),
        "no upload was cut: {:?}",
        puts.iter().map(|r| r.body.len()).collect::<Vec<_>>()
    );
    assert!(
        stderr.contains(&format!("tagged {repository}:latest")),
        "{stderr}"
    );

    // The registry behind the proxy holds the exact blobs, the manifest and
    // the tag.
    for (digest, size) in blobs(&layout) {
        let (status, body) = stored(&registry, &format!("blobs/{digest}"));
        assert_eq!(status, 200, "{digest}");
        assert_eq!(
            (sha256_bytes(&body), body.len() as u64),
            (digest.clone(), size)
        );
    }
    let (status, body) = stored(&registry, "manifests/latest");
    assert_eq!((status, body), (200, layout.top_bytes.clone()));
}

/// A push (two tries per request) through a proxy that answers every `kind`
/// request with `status`: it must fail with exit status 1 and print nothing on
/// stdout. Returns the registry behind the proxy, the proxy, the image and
/// the push's stderr.
fn push_refused_every_time(kind: Kind, status: u16) -> (Registry, Proxy, TestLayout, String) {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_layout(&tmp.path().join("layout"), &["linux/amd64"], false, "v1");
    let faults = Faults::new().always(kind, Fault::status(status));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let repository = format!("{}/kiln/app", proxy.addr);
    let out = push(
        tmp.path(),
        &layout,
        &repository,
        &[("KILN_REGISTRY_ATTEMPTS", "2")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    (registry, proxy, layout, stderr)
}

#[test]
fn a_push_whose_blob_uploads_keep_failing_names_the_blob_and_the_status_and_writes_no_tag() {
    if !tools_available() {
        return;
    }
    let (registry, proxy, layout, stderr) = push_refused_every_time(Kind::BlobPut, 503);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("kiln-push: ") && l.contains("gave up"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    let named = blobs(&layout)
        .into_iter()
        .find(|(d, _)| error.contains(&format!("uploading blob {d}: ")))
        .unwrap_or_else(|| panic!("the error names no blob of the image: {error}"));
    assert!(
        error.contains(&format!(
            "registry {}, repository kiln/app: uploading blob {}: gave up after 2 tries: \
             HTTP 503 Service Unavailable from http://{}/v2/kiln/app/blobs/uploads/",
            proxy.addr, named.0, proxy.addr
        )),
        "{error}"
    );
    assert!(!stderr.contains("tagged"), "{stderr}");
    assert_eq!(
        stored(&registry, "manifests/latest").0,
        404,
        "a tag was written"
    );
    assert_eq!(
        stored(&registry, &format!("manifests/{}", layout.top.digest)).0,
        404
    );
}

#[test]
fn a_push_whose_manifest_uploads_keep_failing_names_the_manifest_and_the_status_and_writes_no_tag()
{
    if !tools_available() {
        return;
    }
    let (registry, proxy, layout, stderr) = push_refused_every_time(Kind::ManifestPut, 500);
    let digest = &layout.top.digest;
    assert!(
        stderr.contains(&format!(
            "registry {}, repository kiln/app: uploading manifest {digest}: \
             HTTP 500 Internal Server Error from http://{}/v2/kiln/app/manifests/{digest}",
            proxy.addr, proxy.addr
        )),
        "{stderr}"
    );
    assert_eq!(proxy.requests_of(Kind::ManifestPut).len(), 2);
    assert!(!stderr.contains("tagged"), "{stderr}");
    assert_eq!(
        stored(&registry, "manifests/latest").0,
        404,
        "a tag was written"
    );
    // The blobs went up: only the manifest was refused.
    for (digest, _) in blobs(&layout) {
        assert_eq!(stored(&registry, &format!("blobs/{digest}")).0, 200);
    }
}
