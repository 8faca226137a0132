//! Reading the per-platform layouts and writing the combined index layout.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use kiln_oci::media_types::{self, ANNOTATION_REF_NAME};
use kiln_oci::{
    atomic, Descriptor, ImageIndex, ImageManifest, Layout, LayoutWriter, Located, Platform, Sources,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub target: String,
    pub images: Vec<ImageSpec>,
    #[serde(default)]
    pub ref_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub layout: PathBuf,
}

struct Image {
    layout: Layout,
    top: Descriptor,
    platform: Platform,
    manifest: ImageManifest,
    /// `kiln-source.json` of a shallow image (built on a pulled base).
    sources: Option<Sources>,
}

pub fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    let bytes = fs::read(path).with_context(|| format!("--spec {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("--spec {}: parsing", path.display()))
}

fn read_image(spec: &ImageSpec) -> anyhow::Result<Image> {
    let layout = Layout::open(&spec.layout)?;
    let top = layout.top()?;
    let manifest = layout.read_manifest(&top)?;
    let platform = top.platform.clone().ok_or_else(|| {
        anyhow!(
            "{}: the manifest in index.json has no platform",
            spec.layout.display()
        )
    })?;
    let sources = Sources::load(&spec.layout)?;
    Ok(Image {
        layout,
        top,
        platform,
        manifest,
        sources,
    })
}

/// Two images for one platform would make the index ambiguous: the error
/// names both layouts.
pub fn check_platforms<'a>(
    images: impl IntoIterator<Item = (&'a Path, &'a Platform)>,
) -> Result<(), String> {
    let mut seen: BTreeMap<&Platform, &Path> = BTreeMap::new();
    for (path, platform) in images {
        if let Some(first) = seen.insert(platform, path) {
            return Err(format!(
                "{} and {} are both for platform {platform}",
                first.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

pub fn run(spec_path: &Path, layout_out: &Path, digest_out: &Path) -> anyhow::Result<()> {
    let spec = read_spec(spec_path)?;
    let target = spec.target.as_str();
    if spec.images.is_empty() {
        bail!("{target}: images: at least one image is required");
    }
    let images = spec
        .images
        .iter()
        .map(read_image)
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("{target}: images"))?;
    check_platforms(
        spec.images
            .iter()
            .zip(&images)
            .map(|(s, i)| (s.layout.as_path(), &i.platform)),
    )
    .map_err(|e| anyhow!("{target}: images: {e}"))?;

    let writer = LayoutWriter::new(layout_out).with_context(|| format!("{target}: --layout"))?;
    let mut children = Vec::with_capacity(images.len());
    // The blobs of shallow inputs that no input holds, with their sources.
    let mut absent = Sources::default();
    for img in &images {
        let blobs = std::iter::once(&img.top)
            .chain(std::iter::once(&img.manifest.config))
            .chain(img.manifest.layers.iter());
        for desc in blobs {
            let located = img
                .layout
                .locate(img.sources.as_ref(), desc)
                .with_context(|| format!("{target}: images"))?;
            match located {
                Located::Absent(listed) => absent
                    .add(desc.digest.clone(), listed.clone())
                    .with_context(|| format!("{target}: images"))?,
                Located::Present(_) => writer
                    .add_blob_from(&img.layout, &desc.digest)
                    .with_context(|| format!("{target}: images"))?,
            }
        }
        // The child keeps its platform but not the input's ref.name, which
        // named it inside its own layout only.
        let mut child = Descriptor::new(
            img.top.media_type.clone(),
            img.top.digest.clone(),
            img.top.size,
        );
        child.platform = Some(img.platform.clone());
        children.push(child);
    }
    // A blob absent from one input but present in another is copied.
    writer
        .write_absent(absent)
        .with_context(|| format!("{target}: --layout"))?;
    let mut entry = writer.add_json(media_types::OCI_IMAGE_INDEX, &ImageIndex::new(children))?;
    if let Some(name) = spec.ref_name.as_deref().filter(|n| !n.is_empty()) {
        entry.annotations = Some(BTreeMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            name.to_string(),
        )]));
    }
    let digest = entry.digest.to_string();
    writer
        .finish(vec![entry])
        .with_context(|| format!("{target}: --layout"))?;
    atomic::write_file(digest_out, digest.as_bytes())
        .with_context(|| format!("{target}: --digest"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_platform_names_both() {
        let amd: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm64/v8".parse().unwrap();
        let arm_nov: Platform = "linux/arm64".parse().unwrap();
        let a = Path::new("a_layout");
        let b = Path::new("b_layout");
        let c = Path::new("c_layout");
        assert!(check_platforms([(a, &amd), (b, &arm), (c, &arm_nov)]).is_ok());
        let err = check_platforms([(a, &amd), (b, &arm), (c, &amd)]).unwrap_err();
        assert_eq!(
            err,
            "a_layout and c_layout are both for platform linux/amd64"
        );
    }
}
