//! The registry client of the rules_kiln tools (kiln-pull and kiln-push):
//! references with Docker Hub names, credentials from Docker's config and
//! credential helpers, Basic and Bearer (token) authentication, blob
//! transfers that are streamed and verified against their digest on the
//! way, cross-repository mounts and registry-to-registry copies.
//!
//! It is written on reqwest directly rather than on oci-client, because
//! oci-client 0.18 lacks what pulling needs: it returns no `Content-Type` with raw
//! manifests, swallows token service errors (a refused login surfaces as a
//! bare 401), cannot exchange an identity (refresh) token, asks only the
//! destination's scope when mounting (so token registries never mount) and
//! treats the 202 of an unsuccessful mount as an error without cancelling
//! the session.
//!
//! The contract is `docs/internals.md` ("The registry client") and
//! `docs/reliability.md`.

mod auth;
pub mod cas;
mod client;
pub mod credentials;
pub mod deadline;
mod error;
mod origin;
pub mod retry;
pub mod source;

pub use auth::Challenge;
pub use auth::MAX_TOKEN_ANSWER;
pub use client::{BlobStream, Client, ClientOptions, Manifest, Transfer, MAX_MANIFEST_SIZE};
pub use credentials::{Credentials, DockerConfig, Lookup, Secret};
pub use deadline::{Deadlines, DEFAULT_TIMEOUT, MIN_BLOB_RATE, TIMEOUT_VARIABLE};
// The reference grammar is kiln_oci's, re-exported for the tools.
pub use kiln_oci::reference;
pub use kiln_oci::reference::{ImageRef, NameError, RepoRef, Target, DOCKER_HUB_REGISTRY};
pub use source::{repo_of, Location, SourceBlob, Sources, SOURCE_FILE};
