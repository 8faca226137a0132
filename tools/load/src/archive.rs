//! The compressed docker-save tarball: an OCI layout (`oci-layout`,
//! `index.json`, `blobs/sha256/*`) plus Docker's `manifest.json`, so that
//! both Docker's classic loader (which reads only manifest.json, e.g. Docker
//! 20.10) and OCI-aware loaders (containerd-backed Docker, podman) can read
//! it. The format (names, documents, member writing) is
//! kiln_oci::docker_archive's; this plans what goes in and checks it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use kiln_oci::docker_archive::writer::{encode_index, encode_manifest};
use kiln_oci::docker_archive::{tagged_index, ArchiveWriter, DockerSaveImage};
use kiln_oci::reference::TaggedName;
use kiln_oci::{Descriptor, Digest, ImageManifest, Layout};

/// A blob to copy from the layout into the tarball.
#[derive(Debug, Clone)]
struct Blob {
    digest: Digest,
    size: u64,
    path: PathBuf,
}

/// Everything the tarball holds, decided before the first byte is written.
#[derive(Debug)]
pub struct Archive {
    /// Sorted by digest (= by path in the tar), each once.
    blobs: Vec<Blob>,
    index_json: Vec<u8>,
    manifest_json: Vec<u8>,
    zstd_layers: bool,
}

impl Archive {
    /// Plans the tarball of image `manifest_desc` (an image manifest in
    /// `layout`) named by `tags`.
    pub fn new(
        layout: &Layout,
        manifest_desc: &Descriptor,
        tags: &[TaggedName],
    ) -> anyhow::Result<Archive> {
        let manifest: ImageManifest = layout.read_manifest(manifest_desc)?;

        let mut blobs = BTreeMap::new();
        for desc in std::iter::once(manifest_desc)
            .chain(std::iter::once(&manifest.config))
            .chain(&manifest.layers)
        {
            let path = layout.blob_path(&desc.digest);
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("blob {} is missing: {}", desc.digest, path.display()))?;
            if meta.len() != desc.size {
                bail!(
                    "blob {} is {} bytes but its descriptor says {}",
                    desc.digest,
                    meta.len(),
                    desc.size
                );
            }
            blobs.insert(
                desc.digest.clone(),
                Blob {
                    digest: desc.digest.clone(),
                    size: desc.size,
                    path,
                },
            );
        }

        // Docker's classic loader reads manifest.json; OCI-aware ones the
        // index, one entry per tag.
        let manifest_json = encode_manifest(&[DockerSaveImage::oci(
            &manifest.config.digest,
            &manifest.layers,
            tags,
        )])?;
        let index_json = encode_index(&tagged_index(manifest_desc, tags))?;

        Ok(Archive {
            blobs: blobs.into_values().collect(),
            index_json,
            manifest_json,
            zstd_layers: manifest
                .layers
                .iter()
                .any(|l| l.media_type.ends_with("zstd")),
        })
    }

    /// True when a layer's media type says zstd.
    pub fn has_zstd_layers(&self) -> bool {
        self.zstd_layers
    }

    #[cfg(test)]
    pub fn manifest_json(&self) -> &[u8] {
        &self.manifest_json
    }

    #[cfg(test)]
    pub fn index_json(&self) -> &[u8] {
        &self.index_json
    }

    /// Streams the tarball into `out`: entries sorted by path, mtime 0,
    /// uid/gid 0, fixed modes. Each blob is hashed as it is copied; a blob
    /// whose content does not match its digest stops the stream with an error
    /// before manifest.json is written, so a reader never sees a complete
    /// image built from corrupt data.
    pub fn write<W: Write>(&self, out: W) -> anyhow::Result<W> {
        let mut w = ArchiveWriter::new(out);
        w.blob_dirs().context("writing the tarball")?;
        for blob in &self.blobs {
            let file = File::open(&blob.path)
                .with_context(|| format!("opening blob {}", blob.path.display()))?;
            let actual = w.blob(&blob.digest, blob.size, file).with_context(|| {
                format!("copying blob {} into the tarball", blob.path.display())
            })?;
            if actual != blob.digest {
                bail!(
                    "blob {} is corrupt: its content has digest {actual}",
                    blob.path.display()
                );
            }
        }
        w.index_json(&self.index_json)
            .context("writing the tarball")?;
        w.manifest_json(&self.manifest_json)
            .context("writing the tarball")?;
        w.oci_layout().context("writing the tarball")?;
        w.finish().context("finishing the tarball")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use kiln_oci::docker_archive::blob_name;
    use kiln_oci::{canonical, media_types, sha256_bytes, LayoutWriter, Platform};

    struct Fixture {
        _dir: tempfile::TempDir,
        layout: Layout,
        manifest: Descriptor,
        config: Descriptor,
        layers: Vec<Descriptor>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout");
        let w = LayoutWriter::new(&path).unwrap();
        let mut layers = Vec::new();
        // The second layer appears twice: it must be stored once.
        for bytes in [&b"layer one"[..], b"layer two"] {
            let digest = w.add_blob_bytes(bytes).unwrap();
            layers.push(Descriptor::new(
                media_types::OCI_LAYER_TAR_GZIP,
                digest,
                bytes.len() as u64,
            ));
        }
        layers.push(layers[1].clone());
        let config = w
            .add_json(
                media_types::OCI_IMAGE_CONFIG,
                &serde_json::json!({"os": "linux"}),
            )
            .unwrap();
        let manifest = ImageManifest::new(config.clone(), layers.clone());
        let mut desc = w
            .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
            .unwrap();
        desc.platform = Some("linux/amd64".parse::<Platform>().unwrap());
        w.finish(vec![desc.clone()]).unwrap();
        Fixture {
            _dir: dir,
            layout: Layout::open(&path).unwrap(),
            manifest: desc,
            config,
            layers,
        }
    }

    fn tags(names: &[&str]) -> Vec<TaggedName> {
        names
            .iter()
            .map(|n| TaggedName::parse(n).unwrap())
            .collect()
    }

    #[test]
    fn manifest_json_and_index_json() {
        let f = fixture();
        let a = Archive::new(
            &f.layout,
            &f.manifest,
            &tags(&["app:v1", "localhost:5000/team/app:v2"]),
        )
        .unwrap();
        let l = |i: usize| format!("blobs/sha256/{}", f.layers[i].digest.hex());
        assert_eq!(
            String::from_utf8(a.manifest_json().to_vec()).unwrap(),
            format!(
                r#"[{{"Config":"blobs/sha256/{}","Layers":["{}","{}","{}"],"RepoTags":["app:v1","localhost:5000/team/app:v2"]}}]"#,
                f.config.digest.hex(),
                l(0),
                l(1),
                l(1)
            )
        );
        let index: serde_json::Value = serde_json::from_slice(a.index_json()).unwrap();
        let d = f.manifest.digest.to_string();
        assert_eq!(
            index,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_types::OCI_IMAGE_INDEX,
                "manifests": [
                    {
                        "mediaType": media_types::OCI_IMAGE_MANIFEST,
                        "digest": d,
                        "size": f.manifest.size,
                        "platform": {"os": "linux", "architecture": "amd64"},
                        "annotations": {
                            "io.containerd.image.name": "docker.io/library/app:v1",
                            "org.opencontainers.image.ref.name": "app:v1",
                        }
                    },
                    {
                        "mediaType": media_types::OCI_IMAGE_MANIFEST,
                        "digest": d,
                        "size": f.manifest.size,
                        "platform": {"os": "linux", "architecture": "amd64"},
                        "annotations": {
                            "io.containerd.image.name": "localhost:5000/team/app:v2",
                            "org.opencontainers.image.ref.name": "localhost:5000/team/app:v2",
                        }
                    }
                ]
            })
        );
        // Canonical JSON: what is hashed elsewhere is written the same here.
        assert_eq!(a.index_json(), canonical::to_vec(&index).unwrap());
    }

    #[test]
    fn tarball_entries_are_sorted_and_normalised() {
        let f = fixture();
        let a = Archive::new(&f.layout, &f.manifest, &tags(&["app:v1"])).unwrap();
        let bytes = a.write(Vec::new()).unwrap();
        // Deterministic: the same input gives the same bytes.
        assert_eq!(bytes, a.write(Vec::new()).unwrap());

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), 0, "{path}");
            assert_eq!(h.uid().unwrap(), 0, "{path}");
            assert_eq!(h.gid().unwrap(), 0, "{path}");
            let dir = path.ends_with('/');
            assert_eq!(h.mode().unwrap(), if dir { 0o755 } else { 0o644 }, "{path}");
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(sha256_bytes(&content).hex(), hex);
            }
            match path.as_str() {
                "index.json" => assert_eq!(content, a.index_json()),
                "manifest.json" => assert_eq!(content, a.manifest_json()),
                "oci-layout" => assert_eq!(content, media_types::OCI_LAYOUT_FILE.as_bytes()),
                _ => {}
            }
            seen.push(path);
        }
        let mut blobs: Vec<String> = [&f.manifest, &f.config, &f.layers[0], &f.layers[1]]
            .iter()
            .map(|d| blob_name(&d.digest))
            .collect();
        blobs.sort();
        let mut expected = vec!["blobs/".to_string(), "blobs/sha256/".to_string()];
        expected.extend(blobs);
        expected.extend(["index.json", "manifest.json", "oci-layout"].map(String::from));
        assert_eq!(seen, expected);
    }

    #[test]
    fn corrupt_blob_stops_before_manifest_json() {
        let f = fixture();
        let a = Archive::new(&f.layout, &f.manifest, &tags(&["app:v1"])).unwrap();
        let victim = f.layout.blob_path(&f.layers[0].digest);
        std::fs::remove_file(&victim).unwrap();
        std::fs::write(&victim, b"layer ONE").unwrap(); // same size, other bytes
        let mut out = Vec::new();
        let err = a.write(&mut out).unwrap_err();
        assert!(format!("{err:#}").contains("is corrupt"), "{err:#}");
        assert!(!String::from_utf8_lossy(&out).contains("manifest.json"));
    }

    #[test]
    fn wrong_blob_size_is_refused_when_planning() {
        let f = fixture();
        let victim = f.layout.blob_path(&f.layers[0].digest);
        std::fs::remove_file(&victim).unwrap();
        std::fs::write(&victim, b"short").unwrap();
        let err = Archive::new(&f.layout, &f.manifest, &tags(&["app:v1"])).unwrap_err();
        assert!(
            format!("{err:#}").contains("is 5 bytes but its descriptor says 9"),
            "{err:#}"
        );
    }
}
