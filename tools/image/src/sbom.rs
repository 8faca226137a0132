//! `kiln-image sbom`: the SPDX SBOM of one image (`kiln_oci::sbom`), read
//! from its layer blobs as the build made them (the image's blob set).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use kiln_oci::blob_set::{read_digest_file, BlobSet, Located};
use kiln_oci::sbom::{self, Base, BasePackages, Contents, Subject};
use kiln_oci::ImageManifest;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    target: String,
    /// The image's blob set: its manifest as top, every layer blob.
    blob_set: PathBuf,
    /// How many of the manifest's layers (the last ones) are the image's own.
    own_layers: usize,
    platform: String,
    #[serde(default)]
    base: Option<BaseSpec>,
    /// For an image on a pulled base: the packages of the base's layers
    /// (`kiln-pull base-packages`), whose bytes the build does not have.
    #[serde(default)]
    base_packages: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseSpec {
    name: String,
    /// A file holding the base's digest (`sha256:…` text or a descriptor).
    digest: PathBuf,
}

pub fn run(spec_path: &Path, output: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: Spec = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing {}", spec_path.display()))?;
    let target = spec.target.clone();
    build(&spec, output).with_context(|| format!("{target}: sbom"))
}

fn read_blob(set: &BlobSet, digest: &kiln_oci::Digest, what: &str) -> anyhow::Result<Vec<u8>> {
    match set.locate(digest) {
        Located::File(p) => {
            let bytes =
                std::fs::read(&p).with_context(|| format!("reading {what} {}", p.display()))?;
            if kiln_oci::sha256_bytes(&bytes) != *digest {
                bail!("{what} {} does not match its digest {digest}", p.display());
            }
            Ok(bytes)
        }
        _ => Err(anyhow!("{what} {digest} is not in the blob set")),
    }
}

fn build(spec: &Spec, output: &Path) -> anyhow::Result<()> {
    let set = BlobSet::load(&spec.blob_set, Path::new("."))?;
    let top = set.top().clone();
    let manifest: ImageManifest =
        serde_json::from_slice(&read_blob(&set, &top.digest, "manifest")?)
            .context("parsing the manifest")?;
    let config: serde_json::Value =
        serde_json::from_slice(&read_blob(&set, &manifest.config.digest, "config")?)
            .context("parsing the config")?;
    let created = config
        .get("created")
        .and_then(|v| v.as_str())
        .unwrap_or("1970-01-01T00:00:00Z")
        .to_string();
    if spec.own_layers > manifest.layers.len() {
        bail!(
            "own_layers: {} but the manifest has {} layers",
            spec.own_layers,
            manifest.layers.len()
        );
    }
    let first_own = manifest.layers.len() - spec.own_layers;
    let mut contents = Contents::default();
    let layer_digests: Vec<kiln_oci::Digest> =
        manifest.layers.iter().map(|l| l.digest.clone()).collect();
    // The pulled base's layers come first; its packages stand for them.
    let mut covered = 0;
    if let Some(path) = &spec.base_packages {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let base = BasePackages::from_json(&bytes)
            .and_then(|b| b.check_prefix_of(&layer_digests).map(|()| b))
            .with_context(|| format!("base_packages {}", path.display()))?;
        if base.layers.len() > first_own {
            bail!(
                "base_packages {}: {} base layers, but the image has only {first_own} layers before its own",
                path.display(),
                base.layers.len()
            );
        }
        contents.add_base_packages(&base);
        covered = base.layers.len();
    }
    for (i, layer) in manifest.layers.iter().enumerate().skip(covered) {
        let own = i >= first_own;
        match set.locate(&layer.digest) {
            Located::File(p) => {
                let file = File::open(&p)
                    .with_context(|| format!("opening layer {} ({})", layer.digest, p.display()))?;
                contents
                    .add_layer(file, own)
                    .with_context(|| format!("layer {i} ({}, {})", layer.digest, p.display()))?;
            }
            Located::Absent(_) if !own => contents.unavailable_layers.push(layer.digest.clone()),
            _ => bail!("layer {i} ({}) is not in the blob set", layer.digest),
        }
    }
    let base = match &spec.base {
        Some(b) => Some(Base {
            name: b.name.clone(),
            digest: read_digest_file(&b.digest).context("base")?,
        }),
        None => None,
    };
    let subject = Subject {
        name: spec.target.clone(),
        platform: spec.platform.clone(),
        digest: top.digest.clone(),
        created,
    };
    let creator = concat!("rules_kiln-", env!("CARGO_PKG_VERSION"));
    let doc = sbom::document(&subject, base.as_ref(), &contents, creator)?;
    kiln_oci::atomic::write_file(output, &doc)
        .with_context(|| format!("writing {}", output.display()))
}
