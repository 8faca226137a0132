//! Reading the spec and inputs, composing config and manifest, writing the
//! layout and the side outputs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use kiln_oci::media_types::{self, ANNOTATION_REF_NAME};
use kiln_oci::{
    atomic, canonical, Descriptor, ImageManifest, LayerDescriptor, Layout, LayoutWriter,
    ListingEntry, Platform,
};

use crate::config::{self, ConfigSpec, ImageConfig};
use crate::entrypoint::{self, FsView};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub target: String,
    #[serde(default)]
    pub base: Option<BaseSpec>,
    #[serde(default)]
    pub layers: Vec<LayerSpec>,
    pub platform: Platform,
    #[serde(default)]
    pub config: ConfigSpec,
    #[serde(default)]
    pub ref_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseSpec {
    pub layout: PathBuf,
    #[serde(default)]
    pub listing: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    pub blob: PathBuf,
    pub descriptor: PathBuf,
    pub listing: PathBuf,
}

/// Output paths, from the command line.
pub struct Outputs<'a> {
    pub layout: &'a Path,
    pub config: &'a Path,
    pub digest: &'a Path,
    pub descriptor: &'a Path,
    pub listing: &'a Path,
}

struct Base {
    layout: Layout,
    manifest: ImageManifest,
    config: ImageConfig,
    listing: Option<Vec<ListingEntry>>,
}

struct NewLayer {
    blob: PathBuf,
    desc: LayerDescriptor,
    listing: Vec<ListingEntry>,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

pub fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    read_json(path).with_context(|| format!("--spec {}", path.display()))
}

fn read_base(spec: &BaseSpec) -> anyhow::Result<Base> {
    let layout = Layout::open(&spec.layout)?;
    let top = layout.top()?;
    let manifest = layout.read_manifest(&top)?;
    let config: ImageConfig = layout.read_json(&manifest.config, "image config")?;
    let listing = spec.listing.as_deref().map(read_json).transpose()?;
    Ok(Base {
        layout,
        manifest,
        config,
        listing,
    })
}

fn read_layer(spec: &LayerSpec) -> anyhow::Result<NewLayer> {
    let desc: LayerDescriptor = read_json(&spec.descriptor)?;
    let listing = read_json(&spec.listing)?;
    // A cheap consistency check; re-hashing every layer would cost a full read.
    let meta =
        fs::metadata(&spec.blob).with_context(|| format!("reading {}", spec.blob.display()))?;
    if meta.len() != desc.size {
        bail!(
            "{} has {} bytes but {} says {}",
            spec.blob.display(),
            meta.len(),
            spec.descriptor.display(),
            desc.size
        );
    }
    Ok(NewLayer {
        blob: spec.blob.clone(),
        desc,
        listing,
    })
}

pub fn run(spec_path: &Path, out: &Outputs) -> anyhow::Result<()> {
    let spec = read_spec(spec_path)?;
    let target = spec.target.as_str();

    let base = spec
        .base
        .as_ref()
        .map(read_base)
        .transpose()
        .with_context(|| format!("{target}: base"))?;
    let layers = spec
        .layers
        .iter()
        .map(read_layer)
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("{target}: layers"))?;

    // Config.
    let (base_config, base_layers) = match &base {
        Some(b) => (b.config.clone(), b.manifest.layers.clone()),
        None => (ImageConfig::default(), Vec::new()),
    };
    let mut cfg = config::apply(base_config, &spec.config, &spec.platform)
        .map_err(|e| anyhow!("{target}: {}: {}", e.attr, e.message))?;
    config::add_layers(
        &mut cfg,
        base_layers.len(),
        layers.iter().map(|l| l.desc.diff_id.clone()).collect(),
        target,
    )
    .with_context(|| format!("{target}: base"))?;

    // Listing and entrypoint check.
    let base_listing_known = base.as_ref().is_none_or(|b| b.listing.is_some());
    let mut view = FsView::new(base_listing_known);
    if let Some(listing) = base.as_ref().and_then(|b| b.listing.clone()) {
        view.add_layer(listing);
    }
    for l in &layers {
        view.add_layer(l.listing.clone());
    }
    let rc = &cfg.config;
    entrypoint::check(
        rc.entrypoint.as_ref().and_then(|e| e.as_deref()),
        rc.cmd.as_ref().and_then(|c| c.as_deref()),
        &view,
    )
    .map_err(|(attr, msg)| anyhow!("{target}: {attr}: {msg}"))?;

    // Layout: every blob, config, manifest, index.json.
    let config_bytes = canonical::to_vec(&cfg)?;
    let writer = LayoutWriter::new(out.layout).with_context(|| format!("{target}: --layout"))?;
    let config_digest = writer.add_blob_bytes(&config_bytes)?;
    if let Some(b) = &base {
        for l in &b.manifest.layers {
            writer
                .add_blob_from(&b.layout, &l.digest)
                .with_context(|| format!("{target}: base"))?;
        }
    }
    for l in &layers {
        writer
            .add_blob_file(&l.blob, &l.desc.digest)
            .with_context(|| format!("{target}: layers"))?;
    }
    let mut manifest_layers = base_layers;
    manifest_layers.extend(layers.iter().map(|l| l.desc.descriptor()));
    let manifest = ImageManifest::new(
        Descriptor::new(
            media_types::OCI_IMAGE_CONFIG,
            config_digest,
            config_bytes.len() as u64,
        ),
        manifest_layers,
    );
    let mut manifest_desc = writer.add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)?;
    manifest_desc.platform = Some(spec.platform.clone());
    let mut index_entry = manifest_desc.clone();
    if let Some(name) = spec.ref_name.as_deref().filter(|n| !n.is_empty()) {
        index_entry.annotations = Some(BTreeMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            name.to_string(),
        )]));
    }
    writer
        .finish(vec![index_entry])
        .with_context(|| format!("{target}: --layout"))?;

    // Side outputs.
    atomic::write_file(out.config, &config_bytes).with_context(|| format!("{target}: --config"))?;
    atomic::write_file(out.digest, manifest_desc.digest.to_string().as_bytes())
        .with_context(|| format!("{target}: --digest"))?;
    atomic::write_file(out.descriptor, &canonical::to_vec(&manifest_desc)?)
        .with_context(|| format!("{target}: --descriptor"))?;
    atomic::write_file(out.listing, &canonical::to_vec(&view.listing())?)
        .with_context(|| format!("{target}: --listing"))?;
    Ok(())
}
