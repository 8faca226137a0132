//! The spec of a push or release written by the rules (image_push in lazy
//! mode, image_release): the services, each with its blob set.
//!
//! ```json
//! {"services": [{"target": "//build/api:push",
//!                "repository": "ghcr.io/acme/api",
//!                "tags": ["latest"],
//!                "stamp": false,
//!                "blobs": "_kiln_inputs/bazel-out/…/build/api/push.push.blobs.json",
//!                "lazy": [{"output": "bazel-out/…/api_amd64_layer-layer.tar.gz",
//!                          "digest": "_kiln_inputs/bazel-out/…/api_amd64_layer-layer.json"}]}]}
//! ```
//! - `blobs`: a blob-set spec (`kiln_oci::blob_set`), relative to the root
//!   (the runfiles directory), like the paths in it.
//! - `lazy`: blobs that are not runfiles (lazy mode): where Bazel puts the
//!   file in its output tree (relative to the exec root; present when this
//!   machine built or downloaded it), and the runfile holding its digest.
//!   When the registry lacks one, it is read from there or from the remote
//!   cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_oci::blob_set::{read_digest_file, BlobSet};
use kiln_oci::Digest;
use serde::Deserialize;

use crate::plan::{BlobSetStore, Plan};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    pub services: Vec<ServiceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub target: String,
    /// `HOST[:PORT]/NAME`; empty when only `--repository` gives it.
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether `{KEY}` in the repository and tags is filled from `--stamp`.
    #[serde(default)]
    pub stamp: bool,
    pub blobs: PathBuf,
    #[serde(default)]
    pub lazy: Vec<LazyBlob>,
    /// SPDX SBOMs (relative to `--root`) attached as referrers of the
    /// manifests they describe.
    #[serde(default)]
    pub sboms: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LazyBlob {
    pub output: PathBuf,
    pub digest: PathBuf,
}

impl ReleaseSpec {
    pub fn load(path: &Path) -> anyhow::Result<ReleaseSpec> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let spec: ReleaseSpec = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        if spec.services.is_empty() {
            anyhow::bail!("{}: no services to push", path.display());
        }
        Ok(spec)
    }
}

impl ServiceSpec {
    /// The plan of this service: its blob set under `root`, its lazy blobs
    /// under `outputs_root`.
    pub fn plan(&self, root: &Path, outputs_root: &Path) -> anyhow::Result<Plan> {
        let set =
            BlobSet::load(&root.join(&self.blobs), root).with_context(|| self.target.clone())?;
        let mut lazy: HashMap<Digest, PathBuf> = HashMap::new();
        for blob in &self.lazy {
            let digest =
                read_digest_file(&root.join(&blob.digest)).with_context(|| self.target.clone())?;
            lazy.insert(digest, outputs_root.join(&blob.output));
        }
        Plan::from_blob_set(&BlobSetStore {
            set: &set,
            lazy: &lazy,
        })
    }
}
