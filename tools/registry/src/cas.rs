//! Reading blobs from a Bazel HTTP remote cache: Bazel stores a file under
//! `/cas/<sha256 hex>`, and a blob's OCI digest is the sha256 of its bytes,
//! so a push can fetch exactly the blobs a registry lacks from the cache
//! instead of making Bazel download every blob as a runfile.
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
