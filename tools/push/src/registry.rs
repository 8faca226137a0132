//! Talking to the registry, through oci-client.

use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::{StreamExt, TryStreamExt};
use kiln_oci::reference::Repository;
use kiln_oci::Digest;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio_util::io::ReaderStream;

use crate::plan::{Blob, Manifest, Plan};

/// Blobs uploaded at once: enough to overlap round trips, few enough not to
/// saturate a CI uplink or trip a registry's rate limits.
const UPLOAD_CONCURRENCY: usize = 4;

/// Streamed uploads read the file in pieces this big.
const READ_CHUNK: usize = 256 * 1024;

/// How kiln-push authenticates to a registry.
///
/// Only anonymous access exists so far. Registry credentials (docker config,
/// credential helpers) are a later issue: they become new variants here and
/// map to `RegistryAuth::Basic`/`Bearer` below; nothing else changes.
#[derive(Debug, Clone)]
pub enum Credentials {
    Anonymous,
}

impl Credentials {
    pub fn for_registry(_registry: &str) -> Credentials {
        Credentials::Anonymous
    }

    fn registry_auth(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
        }
    }
}

pub struct Registry {
    client: Client,
    repository: Repository,
    auth: RegistryAuth,
}

/// Whether an upload found the content already there.
enum Outcome {
    Pushed,
    Exists,
}

impl Outcome {
    fn word(&self) -> &'static str {
        match self {
            Outcome::Pushed => "pushed",
            Outcome::Exists => "exists",
        }
    }
}

impl Registry {
    /// Builds the client and performs the registry's auth handshake (GET /v2/,
    /// then a token request if the registry asks for one). This also makes an
    /// unreachable registry fail before anything else is attempted.
    pub async fn connect(repository: Repository, credentials: Credentials) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS provider (see Cargo.toml);
        // install ring once. An Err only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let protocol = if repository.is_loopback() {
            ClientProtocol::HttpsExcept(vec![repository.registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            // push_blob_stream then does POST + a single PUT with
            // Content-Length instead of chunked PATCHes.
            use_monolithic_push: true,
            platform_resolver: None,
            max_concurrent_upload: UPLOAD_CONCURRENCY,
            connect_timeout: Some(Duration::from_secs(30)),
            // Per read, not per request: a long upload is fine as long as the
            // registry keeps answering.
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("rules_kiln-kiln-push/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).context("creating the HTTP client")?;
        let registry = Registry {
            client,
            auth: credentials.registry_auth(),
            repository,
        };
        let probe = registry.tag_ref("latest");
        registry
            .client
            .auth(&probe, &registry.auth, RegistryOperation::Push)
            .await
            .map_err(describe)
            .with_context(|| registry.at("contacting the registry"))?;
        Ok(registry)
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
            let reference = self.tag_ref(tag);
            self.client
                .push_manifest_raw(&reference, plan.top.bytes.clone(), content_type(&plan.top)?)
                .await
                .map_err(describe)
                .with_context(|| self.at(&format!("tagging {} as {tag:?}", plan.top.digest)))?;
            eprintln!("kiln-push: tagged {}:{tag}", self.repository);
        }
        Ok(plan.top.digest.clone())
    }

    async fn push_blob(&self, blob: &Blob) -> anyhow::Result<()> {
        let reference = self.digest_ref(&blob.digest);
        let digest = blob.digest.to_string();
        let exists = self
            .client
            .blob_exists(&reference, &digest)
            .await
            .map_err(describe)
            .with_context(|| self.at(&format!("checking for blob {digest}")))?;
        let outcome = if exists {
            Outcome::Exists
        } else {
            let file = tokio::fs::File::open(&blob.path)
                .await
                .with_context(|| format!("opening {}", blob.path.display()))?;
            // The body is read from the file as it is sent, never held whole in
            // memory; oci-client sets Content-Length from `size` because
            // `use_monolithic_push` is on.
            let body = ReaderStream::with_capacity(file, READ_CHUNK)
                .map_err(OciDistributionError::IoError);
            self.client
                .push_blob_stream(&reference, body, &digest, Some(blob.size))
                .await
                .map_err(describe)
                .with_context(|| self.at(&format!("uploading blob {digest}")))?;
            Outcome::Pushed
        };
        eprintln!(
            "kiln-push: {} blob {digest} ({} bytes)",
            outcome.word(),
            blob.size
        );
        Ok(())
    }

    async fn push_manifest_by_digest(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let reference = self.digest_ref(&manifest.digest);
        let digest = manifest.digest.to_string();
        let outcome = match self
            .client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
        {
            Ok(_) => Outcome::Exists,
            Err(e) if is_not_found(&e) => {
                self.client
                    .push_manifest_raw(&reference, manifest.bytes.clone(), content_type(manifest)?)
                    .await
                    .map_err(describe)
                    .with_context(|| self.at(&format!("uploading manifest {digest}")))?;
                Outcome::Pushed
            }
            Err(e) => {
                return Err(describe(e))
                    .with_context(|| self.at(&format!("checking for manifest {digest}")))
            }
        };
        eprintln!(
            "kiln-push: {} manifest {digest} ({} bytes)",
            outcome.word(),
            manifest.bytes.len()
        );
        Ok(())
    }

    /// A reference addressing `digest`. The tag is set to the digest too: it
    /// is never put in a URL (the digest wins), but oci-client's fallback for
    /// registries that omit `Location` after a manifest PUT strips the tag off
    /// the URL and panics if it is not its suffix.
    fn digest_ref(&self, digest: &Digest) -> Reference {
        Reference::with_tag_and_digest(
            self.repository.registry.clone(),
            self.repository.path.clone(),
            digest.to_string(),
            digest.to_string(),
        )
    }

    fn tag_ref(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.repository.registry.clone(),
            self.repository.path.clone(),
            tag.to_string(),
        )
    }

    /// Error context naming the registry and the repository.
    fn at(&self, what: &str) -> String {
        format!(
            "registry {}, repository {}: {what}",
            self.repository.registry, self.repository.path
        )
    }
}

fn content_type(manifest: &Manifest) -> anyhow::Result<http::HeaderValue> {
    manifest.media_type.parse().with_context(|| {
        format!(
            "media type {:?} is not a valid header value",
            manifest.media_type
        )
    })
}

/// A HEAD/GET of a manifest that is not there yet.
fn is_not_found(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => {
            !envelope.errors.is_empty()
                && envelope.errors.iter().all(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                    )
                })
        }
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.as_u16() == 404),
        _ => false,
    }
}

/// Turns oci-client's errors into messages that say what the registry
/// answered (HTTP status and body) or why it could not be reached.
fn describe(e: OciDistributionError) -> anyhow::Error {
    match e {
        OciDistributionError::ServerError { code, url, message } => {
            anyhow!("HTTP {code} from {url}: {}", body_text(&message))
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let errors: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    let code = serde_json::to_string(&e.code).unwrap_or_default();
                    format!("{}: {}", code.trim_matches('"'), e.message)
                })
                .collect();
            anyhow!("HTTP error from {url}: {}", errors.join("; "))
        }
        OciDistributionError::UnauthorizedError { url } => anyhow!(
            "HTTP 401 Unauthorized from {url}: the registry refused anonymous access \
             (registry credentials are not supported yet)"
        ),
        OciDistributionError::AuthenticationFailure(body) => anyhow!(
            "the registry's token service refused anonymous access: {}",
            body_text(&body)
        ),
        OciDistributionError::RequestError(e) => {
            let what = if let Some(status) = e.status() {
                format!("HTTP {status}")
            } else if e.is_connect() {
                "cannot reach the registry".to_string()
            } else if e.is_timeout() {
                "the registry did not answer in time".to_string()
            } else {
                "the request failed".to_string()
            };
            anyhow::Error::new(e).context(what)
        }
        other => anyhow::Error::new(other),
    }
}

fn body_text(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        "(empty body)".to_string()
    } else {
        body.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError, OciErrorCode};

    fn envelope(codes: Vec<OciErrorCode>) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: codes
                    .into_iter()
                    .map(|code| OciError {
                        code,
                        message: "msg".into(),
                        detail: serde_json::Value::Null,
                    })
                    .collect(),
            },
            url: "http://r/v2/x/manifests/sha256:1".into(),
        }
    }

    #[test]
    fn not_found_is_only_a_missing_manifest() {
        assert!(is_not_found(&envelope(vec![OciErrorCode::ManifestUnknown])));
        assert!(is_not_found(&envelope(vec![OciErrorCode::NameUnknown])));
        assert!(!is_not_found(&envelope(vec![OciErrorCode::Denied])));
        assert!(!is_not_found(&envelope(vec![])));
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        };
        assert!(is_not_found(&server(404)));
        assert!(!is_not_found(&server(500)));
        assert!(!is_not_found(&OciDistributionError::UnauthorizedError {
            url: "u".into()
        }));
    }

    #[test]
    fn errors_name_status_and_body() {
        let e = describe(OciDistributionError::ServerError {
            code: 503,
            url: "http://r/v2/x/blobs/uploads/".into(),
            message: " {\"errors\":[]}\n".into(),
        });
        assert_eq!(
            format!("{e:#}"),
            "HTTP 503 from http://r/v2/x/blobs/uploads/: {\"errors\":[]}"
        );
        let e = describe(OciDistributionError::ServerError {
            code: 502,
            url: "u".into(),
            message: String::new(),
        });
        assert_eq!(format!("{e:#}"), "HTTP 502 from u: (empty body)");
        let e = describe(envelope(vec![OciErrorCode::Denied]));
        assert_eq!(
            format!("{e:#}"),
            "HTTP error from http://r/v2/x/manifests/sha256:1: DENIED: msg"
        );
    }
}
