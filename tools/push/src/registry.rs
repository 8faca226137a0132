//! Pushing services to registries, through `kiln_registry::Client` (Docker
//! config and credential helpers, Basic and Bearer authentication, retries,
//! blob mounts and registry-to-registry copies).
//!
//! One push or a whole release is one run of the same plan, in the order
//! that keeps every registry consistent:
//! 1. each service's tags are asked for (`HEAD`): a service whose tags all
//!    name its digest already is done, with no write at all; one whose top
//!    manifest is there by digest needs its tags only;
//! 2. blobs, each digest once for all services: uploaded to one repository
//!    (or found in one), then mounted into the others, a bounded number at
//!    a time;
//! 3. manifests by digest, children before the index naming them;
//! 4. referrers and signatures (`referrers.rs`, `sign.rs`): each SBOM
//!    attached to its platform manifest (not for a service that is up to
//!    date: the push that set its tags attached them), each top digest
//!    signed with `--sign-key`; both only name content in place by then;
//! 5. tags, last, once every service's content is in place: a failure
//!    before this step leaves no new tag anywhere.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::{StreamExt, TryStreamExt};
use kiln_oci::reference::Repository;
use kiln_oci::Digest;
use kiln_registry::cas::RemoteCache;
use kiln_registry::{
    BlobStream, Client, ClientOptions, DockerConfig, ImageRef, RepoRef, Target, Transfer,
};

use crate::plan::{BlobSource, Manifest, Plan};
use crate::progress::{Progress, Upload};
use crate::referrers;
use crate::sign::{self, SigningKey};

/// Blobs transferred at once: enough to overlap round trips, few enough not
/// to saturate a CI uplink or trip a registry's rate limits.
pub const UPLOAD_CONCURRENCY: usize = 4;

/// Services whose manifests are checked and written at once.
const MANIFEST_CONCURRENCY: usize = 4;

/// One image or index to push to one repository.
pub struct Service {
    /// What to name in messages: the push target's label (or the layout).
    pub target: String,
    /// The repository as the user named it.
    pub display: Repository,
    pub repo: RepoRef,
    pub tags: Vec<String>,
    pub plan: Plan,
    /// SBOMs to attach as referrers of the plan's manifests.
    pub sboms: Vec<Sbom>,
}

/// An SBOM and the manifest (of the plan) it describes.
pub struct Sbom {
    pub bytes: Vec<u8>,
    pub subject: kiln_oci::Descriptor,
}

impl Sbom {
    /// Reads the SBOM at `path`; its subject must be a manifest of `plan`.
    pub fn load(path: &Path, plan: &Plan) -> anyhow::Result<Sbom> {
        let what = || format!("--sbom {}", path.display());
        let bytes = std::fs::read(path).with_context(what)?;
        let digest = kiln_oci::sbom::subject_digest(&bytes).with_context(what)?;
        let manifest = plan
            .children
            .iter()
            .chain([&plan.top])
            .find(|m| m.digest == digest)
            .ok_or_else(|| {
                anyhow!(
                    "{}: its image {digest} is not one of the manifests pushed",
                    what()
                )
            })?;
        let subject = kiln_oci::Descriptor::new(
            manifest.media_type.clone(),
            digest,
            manifest.bytes.len() as u64,
        );
        Ok(Sbom { bytes, subject })
    }
}

impl Service {
    pub fn new(
        target: String,
        display: Repository,
        tags: Vec<String>,
        plan: Plan,
    ) -> anyhow::Result<Service> {
        let repo = RepoRef::new(&display.registry, &display.path)
            .map_err(|e| anyhow!("{target}: repository \"{display}\": {e}"))?;
        Ok(Service {
            target,
            display,
            repo,
            tags,
            plan,
            sboms: Vec::new(),
        })
    }
}

/// What step 1 found for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// Every tag names the digest already.
    Nothing,
    /// The top manifest is there: these tags are set.
    Tags(Vec<String>),
    /// Blobs and manifests as needed, then these tags.
    Content(Vec<String>),
}

/// A blob needed by some services, moved once.
#[derive(Debug)]
pub struct BlobJob<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    /// Where its bytes are: a local file rather than the cache, the cache
    /// rather than another registry.
    pub source: &'a BlobSource,
    /// What names it (`layer of image manifest sha256:…`), for errors.
    pub named_by: &'a str,
    /// The services that need it, one per distinct repository.
    pub services: Vec<usize>,
    /// Services that have it already (their manifests are in place, and a
    /// registry accepts a manifest only once its blobs are there): what
    /// the others mount it from.
    pub holders: Vec<usize>,
}

/// The blobs of the services that need content, each digest once, in
/// first-seen order.
pub fn blob_jobs<'a>(services: &'a [Service], needs: &[Needs]) -> Vec<BlobJob<'a>> {
    let mut jobs: Vec<BlobJob> = Vec::new();
    let mut by_digest: HashMap<&Digest, usize> = HashMap::new();
    for (i, service) in services.iter().enumerate() {
        if !matches!(needs[i], Needs::Content(_)) {
            continue;
        }
        for blob in &service.plan.blobs {
            let n = *by_digest.entry(&blob.digest).or_insert_with(|| {
                jobs.push(BlobJob {
                    digest: &blob.digest,
                    size: blob.size,
                    source: &blob.source,
                    named_by: &blob.named_by,
                    services: Vec::new(),
                    holders: Vec::new(),
                });
                jobs.len() - 1
            });
            let job = &mut jobs[n];
            if rank(&blob.source) < rank(job.source) {
                job.source = &blob.source;
            }
            if !job
                .services
                .iter()
                .any(|&j| services[j].repo == service.repo)
            {
                job.services.push(i);
            }
        }
    }
    for (i, service) in services.iter().enumerate() {
        if matches!(needs[i], Needs::Content(_)) {
            continue;
        }
        for blob in &service.plan.blobs {
            if let Some(&n) = by_digest.get(&blob.digest) {
                let job = &mut jobs[n];
                if !job
                    .holders
                    .iter()
                    .any(|&j| services[j].repo == service.repo)
                {
                    job.holders.push(i);
                }
            }
        }
    }
    jobs
}

/// Why the local file of `job`'s blob cannot be what its digest says, if it
/// is not: its content has another digest or size.
fn corrupt_local_blob(path: &Path, job: &BlobJob<'_>) -> Option<String> {
    let (digest, size) = kiln_oci::sha256_file(path).ok()?;
    (digest != *job.digest || size != job.size).then(|| {
        format!(
            "blob {} ({}), {}, is corrupt: its content has digest {digest} and size {size}, not size {}",
            job.digest,
            path.display(),
            job.named_by,
            job.size
        )
    })
}

fn rank(source: &BlobSource) -> u8 {
    match source {
        BlobSource::Local(_) => 0,
        BlobSource::Lazy(_) => 1,
        BlobSource::Remote(_) => 2,
    }
}

pub struct Pusher {
    client: Client,
    progress: Arc<Progress>,
    /// The remote cache lazy blobs are read from.
    cas: Option<RemoteCache>,
    /// Why there is no cache, for the error of a lazy blob that needs one.
    no_cas: String,
    /// `--sign-key`: each service's top digest is signed with it.
    sign_key: Option<SigningKey>,
    /// Registries known to lack the Referrers API (asked once per run).
    no_referrers_api: std::sync::Mutex<Vec<String>>,
}

impl Pusher {
    /// Builds the client (credentials from `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json` and their helpers) and contacts each
    /// registry (`GET /v2/`), so that an unreachable registry fails before
    /// anything else is attempted.
    pub async fn connect(
        services: &[Service],
        progress: Arc<Progress>,
        cas: Option<RemoteCache>,
        no_cas: String,
        sign_key: Option<SigningKey>,
    ) -> anyhow::Result<Pusher> {
        let docker_config = DockerConfig::load_default().context("reading registry credentials")?;
        let notify = progress.clone();
        let client = Client::new(ClientOptions {
            docker_config,
            user_agent: concat!("rules_kiln-kiln-push/", env!("CARGO_PKG_VERSION")).to_string(),
        })?
        .on_retry(move |line| notify.line(line));
        let mut pinged: Vec<&str> = Vec::new();
        for service in services {
            if pinged.contains(&service.repo.registry.as_str()) {
                continue;
            }
            pinged.push(&service.repo.registry);
            client
                .ping(&service.repo)
                .await
                .with_context(|| service.target.clone())?;
        }
        Ok(Pusher {
            client,
            progress,
            cas,
            no_cas,
            sign_key,
            no_referrers_api: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Pushes every service (steps 1 to 4 above); returns each one's
    /// digest, in order.
    pub async fn push(&self, services: &[Service]) -> anyhow::Result<Vec<Digest>> {
        // 1. What each service needs.
        let needs: Vec<Needs> = futures_util::stream::iter(services)
            .map(|s| async move { self.needs(s).await.with_context(|| s.target.clone()) })
            .buffered(MANIFEST_CONCURRENCY)
            .try_collect()
            .await?;
        for (service, need) in services.iter().zip(&needs) {
            if *need == Needs::Nothing {
                self.progress.line(&format!(
                    "up to date: {} (every tag names {})",
                    service.display, service.plan.top.digest
                ));
            }
        }

        // 2. Blobs, each once.
        let jobs = blob_jobs(services, &needs);
        let blobs = futures_util::stream::iter(&jobs)
            .map(|job| self.blob(job, services))
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<()>>();
        self.with_redraws(blobs).await?;

        // 3. Manifests, children first.
        futures_util::stream::iter(services.iter().zip(&needs))
            .filter(|(_, n)| std::future::ready(matches!(n, Needs::Content(_))))
            .map(|(s, _)| async move {
                for m in s.plan.children.iter().chain([&s.plan.top]) {
                    self.manifest(s, m)
                        .await
                        .with_context(|| s.target.clone())?;
                }
                anyhow::Ok(())
            })
            .buffer_unordered(MANIFEST_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;

        // 4. Referrers and signatures: what they name is in place.
        for (service, need) in services.iter().zip(&needs) {
            // Tags are set last, once referrers are attached: a service whose
            // tags all name its digest has had its SBOMs attached by the push
            // that set them (only --sign-key, asked for each time, is checked).
            let sboms = if *need == Needs::Nothing {
                &[][..]
            } else {
                &service.sboms[..]
            };
            for sbom in sboms {
                self.attach_sbom(service, sbom).await.with_context(|| {
                    format!("{}: SBOM of {}", service.target, sbom.subject.digest)
                })?;
            }
            if let Some(key) = &self.sign_key {
                self.sign(service, key).await.with_context(|| {
                    format!("{}: signing {}", service.target, service.plan.top.digest)
                })?;
            }
        }

        // 5. Tags, last.
        for (service, need) in services.iter().zip(&needs) {
            let tags = match need {
                Needs::Nothing => &Vec::new(),
                Needs::Tags(t) | Needs::Content(t) => t,
            };
            let unchanged = service.tags.len() - tags.len();
            self.progress
                .count(|t| t.tags_unchanged += unchanged as u64);
            for tag in tags {
                let image = ImageRef::new(service.repo.clone(), Target::Tag(tag.clone()));
                self.client
                    .put_manifest(
                        &image,
                        &service.plan.top.bytes,
                        &service.plan.top.media_type,
                    )
                    .await
                    .with_context(|| service.target.clone())?;
                self.progress.count(|t| t.tags_written += 1);
                self.progress
                    .line(&format!("tagged {}:{tag}", service.display));
            }
        }
        Ok(services.iter().map(|s| s.plan.top.digest.clone()).collect())
    }

    /// Step 1 for one service: a `HEAD` per tag, and one of the top
    /// manifest by digest unless every tag names it.
    async fn needs(&self, service: &Service) -> anyhow::Result<Needs> {
        let top = &service.plan.top.digest;
        let mut missing = Vec::new();
        for tag in &service.tags {
            let image = ImageRef::new(service.repo.clone(), Target::Tag(tag.clone()));
            if self.client.manifest_digest(&image).await?.as_ref() != Some(top) {
                missing.push(tag.clone());
            }
        }
        if !service.tags.is_empty() && missing.is_empty() {
            return Ok(Needs::Nothing);
        }
        let image = ImageRef::new(service.repo.clone(), Target::Digest(top.clone()));
        Ok(if self.client.manifest_exists(&image).await? {
            self.progress.line(&format!(
                "exists manifest {top} ({} bytes) in {}",
                service.plan.top.bytes.len(),
                service.display
            ));
            Needs::Tags(missing)
        } else {
            Needs::Content(missing)
        })
    }

    /// Runs `work`, redrawing the live lines while it runs (on a terminal).
    async fn with_redraws<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        if !self.progress.is_live() {
            return work.await;
        }
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => {
                    self.progress.redraw();
                    return out;
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => self.progress.redraw(),
            }
        }
    }

    /// Step 2 for one blob: found where it is, mounted from there into
    /// the repositories that lack it; moved (uploaded, fetched from the
    /// cache, copied) once only when no repository has it.
    async fn blob(&self, job: &BlobJob<'_>, services: &[Service]) -> anyhow::Result<()> {
        let digest = job.digest;
        let mut have: HashMap<&str, usize> = HashMap::new();
        for &i in &job.holders {
            have.entry(&services[i].repo.registry).or_insert(i);
        }
        let mut missing = Vec::new();
        for &i in &job.services {
            let s = &services[i];
            if self
                .client
                .blob_exists(&s.repo, digest)
                .await
                .with_context(|| s.target.clone())?
            {
                self.progress.count(|t| t.present += 1);
                self.progress.line(&format!(
                    "exists blob {digest} ({} bytes) in {}",
                    job.size, s.display
                ));
                have.entry(&s.repo.registry).or_insert(i);
            } else {
                missing.push(i);
            }
        }
        for i in missing {
            let s = &services[i];
            if let Some(&from) = have.get(s.repo.registry.as_str()) {
                let from = &services[from];
                if self
                    .client
                    .mount_blob(&s.repo, digest, &from.repo)
                    .await
                    .with_context(|| s.target.clone())?
                {
                    self.progress.count(|t| t.mounted += 1);
                    self.progress.line(&format!(
                        "mounted blob {digest} ({} bytes) into {} from {}",
                        job.size, s.display, from.repo.repository
                    ));
                    continue;
                }
            }
            self.transfer(job, s)
                .await
                .with_context(|| format!("{}: blob {digest}", s.target))?;
            have.entry(&s.repo.registry).or_insert(i);
        }
        Ok(())
    }

    /// Moves the bytes of `job`'s blob into `service`'s repository.
    async fn transfer(&self, job: &BlobJob<'_>, service: &Service) -> anyhow::Result<()> {
        let (digest, size, dest) = (job.digest, job.size, &service.repo);
        match job.source {
            BlobSource::Local(path) => self.upload_file(job, service, path, "pushed").await,
            BlobSource::Lazy(output) => {
                let local = std::fs::metadata(output)
                    .map(|m| m.is_file() && m.len() == size)
                    .unwrap_or(false);
                if local {
                    return self.upload_file(job, service, output, "pushed").await;
                }
                let Some(cas) = &self.cas else {
                    return Err(anyhow!(
                        "not in the local outputs ({}) and {}",
                        output.display(),
                        self.no_cas
                    ));
                };
                // Asked once up front: a blob the cache lacks is an error
                // naming it, not an upload that fails half-way.
                if !cas.has(digest, size).await? {
                    return Err(anyhow!(
                        "neither in the local outputs ({}) nor in the remote cache ({}): \
                         build the images again with this remote cache, or push eagerly \
                         (--@rules_kiln//settings:push=eager)",
                        output.display(),
                        cas.describe(digest, size)
                    ));
                }
                let upload = self.progress.start_upload(short(digest), size);
                let result = self
                    .client
                    .push_blob_stream(dest, digest, size, &upload.sent, || async {
                        cas.open(digest, size).await?.ok_or_else(|| {
                            anyhow!(
                                "the remote cache no longer has {}",
                                cas.describe(digest, size)
                            )
                        })
                    })
                    .await;
                self.finish(
                    upload,
                    result,
                    job,
                    service,
                    "pushed (from the remote cache)",
                )
            }
            BlobSource::Remote(from) => {
                let transfer = self.client.ensure_blob(from, dest, digest, size).await?;
                let line = match transfer {
                    Transfer::Exists => {
                        self.progress.count(|t| t.present += 1);
                        format!("exists blob {digest} ({size} bytes) in {}", service.display)
                    }
                    Transfer::Mounted => {
                        self.progress.count(|t| t.mounted += 1);
                        format!(
                            "mounted blob {digest} ({size} bytes) into {} from {from}",
                            service.display
                        )
                    }
                    Transfer::Copied => {
                        self.progress.count(|t| t.copied += 1);
                        format!(
                            "copied blob {digest} ({size} bytes) into {} from {from}",
                            service.display
                        )
                    }
                };
                self.progress.line(&line);
                Ok(())
            }
        }
    }

    async fn upload_file(
        &self,
        job: &BlobJob<'_>,
        service: &Service,
        path: &Path,
        word: &str,
    ) -> anyhow::Result<()> {
        let upload = self.progress.start_upload(short(job.digest), job.size);
        let result = self
            .client
            .push_blob_stream(
                &service.repo,
                job.digest,
                job.size,
                &upload.sent,
                || async {
                    let file = tokio::fs::File::open(path)
                        .await
                        .with_context(|| format!("opening {}", path.display()))?;
                    Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                        file,
                        256 * 1024,
                    )) as BlobStream)
                },
            )
            .await;
        let result = match result {
            // A registry refuses bytes that do not match their digest
            // (DIGEST_INVALID) in its own words; the local file and the
            // document naming it are what the user must look at.
            Err(e) => Err(match corrupt_local_blob(path, job) {
                Some(corrupt) => e.context(corrupt),
                None => e,
            }),
            ok => ok,
        };
        self.finish(upload, result, job, service, word)
    }

    fn finish(
        &self,
        upload: Upload,
        result: anyhow::Result<()>,
        job: &BlobJob<'_>,
        service: &Service,
        word: &str,
    ) -> anyhow::Result<()> {
        match result {
            Ok(()) => {
                self.progress.count(|t| {
                    t.uploaded += 1;
                    t.uploaded_bytes += job.size;
                });
                let text = format!(
                    "{word} blob {} ({} bytes) to {}",
                    job.digest, job.size, service.display
                );
                self.progress.finish_upload(upload, Some(text));
                Ok(())
            }
            Err(e) => {
                self.progress.finish_upload(upload, None);
                Err(e)
            }
        }
    }

    /// Step 3 for one manifest: by digest, unless it is there.
    async fn manifest(&self, service: &Service, manifest: &Manifest) -> anyhow::Result<()> {
        let image = ImageRef::new(
            service.repo.clone(),
            Target::Digest(manifest.digest.clone()),
        );
        let word = if self.client.manifest_exists(&image).await? {
            self.progress.count(|t| t.manifests_present += 1);
            "exists"
        } else {
            self.client
                .put_manifest(&image, &manifest.bytes, &manifest.media_type)
                .await?;
            self.progress.count(|t| t.manifests_written += 1);
            "pushed"
        };
        self.progress.line(&format!(
            "{word} manifest {} ({} bytes) in {}",
            manifest.digest,
            manifest.bytes.len(),
            service.display
        ));
        Ok(())
    }
}

impl Pusher {
    /// A small blob (an SBOM, a signature payload, an artifact config)
    /// uploaded from memory unless the repository has it.
    async fn small_blob(&self, service: &Service, bytes: &[u8]) -> anyhow::Result<()> {
        let digest = kiln_oci::sha256_bytes(bytes);
        if self.client.blob_exists(&service.repo, &digest).await? {
            self.progress.count(|t| t.present += 1);
            return Ok(());
        }
        self.client
            .push_blob_bytes(&service.repo, &digest, bytes)
            .await?;
        self.progress.count(|t| {
            t.uploaded += 1;
            t.uploaded_bytes += bytes.len() as u64;
        });
        self.progress.line(&format!(
            "pushed blob {digest} ({} bytes) to {}",
            bytes.len(),
            service.display
        ));
        Ok(())
    }

    /// A manifest by digest, unless the repository has it.
    async fn small_manifest(
        &self,
        service: &Service,
        bytes: &[u8],
        media_type: &str,
    ) -> anyhow::Result<Digest> {
        let digest = kiln_oci::sha256_bytes(bytes);
        let image = ImageRef::new(service.repo.clone(), Target::Digest(digest.clone()));
        if self.client.manifest_exists(&image).await? {
            self.progress.count(|t| t.manifests_present += 1);
        } else {
            self.client.put_manifest(&image, bytes, media_type).await?;
            self.progress.count(|t| t.manifests_written += 1);
        }
        Ok(digest)
    }

    /// Attaches one SBOM: nothing when the subject's referrers list it
    /// already (the API's answer, or the fallback tag's index); else its
    /// blobs and manifest, then (without the API) the fallback index with
    /// it added to what was there.
    async fn attach_sbom(&self, service: &Service, sbom: &Sbom) -> anyhow::Result<()> {
        let sbom_desc = kiln_oci::Descriptor::new(
            referrers::SPDX_MEDIA_TYPE,
            kiln_oci::sha256_bytes(&sbom.bytes),
            sbom.bytes.len() as u64,
        );
        let manifest = referrers::sbom_manifest(&sbom.subject, &sbom_desc)?;
        let digest = kiln_oci::sha256_bytes(&manifest);
        let registry = service.repo.registry.clone();
        let known_without = self
            .no_referrers_api
            .lock()
            .map(|l| l.contains(&registry))
            .unwrap_or(false);
        let api = if known_without {
            None
        } else {
            self.client
                .referrers(&service.repo, &sbom.subject.digest)
                .await?
        };
        let fallback = ImageRef::new(
            service.repo.clone(),
            Target::Tag(referrers::fallback_tag(&sbom.subject.digest)),
        );
        let existing = match &api {
            Some(index) => {
                if referrers::lists(index, &digest) {
                    self.progress.line(&format!(
                        "exists SBOM referrer {digest} of {} in {}",
                        sbom.subject.digest, service.display
                    ));
                    return Ok(());
                }
                None
            }
            None => {
                if let Ok(mut l) = self.no_referrers_api.lock() {
                    if !l.contains(&registry) {
                        l.push(registry.clone());
                    }
                }
                let existing = self.client.find_manifest(&fallback).await?;
                if let Some(m) = &existing {
                    if referrers::lists(&m.bytes, &digest) {
                        self.progress.line(&format!(
                            "exists SBOM referrer {digest} of {} in {} (tag {})",
                            sbom.subject.digest, service.display, fallback.target
                        ));
                        return Ok(());
                    }
                }
                existing
            }
        };
        self.small_blob(service, referrers::EMPTY_BLOB).await?;
        self.small_blob(service, &sbom.bytes).await?;
        self.small_manifest(service, &manifest, referrers::OCI_MANIFEST)
            .await?;
        if api.is_some() {
            self.progress.line(&format!(
                "attached SBOM {digest} to {} in {} (referrers API)",
                sbom.subject.digest, service.display
            ));
            return Ok(());
        }
        let index = referrers::add_to_index(
            existing.as_ref().map(|m| m.bytes.as_slice()),
            &digest,
            manifest.len() as u64,
        )?;
        self.client
            .put_manifest(&fallback, &index, referrers::OCI_INDEX)
            .await?;
        self.progress.count(|t| t.tags_written += 1);
        self.progress.line(&format!(
            "attached SBOM {digest} to {} in {} (tag {})",
            sbom.subject.digest, service.display, fallback.target
        ));
        Ok(())
    }

    /// Signs the service's top digest: its signature added to the
    /// `sha256-<hex>.sig` manifest (others' kept), unless it is there.
    async fn sign(&self, service: &Service, key: &SigningKey) -> anyhow::Result<()> {
        let top = &service.plan.top.digest;
        let payload = sign::payload(&service.display.to_string(), top);
        let signature = key.sign(&payload);
        let tag = ImageRef::new(service.repo.clone(), Target::Tag(sign::signature_tag(top)));
        let existing = self.client.find_manifest(&tag).await?;
        let Some(new) = sign::signature_manifest(
            existing.as_ref().map(|m| m.bytes.as_slice()),
            &payload,
            &signature,
        )?
        else {
            self.progress.line(&format!(
                "exists signature of {top} in {} (tag {})",
                service.display, tag.target
            ));
            return Ok(());
        };
        self.small_blob(service, &payload).await?;
        self.small_blob(service, &new.config).await?;
        self.client
            .put_manifest(&tag, &new.manifest, referrers::OCI_MANIFEST)
            .await?;
        self.progress.count(|t| t.tags_written += 1);
        self.progress.line(&format!(
            "signed {top} in {} (tag {})",
            service.display, tag.target
        ));
        Ok(())
    }
}

/// `sha256:0123456789ab`: enough of a digest for a live line.
fn short(digest: &Digest) -> String {
    let s = digest.to_string();
    s.chars().take(19).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Blob;
    use std::path::PathBuf;

    fn service(name: &str, registry: &str, blobs: &[(&str, BlobSource)]) -> Service {
        let top = Manifest {
            digest: kiln_oci::sha256_bytes(name.as_bytes()),
            media_type: kiln_oci::media_types::OCI_IMAGE_INDEX.into(),
            bytes: name.as_bytes().to_vec(),
        };
        let blobs = blobs
            .iter()
            .map(|(content, source)| Blob {
                digest: kiln_oci::sha256_bytes(content.as_bytes()),
                size: content.len() as u64,
                source: source.clone(),
                named_by: format!("layer of //{name}"),
            })
            .collect();
        Service::new(
            format!("//{name}:push"),
            Repository::parse(&format!("{registry}/kiln/{name}")).unwrap(),
            vec!["v1".into()],
            Plan {
                blobs,
                children: vec![],
                top,
            },
        )
        .unwrap()
    }

    #[test]
    fn shared_blobs_are_one_job_for_every_service_that_needs_them() {
        let local = |p: &str| BlobSource::Local(PathBuf::from(p));
        let lazy = |p: &str| BlobSource::Lazy(PathBuf::from(p));
        let services = vec![
            service(
                "a",
                "r.example",
                &[("base", lazy("out/base")), ("a", local("a"))],
            ),
            service(
                "b",
                "r.example",
                &[("base", local("runfiles/base")), ("b", local("b"))],
            ),
            service(
                "c",
                "r.example",
                &[("base", local("c/base")), ("c", local("c"))],
            ),
            service("d", "other.example", &[("base", local("d/base"))]),
        ];
        let needs = vec![
            Needs::Content(vec!["v1".into()]),
            Needs::Content(vec![]),
            Needs::Nothing,
            Needs::Content(vec![]),
        ];
        let jobs = blob_jobs(&services, &needs);
        let base = kiln_oci::sha256_bytes(b"base");
        let order: Vec<&Digest> = jobs.iter().map(|j| j.digest).collect();
        assert_eq!(
            order,
            vec![
                &base,
                &kiln_oci::sha256_bytes(b"a"),
                &kiln_oci::sha256_bytes(b"b")
            ],
            "first-seen order, each digest once, nothing of a service that needs none"
        );
        // The base: one job for a, b and d (c is up to date); a local file
        // wins over the lazy output.
        assert_eq!(jobs[0].services, vec![0, 1, 3]);
        assert_eq!(
            jobs[0].holders,
            vec![2],
            "c has it: the others mount from there"
        );
        assert_eq!(jobs[0].source, &local("runfiles/base"));
        assert_eq!(jobs[1].services, vec![0]);
        assert!(jobs[1].holders.is_empty());
    }

    #[test]
    fn one_repository_gets_a_blob_once_even_from_two_services() {
        let local = |p: &str| BlobSource::Local(PathBuf::from(p));
        let mut twin = service("a", "r.example", &[("x", local("x"))]);
        twin.target = "//twin:push".into();
        let services = vec![service("a", "r.example", &[("x", local("x"))]), twin];
        let needs = vec![Needs::Content(vec![]), Needs::Content(vec![])];
        let jobs = blob_jobs(&services, &needs);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].services, vec![0]);
    }
}
