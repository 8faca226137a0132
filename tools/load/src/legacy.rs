//! The legacy docker-save layout: uncompressed layers as
//! `<diff_id hex>/layer.tar`, the config as `<config hex>.json`,
//! `manifest.json` and `repositories`, and no OCI index. Every engine that
//! has ever loaded `docker save` output reads it (Docker 1.10+, podman,
//! skopeo's `docker-archive:`), and an incremental load leaves out the
//! `layer.tar` files the engine already has. The format (names, documents,
//! member writing) is kiln_oci::docker_archive's; this plans what goes in,
//! decompresses the layers and checks them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};
use kiln_oci::docker_archive::writer::{encode_manifest, encode_repositories};
use kiln_oci::docker_archive::{repositories, ArchiveWriter, DockerSaveImage};
use kiln_oci::layer_sizes::LayerSizes;
use kiln_oci::reference::TaggedName;
use kiln_oci::{sha256_bytes, Descriptor, Digest, ImageManifest, Layout};

use crate::layer::{self, Compression};

/// An image manifest with its config, as read from a layout.
#[derive(Debug)]
pub struct Image {
    pub manifest: ImageManifest,
    /// The config blob's exact bytes (the Docker image ID is their digest).
    pub config: Vec<u8>,
    /// `rootfs.diff_ids` of the config, one per manifest layer.
    pub diff_ids: Vec<Digest>,
}

impl Image {
    pub fn read(layout: &Layout, manifest_desc: &Descriptor) -> anyhow::Result<Image> {
        let manifest: ImageManifest = layout.read_manifest(manifest_desc)?;
        let config_desc = &manifest.config;
        let config = layout.read_blob(&config_desc.digest)?;
        if config.len() as u64 != config_desc.size {
            bail!(
                "config {} has {} bytes but its descriptor says {}",
                config_desc.digest,
                config.len(),
                config_desc.size
            );
        }
        #[derive(serde::Deserialize)]
        struct Config {
            rootfs: RootFs,
        }
        #[derive(serde::Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<Digest>,
        }
        let parsed: Config = serde_json::from_slice(&config)
            .with_context(|| format!("parsing config {}", config_desc.digest))?;
        let diff_ids = parsed.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            bail!(
                "config {} lists {} diff_ids but manifest {} has {} layers",
                config_desc.digest,
                diff_ids.len(),
                manifest_desc.digest,
                manifest.layers.len()
            );
        }
        Ok(Image {
            manifest,
            config,
            diff_ids,
        })
    }

    pub fn config_digest(&self) -> &Digest {
        &self.manifest.config.digest
    }
}

/// The chain IDs of a stack of layers: chainID(L0) = diffID(L0),
/// chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)). Docker's layer
/// store is keyed by them: a chain ID names a layer with all those below it.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_bytes(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A layer written as `<diff_id hex>/layer.tar`.
#[derive(Debug)]
struct Layer {
    diff_id: Digest,
    blob: PathBuf,
    compression: Compression,
    /// Uncompressed size, measured when planning.
    size: u64,
}

/// Everything the legacy tarball holds, decided before the first byte is written.
#[derive(Debug)]
pub struct LegacyArchive {
    /// Sorted by diff_id, each once; only the layers to write.
    layers: Vec<Layer>,
    config_digest: Digest,
    config: Vec<u8>,
    manifest_json: Vec<u8>,
    repositories: Vec<u8>,
}

impl LegacyArchive {
    /// Plans the tarball of `image` named by `tags`, leaving out the layer
    /// files that only the first `skip` layers need (an engine that has their
    /// chain never reads them). The tar header of a layer comes before its
    /// data, so its uncompressed size is needed now: it is read from the
    /// layout's `kiln-layers.json` for the layers kiln-image built, and the
    /// other layers are decompressed once here to measure them and check
    /// them against their diff_id. Every layer is checked again as it is
    /// written.
    pub fn new(
        layout: &Layout,
        image: &Image,
        tags: &[TaggedName],
        skip: usize,
    ) -> anyhow::Result<LegacyArchive> {
        let layers = &image.manifest.layers;
        let skip = skip.min(layers.len());

        // A diff_id may appear twice in a stack: its file is needed when any
        // occurrence at or above `skip` is.
        let mut wanted: BTreeMap<Digest, &Descriptor> = BTreeMap::new();
        for (desc, diff_id) in layers.iter().zip(&image.diff_ids).skip(skip) {
            wanted.entry(diff_id.clone()).or_insert(desc);
        }
        let mut planned = Vec::with_capacity(wanted.len());
        for (diff_id, desc) in wanted {
            let blob = layout.blob_path(&desc.digest);
            let meta = std::fs::metadata(&blob)
                .with_context(|| format!("layer {} is missing: {}", desc.digest, blob.display()))?;
            if meta.len() != desc.size {
                bail!(
                    "layer {} is {} bytes but its descriptor says {}",
                    desc.digest,
                    meta.len(),
                    desc.size
                );
            }
            let compression =
                layer::detect(&blob).with_context(|| format!("layer {}", desc.digest))?;
            planned.push((diff_id, desc.digest.clone(), blob, compression));
        }
        // kiln-image recorded its own layers' sizes (kiln-layers.json);
        // only the others (a base's) are decompressed here to measure them.
        let known = LayerSizes::load(layout.dir())?;
        let recorded = |(diff_id, digest, _, _): &(Digest, Digest, PathBuf, Compression)| {
            known
                .layers
                .get(digest)
                .filter(|l| &l.diff_id == diff_id)
                .map(|l| l.uncompressed_size)
        };
        let unknown: Vec<_> = planned
            .iter()
            .filter(|p| recorded(p).is_none())
            .cloned()
            .collect();
        let mut measured = measure_all(&unknown)?.into_iter();
        let sizes: Vec<u64> = planned
            .iter()
            .map(|p| recorded(p).or_else(|| measured.next()).unwrap_or(0))
            .collect();
        let layers_out = planned
            .into_iter()
            .zip(sizes)
            .map(|((diff_id, _, blob, compression), size)| Layer {
                diff_id,
                blob,
                compression,
                size,
            })
            .collect();

        let manifest_json = encode_manifest(&[DockerSaveImage::legacy(
            image.config_digest(),
            &image.diff_ids,
            tags,
        )])?;
        let repositories = encode_repositories(&repositories(tags, image.diff_ids.last()))?;

        Ok(LegacyArchive {
            layers: layers_out,
            config_digest: image.config_digest().clone(),
            config: image.config.clone(),
            manifest_json,
            repositories,
        })
    }

    /// How many distinct layer files the tarball holds.
    pub fn layer_files(&self) -> usize {
        self.layers.len()
    }

    #[cfg(test)]
    pub fn manifest_json(&self) -> &[u8] {
        &self.manifest_json
    }

    /// Streams the tarball into `out`: the layer directories sorted by
    /// diff_id, then the config, `manifest.json` and `repositories`; mtime 0,
    /// uid/gid 0, modes 0755/0644. Each layer is decompressed again on the
    /// way and hashed: content that no longer matches its diff_id (the blob
    /// changed since planning) stops the stream before manifest.json.
    pub fn write<W: Write>(&self, out: W) -> anyhow::Result<W> {
        let mut w = ArchiveWriter::new(out);
        for l in &self.layers {
            let actual = w
                .legacy_layer(&l.diff_id, l.size, layer::open(&l.blob, l.compression)?)
                .with_context(|| format!("copying layer {} into the tarball", l.blob.display()))?;
            if actual != l.diff_id {
                bail!(
                    "layer {} changed while being loaded: its content now has diff_id {actual}, \
                     not {}",
                    l.blob.display(),
                    l.diff_id
                );
            }
        }
        w.legacy_config(&self.config_digest, &self.config)
            .context("writing the tarball")?;
        w.manifest_json(&self.manifest_json)
            .context("writing the tarball")?;
        w.repositories(&self.repositories)
            .context("writing the tarball")?;
        w.finish().context("finishing the tarball")
    }
}

/// Decompresses every planned layer (on as many threads as there are CPUs)
/// and returns their uncompressed sizes, checking each against its diff_id.
fn measure_all(planned: &[(Digest, Digest, PathBuf, Compression)]) -> anyhow::Result<Vec<u64>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(planned.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<u64>>>> =
        Mutex::new((0..planned.len()).map(|_| None).collect());
    let measure_one =
        |(diff_id, digest, blob, compression): &(Digest, Digest, PathBuf, Compression)| {
            let (actual, size) =
                layer::measure(blob, *compression).with_context(|| format!("layer {digest}"))?;
            if &actual != diff_id {
                bail!(
                    "layer {digest} ({}): its uncompressed content has digest {actual}, \
                 but the config's diff_id for it is {diff_id}",
                    blob.display()
                );
            }
            Ok(size)
        };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = planned.get(i) else { break };
                let r = measure_one(item);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every layer was measured"))
        .collect()
}

/// The names of the entries a legacy tarball of `image` holds when the first
/// `skip` layers are left out (for tests).
#[cfg(test)]
fn expected_entries(image: &Image, skip: usize) -> Vec<String> {
    use kiln_oci::docker_archive::{legacy_config_name, legacy_layer_dir, legacy_layer_name};
    use std::collections::BTreeSet;
    let needed: BTreeSet<&Digest> = image.diff_ids.iter().skip(skip).collect();
    let mut names = Vec::new();
    for d in needed {
        names.push(legacy_layer_dir(d));
        names.push(legacy_layer_name(d));
    }
    names.push(legacy_config_name(image.config_digest()));
    names.push("manifest.json".to_string());
    names.push("repositories".to_string());
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use kiln_oci::docker_archive::legacy_layer_name;
    use kiln_oci::{media_types, LayoutWriter};

    struct Fixture {
        _dir: tempfile::TempDir,
        layout: Layout,
        image: Image,
        tars: Vec<Vec<u8>>,
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Three layers (gzip, zstd, plain) plus the first one again on top.
    fn fixture(break_diff_id: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout");
        let w = LayoutWriter::new(&path).unwrap();
        let tars: Vec<Vec<u8>> = (0..3u8)
            .map(|i| (0..100_000u32).map(|j| (j as u8) ^ i).collect())
            .collect();
        let blobs = [
            (gzip(&tars[0]), media_types::OCI_LAYER_TAR_GZIP),
            (
                zstd::stream::encode_all(&tars[1][..], 3).unwrap(),
                media_types::OCI_LAYER_TAR_ZSTD,
            ),
            (tars[2].clone(), media_types::OCI_LAYER_TAR),
        ];
        let mut layers = Vec::new();
        for (blob, media_type) in &blobs {
            let digest = w.add_blob_bytes(blob).unwrap();
            layers.push(Descriptor::new(*media_type, digest, blob.len() as u64));
        }
        layers.push(layers[0].clone());
        let mut diff_ids: Vec<Digest> = tars.iter().map(|t| sha256_bytes(t)).collect();
        diff_ids.push(diff_ids[0].clone());
        if break_diff_id {
            diff_ids[1] = sha256_bytes(b"something else");
        }
        let config = w
            .add_json(
                media_types::OCI_IMAGE_CONFIG,
                &serde_json::json!({"os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}),
            )
            .unwrap();
        let manifest = ImageManifest::new(config, layers);
        let desc = w
            .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
            .unwrap();
        w.finish(vec![desc.clone()]).unwrap();
        let layout = Layout::open(&path).unwrap();
        let image = Image::read(&layout, &desc).unwrap();
        Fixture {
            _dir: dir,
            layout,
            image,
            tars,
        }
    }

    fn tags(names: &[&str]) -> Vec<TaggedName> {
        names
            .iter()
            .map(|n| TaggedName::parse(n).unwrap())
            .collect()
    }

    fn entries(bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            let mode = h.mode().unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.push((path, mode, content));
        }
        out
    }

    #[test]
    fn chain_ids_follow_docker() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_bytes(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn writes_uncompressed_layers_and_docker_files() {
        let f = fixture(false);
        let a =
            LegacyArchive::new(&f.layout, &f.image, &tags(&["app:v1", "app:latest"]), 0).unwrap();
        assert_eq!(a.layer_files(), 3);
        let bytes = a.write(Vec::new()).unwrap();
        assert_eq!(bytes, a.write(Vec::new()).unwrap(), "deterministic");
        let got = entries(&bytes);
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, expected_entries(&f.image, 0));
        for (name, mode, content) in &got {
            assert_eq!(*mode, if name.ends_with('/') { 0o755 } else { 0o644 });
            if let Some(hex) = name.strip_suffix("/layer.tar") {
                assert_eq!(sha256_bytes(content).hex(), hex);
                assert!(f.tars.contains(content));
            }
        }
        let config = &got[got.len() - 3];
        assert_eq!(config.2, f.image.config);
        let d = &f.image.diff_ids;
        let l = |i: usize| format!("{}/layer.tar", d[i].hex());
        assert_eq!(
            String::from_utf8(a.manifest_json().to_vec()).unwrap(),
            format!(
                r#"[{{"Config":"{}.json","Layers":["{}","{}","{}","{}"],"RepoTags":["app:v1","app:latest"]}}]"#,
                f.image.config_digest().hex(),
                l(0),
                l(1),
                l(2),
                l(0)
            )
        );
        assert_eq!(
            String::from_utf8(got.last().unwrap().2.clone()).unwrap(),
            format!(r#"{{"app":{{"latest":"{0}","v1":"{0}"}}}}"#, d[0].hex())
        );
    }

    #[test]
    fn skipped_layers_are_left_out_unless_needed_higher_up() {
        let f = fixture(false);
        // Layer 0 is also layer 3: skipping two layers still writes it.
        let a = LegacyArchive::new(&f.layout, &f.image, &tags(&["app:v1"]), 2).unwrap();
        assert_eq!(a.layer_files(), 2);
        let got = entries(&a.write(Vec::new()).unwrap());
        let names: Vec<String> = got.into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(names, expected_entries(&f.image, 2));
        assert!(!names.contains(&legacy_layer_name(&f.image.diff_ids[1])));
        // Skipping everything leaves only the config and the Docker files.
        let a = LegacyArchive::new(&f.layout, &f.image, &tags(&["app:v1"]), 4).unwrap();
        assert_eq!(a.layer_files(), 0);
    }

    #[test]
    fn wrong_diff_id_is_refused_when_planning() {
        let f = fixture(true);
        let err = LegacyArchive::new(&f.layout, &f.image, &tags(&["app:v1"]), 0).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains(&format!("layer {}", f.image.manifest.layers[1].digest))
                && err.contains("but the config's diff_id for it is"),
            "{err}"
        );
        // ... unless that layer is skipped.
        LegacyArchive::new(&f.layout, &f.image, &tags(&["app:v1"]), 2).unwrap();
    }

    #[test]
    fn recorded_sizes_are_not_measured() {
        let f = fixture(false);
        let zstd_layer = &f.image.manifest.layers[1];
        let mut sizes = LayerSizes::default();
        sizes.layers.insert(
            zstd_layer.digest.clone(),
            kiln_oci::layer_sizes::UncompressedLayer {
                diff_id: f.image.diff_ids[1].clone(),
                uncompressed_size: f.tars[1].len() as u64,
            },
        );
        sizes.write_to(f.layout.dir()).unwrap();
        // Not zstd any more: planning does not decompress it, so it passes...
        let victim = f.layout.blob_path(&zstd_layer.digest);
        let len = std::fs::metadata(&victim).unwrap().len() as usize;
        std::fs::remove_file(&victim).unwrap();
        std::fs::write(&victim, vec![0x28u8; len]).unwrap();
        let a = LegacyArchive::new(&f.layout, &f.image, &tags(&["app:v1"]), 0).unwrap();
        let size = |i: usize| a.layers.iter().find(|l| l.diff_id == f.image.diff_ids[i]);
        assert_eq!(size(1).unwrap().size, f.tars[1].len() as u64);
        assert_eq!(size(0).unwrap().size, f.tars[0].len() as u64);
        // ... and writing it fails.
        assert!(a.write(Vec::new()).is_err());
    }

    #[test]
    fn changed_layer_stops_before_manifest_json() {
        let f = fixture(false);
        let a = LegacyArchive::new(&f.layout, &f.image, &tags(&["app:v1"]), 0).unwrap();
        // Same size, other bytes, for the plain layer.
        let victim = f.layout.blob_path(&f.image.manifest.layers[2].digest);
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes[10] ^= 0xff;
        std::fs::remove_file(&victim).unwrap();
        std::fs::write(&victim, bytes).unwrap();
        let mut out = Vec::new();
        let err = format!("{:#}", a.write(&mut out).unwrap_err());
        assert!(err.contains("changed while being loaded"), "{err}");
        assert!(!String::from_utf8_lossy(&out).contains("manifest.json"));
    }

    #[test]
    fn layer_count_must_match_diff_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout");
        let w = LayoutWriter::new(&path).unwrap();
        let digest = w.add_blob_bytes(b"x").unwrap();
        let config = w
            .add_json(
                media_types::OCI_IMAGE_CONFIG,
                &serde_json::json!({"rootfs": {"type": "layers", "diff_ids": []}}),
            )
            .unwrap();
        let manifest = ImageManifest::new(
            config,
            vec![Descriptor::new(media_types::OCI_LAYER_TAR, digest, 1)],
        );
        let desc = w
            .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
            .unwrap();
        w.finish(vec![desc.clone()]).unwrap();
        let err = Image::read(&Layout::open(&path).unwrap(), &desc).unwrap_err();
        assert!(
            format!("{err:#}").contains("lists 0 diff_ids but manifest"),
            "{err:#}"
        );
    }
}
