//! Reading blobs from a Bazel remote cache: a blob's OCI digest is the
//! sha256 of its bytes, which is how Bazel's cache names a file, so a push
//! can fetch exactly the blobs a registry lacks from the cache instead of
//! making Bazel download every blob as a runfile.
//!
//! [`RemoteCache`] is the one source the tools read from, chosen by the URL
//! given to Bazel's `--remote_cache`: an HTTP cache ([`HttpCas`],
//! `GET <cache>/cas/<hex>`) or a gRPC one ([`GrpcCas`], REAPI).
//!
//! No registry credentials are ever sent to the cache (another origin).
//! The cache gets the registry's deadlines ([`Deadlines`]), and its
//! failures name the cache URL and the blob, never a registry.

use anyhow::{anyhow, Context};
use kiln_oci::Digest;
use reqwest::{StatusCode, Url};

use crate::client::{verified_stream, BlobStream};
use crate::deadline::Deadlines;
use crate::error::{body_excerpt, send_error};
use crate::retry::RetryPolicy;

mod grpc;
pub use grpc::{GrpcCas, BATCH_READ_LIMIT};

/// The remote cache lazy blobs are read from.
pub enum RemoteCache {
    /// `http://` or `https://`.
    Http(HttpCas),
    /// `grpc://`, `grpcs://` or `unix:`.
    Grpc(GrpcCas),
}

impl RemoteCache {
    /// The cache at `url`, as given to Bazel's `--remote_cache`, its kind
    /// chosen by the scheme; `instance` is Bazel's `--remote_instance_name`
    /// (gRPC caches only; may be empty). The deadlines and retries are the
    /// registry client's, from the environment.
    pub fn new(url: &str, instance: &str, user_agent: &str) -> anyhow::Result<RemoteCache> {
        Self::with_deadlines(
            url,
            instance,
            user_agent,
            Deadlines::from_env()?,
            RetryPolicy::from_env()?,
        )
    }

    /// [`RemoteCache::new`] with the given deadlines and retries.
    pub fn with_deadlines(
        url: &str,
        instance: &str,
        user_agent: &str,
        deadlines: Deadlines,
        retry: RetryPolicy,
    ) -> anyhow::Result<RemoteCache> {
        if url.starts_with("http://") || url.starts_with("https://") {
            if !instance.is_empty() {
                return Err(anyhow!(
                    "remote cache {url:?}: an HTTP cache has no instance names (the instance \
                     name {instance:?} is for gRPC caches)"
                ));
            }
            return Ok(RemoteCache::Http(HttpCas::with_deadlines(
                url, user_agent, deadlines,
            )?));
        }
        if ["grpc://", "grpcs://", "unix:"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            return Ok(RemoteCache::Grpc(GrpcCas::with_deadlines(
                url, instance, user_agent, deadlines, retry,
            )?));
        }
        Err(anyhow!(
            "remote cache {url:?}: not a cache URL Bazel's --remote_cache takes (http://, \
             https://, grpc://, grpcs:// or unix:)"
        ))
    }

    /// Where blob `digest` is, for messages.
    pub fn describe(&self, digest: &Digest, size: u64) -> String {
        match self {
            RemoteCache::Http(cas) => cas.url_of(digest),
            RemoteCache::Grpc(cas) => cas.describe(digest, size),
        }
    }

    /// Whether the cache has blob `digest` (`size` bytes); no bytes moved.
    pub async fn has(&self, digest: &Digest, size: u64) -> anyhow::Result<bool> {
        match self {
            RemoteCache::Http(cas) => cas.has(digest).await,
            RemoteCache::Grpc(cas) => cas.has(digest, size).await,
        }
    }

    /// Opens blob `digest` (`size` bytes): `Ok(None)` when the cache does
    /// not have it. The stream fails, before its last piece, when the bytes
    /// do not hash to `digest`.
    pub async fn open(&self, digest: &Digest, size: u64) -> anyhow::Result<Option<BlobStream>> {
        match self {
            RemoteCache::Http(cas) => cas.open(digest, size).await,
            RemoteCache::Grpc(cas) => cas.open(digest, size).await,
        }
    }
}

/// A Bazel HTTP cache (`--remote_cache=http://…`), read-only.
pub struct HttpCas {
    http: reqwest::Client,
    base: Url,
    deadlines: Deadlines,
}

impl HttpCas {
    /// The cache at `url` (`http://host:port[/prefix]`, as given to Bazel's
    /// `--remote_cache`).
    /// The deadlines are the registry client's, from the environment
    /// ([`Deadlines::from_env`]).
    pub fn new(url: &str, user_agent: &str) -> anyhow::Result<HttpCas> {
        Self::with_deadlines(url, user_agent, Deadlines::from_env()?)
    }

    /// [`HttpCas::new`] with the given deadlines.
    pub fn with_deadlines(
        url: &str,
        user_agent: &str,
        deadlines: Deadlines,
    ) -> anyhow::Result<HttpCas> {
        let mut base =
            Url::parse(url).with_context(|| format!("remote cache {url:?} is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(anyhow!(
                "remote cache {url:?}: only HTTP caches (http:// or https://) are read from"
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(deadlines.connect)
            .read_timeout(deadlines.answer)
            .build()
            .context("creating the HTTP client of the remote cache")?;
        Ok(HttpCas {
            http,
            base,
            deadlines,
        })
    }

    /// The URL blob `digest` is stored at.
    pub fn url_of(&self, digest: &Digest) -> String {
        format!("{}cas/{}", self.base, digest.hex())
    }

    /// Whether the cache has blob `digest` (`HEAD`, no bytes moved).
    pub async fn has(&self, digest: &Digest) -> anyhow::Result<bool> {
        let url = self.url_of(digest);
        let what = || format!("asking the remote cache whether it has blob {digest}");
        let waits = self.deadlines.waits(None);
        let response = self
            .http
            .head(&url)
            .timeout(waits.total)
            .send()
            .await
            .map_err(|e| send_error(e, &url, &waits))
            .with_context(what)?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(anyhow!("HTTP {status} from {url} (HEAD)")).with_context(what),
        }
    }

    /// Opens blob `digest` (`size` bytes) in the cache: `Ok(None)` when the
    /// cache does not have it (404). The stream fails, before its last
    /// piece, when the bytes do not hash to `digest`.
    pub async fn open(&self, digest: &Digest, size: u64) -> anyhow::Result<Option<BlobStream>> {
        let url = self.url_of(digest);
        let what = || format!("reading blob {digest} from the remote cache");
        let waits = self.deadlines.waits(Some(size));
        let response = self
            .http
            .get(&url)
            .timeout(waits.total)
            .send()
            .await
            .map_err(|e| send_error(e, &url, &waits))
            .with_context(what)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => {
                let body = body_excerpt(response, &[]).await;
                return Err(anyhow!("HTTP {status} from {url}: {body}")).with_context(what);
            }
        }
        let blob = digest.clone();
        let describe = move |e| {
            format!(
                "reading blob {blob} from the remote cache failed: {:#}",
                send_error(e, &url, &waits)
            )
        };
        let stream = verified_stream(response.bytes_stream(), digest, size, describe);
        Ok(Some(Box::pin(stream)))
    }
}
