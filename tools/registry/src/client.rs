//! The registry client: manifests and blobs over the distribution API.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use kiln_oci::{media_types, sha256_bytes, Digest};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::OnceCell;

use crate::auth::{Challenge, TokenCache};
use crate::credentials::{DockerConfig, Lookup, Secret};
use crate::deadline::{Deadlines, SILENT_ATTEMPTS};
use crate::error::{body_excerpt, host_of, is_silence, is_transient, send_error};
use crate::origin::{check_target, same_origin};
use crate::reference::{ImageRef, RepoRef, Target};
use crate::retry::{retry_after, transient_status, RetryPolicy};
use kiln_oci::digest::Verifier;

/// Manifests and indexes larger than this are refused (the distribution
/// registry's own limit is 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 8 << 20;

/// Uploads from files read the file in pieces this big.
const READ_CHUNK: usize = 256 * 1024;

/// The manifest media types asked for, most specific first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or index as the registry serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Exactly the bytes served: their digest is `digest`.
    pub bytes: Vec<u8>,
    /// The `Content-Type` (without parameters), or the document's own
    /// `mediaType` when the registry sends none.
    pub media_type: String,
    pub digest: Digest,
}

/// What [`Client::ensure_blob`] had to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// The destination had the blob already.
    Exists,
    /// Mounted from the source repository (same registry, no bytes moved).
    Mounted,
    /// Streamed from the source registry to the destination.
    Copied,
}

/// Per-registry state: credentials (looked up once), the challenge of
/// `GET /v2/` (asked once) and the tokens obtained.
struct RegistryState {
    lookup: Lookup,
    challenge: OnceCell<Challenge>,
    tokens: TokenCache,
}

/// Talks to any number of registries. Cheap to share (`&Client` is enough
/// for every operation, concurrently).
pub struct Client {
    /// Every request but the two below: its read timeout is the silence
    /// deadline (reqwest counts it from the request's start to the answer's
    /// head, then between reads of the body).
    http: reqwest::Client,
    /// Streamed uploads, without a read timeout (it would count the time
    /// spent sending): [`Client::send_once`] watches their silence.
    upload_http: reqwest::Client,
    /// Token requests carrying credentials: follows no redirect to another
    /// origin, so that an identity token, a password or Basic credentials
    /// reach the token service's own origin only.
    token_http: reqwest::Client,
    config: DockerConfig,
    deadlines: Deadlines,
    registries: Mutex<HashMap<String, Arc<RegistryState>>>,
    retry: RetryPolicy,
    notify: Option<RetryNotify>,
}

/// What [`Client::on_retry`] calls.
type RetryNotify = Box<dyn Fn(&str) + Send + Sync>;

/// The bytes of a blob to upload, as they are read.
pub type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// How one try of a blob download failed.
enum Fetched {
    /// The answer broke off: another try may do (and whether it was a
    /// silence).
    Broken(anyhow::Error, bool),
    /// Anything else: the same again would fail the same way.
    Failed(anyhow::Error),
}

/// What one try of a request got.
enum Sent {
    /// An HTTP answer, of any status.
    Answer(Response),
    /// No (complete) answer, for a reason worth another try: the error
    /// that says so, and whether it was a silence (see
    /// [`SILENT_ATTEMPTS`]).
    Broken(anyhow::Error, bool),
}

/// When the body of a streamed upload last moved, and whether it is
/// waiting for its source (then a stall is the source's to report, not
/// the registry's).
struct Activity {
    last: Mutex<Instant>,
    waiting_on_source: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            last: Mutex::new(Instant::now()),
            waiting_on_source: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `body`, noting on `activity` each time it is read.
    fn watch(activity: &Arc<Activity>, mut body: BlobStream) -> BlobStream {
        let activity = activity.clone();
        Box::pin(futures_util::stream::poll_fn(move |cx| {
            let next = body.as_mut().poll_next(cx);
            let pending = next.is_pending();
            activity.waiting_on_source.store(pending, Ordering::Relaxed);
            if !pending {
                *activity.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            }
            next
        }))
    }

    /// Returns once the body has neither been read nor waited for its
    /// source for `silence` (the registry stopped reading, or has all of it
    /// and does not answer).
    async fn silent_for(&self, silence: Duration) {
        loop {
            let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            let due = last + silence;
            let now = Instant::now();
            if now >= due && !self.waiting_on_source.load(Ordering::Relaxed) {
                return;
            }
            let wait = if now < due { due - now } else { silence / 4 };
            tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
        }
    }
}

/// Options for [`Client::new`].
pub struct ClientOptions {
    /// Where credentials come from; [`DockerConfig::load_default`] usually.
    pub docker_config: DockerConfig,
    /// The `User-Agent`, e.g. `rules_kiln-kiln-pull/0.1.0`.
    pub user_agent: String,
}

impl Client {
    /// A client with the deadlines of the environment
    /// ([`Deadlines::from_env`]).
    pub fn new(options: ClientOptions) -> anyhow::Result<Client> {
        Self::with_deadlines(options, Deadlines::from_env()?)
    }

    /// A client with the given deadlines.
    pub fn with_deadlines(options: ClientOptions, deadlines: Deadlines) -> anyhow::Result<Client> {
        // reqwest is built without a default TLS provider (see Cargo.toml):
        // install ring once. An Err only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .user_agent(options.user_agent.clone())
                .connect_timeout(deadlines.connect)
        };
        // reqwest drops Authorization on a redirect to another host or
        // port; a redirect from https to http is refused outright.
        let redirects = || {
            reqwest::redirect::Policy::custom(|attempt| {
                let downgrade = attempt.url().scheme() == "http"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if downgrade {
                    let to = attempt.url().to_string();
                    attempt.error(format!(
                        "refusing a redirect from https to plain http ({to}): a downgrade"
                    ))
                } else if attempt.previous().len() > 10 {
                    attempt.error("more than 10 redirects")
                } else {
                    attempt.follow()
                }
            })
        };
        let http = builder()
            .read_timeout(deadlines.answer)
            .redirect(redirects())
            .build()
            .context("creating the HTTP client")?;
        let upload_http = builder()
            .redirect(redirects())
            .build()
            .context("creating the HTTP client")?;
        let token_http = builder()
            .read_timeout(deadlines.answer)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let first = attempt.previous().first().cloned();
                match first {
                    Some(from) if !same_origin(&from, attempt.url()) => {
                        let to = attempt.url().clone();
                        attempt.error(format!(
                            "refusing the token service's redirect from {from} to {to}: \
                             credentials go to the token service's own origin only"
                        ))
                    }
                    _ if attempt.previous().len() > 10 => attempt.error("more than 10 redirects"),
                    _ => attempt.follow(),
                }
            }))
            .build()
            .context("creating the HTTP client")?;
        Ok(Client {
            http,
            upload_http,
            token_http,
            config: options.docker_config,
            deadlines,
            registries: Mutex::new(HashMap::new()),
            retry: RetryPolicy::from_env()?,
            notify: None,
        })
    }

    /// The credentials used for `registry` (`host[:port]`), looked up in
    /// Docker's config on first use.
    pub fn credentials(&self, registry: &str) -> Lookup {
        self.state(registry).lookup.clone()
    }

    fn state(&self, registry: &str) -> Arc<RegistryState> {
        let mut map = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(registry.to_string())
            .or_insert_with(|| {
                Arc::new(RegistryState {
                    lookup: self.config.lookup(registry),
                    challenge: OnceCell::new(),
                    tokens: TokenCache::default(),
                })
            })
            .clone()
    }

    /// The registry's challenge, from `GET /v2/` (asked once per registry).
    async fn challenge(&self, repo: &RepoRef, state: &RegistryState) -> anyhow::Result<Challenge> {
        let challenge = state
            .challenge
            .get_or_try_init(|| async {
                let url = format!("{}/v2/", repo.registry_url());
                let mut failed = 0;
                let mut silent = 0;
                let response = loop {
                    let waits = self.deadlines.waits(None);
                    let sent = self.http.get(&url).timeout(waits.total).send().await;
                    let (wait, why) = match sent {
                        Ok(r) if transient_status(r.status()) => (
                            retry_after(r.headers(), SystemTime::now()),
                            format!("HTTP {}", r.status()),
                        ),
                        Ok(r) => break r,
                        Err(e) if is_silence(&e, &waits) && silent + 1 >= SILENT_ATTEMPTS => {
                            return Err(send_error(e, &url, &waits)
                                .context(format!("gave up after {} silent tries", silent + 1)));
                        }
                        Err(e) if is_transient(&e) && failed + 1 < self.retry.attempts => {
                            silent += u32::from(is_silence(&e, &waits));
                            (None, format!("{:#}", send_error(e, &url, &waits)))
                        }
                        Err(e) => return Err(send_error(e, &url, &waits)),
                    };
                    failed += 1;
                    if failed >= self.retry.attempts {
                        bail!("{url} answered {why} {failed} times");
                    }
                    let wait = self.retry.next_delay(failed, wait);
                    self.note_retry(&Method::GET, &url, &why, failed, wait);
                    tokio::time::sleep(wait).await;
                };
                match response.status() {
                    StatusCode::UNAUTHORIZED => Challenge::from_headers(response.headers())
                        .ok_or_else(|| {
                            let got: Vec<_> = response
                                .headers()
                                .get_all(reqwest::header::WWW_AUTHENTICATE)
                                .iter()
                                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                                .collect();
                            anyhow!(
                                "{url} answered HTTP 401 without a Basic or Bearer challenge \
                                 (WWW-Authenticate: {got:?})"
                            )
                        }),
                    // 200, or a registry that does not serve /v2/ itself
                    // (some proxies): nothing to answer.
                    _ => Ok(Challenge::None),
                }
            })
            .await
            .context("contacting the registry")?;
        Ok(challenge.clone())
    }

    /// Contacts `repo`'s registry (`GET /v2/`, once per registry) so that an
    /// unreachable registry fails before anything else is attempted.
    pub async fn ping(&self, repo: &RepoRef) -> anyhow::Result<()> {
        let state = self.state(&repo.registry);
        self.challenge(repo, &state).await.map_err(|e| {
            e.context(format!(
                "registry {}, repository {}",
                repo.registry, repo.repository
            ))
        })?;
        Ok(())
    }

    /// Adds what the registry's challenge asks for to `request`: a bearer
    /// token for `scopes`, or Basic credentials.
    async fn authorize(
        &self,
        repo: &RepoRef,
        state: &RegistryState,
        scopes: &[String],
        request: RequestBuilder,
    ) -> anyhow::Result<RequestBuilder> {
        Ok(match self.challenge(repo, state).await? {
            Challenge::None => request,
            Challenge::Basic => match state.lookup.credentials().map(|c| &c.secret) {
                Some(Secret::Basic { username, password }) => {
                    request.basic_auth(username, Some(password))
                }
                _ => request,
            },
            Challenge::Bearer { realm, service } => {
                let realm_url = Url::parse(&realm).with_context(|| {
                    format!("the registry's token service (realm) {realm:?} is not a URL")
                })?;
                check_target(&registry_url(repo)?, &realm_url, "token service (realm)")?;
                let http = if state.lookup.credentials().is_some() {
                    &self.token_http
                } else {
                    &self.http
                };
                let token = state
                    .tokens
                    .token(
                        http,
                        &repo.registry,
                        &realm,
                        service.as_deref(),
                        scopes,
                        &state.lookup,
                        &self.deadlines,
                    )
                    .await?;
                request.bearer_auth(token)
            }
        })
    }

    /// The deadlines in force.
    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// Sends a request to `url` for `repo`'s registry, within its deadline
    /// ([`Client::deadline`] of `size`), retrying transient failures (408,
    /// 429, 5xx, a connection that breaks or times out) as the
    /// [`RetryPolicy`] says, honouring `Retry-After`. `build` adds headers
    /// and body to each try. The last answer is returned when the tries
    /// run out (its status tells the caller what went wrong).
    async fn send(
        &self,
        repo: &RepoRef,
        scopes: &[String],
        method: Method,
        url: &str,
        size: Option<u64>,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<Response> {
        let mut failed = 0;
        let mut silent = 0;
        loop {
            let sent = self
                .send_once(repo, scopes, method.clone(), url, size, None, &build)
                .await?;
            if let Sent::Broken(e, true) = sent {
                silent += 1;
                failed += 1;
                if silent >= SILENT_ATTEMPTS || failed >= self.retry.attempts {
                    return Err(e.context(format!("gave up after {silent} silent tries")));
                }
                let wait = self.retry.next_delay(failed, None);
                self.note_retry(&method, url, &format!("{e:#}"), failed, wait);
                tokio::time::sleep(wait).await;
                continue;
            }
            let (wait, why, last) = match sent {
                Sent::Answer(r) if transient_status(r.status()) => {
                    let after = retry_after(r.headers(), SystemTime::now());
                    let why = format!("HTTP {}", r.status());
                    (after, why, Ok(r))
                }
                Sent::Answer(r) => return Ok(r),
                Sent::Broken(e, _) => (None, format!("{e:#}"), Err(e)),
            };
            failed += 1;
            if failed >= self.retry.attempts {
                return last.map_err(|e| e.context(format!("gave up after {failed} tries")));
            }
            drop(last);
            let wait = self.retry.next_delay(failed, wait);
            self.note_retry(&method, url, &why, failed, wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// Tells the [`Client::on_retry`] callback about a retry.
    fn note_retry(&self, method: &Method, url: &str, why: &str, failed: u32, wait: Duration) {
        if let Some(notify) = &self.notify {
            // The query of an upload URL is the registry's session state:
            // long and of no use to a reader.
            let path = url.split('?').next().unwrap_or(url);
            notify(&format!(
                "retrying {method} {path} in {:.1} s (try {} of {}): {why}",
                wait.as_secs_f64(),
                failed + 1,
                self.retry.attempts
            ));
        }
    }

    /// One try of a request (see [`Client::send`]). Authenticated only when
    /// `url` is of the registry's own origin (an upload location elsewhere
    /// gets nothing beyond what its URL carries); a URL the registry may
    /// not send us to (an https-to-http downgrade, plain http to a host
    /// that is not loopback) is refused.
    ///
    /// With `upload` (the activity of a streamed body), the request is sent
    /// without a read timeout and fails as a silence when its body has not
    /// moved, nor waited for its source, for
    /// [`Deadlines::upload_silence`]; its whole
    /// deadline has the silence deadline added, so that a source with the
    /// same deadlines reports its own slowness first.
    #[allow(clippy::too_many_arguments)]
    async fn send_once(
        &self,
        repo: &RepoRef,
        scopes: &[String],
        method: Method,
        url: &str,
        size: Option<u64>,
        upload: Option<&Activity>,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<Sent> {
        let registry = registry_url(repo)?;
        let target = Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
        check_target(&registry, &target, "URL")?;
        let mut waits = self.deadlines.waits(size);
        let http = match upload {
            Some(_) => {
                waits.total += self.deadlines.answer;
                &self.upload_http
            }
            None => &self.http,
        };
        let own_origin = same_origin(&registry, &target);
        let request = http.request(method.clone(), target).timeout(waits.total);
        let request = if own_origin {
            let state = self.state(&repo.registry);
            self.authorize(repo, &state, scopes, request).await?
        } else {
            request
        };
        let sent = build(request).send();
        let sent = match upload {
            None => sent.await,
            Some(activity) => {
                let silence = self.deadlines.upload_silence(size.unwrap_or(0));
                tokio::select! {
                    sent = sent => sent,
                    () = activity.silent_for(silence) => {
                        let host = host_of(url);
                        let path = url.split('?').next().unwrap_or(url);
                        return Ok(Sent::Broken(
                            anyhow!(
                                "{host} neither read more of the upload nor answered for {} s \
                                 ({method} {path}; {} sets this deadline in seconds)",
                                silence.as_secs(),
                                crate::deadline::ANSWER_TIMEOUT_VARIABLE
                            ),
                            true,
                        ));
                    }
                }
            }
        };
        match sent {
            Ok(r) => Ok(Sent::Answer(r)),
            Err(e) if is_transient(&e) => {
                let silent = is_silence(&e, &waits);
                Ok(Sent::Broken(send_error(e, url, &waits), silent))
            }
            Err(e) => Err(send_error(e, url, &waits)),
        }
    }

    /// Sets a callback told about every retry (a line of text, no
    /// credentials in it).
    pub fn on_retry(mut self, notify: impl Fn(&str) + Send + Sync + 'static) -> Client {
        self.notify = Some(Box::new(notify));
        self
    }

    /// Replaces the retry policy (by default the environment's,
    /// [`RetryPolicy::from_env`]): how many tries, and the waits between
    /// them. Tests set waits of milliseconds.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The secrets of `repo`'s registry (password, identity token, bearer
    /// tokens obtained), to redact from quoted bodies.
    fn secrets(&self, repo: &RepoRef) -> Vec<String> {
        let state = self.state(&repo.registry);
        let mut out = state.tokens.tokens();
        match state.lookup.credentials().map(|c| &c.secret) {
            Some(Secret::Basic { password, .. }) => out.push(password.clone()),
            Some(Secret::IdentityToken { token }) => out.push(token.clone()),
            None => {}
        }
        out
    }

    /// An error for a response with an unexpected status: `HTTP <status>
    /// from <url>: <body>`, plus how the registry was accessed when it
    /// refused access.
    async fn status_error(&self, repo: &RepoRef, response: Response) -> anyhow::Error {
        let status = response.status();
        let url = response.url().to_string();
        let secrets = self.secrets(repo);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let body = body_excerpt(response, &secrets).await;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let how = self.state(&repo.registry).lookup.describe();
            anyhow!("HTTP {status} from {url}: {body} (the registry was accessed {how})")
        } else {
            anyhow!("HTTP {status} from {url}: {body}")
        }
    }

    /// The manifest or index `image` names. Fetched by digest, its bytes
    /// are checked against the digest; fetched by tag, against the
    /// registry's `Docker-Content-Digest` when it sends one.
    pub async fn get_manifest(&self, image: &ImageRef) -> anyhow::Result<Manifest> {
        let repo = &image.repo;
        let what = format!("fetching manifest {}", image.target);
        self.get_manifest_inner(image)
            .await
            .with_context(|| at(repo, &what))
    }

    /// The manifest or index `image` names, `None` when the registry
    /// answers 404 (see [`Client::get_manifest`]).
    pub async fn find_manifest(&self, image: &ImageRef) -> anyhow::Result<Option<Manifest>> {
        let repo = &image.repo;
        let what = format!("fetching manifest {}", image.target);
        self.fetch_manifest(image, true)
            .await
            .with_context(|| at(repo, &what))
    }

    async fn get_manifest_inner(&self, image: &ImageRef) -> anyhow::Result<Manifest> {
        self.fetch_manifest(image, false)
            .await?
            .ok_or_else(|| anyhow!("the registry has no manifest {}", image.target))
    }

    /// The index the OCI Referrers API (distribution spec 1.1) lists for
    /// `digest` in `repo`: its bytes, or `None` when the registry has no
    /// such API (404, or 400/405 from registries that do not route the
    /// path), the case in which clients use the referrers tag schema.
    pub async fn referrers(
        &self,
        repo: &RepoRef,
        digest: &Digest,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let what = || at(repo, &format!("listing the referrers of {digest}"));
        let url = format!("{}/referrers/{digest}", repo.api_url());
        let mut response = self
            .send(repo, &pull_scope(repo), Method::GET, &url, None, |r| {
                r.header(ACCEPT, "application/vnd.oci.image.index.v1+json")
            })
            .await
            .with_context(what)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => {
                return Ok(None)
            }
            _ => return Err(self.status_error(repo, response).await).with_context(what),
        }
        let content_type =
            header_str(response.headers(), CONTENT_TYPE.as_str()).unwrap_or_default();
        if !content_type.starts_with("application/vnd.oci.image.index.v1+json") {
            // A catch-all route answering 200 with something else is not
            // the API.
            return Ok(None);
        }
        let waits = self.deadlines.waits(None);
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| send_error(e, &url, &waits))
            .with_context(what)?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(anyhow!(
                    "the referrers index is larger than {MAX_MANIFEST_SIZE} bytes"
                ))
                .with_context(what);
            }
        }
        Ok(Some(bytes))
    }

    async fn fetch_manifest(
        &self,
        image: &ImageRef,
        absent_ok: bool,
    ) -> anyhow::Result<Option<Manifest>> {
        let repo = &image.repo;
        let url = format!("{}/manifests/{}", repo.api_url(), image.target);
        let mut response = self
            .send(repo, &pull_scope(repo), Method::GET, &url, None, |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if absent_ok && response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if response.status() != StatusCode::OK {
            return Err(self.status_error(repo, response).await);
        }
        if let Some(n) = response.content_length().filter(|n| *n > MAX_MANIFEST_SIZE) {
            bail!("the registry announces a {n}-byte manifest; manifests are limited to {MAX_MANIFEST_SIZE} bytes");
        }
        let waits = self.deadlines.waits(None);
        let header_digest = header_str(response.headers(), "docker-content-digest");
        let content_type = header_str(response.headers(), CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_string());
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| send_error(e, &url, &waits))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_MANIFEST_SIZE {
                bail!("the manifest is larger than {MAX_MANIFEST_SIZE} bytes");
            }
        }
        let digest = sha256_bytes(&bytes);
        match &image.target {
            Target::Digest(want) if *want != digest => bail!(
                "the registry sent a manifest whose content has digest {digest}, \
                 not the {want} asked for"
            ),
            Target::Tag(_) => {
                if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
                    if h != digest.to_string() {
                        bail!(
                            "the registry sent a manifest whose content has digest {digest}, \
                             but says (Docker-Content-Digest) it is {h}"
                        );
                    }
                }
            }
            _ => {}
        }
        let media_type = match content_type {
            Some(t) if is_manifest_media_type(&t) => t,
            // No or a generic Content-Type: the document says what it is.
            _ => document_media_type(&bytes)?,
        };
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// Uploads `bytes` as blob `digest` to `dest` (small documents: SBOMs,
    /// signature payloads, configs of artifacts).
    pub async fn push_blob_bytes(
        &self,
        dest: &RepoRef,
        digest: &Digest,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let sent = Arc::new(AtomicU64::new(0));
        let body = Bytes::copy_from_slice(bytes);
        self.push_blob_stream(dest, digest, bytes.len() as u64, &sent, || {
            let body = body.clone();
            async move {
                Ok(
                    Box::pin(futures_util::stream::iter([Ok::<Bytes, std::io::Error>(
                        body,
                    )])) as BlobStream,
                )
            }
        })
        .await
    }

    /// Streams blob `digest` of `repo` into `writer`, checking the digest
    /// and (when given) the size on the way; returns the size. The bytes
    /// reach `writer` before the digest can be checked at the end, so on
    /// an error the caller must discard what was written: write to a
    /// temporary file and rename it only on success
    /// ([`Client::fetch_blob_to_file`] does that, and also starts again
    /// when the answer breaks off).
    pub async fn fetch_blob<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        repo: &RepoRef,
        digest: &Digest,
        size: Option<u64>,
        writer: &mut W,
    ) -> anyhow::Result<u64> {
        self.fetch_blob_once(repo, digest, size, writer)
            .await
            .map_err(|e| match e {
                Fetched::Broken(e, _) | Fetched::Failed(e) => e,
            })
            .with_context(|| at(repo, &format!("fetching blob {digest}")))
    }

    /// One try of [`Client::fetch_blob`].
    async fn fetch_blob_once<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        repo: &RepoRef,
        digest: &Digest,
        size: Option<u64>,
        writer: &mut W,
    ) -> Result<u64, Fetched> {
        let url = format!("{}/blobs/{digest}", repo.api_url());
        let mut response = self
            .send(repo, &pull_scope(repo), Method::GET, &url, size, |r| r)
            .await
            .map_err(Fetched::Failed)?;
        if response.status() != StatusCode::OK {
            return Err(Fetched::Failed(self.status_error(repo, response).await));
        }
        check_content_length(&response, digest, size).map_err(Fetched::Failed)?;
        let waits = self.deadlines.waits(size);
        let mut verifier = Verifier::new(digest, size);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                // The answer broke off (a reset, a stall, fewer bytes than
                // its Content-Length): worth another try.
                Err(e) if is_transient(&e) => {
                    let silent = is_silence(&e, &waits);
                    return Err(Fetched::Broken(send_error(e, &url, &waits), silent));
                }
                Err(e) => return Err(Fetched::Failed(send_error(e, &url, &waits))),
            };
            verifier
                .update(&chunk)
                .map_err(|m| Fetched::Failed(anyhow!(m)))?;
            writer
                .write_all(&chunk)
                .await
                .context("writing the blob")
                .map_err(Fetched::Failed)?;
        }
        writer
            .flush()
            .await
            .context("writing the blob")
            .map_err(Fetched::Failed)?;
        verifier.finish().map_err(|m| Fetched::Failed(anyhow!(m)))
    }

    /// [`Client::fetch_blob`] into a temporary file next to `dest`, renamed
    /// to `dest` (mode 0644) only once the bytes are verified. A download
    /// that breaks off (a reset, a stall, an answer shorter than its
    /// `Content-Length`) starts again from its first byte, as the retry
    /// policy says (a silence counts towards [`SILENT_ATTEMPTS`]); a wrong
    /// digest or size is final.
    pub async fn fetch_blob_to_file(
        &self,
        repo: &RepoRef,
        digest: &Digest,
        size: Option<u64>,
        dest: &Path,
    ) -> anyhow::Result<u64> {
        let what = || at(repo, &format!("fetching blob {digest}"));
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut failed = 0;
        let mut silent = 0;
        loop {
            let tmp = tempfile::Builder::new()
                .prefix(".blob")
                .tempfile_in(parent)
                .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
            let file = tmp
                .as_file()
                .try_clone()
                .with_context(|| format!("opening {}", tmp.path().display()))?;
            let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
            let n = match self.fetch_blob_once(repo, digest, size, &mut file).await {
                Ok(n) => n,
                Err(Fetched::Failed(e)) => return Err(e).with_context(what),
                Err(Fetched::Broken(e, was_silent)) => {
                    // The partial file goes with `tmp`.
                    drop(file);
                    drop(tmp);
                    failed += 1;
                    silent += u32::from(was_silent);
                    if silent >= SILENT_ATTEMPTS {
                        return Err(e.context(format!("gave up after {silent} silent tries")))
                            .with_context(what);
                    }
                    if failed >= self.retry.attempts {
                        return Err(e.context(format!("gave up after {failed} tries")))
                            .with_context(what);
                    }
                    let wait = self.retry.next_delay(failed, None);
                    let url = format!("{}/blobs/{digest}", repo.api_url());
                    self.note_retry(&Method::GET, &url, &format!("{e:#}"), failed, wait);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            file.into_inner()
                .sync_all()
                .await
                .with_context(|| format!("writing {}", tmp.path().display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
                    .with_context(|| format!("setting permissions of {}", tmp.path().display()))?;
            }
            tmp.persist(dest)
                .map_err(|e| e.error)
                .with_context(|| format!("renaming a blob into {}", dest.display()))?;
            return Ok(n);
        }
    }

    /// Whether `repo` has blob `digest` (`HEAD`).
    pub async fn blob_exists(&self, repo: &RepoRef, digest: &Digest) -> anyhow::Result<bool> {
        let what = || at(repo, &format!("checking for blob {digest}"));
        let url = format!("{}/blobs/{digest}", repo.api_url());
        let response = self
            .send(repo, &pull_scope(repo), Method::HEAD, &url, None, |r| r)
            .await
            .with_context(what)?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(repo, response).await).with_context(what),
        }
    }

    /// Asks the registry to mount blob `digest` of `from` into `dest`
    /// (same registry): `POST /v2/<dest>/blobs/uploads/?mount=…&from=…`.
    /// `true` when mounted (201). `false` when the registry opened an
    /// upload session instead (202; the blob is missing from `from`, or the
    /// registry does not mount): that session is cancelled.
    pub async fn mount_blob(
        &self,
        dest: &RepoRef,
        digest: &Digest,
        from: &RepoRef,
    ) -> anyhow::Result<bool> {
        let what = || {
            at(
                dest,
                &format!("mounting blob {digest} from {}", from.repository),
            )
        };
        if dest.registry != from.registry {
            return Err(anyhow!(
                "{from} is in another registry: blobs are mounted within one registry only"
            ))
            .with_context(what);
        }
        let mut url =
            Url::parse(&format!("{}/blobs/uploads/", dest.api_url())).with_context(what)?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", &from.repository);
        let scopes = vec![push_scope(dest), pull_scope(from).remove(0)];
        let response = self
            .send(dest, &scopes, Method::POST, url.as_str(), None, |r| {
                r.header(CONTENT_LENGTH, "0")
            })
            .await
            .with_context(what)?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                let session = upload_location(&response).with_context(what)?;
                self.cancel_upload(dest, &session)
                    .await
                    .context("cancelling the upload session the registry opened instead")
                    .with_context(what)?;
                Ok(false)
            }
            _ => Err(self.status_error(dest, response).await).with_context(what),
        }
    }

    /// `DELETE` of an upload session. Registries that cannot cancel
    /// (404/405/501) let it expire on its own, which is not an error.
    async fn cancel_upload(&self, repo: &RepoRef, session: &Url) -> anyhow::Result<()> {
        let response = self
            .send(
                repo,
                &[push_scope(repo)],
                Method::DELETE,
                session.as_str(),
                None,
                |r| r,
            )
            .await?;
        match response.status().as_u16() {
            200..=299 | 404 | 405 | 501 => Ok(()),
            _ => Err(self.status_error(repo, response).await),
        }
    }

    /// Copies blob `digest` (`size` bytes) from `src` to `dest`, which may be
    /// in different registries: a streamed GET from `src` feeds the upload
    /// to `dest` ([`Client::push_blob_stream`]: one monolithic PUT, restarted
    /// when it breaks), never holding the blob in memory. The bytes are
    /// checked against `digest` and `size` on the way; a mismatch aborts the
    /// PUT before its end, so the registry commits nothing, and is not
    /// retried.
    pub async fn copy_blob(
        &self,
        src: &RepoRef,
        dest: &RepoRef,
        digest: &Digest,
        size: u64,
    ) -> anyhow::Result<()> {
        let fetching = || at(src, &format!("fetching blob {digest}"));
        let sent = Arc::new(AtomicU64::new(0));
        self.push_blob_stream(dest, digest, size, &sent, || async {
            let source_url = format!("{}/blobs/{digest}", src.api_url());
            let source = self
                .send(
                    src,
                    &pull_scope(src),
                    Method::GET,
                    &source_url,
                    Some(size),
                    |r| r,
                )
                .await
                .with_context(fetching)?;
            if source.status() != StatusCode::OK {
                return Err(self.status_error(src, source).await).with_context(fetching);
            }
            check_content_length(&source, digest, Some(size)).with_context(fetching)?;
            // The source named in the reason the upload is aborted for.
            let named = fetching();
            let waits = self.deadlines.waits(Some(size));
            let describe = move |e| {
                format!(
                    "reading the blob from its source failed: {:#}",
                    send_error(e, &source_url, &waits)
                )
            };
            let stream =
                verified_stream(source.bytes_stream(), digest, size, describe).map(move |r| {
                    r.map_err(|e| std::io::Error::new(e.kind(), format!("{named}: {e}")))
                });
            Ok(Box::pin(stream) as BlobStream)
        })
        .await
        .with_context(|| format!("copying from {src}"))
    }

    /// Makes blob `digest` available in `dest`: nothing if it is there,
    /// a mount from `src` within one registry, a streamed copy otherwise
    /// (or when the registry does not mount).
    pub async fn ensure_blob(
        &self,
        src: &RepoRef,
        dest: &RepoRef,
        digest: &Digest,
        size: u64,
    ) -> anyhow::Result<Transfer> {
        if self.blob_exists(dest, digest).await? {
            return Ok(Transfer::Exists);
        }
        if src.registry == dest.registry && self.mount_blob(dest, digest, src).await? {
            return Ok(Transfer::Mounted);
        }
        self.copy_blob(src, dest, digest, size).await?;
        Ok(Transfer::Copied)
    }

    /// What `image` (a tag, usually) names in its repository, by one
    /// `HEAD`: its digest (`Docker-Content-Digest`), `None` when absent.
    /// A registry that sends no digest header is asked with a `GET`.
    pub async fn manifest_digest(&self, image: &ImageRef) -> anyhow::Result<Option<Digest>> {
        let repo = &image.repo;
        let what = || at(repo, &format!("checking manifest {}", image.target));
        let url = format!("{}/manifests/{}", repo.api_url(), image.target);
        let response = self
            .send(repo, &pull_scope(repo), Method::HEAD, &url, None, |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await
            .with_context(what)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.status_error(repo, response).await).with_context(what),
        }
        let header = header_str(response.headers(), "docker-content-digest")
            .and_then(|h| h.parse::<Digest>().ok());
        match header {
            Some(d) => Ok(Some(d)),
            None => Ok(Some(self.get_manifest(image).await?.digest)),
        }
    }

    /// Whether `repo` has the manifest or index `image` names (`HEAD`).
    pub async fn manifest_exists(&self, image: &ImageRef) -> anyhow::Result<bool> {
        let repo = &image.repo;
        let what = || at(repo, &format!("checking for manifest {}", image.target));
        let url = format!("{}/manifests/{}", repo.api_url(), image.target);
        let response = self
            .send(repo, &pull_scope(repo), Method::HEAD, &url, None, |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await
            .with_context(what)?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(repo, response).await).with_context(what),
        }
    }

    /// Uploads the file at `path` as blob `digest` (`size` bytes) to `dest`
    /// (see [`Client::push_blob_stream`]).
    pub async fn push_blob_file(
        &self,
        dest: &RepoRef,
        digest: &Digest,
        size: u64,
        path: &Path,
    ) -> anyhow::Result<()> {
        let sent = Arc::new(AtomicU64::new(0));
        self.push_blob_stream(dest, digest, size, &sent, || async {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK);
            Ok(Box::pin(stream) as BlobStream)
        })
        .await
    }

    /// Uploads blob `digest` (`size` bytes) to `dest` from the stream `open`
    /// gives: one monolithic upload (POST, then a PUT with `?digest=` and
    /// `Content-Length`) whose body is sent as it is read, never held in
    /// memory; the registry verifies the digest. `sent` counts the bytes
    /// handed to the connection (for progress; reset when the upload
    /// restarts).
    ///
    /// An upload that breaks off (a reset, a timeout, a 5xx or 429 to the
    /// PUT, a failed read of the stream) is restarted in a new session,
    /// after the wait the retry policy gives, once the registry says
    /// (`HEAD`) that it did not complete the broken one after all. A stream
    /// that fails with [`std::io::ErrorKind::InvalidData`] (its bytes are
    /// not the blob: [`verified_stream`]) ends the upload with that error. A restart rather than a resumption at the
    /// session's `Range`: a monolithic PUT leaves nothing to resume, and
    /// chunked uploads would cost a request per chunk on every blob.
    pub async fn push_blob_stream<F, Fut>(
        &self,
        dest: &RepoRef,
        digest: &Digest,
        size: u64,
        sent: &Arc<AtomicU64>,
        open: F,
    ) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<BlobStream>>,
    {
        let what = || at(dest, &format!("uploading blob {digest}"));
        let mut failed = 0;
        let mut silent = 0;
        loop {
            if failed > 0 && self.blob_exists(dest, digest).await.with_context(what)? {
                return Ok(());
            }
            sent.store(0, Ordering::Relaxed);
            let body = open().await.with_context(what)?;
            let session = self.start_upload(dest).await.with_context(what)?;
            let mut put = session.clone();
            put.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let tally = sent.clone();
            // The HTTP client reports a failed body without the body's own
            // error, which says whether another try can help.
            let body_error = Arc::new(Mutex::new(None::<(std::io::ErrorKind, String)>));
            let seen = body_error.clone();
            let counted = body.map(move |chunk| {
                match &chunk {
                    Ok(c) => {
                        tally.fetch_add(c.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((e.kind(), e.to_string()));
                    }
                }
                chunk
            });
            let activity = Arc::new(Activity::new());
            let watched = Activity::watch(&activity, Box::pin(counted));
            let result = self
                .send_once(
                    dest,
                    &[push_scope(dest)],
                    Method::PUT,
                    put.as_str(),
                    Some(size),
                    Some(&activity),
                    |r| {
                        r.header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, size)
                            .body(reqwest::Body::wrap_stream(watched))
                    },
                )
                .await;
            let body_error = body_error.lock().unwrap_or_else(|p| p.into_inner()).take();
            let result = match (result, body_error) {
                (Ok(Sent::Answer(r)), _) if r.status() == StatusCode::CREATED => return Ok(()),
                (_, Some((std::io::ErrorKind::InvalidData, why))) => {
                    let _ = self.cancel_upload(dest, &session).await;
                    return Err(anyhow!(why)).with_context(what);
                }
                (Ok(Sent::Broken(..)) | Err(_), Some((_, why))) => {
                    Ok(Sent::Broken(anyhow!(why), false))
                }
                (result, _) => result,
            };
            let (wait, why, last) = match result {
                Ok(Sent::Answer(r)) if transient_status(r.status()) => {
                    let after = retry_after(r.headers(), SystemTime::now());
                    let why = format!("HTTP {}", r.status());
                    let e = self.status_error(dest, r).await;
                    (after, why, e)
                }
                Ok(Sent::Answer(r)) => {
                    let e = self.status_error(dest, r).await;
                    let _ = self.cancel_upload(dest, &session).await;
                    return Err(e).with_context(what);
                }
                Ok(Sent::Broken(e, was_silent)) => {
                    silent += u32::from(was_silent);
                    (None, format!("{e:#}"), e)
                }
                Err(e) => {
                    let _ = self.cancel_upload(dest, &session).await;
                    return Err(e).with_context(what);
                }
            };
            // Best effort: the registry lets an abandoned session expire.
            let _ = self.cancel_upload(dest, &session).await;
            failed += 1;
            if silent >= SILENT_ATTEMPTS {
                return Err(last.context(format!("gave up after {silent} silent tries")))
                    .with_context(what);
            }
            if failed >= self.retry.attempts {
                return Err(last.context(format!("gave up after {failed} tries")))
                    .with_context(what);
            }
            let wait = self.retry.next_delay(failed, wait);
            self.note_retry(&Method::PUT, put.as_str(), &why, failed, wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// Opens an upload session in `dest` (`POST …/blobs/uploads/`, 202);
    /// returns its URL.
    async fn start_upload(&self, dest: &RepoRef) -> anyhow::Result<Url> {
        let start = format!("{}/blobs/uploads/", dest.api_url());
        let response = self
            .send(dest, &[push_scope(dest)], Method::POST, &start, None, |r| {
                r.header(CONTENT_LENGTH, "0")
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(dest, response).await);
        }
        upload_location(&response)
    }

    /// Uploads a manifest or index under `image`'s tag or digest with
    /// `media_type` as `Content-Type`; returns its digest. Pushed by
    /// digest, `bytes` must have that digest.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        bytes: &[u8],
        media_type: &str,
    ) -> anyhow::Result<Digest> {
        let repo = &image.repo;
        let what = || at(repo, &format!("uploading manifest {}", image.target));
        let digest = sha256_bytes(bytes);
        if let Target::Digest(want) = &image.target {
            if *want != digest {
                return Err(anyhow!("the manifest's content has digest {digest}"))
                    .with_context(what);
            }
        }
        let url = format!("{}/manifests/{}", repo.api_url(), image.target);
        let body = Bytes::copy_from_slice(bytes);
        let response = self
            .send(repo, &[push_scope(repo)], Method::PUT, &url, None, |r| {
                r.header(CONTENT_TYPE, media_type).body(body.clone())
            })
            .await
            .with_context(what)?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_error(repo, response).await).with_context(what);
        }
        Ok(digest)
    }
}

/// `registry R, repository P: <what>`, the prefix of every error.
fn at(repo: &RepoRef, what: &str) -> String {
    format!(
        "registry {}, repository {}: {what}",
        repo.registry, repo.repository
    )
}

/// The registry's base URL, parsed.
fn registry_url(repo: &RepoRef) -> anyhow::Result<Url> {
    let url = repo.registry_url();
    Url::parse(&url).with_context(|| format!("the registry URL {url:?} is not a URL"))
}

fn pull_scope(repo: &RepoRef) -> Vec<String> {
    vec![format!("repository:{}:pull", repo.repository)]
}

fn push_scope(repo: &RepoRef) -> String {
    format!("repository:{}:pull,push", repo.repository)
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn is_manifest_media_type(t: &str) -> bool {
    media_types::is_manifest(t) || media_types::is_index(t)
}

/// The `mediaType` a manifest document declares; for OCI documents that
/// omit it (it is optional), whether it has `manifests` or `layers`.
fn document_media_type(bytes: &[u8]) -> anyhow::Result<String> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| anyhow!("the manifest is not JSON: {e}"))?;
    if let Some(t) = doc.get("mediaType").and_then(|v| v.as_str()) {
        return Ok(t.to_string());
    }
    if doc.get("manifests").is_some() {
        Ok(media_types::OCI_IMAGE_INDEX.to_string())
    } else if doc.get("layers").is_some() {
        Ok(media_types::OCI_IMAGE_MANIFEST.to_string())
    } else {
        bail!("the registry sent no media type and the document has neither manifests nor layers")
    }
}

/// A `Content-Length` contradicting the expected size fails before any
/// byte is read.
fn check_content_length(
    response: &Response,
    digest: &Digest,
    size: Option<u64>,
) -> anyhow::Result<()> {
    let length =
        header_str(response.headers(), CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if let (Some(length), Some(size)) = (length, size) {
        if length != size {
            bail!(
                "blob {digest} is corrupt: the registry announces {length} bytes, \
                 its descriptor says {size}"
            );
        }
    }
    Ok(())
}

/// The upload session URL of a 202 answer, resolved against the request URL
/// (registries may send a relative `Location`).
fn upload_location(response: &Response) -> anyhow::Result<Url> {
    let location = header_str(response.headers(), LOCATION.as_str())
        .ok_or_else(|| anyhow!("the registry opened an upload session without a Location"))?;
    response
        .url()
        .join(&location)
        .with_context(|| format!("the upload Location {location:?} is not a URL"))
}

/// `inner` passed through a [`Verifier`]: when the bytes do not match
/// `digest` and `size`, the last piece is replaced by an error of kind
/// [`std::io::ErrorKind::InvalidData`] (so an HTTP body built from it is
/// aborted, never completed, and [`Client::push_blob_stream`] does not try
/// again); a failed read of `inner` is an error of another kind.
pub(crate) fn verified_stream<E>(
    inner: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    digest: &Digest,
    size: u64,
    describe: impl Fn(E) -> String + Send + Sync + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let describe = Arc::new(describe);
    let verifier = Some(Verifier::new(digest, Some(size)));
    let state = (Box::pin(inner), verifier);
    futures_util::stream::unfold(state, move |(mut inner, verifier)| {
        let describe = describe.clone();
        async move {
            let mut verifier = verifier?;
            let corrupt = |why: &dyn std::fmt::Display| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
            };
            match inner.next().await {
                Some(Ok(chunk)) => match verifier.update(&chunk) {
                    // The last piece is only passed on once the whole is
                    // verified: a body that got all its Content-Length bytes
                    // would be complete, and the upload committed.
                    Ok(()) if verifier.count() == size => match verifier.finish() {
                        Ok(_) => Some((Ok(chunk), (inner, None))),
                        Err(why) => Some((Err(corrupt(&why)), (inner, None))),
                    },
                    Ok(()) => Some((Ok(chunk), (inner, Some(verifier)))),
                    Err(why) => Some((Err(corrupt(&why)), (inner, None))),
                },
                Some(Err(e)) => Some((Err(std::io::Error::other(describe(e))), (inner, None))),
                None => match verifier.finish() {
                    Ok(_) => None,
                    Err(why) => Some((Err(corrupt(&why)), (inner, None))),
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_from_document() {
        let t = |s: &str| document_media_type(s.as_bytes()).unwrap();
        assert_eq!(
            t(r#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#),
            media_types::DOCKER_MANIFEST_V2
        );
        assert_eq!(t(r#"{"manifests":[]}"#), media_types::OCI_IMAGE_INDEX);
        assert_eq!(t(r#"{"layers":[]}"#), media_types::OCI_IMAGE_MANIFEST);
        assert!(document_media_type(b"{}").is_err());
        assert!(document_media_type(b"nope").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn verified_stream_fails_at_the_end() {
        let good = sha256_bytes(b"abcdef");
        let chunks = || {
            futures_util::stream::iter(vec![
                Ok(Bytes::from_static(b"abc")),
                Ok(Bytes::from_static(b"def")),
            ])
        };
        let out: Vec<_> = verified_stream(chunks(), &good, 6, |e: reqwest::Error| e.to_string())
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.is_ok()));

        let other = sha256_bytes(b"abcdeF");
        let out: Vec<_> = verified_stream(chunks(), &other, 6, |e: reqwest::Error| e.to_string())
            .collect()
            .await;
        // The last piece is withheld: the error takes its place.
        assert_eq!(out.len(), 2);
        let e = out[1].as_ref().unwrap_err();
        assert!(out[0].is_ok());
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("corrupt"), "{e}");

        // Too short: the error comes after the last piece.
        let out: Vec<_> = verified_stream(chunks(), &good, 7, |e: reqwest::Error| e.to_string())
            .collect()
            .await;
        assert_eq!(out.len(), 3);
        let e = out[2].as_ref().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("6 bytes arrived"), "{e}");
    }
}
