//! Talking to the registry, through `kiln_registry::Client` (Docker config
//! and credential helpers, Basic and Bearer authentication, blob mounts and
//! registry-to-registry copies).

use anyhow::{anyhow, Context};
use futures_util::{StreamExt, TryStreamExt};
use kiln_oci::reference::Repository;
use kiln_oci::Digest;
use kiln_registry::{Client, ClientOptions, DockerConfig, ImageRef, RepoRef, Target, Transfer};

use crate::plan::{Blob, BlobSource, Manifest, Plan};

/// Blobs transferred at once: enough to overlap round trips, few enough not
/// to saturate a CI uplink or trip a registry's rate limits.
const UPLOAD_CONCURRENCY: usize = 4;

pub struct Registry {
    client: Client,
    /// Where everything goes.
    repo: RepoRef,
    /// The repository as the user named it, for the messages.
    display: Repository,
}

impl Registry {
    /// Builds the client (credentials from `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json` and their helpers) and contacts the registry
    /// (`GET /v2/`), so that an unreachable registry fails before anything
    /// else is attempted.
    pub async fn connect(repository: Repository) -> anyhow::Result<Self> {
        let repo = RepoRef::new(&repository.registry, &repository.path)
            .map_err(|e| anyhow!("--repository \"{repository}\": {e}"))?;
        let docker_config = DockerConfig::load_default().context("reading registry credentials")?;
        let client = Client::new(ClientOptions {
            docker_config,
            user_agent: concat!("rules_kiln-kiln-push/", env!("CARGO_PKG_VERSION")).to_string(),
        })?;
        client.ping(&repo).await?;
        Ok(Registry {
            client,
            repo,
            display: repository,
        })
    }

    /// Uploads everything in the order that keeps the registry consistent:
    /// blobs, child manifests, the top manifest by digest, and only then tags.
    pub async fn push(&self, plan: &Plan, tags: &[String]) -> anyhow::Result<Digest> {
        futures_util::stream::iter(&plan.blobs)
            .map(|blob| self.push_blob(blob))
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;

        for manifest in &plan.children {
            self.push_manifest_by_digest(manifest).await?;
        }
        self.push_manifest_by_digest(&plan.top).await?;

        for tag in tags {
            let image = ImageRef::new(self.repo.clone(), Target::Tag(tag.clone()));
            self.client
                .put_manifest(&image, &plan.top.bytes, &plan.top.media_type)
                .await?;
            eprintln!("kiln-push: tagged {}:{tag}", self.display);
        }
        Ok(plan.top.digest.clone())
    }

    async fn push_blob(&self, blob: &Blob) -> anyhow::Result<()> {
        let digest = &blob.digest;
        let line = match &blob.source {
            BlobSource::Local(path) => {
                if self.client.blob_exists(&self.repo, digest).await? {
                    format!("exists blob {digest} ({} bytes)", blob.size)
                } else {
                    self.client
                        .push_blob_file(&self.repo, digest, blob.size, path)
                        .await?;
                    format!("pushed blob {digest} ({} bytes)", blob.size)
                }
            }
            // Absent from the layout (a shallow base): registry-side only,
            // never from local bytes.
            BlobSource::Remote(from) => {
                match self
                    .client
                    .ensure_blob(from, &self.repo, digest, blob.size)
                    .await?
                {
                    Transfer::Exists => format!("exists blob {digest} ({} bytes)", blob.size),
                    Transfer::Mounted => {
                        format!("mounted blob {digest} ({} bytes) from {from}", blob.size)
                    }
                    Transfer::Copied => {
                        format!("copied blob {digest} ({} bytes) from {from}", blob.size)
                    }
                }
            }
        };
        eprintln!("kiln-push: {line}");
        Ok(())
    }

    async fn push_manifest_by_digest(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let image = ImageRef::new(self.repo.clone(), Target::Digest(manifest.digest.clone()));
        let word = if self.client.manifest_exists(&image).await? {
            "exists"
        } else {
            self.client
                .put_manifest(&image, &manifest.bytes, &manifest.media_type)
                .await?;
            "pushed"
        };
        eprintln!(
            "kiln-push: {word} manifest {} ({} bytes)",
            manifest.digest,
            manifest.bytes.len()
        );
        Ok(())
    }
}
