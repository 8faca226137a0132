//! `kiln-pull base-packages --layout DIR --platform P --output FILE`: the
//! Debian packages of a pulled base's platform image, for the SBOMs of the
//! images built on it. The layers the shallow layout lacks are streamed from
//! the registry through the SBOM's dpkg status reader
//! (`kiln_oci::sbom::Contents::add_layer`) and verified against their
//! digests; no layer byte is kept.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use kiln_oci::sbom::{BasePackages, Contents};
use kiln_oci::{Digest, Layout, Located, Platform};
use kiln_registry::{repo_of, Client, RepoRef, Sources};
use tokio_util::io::SyncIoBridge;

/// Bytes buffered between the download and the reader.
const PIPE_BYTES: usize = 256 * 1024;

pub async fn base_packages(
    client: Client,
    layout_dir: PathBuf,
    platform: Platform,
    output: PathBuf,
) -> anyhow::Result<()> {
    let layout = Layout::open(&layout_dir)?;
    let sources = Sources::load(&layout_dir)?;
    let selected = layout
        .select(&platform)
        .with_context(|| format!("platform {platform}"))?;
    let mut contents = Contents::default();
    let mut fetched = 0usize;
    // In order: a later layer's status file or whiteout wins.
    for (i, desc) in selected.manifest.layers.iter().enumerate() {
        let what = || format!("layer {i} ({})", desc.digest);
        contents = match layout.locate(sources.as_ref(), desc).with_context(what)? {
            Located::Present(path) => read_local(contents, path).await.with_context(what)?,
            Located::Absent(listed) => {
                let repo = repo_of(listed).with_context(what)?;
                fetched += 1;
                read_remote(&client, &repo, &desc.digest, desc.size, contents)
                    .await
                    .with_context(what)?
            }
        };
    }
    let layers: Vec<Digest> = selected
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect();
    let packages = BasePackages::new(selected.descriptor.digest.clone(), layers, &contents);
    kiln_oci::atomic::write_file(&output, &packages.to_json()?)
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "kiln-pull: {} Debian packages in {platform} of {} ({} layers streamed from the registry)",
        packages.packages.len(),
        layout_dir.display(),
        fetched
    );
    Ok(())
}

/// A layer the layout holds (kiln-pull checked it when it wrote the layout).
async fn read_local(mut contents: Contents, path: PathBuf) -> anyhow::Result<Contents> {
    tokio::task::spawn_blocking(move || {
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        contents.add_layer(file, false)?;
        Ok(contents)
    })
    .await
    .context("the layer reader stopped")?
}

/// Streams one blob from the registry into the status reader: the download
/// writes into an in-memory pipe that a blocking task reads. The result is
/// only used once the download has checked size and digest.
async fn read_remote(
    client: &Client,
    repo: &RepoRef,
    digest: &Digest,
    size: u64,
    mut contents: Contents,
) -> anyhow::Result<Contents> {
    let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let parse = tokio::task::spawn_blocking(move || -> anyhow::Result<Contents> {
        let mut reader = SyncIoBridge::new(reader);
        contents.add_layer(&mut reader, false)?;
        // Read to the end (tar padding, trailing bytes) so the download
        // completes and its digest is checked.
        std::io::copy(&mut reader, &mut std::io::sink()).context("reading the layer")?;
        Ok(contents)
    });
    let download = async {
        let n = client
            .fetch_blob(repo, digest, Some(size), &mut writer)
            .await;
        drop(writer); // end of stream for the reader
        n
    };
    let (downloaded, parsed) = tokio::join!(download, parse);
    let parsed = parsed
        .map_err(|e| anyhow!("the layer reader stopped: {e}"))
        .and_then(|r| r);
    match (downloaded, parsed) {
        (Ok(_), Ok(contents)) => Ok(contents),
        (Err(d), Ok(_)) => Err(d),
        (Ok(_), Err(p)) => Err(p),
        // A reader that fails stops reading, which fails the download too.
        (Err(d), Err(p)) => Err(p.context(format!("(the download: {d:#})"))),
    }
}
