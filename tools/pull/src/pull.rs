//! `kiln-pull --image … --digest … --platform … --output DIR`: a shallow OCI
//! layout of a base image.
//!
//! An index is kept as the registry serves it (its bytes, hence its digest,
//! unchanged), with the manifests and configs of the requested platforms
//! only: the manifests of other platforms are absent, the layers of all
//! platforms too (listed in `kiln-source.json`). Keeping the original bytes
//! means the layout's digest is the one the user pinned.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use kiln_oci::select;
use kiln_oci::{media_types, Descriptor, ImageIndex, ImageManifest, LayoutWriter, Platform};
use kiln_registry::{Client, ImageRef, RepoRef, SourceBlob, Sources, Target, SOURCE_FILE};

/// Image configs larger than this are refused (they are held in memory;
/// real ones are a few KiB).
const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// The file a pull by tag records the digest it resolved to in.
const RESOLVED_DIGEST_FILE: &str = "resolved-digest";

pub struct PullArgs {
    pub repo: RepoRef,
    /// A digest, or a tag when --allow-tag allowed it.
    pub target: Target,
    /// --tag, also when pulling by digest: it becomes the
    /// `org.opencontainers.image.ref.name` of the layout's entry.
    pub tag: Option<String>,
    pub platforms: Vec<Platform>,
    pub output: PathBuf,
}

pub async fn pull(client: Client, args: PullArgs) -> anyhow::Result<()> {
    let repo = &args.repo;
    let top = client
        .get_manifest(&ImageRef::new(repo.clone(), args.target.clone()))
        .await?;
    if let Target::Tag(tag) = &args.target {
        eprintln!(
            "kiln-pull: warning: {repo}: pulled by tag {tag:?}, so the build is not \
             reproducible: the tag resolved to {}; pin it with that digest",
            top.digest
        );
    }

    let writer = LayoutWriter::new(&args.output)?;
    writer.add_blob_bytes(&top.bytes)?;
    let mut absent = Sources::default();
    let mut top_desc = Descriptor::new(
        top.media_type.clone(),
        top.digest.clone(),
        top.bytes.len() as u64,
    );
    let kept: Vec<Platform>;
    if media_types::is_index(&top.media_type) {
        let index: ImageIndex = serde_json::from_slice(&top.bytes)
            .with_context(|| format!("parsing image index {}", top.digest))?;
        let chosen = choose(&index, &args.platforms)
            .with_context(|| format!("image index {}", top.digest))?;
        kept = chosen.iter().filter_map(|d| d.platform.clone()).collect();
        for desc in &chosen {
            fetch_image(&client, repo, desc, &writer, &mut absent).await?;
        }
    } else if media_types::is_manifest(&top.media_type) {
        let platform = fetch_image(&client, repo, &top_desc, &writer, &mut absent).await?;
        let wanted = args.platforms.iter().any(|w| same_platform(w, &platform));
        if !wanted {
            bail!(
                "image manifest {} is for {platform}, not for {}",
                top.digest,
                list(&args.platforms)
            );
        }
        kept = vec![platform.clone()];
        top_desc.platform = Some(platform);
    } else {
        bail!(
            "{} is a {:?}, neither an image manifest nor an image index",
            top.digest,
            top.media_type
        );
    }
    if let Some(tag) = &args.tag {
        top_desc.annotations = Some(BTreeMap::from([(
            media_types::ANNOTATION_REF_NAME.to_string(),
            tag.clone(),
        )]));
    }

    let absent_bytes: u64 = absent.blobs.values().map(|b| b.size).sum();
    let absent_count = absent.blobs.len();
    absent.write_to(writer.path())?;
    if let Target::Tag(_) = &args.target {
        let path = writer.path().join(RESOLVED_DIGEST_FILE);
        std::fs::write(&path, top.digest.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    writer
        .finish(vec![top_desc])
        .with_context(|| format!("writing the layout {}", args.output.display()))?;
    eprintln!(
        "kiln-pull: pulled {repo}@{} ({}): {absent_count} layer blobs ({absent_bytes} bytes) \
         left in the registry, listed in {SOURCE_FILE}",
        top.digest,
        list(&kept)
    );
    Ok(())
}

/// The index entries for `wanted`, in the order asked, each once, as
/// `kiln_oci::select::pick_entry` matches platforms (the same rule as
/// kiln-image's and kiln-load's). Nested indexes are not followed.
fn choose(index: &ImageIndex, wanted: &[Platform]) -> anyhow::Result<Vec<Descriptor>> {
    let mut chosen: Vec<Descriptor> = Vec::new();
    for want in wanted {
        let found = select::pick_entry(&index.manifests, want).map_err(|e| {
            let nested = index
                .manifests
                .iter()
                .any(|d| media_types::is_index(&d.media_type));
            if nested {
                anyhow!("{e} (nested indexes are not followed)")
            } else {
                anyhow!(e)
            }
        })?;
        if !chosen.iter().any(|c| c.digest == found.digest) {
            chosen.push(found.clone());
        }
    }
    Ok(chosen)
}

/// `want` names `have`: as in `choose`, for a single manifest.
fn same_platform(want: &Platform, have: &Platform) -> bool {
    select::pick(&[((), have.clone())], want).is_ok()
}

fn list(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fetches the image manifest `desc` points at and its config into the
/// layout, records its layers in `absent`, and returns the config's
/// platform.
async fn fetch_image(
    client: &Client,
    repo: &RepoRef,
    desc: &Descriptor,
    writer: &LayoutWriter,
    absent: &mut Sources,
) -> anyhow::Result<Platform> {
    let manifest = client
        .get_manifest(&ImageRef::new(
            repo.clone(),
            Target::Digest(desc.digest.clone()),
        ))
        .await?;
    let what = || format!("image manifest {}", desc.digest);
    if manifest.bytes.len() as u64 != desc.size {
        return Err(anyhow!(
            "it has {} bytes, its descriptor says {}",
            manifest.bytes.len(),
            desc.size
        ))
        .with_context(what);
    }
    if !media_types::is_manifest(&manifest.media_type) {
        return Err(anyhow!(
            "it is a {:?}, not an image manifest",
            manifest.media_type
        ))
        .with_context(what);
    }
    let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes)
        .context("parsing it")
        .with_context(what)?;
    let config = &parsed.config;
    if config.size > MAX_CONFIG_SIZE {
        return Err(anyhow!(
            "its config {} has {} bytes, more than the {MAX_CONFIG_SIZE} accepted",
            config.digest,
            config.size
        ))
        .with_context(what);
    }
    let mut config_bytes = Vec::with_capacity(config.size as usize);
    client
        .fetch_blob(repo, &config.digest, Some(config.size), &mut config_bytes)
        .await?;
    let platform = config_platform(&config_bytes)
        .with_context(|| format!("image config {}", config.digest))?;
    writer.add_blob_bytes(&config_bytes)?;
    writer.add_blob_bytes(&manifest.bytes)?;
    for layer in &parsed.layers {
        if let Some(seen) = absent.get(&layer.digest).filter(|s| s.size != layer.size) {
            return Err(anyhow!(
                "layer {} has size {} here and {} in another manifest",
                layer.digest,
                layer.size,
                seen.size
            ))
            .with_context(what);
        }
        absent.add(
            layer.digest.clone(),
            SourceBlob {
                media_type: layer.media_type.clone(),
                size: layer.size,
                registry: repo.registry.clone(),
                repository: repo.repository.clone(),
            },
        )?;
    }
    Ok(platform)
}

/// `os`, `architecture` and `variant` of an image config.
fn config_platform(bytes: &[u8]) -> anyhow::Result<Platform> {
    let config: serde_json::Value = serde_json::from_slice(bytes).context("parsing it")?;
    let field = |k: &str| {
        config
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match (field("os"), field("architecture")) {
        (Some(os), Some(architecture)) => Ok(Platform {
            os,
            architecture,
            variant: field("variant"),
        }),
        _ => bail!("it has no os and architecture"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[&str]) -> ImageIndex {
        ImageIndex::new(
            platforms
                .iter()
                .map(|p| {
                    let mut d = Descriptor::new(
                        media_types::OCI_IMAGE_MANIFEST,
                        kiln_oci::sha256_bytes(p.as_bytes()),
                        1,
                    );
                    d.platform = Some(p.parse().unwrap());
                    d
                })
                .collect(),
        )
    }

    fn pick(idx: &ImageIndex, want: &[&str]) -> anyhow::Result<Vec<String>> {
        let want: Vec<Platform> = want.iter().map(|p| p.parse().unwrap()).collect();
        Ok(choose(idx, &want)?
            .iter()
            .map(|d| d.platform.as_ref().unwrap().to_string())
            .collect())
    }

    #[test]
    fn choosing_platforms() {
        let idx = index(&[
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v6",
            "linux/arm/v7",
            "unknown/unknown",
        ]);
        assert_eq!(
            pick(&idx, &["linux/arm64", "linux/amd64"]).unwrap(),
            ["linux/arm64/v8", "linux/amd64"]
        );
        assert_eq!(
            pick(&idx, &["linux/arm64/v8", "linux/arm64"]).unwrap(),
            ["linux/arm64/v8"]
        );
        assert_eq!(pick(&idx, &["linux/arm/v7"]).unwrap(), ["linux/arm/v7"]);
        let err = pick(&idx, &["linux/arm"]).unwrap_err().to_string();
        assert!(err.contains("give the variant"), "{err}");
        let err = pick(&idx, &["linux/s390x"]).unwrap_err().to_string();
        assert!(
            err.contains("no image for platform linux/s390x; there are images for: linux/amd64, linux/arm64/v8, linux/arm/v6, linux/arm/v7"),
            "{err}"
        );
        assert!(!err.contains("unknown"), "{err}");
        let idx = index(&["linux/arm/v7"]);
        assert_eq!(pick(&idx, &["linux/arm"]).unwrap(), ["linux/arm/v7"]);
    }

    #[test]
    fn platforms_of_configs() {
        let p =
            config_platform(br#"{"os":"linux","architecture":"arm64","variant":"v8"}"#).unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(config_platform(br#"{"os":"linux"}"#).is_err());
        let want: Platform = "linux/arm64".parse().unwrap();
        assert!(same_platform(&want, &p));
        let want: Platform = "linux/arm".parse().unwrap();
        assert!(same_platform(
            &want,
            &"linux/arm/v7".parse::<Platform>().unwrap()
        ));
        assert!(!same_platform(
            &"linux/arm/v6".parse::<Platform>().unwrap(),
            &"linux/arm/v7".parse::<Platform>().unwrap()
        ));
    }
}
