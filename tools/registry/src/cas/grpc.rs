//! Reading blobs from a gRPC remote cache (`--remote_cache=grpc://…`,
//! `grpcs://…`, `unix:…`): REAPI's `ContentAddressableStorage`
//! (`FindMissingBlobs`; `BatchReadBlobs` for small blobs) and
//! `google.bytestream.ByteStream/Read` for the others, streamed and resumed
//! at the offset reached when the stream breaks.
//!
//! The deadlines are the registry client's ([`Deadlines`]): connecting, a
//! silence (no answer, or no next chunk of a stream), and the whole blob.
//! Transient failures (UNAVAILABLE and the like, a broken stream) are tried
//! again up to [`RetryPolicy::attempts`] times in a row; a silence up to
//! [`SILENT_ATTEMPTS`] times; NOT_FOUND, UNAUTHENTICATED and
//! PERMISSION_DENIED are final.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use kiln_oci::Digest;
use kiln_reapi::bytestream::byte_stream_client::ByteStreamClient;
use kiln_reapi::bytestream::{ReadRequest, ReadResponse};
use kiln_reapi::execution::content_addressable_storage_client::ContentAddressableStorageClient;
use kiln_reapi::execution::{
    digest_function, BatchReadBlobsRequest, Digest as ReapiDigest, FindMissingBlobsRequest,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Uri};
use tonic::{Code, Status, Streaming};

use crate::client::{verified_stream, BlobStream};
use crate::deadline::{
    Deadlines, ANSWER_TIMEOUT_VARIABLE, CONNECT_TIMEOUT_VARIABLE, SILENT_ATTEMPTS, TIMEOUT_VARIABLE,
};
use crate::retry::RetryPolicy;

/// Blobs up to this size are read with one `BatchReadBlobs` call (below
/// every server's batch limit and gRPC's default 4 MiB message); larger
/// ones are streamed with `ByteStream/Read`.
pub const BATCH_READ_LIMIT: u64 = 1 << 20;

/// The largest gRPC message accepted: a batch answer of
/// [`BATCH_READ_LIMIT`] bytes, or a server's stream chunk, with room.
const MAX_MESSAGE: usize = 16 << 20;

/// What to do when the cache lacks a blob the push needs.
const MISSING_HINT: &str = "the cache evicted it or never had it: build the images again with \
     this remote cache (with --remote_download_outputs=toplevel the release machine keeps \
     them), or push eagerly (--@rules_kiln//settings:push=eager)";

/// A Bazel gRPC remote cache (REAPI), read-only.
#[derive(Clone)]
pub struct GrpcCas {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL as given, for messages.
    target: String,
    instance: String,
    cas: ContentAddressableStorageClient<Channel>,
    bytestream: ByteStreamClient<Channel>,
    deadlines: Deadlines,
    retry: RetryPolicy,
}

impl GrpcCas {
    /// The cache at `url` (`grpc://host:port`, `grpcs://host:port`,
    /// `unix:/path` or `unix:///path`, as given to Bazel's
    /// `--remote_cache`), instance `instance` (Bazel's
    /// `--remote_instance_name`; may be empty). Nothing is connected until
    /// the first read.
    pub fn with_deadlines(
        url: &str,
        instance: &str,
        user_agent: &str,
        deadlines: Deadlines,
        retry: RetryPolicy,
    ) -> anyhow::Result<GrpcCas> {
        let bad = || format!("remote cache {url:?}");
        let endpoint = |uri: String| {
            Endpoint::from_shared(uri)
                .with_context(bad)
                .and_then(|e| e.user_agent(user_agent.to_string()).with_context(bad))
                .map(|e| e.connect_timeout(deadlines.connect))
        };
        let channel = if let Some(path) = url.strip_prefix("unix:") {
            // unix:/p and unix:///p name the same socket.
            let path = path.trim_start_matches("//").to_string();
            if !path.starts_with('/') {
                return Err(anyhow!(
                    "remote cache {url:?}: the socket path must be absolute"
                ));
            }
            let connector = tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            });
            // The URI is not used to connect, only in the requests' :authority.
            endpoint("http://localhost".to_string())?.connect_with_connector_lazy(connector)
        } else if let Some(rest) = url.strip_prefix("grpc://") {
            endpoint(format!("http://{rest}"))?.connect_lazy()
        } else if let Some(rest) = url.strip_prefix("grpcs://") {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let endpoint = endpoint(format!("https://{rest}"))?;
            let host = endpoint.uri().host().unwrap_or_default().to_string();
            let tls = ClientTlsConfig::new()
                .with_native_roots()
                .domain_name(host.trim_start_matches('[').trim_end_matches(']'));
            endpoint.tls_config(tls).with_context(bad)?.connect_lazy()
        } else {
            return Err(anyhow!(
                "remote cache {url:?}: not a gRPC cache (grpc://, grpcs:// or unix:)"
            ));
        };
        let cas = ContentAddressableStorageClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE);
        let bytestream = ByteStreamClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        Ok(GrpcCas {
            inner: Arc::new(Inner {
                target: url.to_string(),
                instance: instance.to_string(),
                cas,
                bytestream,
                deadlines,
                retry,
            }),
        })
    }

    /// How blob `digest` is named in messages: the cache and the REAPI
    /// resource name.
    pub fn describe(&self, digest: &Digest, size: u64) -> String {
        format!(
            "{} (resource {})",
            self.inner.target,
            self.inner.resource(digest, size)
        )
    }

    /// Whether the cache has blob `digest` (`FindMissingBlobs`).
    pub async fn has(&self, digest: &Digest, size: u64) -> anyhow::Result<bool> {
        let inner = &self.inner;
        let request = FindMissingBlobsRequest {
            instance_name: inner.instance.clone(),
            blob_digests: vec![reapi_digest(digest, size)],
            digest_function: digest_function::Value::Sha256 as i32,
        };
        let answer = inner
            .unary("FindMissingBlobs", digest, || {
                let mut client = inner.cas.clone();
                let request = request.clone();
                async move { client.find_missing_blobs(request).await }
            })
            .await?;
        Ok(answer.missing_blob_digests.is_empty())
    }

    /// Opens blob `digest` (`size` bytes): `Ok(None)` when the cache does
    /// not have it (NOT_FOUND). The stream fails, before its last piece,
    /// when the bytes do not hash to `digest`.
    pub async fn open(&self, digest: &Digest, size: u64) -> anyhow::Result<Option<BlobStream>> {
        let inner = self.inner.clone();
        let blob = digest.clone();
        let describe = move |e: anyhow::Error| format!("{e:#}");
        if size <= BATCH_READ_LIMIT {
            let Some(data) = inner.batch_read(digest, size).await? else {
                return Ok(None);
            };
            let chunks = futures_util::stream::iter([Ok::<Bytes, anyhow::Error>(data)]);
            return Ok(Some(Box::pin(verified_stream(
                chunks, digest, size, describe,
            ))));
        }
        let mut reader = Reader {
            inner,
            digest: blob,
            size,
            offset: 0,
            stream: None,
            failures: 0,
            silences: 0,
            deadline: Instant::now() + self.inner.deadlines.transfer(Some(size)),
        };
        // The first answer is awaited here, so that NOT_FOUND is a missing
        // blob rather than a broken stream.
        match reader.start().await {
            Ok(()) => {}
            Err(Failure::NotFound) => return Ok(None),
            Err(Failure::Final(e)) => return Err(e),
        }
        let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
            let mut reader = reader?;
            match reader.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(Some(Box::pin(verified_stream(
            chunks, digest, size, describe,
        ))))
    }
}

fn reapi_digest(digest: &Digest, size: u64) -> ReapiDigest {
    ReapiDigest {
        hash: digest.hex().to_string(),
        size_bytes: size as i64,
    }
}

/// Whether another try may do better.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Cancelled
    )
}

/// How a read failed for good.
enum Failure {
    NotFound,
    Final(anyhow::Error),
}

impl Inner {
    fn resource(&self, digest: &Digest, size: u64) -> String {
        let hash = digest.hex();
        if self.instance.is_empty() {
            format!("blobs/{hash}/{size}")
        } else {
            format!("{}/blobs/{hash}/{size}", self.instance)
        }
    }

    /// The error of a final status for blob `digest`.
    fn refused(&self, status: &Status, rpc: &str, digest: &Digest) -> anyhow::Error {
        let cache = &self.target;
        let said = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => anyhow!(
                "the remote cache {cache} refused {rpc} of blob {digest} ({said}): lazy pushes \
                 send no credentials to a gRPC cache; allow unauthenticated reads of this \
                 instance, or push eagerly (--@rules_kiln//settings:push=eager)"
            ),
            Code::NotFound => anyhow!(
                "the remote cache {cache} does not have blob {digest} ({said}): {MISSING_HINT}"
            ),
            Code::InvalidArgument if !self.instance.is_empty() => anyhow!(
                "the remote cache {cache} rejected {rpc} of blob {digest} ({said}); is \
                 instance {:?} (--@rules_kiln//settings:remote_instance_name) right?",
                self.instance
            ),
            _ => anyhow!("the remote cache {cache} failed {rpc} of blob {digest} ({said})"),
        }
    }

    /// The error of a silence that lasted too often.
    fn silent(&self, rpc: &str, digest: &Digest) -> anyhow::Error {
        anyhow!(
            "the remote cache {} sent nothing for {} s, {SILENT_ATTEMPTS} times, to {rpc} of \
             blob {digest} ({ANSWER_TIMEOUT_VARIABLE} sets this deadline in seconds; \
             {CONNECT_TIMEOUT_VARIABLE} the connect deadline)",
            self.target,
            self.deadlines.answer.as_secs()
        )
    }

    /// Calls `call` until it answers, a final status comes, or the tries
    /// run out.
    async fn unary<T, F, Fut>(&self, rpc: &str, digest: &Digest, call: F) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let (mut failures, mut silences) = (0u32, 0u32);
        let deadline = Instant::now() + self.deadlines.transfer(None);
        loop {
            let status = match tokio::time::timeout(self.deadlines.answer, call()).await {
                Ok(Ok(answer)) => return Ok(answer.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => {
                    silences += 1;
                    if silences >= SILENT_ATTEMPTS {
                        return Err(self.silent(rpc, digest));
                    }
                    continue;
                }
            };
            if !transient(status.code()) {
                return Err(self.refused(&status, rpc, digest));
            }
            failures += 1;
            if failures >= self.retry.attempts {
                return Err(self.refused(&status, rpc, digest)).context(format!(
                    "after {failures} tries (KILN_REGISTRY_ATTEMPTS sets how many)"
                ));
            }
            self.wait(failures, deadline, rpc, digest).await?;
        }
    }

    /// Waits before try `failures + 1`, unless that passes `deadline`.
    async fn wait(
        &self,
        failures: u32,
        deadline: Instant,
        rpc: &str,
        digest: &Digest,
    ) -> anyhow::Result<()> {
        let delay = self.retry.next_delay(failures, None);
        if Instant::now() + delay >= deadline {
            return Err(anyhow!(
                "{rpc} of blob {digest} from the remote cache {} did not complete within its \
                 deadline ({TIMEOUT_VARIABLE} sets the base deadline in seconds)",
                self.target
            ));
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Blob `digest` with one `BatchReadBlobs` call; `None`: NOT_FOUND.
    async fn batch_read(&self, digest: &Digest, size: u64) -> anyhow::Result<Option<Bytes>> {
        let request = BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: vec![reapi_digest(digest, size)],
            acceptable_compressors: Vec::new(),
            digest_function: digest_function::Value::Sha256 as i32,
        };
        let answer = self
            .unary("BatchReadBlobs", digest, || {
                let mut client = self.cas.clone();
                let request = request.clone();
                async move { client.batch_read_blobs(request).await }
            })
            .await?;
        let hex = digest.hex();
        let Some(blob) = answer
            .responses
            .into_iter()
            .find(|r| r.digest.as_ref().is_some_and(|d| d.hash == hex))
        else {
            return Err(anyhow!(
                "the remote cache {} answered BatchReadBlobs without blob {digest}",
                self.target
            ));
        };
        let code = blob.status.as_ref().map_or(0, |s| s.code);
        match Code::from_i32(code) {
            Code::Ok => Ok(Some(Bytes::from(blob.data))),
            Code::NotFound => Ok(None),
            code => {
                let message = blob.status.map(|s| s.message).unwrap_or_default();
                Err(self.refused(&Status::new(code, message), "BatchReadBlobs", digest))
            }
        }
    }
}

/// A `ByteStream/Read` of one blob, opened again at the offset reached
/// when it breaks.
struct Reader {
    inner: Arc<Inner>,
    digest: Digest,
    size: u64,
    offset: u64,
    stream: Option<Streaming<ReadResponse>>,
    /// Transient failures in a row (reset by a chunk).
    failures: u32,
    /// Silences in a row (reset by a chunk).
    silences: u32,
    deadline: Instant,
}

impl Reader {
    /// (Re)opens the stream at the offset reached.
    async fn start(&mut self) -> Result<(), Failure> {
        loop {
            let request = ReadRequest {
                resource_name: self.inner.resource(&self.digest, self.size),
                read_offset: self.offset as i64,
                read_limit: 0,
            };
            let mut client = self.inner.bytestream.clone();
            let status =
                match tokio::time::timeout(self.inner.deadlines.answer, client.read(request)).await
                {
                    Ok(Ok(answer)) => {
                        self.stream = Some(answer.into_inner());
                        return Ok(());
                    }
                    Ok(Err(status)) => status,
                    Err(_) => {
                        self.silence().map_err(Failure::Final)?;
                        continue;
                    }
                };
            if status.code() == Code::NotFound {
                return Err(Failure::NotFound);
            }
            self.broken(status).await.map_err(Failure::Final)?;
        }
    }

    /// Notes a silence: an error once there were too many in a row.
    fn silence(&mut self) -> anyhow::Result<()> {
        self.stream = None;
        self.silences += 1;
        if self.silences >= SILENT_ATTEMPTS {
            return Err(self.inner.silent("ByteStream/Read", &self.digest));
        }
        Ok(())
    }

    /// Notes a failure with `status`: an error when it is final or the
    /// tries are used up, else after the wait before the next try.
    async fn broken(&mut self, status: Status) -> anyhow::Result<()> {
        self.stream = None;
        let rpc = "ByteStream/Read";
        if !transient(status.code()) {
            let e = self.inner.refused(&status, rpc, &self.digest);
            return Err(if status.code() == Code::NotFound && self.offset > 0 {
                e.context("the blob went away while it was read")
            } else {
                e
            });
        }
        self.failures += 1;
        if self.failures >= self.inner.retry.attempts {
            return Err(self.inner.refused(&status, rpc, &self.digest)).context(format!(
                "after {} tries in a row at offset {} (KILN_REGISTRY_ATTEMPTS sets how many)",
                self.failures, self.offset
            ));
        }
        self.inner
            .wait(self.failures, self.deadline, rpc, &self.digest)
            .await
    }

    /// The next chunk; `None` once the blob's `size` bytes came.
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if Instant::now() >= self.deadline {
                return Err(anyhow!(
                    "reading blob {} ({} bytes) from the remote cache {} did not complete \
                     within {} s ({TIMEOUT_VARIABLE} sets the base deadline in seconds)",
                    self.digest,
                    self.size,
                    self.inner.target,
                    self.inner.deadlines.transfer(Some(self.size)).as_secs()
                ));
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.start().await {
                    Ok(()) => continue,
                    Err(Failure::NotFound) => {
                        let status = Status::not_found("the blob went away while it was read");
                        return Err(self.inner.refused(&status, "ByteStream/Read", &self.digest));
                    }
                    Err(Failure::Final(e)) => return Err(e),
                }
            };
            let silence = self
                .inner
                .deadlines
                .answer
                .min(self.deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1));
            match tokio::time::timeout(silence, stream.message()).await {
                Ok(Ok(Some(ReadResponse { data }))) => {
                    if data.is_empty() {
                        continue;
                    }
                    self.offset += data.len() as u64;
                    if self.offset > self.size {
                        return Err(anyhow!(
                            "the remote cache {} sent more than the {} bytes of blob {}",
                            self.inner.target,
                            self.size,
                            self.digest
                        ));
                    }
                    self.failures = 0;
                    self.silences = 0;
                    return Ok(Some(Bytes::from(data)));
                }
                Ok(Ok(None)) if self.offset == self.size => {
                    self.stream = None;
                    return Ok(None);
                }
                // Ended early: a broken stream, resumed where it stopped.
                Ok(Ok(None)) => {
                    let status = Status::unavailable(format!(
                        "the stream ended after {} of {} bytes",
                        self.offset, self.size
                    ));
                    self.broken(status).await?;
                }
                Ok(Err(status)) => self.broken(status).await?,
                Err(_) => self.silence()?,
            }
        }
    }
}
