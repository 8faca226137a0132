//! kiln-registry's retries and refusals, against a real registry behind
//! the test proxy's counted faults ([`Faults`]): 429 with and without
//! `Retry-After`, 5xx, connections reset mid-upload and mid-download, a
//! wrong `Content-Length`, a slow first byte, silence, a redirect to another
//! host. Retry waits are milliseconds ([`Client::with_retry_policy`]), so
//! each test takes well under a second unless it says why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_oci::{media_types, sha256_bytes, Descriptor, Digest, ImageManifest};
use kiln_registry::deadline::SILENT_ATTEMPTS;
use kiln_registry::retry::RetryPolicy;
use kiln_registry::{Client, ClientOptions, Deadlines, DockerConfig, ImageRef, RepoRef, Target};
use kiln_testsupport::registry::{
    basic_auth, docker_config, http_get, noise, Action, Fault, Faults, Kind, Proxy, Registry,
};

/// Retry waits of a few milliseconds; `Retry-After` cut to 300 ms.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(4),
        max_retry_after: Duration::from_millis(300),
    }
}

/// Deadlines no fault of these tests reaches unless it means to.
fn roomy() -> Deadlines {
    Deadlines {
        connect: Duration::from_secs(5),
        answer: Duration::from_secs(5),
        transfer: Duration::from_secs(60),
    }
}

/// A client with `retry` and `deadlines`, and the retry lines it reports.
fn client_with(
    config: DockerConfig,
    retry: RetryPolicy,
    deadlines: Deadlines,
) -> (Client, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let client = Client::with_deadlines(
        ClientOptions {
            docker_config: config,
            user_agent: "kiln-registry-test".into(),
        },
        deadlines,
    )
    .expect("client")
    .with_retry_policy(retry)
    .on_retry(move |line| seen.lock().unwrap().push(line.to_string()));
    (client, lines)
}

fn client(retry: RetryPolicy) -> (Client, Arc<Mutex<Vec<String>>>) {
    client_with(DockerConfig::empty(), retry, roomy())
}

fn repo(addr: &str, path: &str) -> RepoRef {
    RepoRef::parse(&format!("{addr}/{path}")).expect("repository")
}

fn message(e: anyhow::Error) -> String {
    format!("{e:#}")
}

/// Blob `digest` of `path` in the real registry at `addr`, read without
/// the client under test; `None` when it answers 404.
fn stored_blob(addr: &str, path: &str, digest: &Digest) -> Option<Vec<u8>> {
    match http_get(addr, &format!("/v2/{path}/blobs/{digest}")) {
        (200, body) => Some(body),
        (404, _) => None,
        (status, body) => panic!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
    }
}

/// Uploads `blob` to `dest`, where it must not be yet.
async fn upload(c: &Client, dest: &RepoRef, blob: &[u8]) -> Digest {
    let digest = sha256_bytes(blob);
    c.push_blob_bytes(dest, &digest, blob).await.unwrap();
    digest
}

/// The bytes of an image manifest whose config and layer are in `dest`
/// already (a registry accepts a manifest only once its blobs are there).
async fn manifest_with_blobs(c: &Client, dest: &RepoRef, seed: u64) -> Vec<u8> {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "seed": seed,
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    let layer = noise(seed, 1000);
    let config_digest = upload(c, dest, &config).await;
    let layer_digest = upload(c, dest, &layer).await;
    let manifest = ImageManifest::new(
        Descriptor::new(
            media_types::OCI_IMAGE_CONFIG,
            config_digest,
            config.len() as u64,
        ),
        vec![Descriptor::new(
            media_types::OCI_LAYER_TAR_GZIP,
            layer_digest,
            layer.len() as u64,
        )],
    );
    serde_json::to_vec(&manifest).unwrap()
}

fn tagged(repo: &RepoRef, tag: &str) -> ImageRef {
    ImageRef::new(repo.clone(), Target::tag(tag).unwrap())
}

async fn fetch(c: &Client, repo: &RepoRef, digest: &Digest, size: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    c.fetch_blob(repo, digest, size, &mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "current_thread")]
async fn retry_after_is_honoured_up_to_its_cap() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let blob = noise(1, 5000);
    let digest = upload(&direct, &repo(&registry.addr, "kiln/app"), &blob).await;

    // An hour asked for: the 300 ms cap is waited, not the 2-4 ms backoff.
    let faults = Faults::new().first(1, Kind::BlobGet, Fault::status_retry_after(429, "3600"));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, lines) = client(quick(3));
    let started = Instant::now();
    let got = fetch(&c, &repo(&proxy.addr, "kiln/app"), &digest, None).await;
    let took = started.elapsed();
    assert_eq!(got, blob);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(faults.played(Kind::BlobGet), 1);
    assert_eq!(proxy.requests_of(Kind::BlobGet).len(), 2);
    let lines = lines.lock().unwrap().clone();
    assert_eq!(
        lines,
        vec![format!(
            "retrying GET http://{}/v2/kiln/app/blobs/{digest} in 0.3 s (try 2 of 3): \
             HTTP 429 Too Many Requests",
            proxy.addr
        )]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn retry_after_zero_is_honoured_over_the_backoff() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let digest = upload(&direct, &repo(&registry.addr, "kiln/app"), &noise(2, 100)).await;
    let faults = Faults::new().first(1, Kind::BlobHead, Fault::status_retry_after(429, "0"));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    // A backoff of 10 s would be waited without the header.
    let (c, lines) = client(RetryPolicy {
        base_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(10),
        ..quick(3)
    });
    let started = Instant::now();
    assert!(c
        .blob_exists(&repo(&proxy.addr, "kiln/app"), &digest)
        .await
        .unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proxy.requests_of(Kind::BlobHead).len(), 2);
    assert!(
        lines.lock().unwrap()[0].contains(" in 0.0 s (try 2 of 3): HTTP 429"),
        "{:?}",
        lines.lock().unwrap()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_429_without_retry_after_backs_off_and_retries() {
    let registry = Registry::start();
    let faults = Faults::new().first(2, Kind::UploadStart, Fault::status(429));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    // Waits of 20 to 40 ms: the exponential backoff's, halved by jitter.
    let (c, lines) = client(RetryPolicy {
        base_delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(40),
        ..quick(4)
    });
    let blob = noise(3, 2000);
    let started = Instant::now();
    let digest = upload(&c, &repo(&proxy.addr, "kiln/app"), &blob).await;
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(proxy.requests_of(Kind::UploadStart).len(), 3);
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!(
                "retrying POST http://{}/v2/kiln/app/blobs/uploads/ in 0.0 s (try {} of 4): \
                 HTTP 429 Too Many Requests",
                proxy.addr,
                i + 2
            )),
            "{line}"
        );
    }
    assert_eq!(
        stored_blob(&registry.addr, "kiln/app", &digest).as_deref(),
        Some(&blob[..])
    );
}

/// The requests a push and a pull make, each kind answered `status` once.
const EVERY_KIND: [Kind; 8] = [
    Kind::Ping,
    Kind::BlobHead,
    Kind::BlobGet,
    Kind::UploadStart,
    Kind::BlobPut,
    Kind::ManifestHead,
    Kind::ManifestGet,
    Kind::ManifestPut,
];

/// Checks, uploads and fetches a blob and a tagged manifest through a
/// proxy that answers the first request of each kind `status`.
async fn push_and_pull_through_one_error_of_each_kind(registry: &str, status: u16) {
    let (direct, _) = client(quick(3));
    let faults = EVERY_KIND.iter().fold(Faults::new(), |f, &kind| {
        f.first(1, kind, Fault::status(status))
    });
    let path = format!("kiln/errors-{status}");
    let manifest = manifest_with_blobs(&direct, &repo(registry, &path), u64::from(status)).await;
    let proxy = Proxy::start_with_faults(registry, &faults);
    let (c, lines) = client(quick(3));
    let dest = repo(&proxy.addr, &path);
    let blob = noise(u64::from(status) + 1, 3000);
    let digest = sha256_bytes(&blob);

    assert!(!c.blob_exists(&dest, &digest).await.unwrap(), "{status}");
    c.push_blob_bytes(&dest, &digest, &blob).await.unwrap();
    assert_eq!(fetch(&c, &dest, &digest, Some(3000)).await, blob);
    let image = tagged(&dest, "v1");
    assert_eq!(c.manifest_digest(&image).await.unwrap(), None);
    let pushed = c
        .put_manifest(&image, &manifest, media_types::OCI_IMAGE_MANIFEST)
        .await
        .unwrap();
    assert_eq!(c.get_manifest(&image).await.unwrap().bytes, manifest);

    for kind in EVERY_KIND {
        assert_eq!(faults.played(kind), 1, "HTTP {status} to {kind:?}");
    }
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), EVERY_KIND.len(), "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(&format!("(try 2 of 3): HTTP {status}"))
                || l.contains(&format!("(try 2 of 3): HTTP {status} "))),
        "{lines:?}"
    );
    assert_eq!(
        stored_blob(registry, &path, &digest).as_deref(),
        Some(&blob[..])
    );
    let (got, body) = http_get(registry, &format!("/v2/{path}/manifests/v1"));
    assert_eq!((got, sha256_bytes(&body)), (200, pushed));
}

#[tokio::test(flavor = "current_thread")]
async fn server_errors_are_retried_for_every_kind_of_request() {
    let registry = Registry::start();
    futures_util::future::join_all(
        [500u16, 502, 503, 504]
            .map(|status| push_and_pull_through_one_error_of_each_kind(&registry.addr, status)),
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn server_errors_that_never_stop_fail_naming_the_operation_and_the_status() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let manifest = manifest_with_blobs(&direct, &repo(&registry.addr, "kiln/app"), 4).await;
    let faults = Faults::new()
        .always(Kind::BlobPut, Fault::status(503))
        .always(Kind::ManifestPut, Fault::status(502));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, _) = client(quick(3));
    let dest = repo(&proxy.addr, "kiln/app");

    let blob = noise(5, 3000);
    let digest = sha256_bytes(&blob);
    let err = message(c.push_blob_bytes(&dest, &digest, &blob).await.unwrap_err());
    assert!(
        err.starts_with(&format!(
            "registry {}, repository kiln/app: uploading blob {digest}: gave up after 3 tries: \
             HTTP 503 Service Unavailable from http://{}/v2/kiln/app/blobs/uploads/",
            proxy.addr, proxy.addr
        )),
        "{err}"
    );
    assert_eq!(proxy.requests_of(Kind::BlobPut).len(), 3);
    assert_eq!(stored_blob(&registry.addr, "kiln/app", &digest), None);

    let image = tagged(&dest, "v1");
    let err = message(
        c.put_manifest(&image, &manifest, media_types::OCI_IMAGE_MANIFEST)
            .await
            .unwrap_err(),
    );
    assert!(
        err.starts_with(&format!(
            "registry {}, repository kiln/app: uploading manifest v1: HTTP 502 Bad Gateway \
             from http://{}/v2/kiln/app/manifests/v1",
            proxy.addr, proxy.addr
        )),
        "{err}"
    );
    assert_eq!(proxy.requests_of(Kind::ManifestPut).len(), 3);
    assert_eq!(
        http_get(&registry.addr, "/v2/kiln/app/manifests/v1").0,
        404,
        "no tag"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_are_final_not_retried() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let manifest = manifest_with_blobs(&direct, &repo(&registry.addr, "kiln/app"), 6).await;
    let faults = Faults::new()
        .first(1, Kind::ManifestPut, Fault::status(403))
        .first(1, Kind::BlobGet, Fault::status(404))
        .first(1, Kind::BlobPut, Fault::status(400));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, lines) = client(quick(5));
    let dest = repo(&proxy.addr, "kiln/app");

    let err = message(
        c.put_manifest(
            &tagged(&dest, "v1"),
            &manifest,
            media_types::OCI_IMAGE_MANIFEST,
        )
        .await
        .unwrap_err(),
    );
    assert!(err.contains("HTTP 403 Forbidden from"), "{err}");
    let blob = noise(7, 100);
    let digest = sha256_bytes(&blob);
    let err = message(c.push_blob_bytes(&dest, &digest, &blob).await.unwrap_err());
    assert!(err.contains("HTTP 400 Bad Request from"), "{err}");
    let err = message(
        c.fetch_blob(&dest, &digest, None, &mut Vec::new())
            .await
            .unwrap_err(),
    );
    assert!(err.contains("HTTP 404 Not Found from"), "{err}");
    for kind in [Kind::ManifestPut, Kind::BlobPut, Kind::BlobGet] {
        assert_eq!(proxy.requests_of(kind).len(), 1, "{kind:?}");
    }
    assert!(
        lines.lock().unwrap().is_empty(),
        "{:?}",
        lines.lock().unwrap()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_upload_reset_midway_starts_again_and_the_registry_gets_the_exact_blob() {
    let registry = Registry::start();
    let faults = Faults::new().first(2, Kind::BlobPut, Fault::Reset);
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, lines) = client(quick(4));
    // Larger than the socket buffers: the reset comes while it is sent.
    let blob = noise(8, 6 << 20);
    let digest = sha256_bytes(&blob);
    c.push_blob_bytes(&repo(&proxy.addr, "kiln/app"), &digest, &blob)
        .await
        .unwrap();
    let puts = proxy.requests_of(Kind::BlobPut);
    assert_eq!(puts.len(), 3);
    // The first two broke off halfway; the third went through whole.
    assert_eq!(puts[0].body.len(), blob.len() / 2);
    assert_eq!(puts[1].body.len(), blob.len() / 2);
    assert_eq!(puts[2].body, blob);
    // Each restart in a new session, once the registry said it lacks the blob.
    assert_eq!(proxy.requests_of(Kind::UploadStart).len(), 3);
    assert_eq!(proxy.requests_of(Kind::BlobHead).len(), 2);
    assert_eq!(lines.lock().unwrap().len(), 2);
    assert_eq!(
        stored_blob(&registry.addr, "kiln/app", &digest).map(|b| sha256_bytes(&b)),
        Some(digest)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_upload_the_registry_completed_before_the_reset_is_not_sent_again() {
    let registry = Registry::start();
    let faults = Faults::new().first(1, Kind::BlobPut, Fault::ForwardThenReset);
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, _) = client(quick(4));
    let blob = noise(9, 100_000);
    let digest = upload(&c, &repo(&proxy.addr, "kiln/app"), &blob).await;
    assert_eq!(proxy.requests_of(Kind::BlobPut).len(), 1);
    assert_eq!(proxy.requests_of(Kind::BlobHead).len(), 1);
    assert_eq!(
        stored_blob(&registry.addr, "kiln/app", &digest).as_deref(),
        Some(&blob[..])
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_manifest_upload_reset_is_sent_again() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let manifest = manifest_with_blobs(&direct, &repo(&registry.addr, "kiln/app"), 10).await;
    let faults = Faults::new().first(1, Kind::ManifestPut, Fault::Reset);
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, _) = client(quick(3));
    let digest = c
        .put_manifest(
            &tagged(&repo(&proxy.addr, "kiln/app"), "v1"),
            &manifest,
            media_types::OCI_IMAGE_MANIFEST,
        )
        .await
        .unwrap();
    assert_eq!(proxy.requests_of(Kind::ManifestPut).len(), 2);
    let (status, body) = http_get(&registry.addr, "/v2/kiln/app/manifests/v1");
    assert_eq!((status, sha256_bytes(&body)), (200, digest));
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_content_length_is_never_taken_for_the_blob() {
    let registry = Registry::start();
    let (direct, _) = client(quick(2));
    let blob = noise(11, 20_000);
    let size = blob.len() as u64;
    let digest = upload(&direct, &repo(&registry.addr, "kiln/app"), &blob).await;
    let manifest = manifest_with_blobs(&direct, &repo(&registry.addr, "kiln/app"), 12).await;
    let manifest_digest = direct
        .put_manifest(
            &ImageRef::new(
                repo(&registry.addr, "kiln/app"),
                Target::Digest(sha256_bytes(&manifest)),
            ),
            &manifest,
            media_types::OCI_IMAGE_MANIFEST,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for delta in [-100i64, 100] {
        let faults = Faults::new()
            .always(Kind::BlobGet, Fault::WrongLength(delta))
            .always(Kind::ManifestGet, Fault::WrongLength(delta));
        let proxy = Proxy::start_with_faults(&registry.addr, &faults);
        let (c, _) = client(quick(2));
        let src = repo(&proxy.addr, "kiln/app");
        let announced = (size as i64 + delta) as u64;

        // With the size known: refused before a byte is read.
        let err = message(
            c.fetch_blob(&src, &digest, Some(size), &mut Vec::new())
                .await
                .unwrap_err(),
        );
        assert!(
            err.contains(&format!(
                "fetching blob {digest}: blob {digest} is corrupt: the registry announces \
                 {announced} bytes, its descriptor says {size}"
            )),
            "{delta}: {err}"
        );
        // Without it: the bytes that arrive are not the blob.
        let dest = dir.path().join(format!("blob{delta}"));
        let gets = proxy.requests_of(Kind::BlobGet).len();
        let err = message(
            c.fetch_blob_to_file(&src, &digest, None, &dest)
                .await
                .unwrap_err(),
        );
        let why = if delta < 0 {
            "the bytes that arrived have digest".to_string()
        } else {
            format!(
                "reading the answer from http://{}/v2/kiln/app/blobs/{digest} failed",
                proxy.addr
            )
        };
        assert!(
            err.contains(&format!("fetching blob {digest}")) && err.contains(&why),
            "{delta}: {err}"
        );
        assert!(!dest.exists(), "{delta}: a blob file was left");
        // Too few bytes are the wrong blob, final; too many announced look
        // like a download that broke off, tried again.
        let tries = if delta < 0 { 1 } else { 2 };
        assert_eq!(
            proxy.requests_of(Kind::BlobGet).len() - gets,
            tries,
            "{delta}"
        );
        // A copy from it to another repository: refused, nothing stored.
        let err = message(
            c.copy_blob(&src, &repo(&registry.addr, "kiln/copy"), &digest, size)
                .await
                .unwrap_err(),
        );
        assert!(err.contains("the registry announces"), "{delta}: {err}");
        assert_eq!(stored_blob(&registry.addr, "kiln/copy", &digest), None);
        // A manifest by digest: its bytes are checked against it.
        let err = message(
            c.get_manifest(&ImageRef::new(
                src.clone(),
                Target::Digest(manifest_digest.clone()),
            ))
            .await
            .unwrap_err(),
        );
        assert!(
            err.contains(&format!("fetching manifest {manifest_digest}")),
            "{delta}: {err}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_download_reset_midway_starts_again_from_the_first_byte() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let blob = noise(13, 1 << 20);
    let digest = upload(&direct, &repo(&registry.addr, "kiln/app"), &blob).await;
    let faults = Faults::new().first(2, Kind::BlobGet, Fault::CutBody);
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, lines) = client(quick(3));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let n = c
        .fetch_blob_to_file(
            &repo(&proxy.addr, "kiln/app"),
            &digest,
            Some(blob.len() as u64),
            &dest,
        )
        .await
        .unwrap();
    assert_eq!(n, blob.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), blob);
    assert_eq!(proxy.requests_of(Kind::BlobGet).len(), 3);
    // No partial file of the broken tries is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "retrying GET http://{}/v2/kiln/app/blobs/{digest} in 0.0 s (try 2 of 3): \
             reading the answer from http://{}/v2/kiln/app/blobs/{digest} failed",
            proxy.addr, proxy.addr
        )),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_download_that_keeps_breaking_gives_up_naming_the_blob_and_leaves_no_file() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let blob = noise(17, 1 << 20);
    let digest = upload(&direct, &repo(&registry.addr, "kiln/app"), &blob).await;
    let faults = Faults::new().always(Kind::BlobGet, Fault::CutBody);
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, _) = client(quick(3));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let err = message(
        c.fetch_blob_to_file(
            &repo(&proxy.addr, "kiln/app"),
            &digest,
            Some(blob.len() as u64),
            &dest,
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.starts_with(&format!(
            "registry {}, repository kiln/app: fetching blob {digest}: gave up after 3 tries: \
             reading the answer from http://{}/v2/kiln/app/blobs/{digest} failed",
            proxy.addr, proxy.addr
        )),
        "{err}"
    );
    assert_eq!(proxy.requests_of(Kind::BlobGet).len(), 3);
    assert!(!dest.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_first_byte_within_the_silence_deadline_is_waited_for() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let blob = noise(14, 4000);
    let digest = upload(&direct, &repo(&registry.addr, "kiln/app"), &blob).await;
    let faults = Faults::new().first(1, Kind::BlobGet, Fault::Late(Duration::from_millis(200)));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let (c, lines) = client_with(
        DockerConfig::empty(),
        quick(3),
        Deadlines {
            answer: Duration::from_secs(2),
            ..roomy()
        },
    );
    let started = Instant::now();
    assert_eq!(
        fetch(&c, &repo(&proxy.addr, "kiln/app"), &digest, None).await,
        blob
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(proxy.requests_of(Kind::BlobGet).len(), 1);
    assert!(lines.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_byte_past_the_silence_deadline_is_a_silence_tried_again() {
    let registry = Registry::start();
    let (direct, _) = client(quick(3));
    let blob = noise(15, 4000);
    let digest = upload(&direct, &repo(&registry.addr, "kiln/app"), &blob).await;
    let faults = Faults::new().first(1, Kind::BlobGet, Fault::Late(Duration::from_secs(3)));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    // Half a second: room for the registry's own answers on a loaded machine.
    let (c, lines) = client_with(
        DockerConfig::empty(),
        quick(3),
        Deadlines {
            answer: Duration::from_millis(500),
            ..roomy()
        },
    );
    assert_eq!(
        fetch(&c, &repo(&proxy.addr, "kiln/app"), &digest, None).await,
        blob
    );
    assert_eq!(proxy.requests_of(Kind::BlobGet).len(), 2);
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("{} sent nothing for", proxy.addr)),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_registry_silent_mid_push_gives_up_after_the_silent_tries_naming_the_request() {
    let registry = Registry::start();
    let faults = Faults::new().always(Kind::BlobHead, Fault::Silent);
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    // More tries than silences allowed: the silences end it.
    let (c, _) = client_with(
        DockerConfig::empty(),
        quick(10),
        Deadlines {
            answer: Duration::from_millis(400),
            ..roomy()
        },
    );
    let digest = sha256_bytes(b"absent");
    let started = Instant::now();
    let err = message(
        c.blob_exists(&repo(&proxy.addr, "kiln/app"), &digest)
            .await
            .unwrap_err(),
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(
        err.starts_with(&format!(
            "registry {}, repository kiln/app: checking for blob {digest}: gave up after \
             {SILENT_ATTEMPTS} silent tries: {} sent nothing for",
            proxy.addr, proxy.addr
        )) && err.contains(&format!(
            "while the answer to http://{}/v2/kiln/app/blobs/{digest} was awaited",
            proxy.addr
        )),
        "{err}"
    );
    assert_eq!(
        proxy.requests_of(Kind::BlobHead).len(),
        SILENT_ATTEMPTS as usize
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_blob_redirect_to_another_host_is_followed_without_credentials() {
    let registry = Registry::start_with_htpasswd("kiln", "kiln-password");
    let blob = noise(16, 50_000);
    let digest = sha256_bytes(&blob);
    // The blob's bytes are served by a storage host of its own (as
    // registries send blob downloads to a CDN or an object store).
    let served = blob.clone();
    let storage = Proxy::start("127.0.0.1:1", move |_| Action::Respond {
        status: 200,
        headers: vec![],
        body: served.clone(),
    });
    let faults = Faults::new().always(Kind::BlobGet, Fault::Redirect(storage.addr.clone()));
    let proxy = Proxy::start_with_faults(&registry.addr, &faults);
    let dir = tempfile::tempdir().unwrap();
    let auth = basic_auth("kiln", "kiln-password");
    docker_config(
        dir.path(),
        &serde_json::json!({"auths": {
            registry.addr.clone(): {"auth": auth},
            proxy.addr.clone(): {"auth": auth},
        }}),
    );
    let config = || DockerConfig::load(dir.path()).unwrap();
    let (direct, _) = client_with(config(), quick(3), roomy());
    upload(&direct, &repo(&registry.addr, "kiln/app"), &blob).await;

    let (c, _) = client_with(config(), quick(3), roomy());
    let got = fetch(&c, &repo(&proxy.addr, "kiln/app"), &digest, Some(50_000)).await;
    assert_eq!(got, blob);
    let asked = proxy.requests_of(Kind::BlobGet);
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].header("authorization"),
        Some(format!("Basic {auth}").as_str()),
        "the registry itself gets the credentials"
    );
    let redirected = storage.requests();
    assert_eq!(redirected.len(), 1);
    assert_eq!(redirected[0].path(), format!("/v2/kiln/app/blobs/{digest}"));
    assert_eq!(
        redirected[0].header("authorization"),
        None,
        "credentials followed the redirect to {}",
        storage.addr
    );
}
