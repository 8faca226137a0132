//! Lazy blobs from a gRPC remote cache (kiln_registry::cas::RemoteCache over
//! REAPI), against the in-process cache of kiln-testsupport: small blobs by
//! BatchReadBlobs, large ones by ByteStream/Read resumed at the offset
//! reached, and each fault (missing blob, refusal, broken stream, hang,
//! corrupt bytes) giving the answer or error it must.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kiln_oci::Digest;
use kiln_registry::cas::{RemoteCache, BATCH_READ_LIMIT};
use kiln_registry::retry::RetryPolicy;
use kiln_registry::Deadlines;
use kiln_testsupport::grpc_cas::{Call, GrpcCas};
use tonic::Code;

const UA: &str = "kiln-registry-tests";

fn deadlines() -> Deadlines {
    Deadlines {
        connect: Duration::from_secs(2),
        answer: Duration::from_secs(1),
        transfer: Duration::from_secs(20),
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
    }
}

fn cache(server: &GrpcCas, instance: &str) -> RemoteCache {
    RemoteCache::with_deadlines(&server.url, instance, UA, deadlines(), retry()).unwrap()
}

fn digest(hex: &str) -> Digest {
    format!("sha256:{hex}").parse().unwrap()
}

/// Bytes that differ along the blob (a shifted copy would not hash the same).
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn read_all(cache: &RemoteCache, d: &Digest, size: u64) -> std::io::Result<Vec<u8>> {
    let mut stream = cache
        .open(d, size)
        .await
        .expect("open")
        .expect("the blob is there");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn methods(calls: &[Call]) -> Vec<&'static str> {
    calls.iter().map(|c| c.method).collect()
}

#[tokio::test]
async fn a_small_blob_is_one_batch_read_and_has_asks_find_missing() {
    let server = GrpcCas::start();
    let data = pattern(1000);
    let hex = server.put(&data);
    let cache = cache(&server, "");
    let d = digest(&hex);
    assert!(cache.has(&d, 1000).await.unwrap());
    assert!(!cache.has(&digest(&"0".repeat(64)), 5).await.unwrap());
    assert_eq!(read_all(&cache, &d, 1000).await.unwrap(), data);
    assert_eq!(
        methods(&server.calls()),
        ["FindMissingBlobs", "FindMissingBlobs", "BatchReadBlobs"]
    );
}

#[tokio::test]
async fn a_large_blob_is_streamed_with_the_instance_in_its_resource_name() {
    let server = GrpcCas::start();
    let size = 3 * BATCH_READ_LIMIT as usize + 17;
    let data = pattern(size);
    let hex = server.put(&data);
    let cache = cache(&server, "ci/main");
    let d = digest(&hex);
    assert!(cache.has(&d, size as u64).await.unwrap());
    assert_eq!(read_all(&cache, &d, size as u64).await.unwrap(), data);
    assert_eq!(
        server.calls(),
        [
            Call {
                method: "FindMissingBlobs",
                name: "ci/main".into(),
                offset: 0
            },
            Call {
                method: "Read",
                name: format!("ci/main/blobs/{hex}/{size}"),
                offset: 0
            },
        ]
    );
}

#[tokio::test]
async fn a_broken_stream_is_resumed_at_the_offset_reached() {
    let server = GrpcCas::start();
    let size = 2 * BATCH_READ_LIMIT as usize + 5;
    let data = pattern(size);
    let hex = server.put(&data);
    let broken_at = 1_500_000;
    server.break_once_at(broken_at);
    let cache = cache(&server, "");
    let got = read_all(&cache, &digest(&hex), size as u64).await.unwrap();
    assert!(got == data, "the resumed blob differs");
    let reads: Vec<i64> = server.calls().iter().map(|c| c.offset).collect();
    assert_eq!(reads, [0, broken_at as i64]);
}

#[tokio::test]
async fn a_missing_blob_is_none_small_or_large() {
    let server = GrpcCas::start();
    let cache = cache(&server, "");
    let absent = digest(&"a".repeat(64));
    assert!(cache.open(&absent, 10).await.unwrap().is_none());
    assert!(cache
        .open(&absent, 5 * BATCH_READ_LIMIT)
        .await
        .unwrap()
        .is_none());
    // NOT_FOUND is final: one call each.
    assert_eq!(methods(&server.calls()), ["BatchReadBlobs", "Read"]);
}

#[tokio::test]
async fn a_refusal_is_final_and_says_what_to_do() {
    let server = GrpcCas::start();
    let hex = server.put(&pattern(3 * BATCH_READ_LIMIT as usize));
    server.refuse(Code::Unauthenticated);
    let cache = cache(&server, "");
    let d = digest(&hex);
    let e = format!(
        "{:#}",
        cache.has(&d, 3 * BATCH_READ_LIMIT).await.unwrap_err()
    );
    assert!(e.contains(&server.url), "{e}");
    assert!(e.contains(&format!("blob sha256:{hex}")), "{e}");
    assert!(e.contains("Unauthenticated"), "{e}");
    assert!(e.contains("push=eager"), "{e}");
    let e = match cache.open(&d, 3 * BATCH_READ_LIMIT).await {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a refused read opened"),
    };
    assert!(e.contains("refused ByteStream/Read"), "{e}");
    // No retry of a refusal.
    assert_eq!(methods(&server.calls()), ["FindMissingBlobs", "Read"]);
}

#[tokio::test]
async fn unavailable_is_tried_again_then_named() {
    let server = GrpcCas::start();
    let hex = server.put(b"x");
    server.refuse(Code::Unavailable);
    let cache = cache(&server, "");
    let e = format!("{:#}", cache.has(&digest(&hex), 1).await.unwrap_err());
    assert!(e.contains("after 3 tries"), "{e}");
    assert_eq!(server.calls().len(), 3);
}

#[tokio::test]
async fn a_hanging_cache_fails_within_the_silence_deadlines() {
    let server = GrpcCas::start();
    let hex = server.put(&pattern(2 * BATCH_READ_LIMIT as usize));
    server.hang();
    let cache = cache(&server, "");
    let started = Instant::now();
    let e = match cache.open(&digest(&hex), 2 * BATCH_READ_LIMIT).await {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("a hanging read opened"),
    };
    let took = started.elapsed();
    assert!(e.contains("sent nothing for 1 s, 3 times"), "{e}");
    assert!(e.contains("KILN_REGISTRY_ANSWER_TIMEOUT"), "{e}");
    // Three silences of 1 s each, not the 20 s transfer deadline.
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(server.calls().len(), 3);
}

#[tokio::test]
async fn corrupt_bytes_fail_the_stream_before_its_end() {
    let server = GrpcCas::start();
    let good = pattern(2 * BATCH_READ_LIMIT as usize);
    let hex = kiln_oci::sha256_bytes(&good).hex().to_string();
    let mut bad = good.clone();
    bad[1000] ^= 1;
    server.put_as(&hex, &bad);
    let cache = cache(&server, "");
    let e = read_all(&cache, &digest(&hex), good.len() as u64)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    // The same for a batch read.
    let small = pattern(100);
    let small_hex = kiln_oci::sha256_bytes(&small).hex().to_string();
    server.put_as(&small_hex, &small[1..]);
    let e = read_all(&cache, &digest(&small_hex), 100)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
}

#[tokio::test]
async fn a_unix_socket_cache_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = GrpcCas::start_unix(&dir.path().join("cas.sock"));
    let data = pattern(2 * BATCH_READ_LIMIT as usize + 3);
    let hex = server.put(&data);
    let cache = cache(&server, "");
    assert_eq!(
        read_all(&cache, &digest(&hex), data.len() as u64)
            .await
            .unwrap(),
        data
    );
}

// A tonic channel needs the runtime it runs on, even when connecting lazily.
#[tokio::test]
async fn urls_pick_the_cache_kind() {
    let make = |url: &str, instance: &str| {
        RemoteCache::with_deadlines(url, instance, UA, deadlines(), retry())
    };
    assert!(matches!(
        make("http://cache:8080", ""),
        Ok(RemoteCache::Http(_))
    ));
    assert!(matches!(
        make("grpc://cache:8980", "x"),
        Ok(RemoteCache::Grpc(_))
    ));
    assert!(matches!(
        make("grpcs://cache.example:443", ""),
        Ok(RemoteCache::Grpc(_))
    ));
    assert!(matches!(
        make("unix:///run/cas.sock", ""),
        Ok(RemoteCache::Grpc(_))
    ));
    let e = make("ftp://cache", "").err().unwrap().to_string();
    assert!(e.contains("grpc://"), "{e}");
    let e = make("http://cache", "main").err().unwrap().to_string();
    assert!(e.contains("instance name"), "{e}");
    assert!(make("unix:relative.sock", "").is_err());
}
