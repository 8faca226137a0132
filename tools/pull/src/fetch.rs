//! `kiln-pull fetch-blobs --layout DIR --output OUT`: a complete OCI layout
//! from a shallow one, for the build actions that need the layer bytes.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use kiln_oci::{media_types, Descriptor, Digest, ImageIndex, Layout, LayoutWriter, Located};
use kiln_registry::{repo_of, Client, SourceBlob, Sources, SOURCE_FILE};

/// Blobs downloaded at once.
const CONCURRENCY: usize = 4;

/// `cache`: blobs fetched by earlier runs (`DIR/blobs/sha256/HEX`), used
/// when present with the right size and filled with what is downloaded.
/// Sizes only: whatever reads a blob checks its digest (kiln-load while
/// streaming, the registry on upload), and only verified downloads enter it.
pub async fn fetch_blobs(
    client: Client,
    layout_dir: PathBuf,
    output: PathBuf,
    cache: Option<PathBuf>,
) -> anyhow::Result<()> {
    let layout = Layout::open(&layout_dir)?;
    // A layout without kiln-source.json is complete already: it is copied
    // (and checked) as it is, so that rules need not know whether an image
    // ended up shallow (a pulled base without layers gives a complete one).
    let sources = Sources::load(&layout_dir)?.unwrap_or_default();
    let index_json_path = layout_dir.join("index.json");
    let index_json: serde_json::Value = serde_json::from_slice(
        &fs::read(&index_json_path)
            .with_context(|| format!("reading {}", index_json_path.display()))?,
    )
    .with_context(|| format!("parsing {}", index_json_path.display()))?;

    let writer = LayoutWriter::new(&output)?;
    // The blobs the layout has: hard links (copies across filesystems).
    let blobs_dir = layout.dir().join("blobs").join("sha256");
    let entries =
        fs::read_dir(&blobs_dir).with_context(|| format!("reading {}", blobs_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", blobs_dir.display()))?;
        let name = entry.file_name();
        let digest: Digest = format!("sha256:{}", name.to_string_lossy())
            .parse()
            .map_err(|_| {
                anyhow!(
                    "{} is not a blob: its name is not a sha256 digest",
                    entry.path().display()
                )
            })?;
        writer.add_blob_file(&entry.path(), &digest)?;
    }

    // Each blob from its own source: a layout may mix several (an index of
    // images on different bases). Decided before anything is downloaded.
    let index: ImageIndex = serde_json::from_value(index_json.clone())
        .with_context(|| format!("parsing {}", index_json_path.display()))?;
    let missing = absent_blobs(&layout, &sources, &index)?
        .into_iter()
        .map(|(digest, blob)| Ok((digest, blob.size, repo_of(blob)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache = cache.map(BlobCache::new);
    let mut cached = 0usize;
    let mut to_fetch = Vec::new();
    for (digest, size, repo) in missing {
        match cache.as_ref().and_then(|c| c.get(&digest, size)) {
            Some(path) => {
                writer.add_blob_file(&path, &digest)?;
                cached += 1;
            }
            None => to_fetch.push((digest, size, repo)),
        }
    }
    let count = to_fetch.len();
    let fetched: Vec<Digest> = to_fetch.iter().map(|(d, _, _)| d.clone()).collect();
    let bytes: u64 = futures_util::stream::iter(to_fetch)
        .map(|(digest, size, repo)| {
            let dest = writer.blob_path(&digest);
            let client = &client;
            async move {
                client
                    .fetch_blob_to_file(&repo, &digest, Some(size), &dest)
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_fold(0u64, |total, n| async move { Ok(total + n) })
        .await?;
    if let Some(cache) = &cache {
        for digest in &fetched {
            cache.put(digest, &writer.blob_path(digest));
        }
    }

    writer
        .finish_with(&index_json)
        .with_context(|| format!("writing the layout {}", output.display()))?;
    let from: Vec<String> = sources.locations().iter().map(|l| l.to_string()).collect();
    if from.is_empty() {
        eprintln!(
            "kiln-pull: {} has no {SOURCE_FILE}: it is complete, copied as it is",
            layout_dir.display()
        );
    } else {
        let from_cache = match &cache {
            Some(c) => format!("; {cached} from the cache {}", c.dir.display()),
            None => String::new(),
        };
        eprintln!(
            "kiln-pull: fetched {count} blobs ({bytes} bytes) from {}{from_cache}",
            from.join(", ")
        );
    }
    Ok(())
}

/// The blobs the layout's images need that it does not hold, each with its
/// source (`Layout::locate` decides; a blob neither present nor listed is an
/// error). An index's manifests that are absent are the platforms not
/// pulled; at least one must be present.
fn absent_blobs<'s>(
    layout: &Layout,
    sources: &'s Sources,
    index_json: &ImageIndex,
) -> anyhow::Result<BTreeMap<Digest, &'s SourceBlob>> {
    let mut absent = BTreeMap::new();
    for top in &index_json.manifests {
        if media_types::is_index(&top.media_type) {
            let index = layout.read_index(top)?;
            let mut present = 0;
            for child in &index.manifests {
                if media_types::is_manifest(&child.media_type)
                    && layout.blob_path(&child.digest).exists()
                {
                    image_blobs(layout, sources, child, &mut absent)?;
                    present += 1;
                }
            }
            if present == 0 {
                bail!("image index {} has none of its manifests", top.digest);
            }
        } else {
            image_blobs(layout, sources, top, &mut absent)?;
        }
    }
    Ok(absent)
}

fn image_blobs<'s>(
    layout: &Layout,
    sources: &'s Sources,
    desc: &Descriptor,
    absent: &mut BTreeMap<Digest, &'s SourceBlob>,
) -> anyhow::Result<()> {
    let manifest = layout.read_manifest(desc)?;
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let located = layout
            .locate(Some(sources), blob)
            .with_context(|| format!("image manifest {}", desc.digest))?;
        if let Located::Absent(listed) = located {
            absent.insert(blob.digest.clone(), listed);
        }
    }
    Ok(())
}

/// Downloaded blobs kept across `bazel run`s (see [`fetch_blobs`]).
struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    fn new(dir: PathBuf) -> BlobCache {
        BlobCache { dir }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// The cached blob, when there is one of the expected size.
    fn get(&self, digest: &Digest, size: u64) -> Option<PathBuf> {
        let path = self.path(digest);
        let meta = fs::metadata(&path).ok()?;
        (meta.is_file() && meta.len() == size).then_some(path)
    }

    /// Adds a verified download (a hard link, else a copy, renamed into
    /// place). A cache that cannot be written only costs the next run a
    /// download, so that is a notice, not an error.
    fn put(&self, digest: &Digest, blob: &std::path::Path) {
        let dest = self.path(digest);
        let result = (|| -> std::io::Result<()> {
            let dir = dest.parent().unwrap_or(&self.dir);
            fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.{}", digest.hex(), std::process::id()));
            let _ = fs::remove_file(&tmp);
            if fs::hard_link(blob, &tmp).is_err() {
                fs::copy(blob, &tmp)?;
            }
            fs::rename(&tmp, &dest)
        })();
        if let Err(e) = result {
            eprintln!(
                "kiln-pull: notice: could not keep blob {digest} in the cache {}: {e}",
                self.dir.display()
            );
        }
    }
}
