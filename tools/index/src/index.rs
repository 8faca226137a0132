//! Per-platform manifest descriptors → one OCI image index (its JSON and
//! descriptor). The images' blobs are not read: they reach push, load and
//! layouts through the rules' providers.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use kiln_oci::atomic::AtomicFile;
use kiln_oci::media_types;
use kiln_oci::{canonical, sha256_bytes, Descriptor, ImageIndex, Platform};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub target: String,
    pub images: Vec<ImageSpec>,
}

/// One image: the descriptor kiln-image wrote for its manifest (media
/// type, digest, size, platform).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub descriptor: PathBuf,
}

/// Output paths, from the command line.
pub struct Outputs<'a> {
    pub index: &'a Path,
    pub descriptor: &'a Path,
    pub digest: &'a Path,
}

pub fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    let bytes = fs::read(path).with_context(|| format!("--spec {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("--spec {}: parsing", path.display()))
}

fn read_child(spec: &ImageSpec) -> anyhow::Result<(Descriptor, Platform)> {
    let path = &spec.descriptor;
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let desc: Descriptor =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    if !media_types::is_manifest(&desc.media_type) {
        bail!(
            "{}: {:?} is not an image manifest media type",
            path.display(),
            desc.media_type
        );
    }
    let platform = desc.platform.clone().ok_or_else(|| {
        anyhow!(
            "{}: the manifest descriptor has no platform",
            path.display()
        )
    })?;
    // The child keeps its platform but no annotations.
    let mut child = Descriptor::new(desc.media_type, desc.digest, desc.size);
    child.platform = Some(platform.clone());
    Ok((child, platform))
}

/// Two images for one platform would make the index ambiguous: the error
/// names both inputs.
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

pub fn run(spec_path: &Path, out: &Outputs) -> anyhow::Result<()> {
    let spec = read_spec(spec_path)?;
    let target = spec.target.as_str();
    if spec.images.is_empty() {
        bail!("{target}: images: at least one image is required");
    }
    let children = spec
        .images
        .iter()
        .map(read_child)
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("{target}: images"))?;
    check_platforms(
        spec.images
            .iter()
            .zip(&children)
            .map(|(s, (_, p))| (s.descriptor.as_path(), p)),
    )
    .map_err(|e| anyhow!("{target}: images: {e}"))?;

    let index = ImageIndex::new(children.into_iter().map(|(d, _)| d).collect());
    let bytes = canonical::to_vec(&index)?;
    let desc = Descriptor::new(
        media_types::OCI_IMAGE_INDEX,
        sha256_bytes(&bytes),
        bytes.len() as u64,
    );
    // Staged, then renamed into place together: a failure leaves none.
    let stage = |path: &Path, bytes: &[u8], flag: &str| -> anyhow::Result<AtomicFile> {
        let mut f = AtomicFile::create(path).with_context(|| format!("{target}: {flag}"))?;
        std::io::Write::write_all(&mut f, bytes)
            .with_context(|| format!("{target}: {flag}: writing {}", path.display()))?;
        Ok(f)
    };
    let staged = [
        stage(out.index, &bytes, "--index")?,
        stage(out.descriptor, &canonical::to_vec(&desc)?, "--descriptor")?,
        stage(out.digest, desc.digest.to_string().as_bytes(), "--digest")?,
    ];
    for f in staged {
        let path = f.path().display().to_string();
        f.commit()
            .with_context(|| format!("{target}: writing {path}"))?;
    }
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
