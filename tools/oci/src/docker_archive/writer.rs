//! Writing `docker save` tarballs: the members of either layout under the
//! names of [`super`], deterministic (sorted by the caller, mtime 0, uid/gid
//! 0, modes 0755/0644) and streamed, so that a tarball is never held in
//! memory or on disk. What goes in, and in which order, is the caller's
//! (kiln-load plans it); every member copied from a stream is hashed on the
//! way for the caller to check.

use std::io::{self, Read, Write};

use tar::Builder;

use super::{
    blob_name, legacy_config_name, legacy_layer_dir, legacy_layer_name, DockerSaveImage,
    Repositories, BLOB_DIRS, INDEX_JSON, MANIFEST_JSON, OCI_LAYOUT, REPOSITORIES,
};
use crate::canonical;
use crate::digest::{Digest, HashingReader};
use crate::media_types;
use crate::model::ImageIndex;
use crate::tar_writer::{
    append_bytes, append_dir, append_file, DEFAULT_DIR_MODE, DEFAULT_FILE_MODE,
};

/// A `docker save` tarball being streamed into `W`.
pub struct ArchiveWriter<W: Write> {
    tar: Builder<W>,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(out: W) -> ArchiveWriter<W> {
        ArchiveWriter {
            tar: Builder::new(out),
        }
    }

    /// Appends `reader` as the `size`-byte file `name` and returns the
    /// sha256 of what was copied (a reader that ends early is an error: the
    /// header already promised `size`).
    pub fn append_hashed(
        &mut self,
        name: &str,
        size: u64,
        reader: impl Read,
    ) -> io::Result<Digest> {
        let mut reader = HashingReader::new(reader);
        append_file(&mut self.tar, name, DEFAULT_FILE_MODE, size, &mut reader)?;
        Ok(reader.finish().1)
    }

    /// The directories of an OCI layout's blobs: the first members of an
    /// OCI-layout tarball.
    pub fn blob_dirs(&mut self) -> io::Result<()> {
        for dir in BLOB_DIRS {
            append_dir(&mut self.tar, dir, DEFAULT_DIR_MODE)?;
        }
        Ok(())
    }

    /// Blob `digest` at `blobs/sha256/<hex>`; returns the digest of what was
    /// copied.
    pub fn blob(&mut self, digest: &Digest, size: u64, content: impl Read) -> io::Result<Digest> {
        self.append_hashed(&blob_name(digest), size, content)
    }

    /// A legacy layer, `<diff_id hex>/` and `<diff_id hex>/layer.tar`
    /// (`size` uncompressed bytes); returns the digest of what was copied,
    /// which must be `diff_id`.
    pub fn legacy_layer(
        &mut self,
        diff_id: &Digest,
        size: u64,
        content: impl Read,
    ) -> io::Result<Digest> {
        append_dir(&mut self.tar, &legacy_layer_dir(diff_id), DEFAULT_DIR_MODE)?;
        self.append_hashed(&legacy_layer_name(diff_id), size, content)
    }

    /// A legacy config, `<config hex>.json`.
    pub fn legacy_config(&mut self, config: &Digest, bytes: &[u8]) -> io::Result<()> {
        self.bytes(&legacy_config_name(config), bytes)
    }

    /// `manifest.json`, as encoded by [`encode_manifest`].
    pub fn manifest_json(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes(MANIFEST_JSON, bytes)
    }

    /// `repositories`, as encoded by [`encode_repositories`].
    pub fn repositories(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes(REPOSITORIES, bytes)
    }

    /// `index.json`, as encoded by [`encode_index`].
    pub fn index_json(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes(INDEX_JSON, bytes)
    }

    /// `oci-layout`.
    pub fn oci_layout(&mut self) -> io::Result<()> {
        self.bytes(OCI_LAYOUT, media_types::OCI_LAYOUT_FILE.as_bytes())
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        append_bytes(&mut self.tar, name, DEFAULT_FILE_MODE, bytes)
    }

    /// Writes the tar's end and returns the output.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

/// `manifest.json` of `images`, canonical JSON.
pub fn encode_manifest(images: &[DockerSaveImage]) -> anyhow::Result<Vec<u8>> {
    canonical::to_vec(images)
}

/// `repositories`, canonical JSON.
pub fn encode_repositories(repositories: &Repositories) -> anyhow::Result<Vec<u8>> {
    canonical::to_vec(repositories)
}

/// `index.json`, canonical JSON.
pub fn encode_index(index: &ImageIndex) -> anyhow::Result<Vec<u8>> {
    canonical::to_vec(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker_archive::{repositories, tagged_index, TarFile, ANNOTATION_CONTAINERD_NAME};
    use crate::model::{Descriptor, ImageManifest};
    use crate::reference::TaggedName;
    use crate::select::BlobStore;
    use crate::sha256_bytes;

    fn tags(names: &[&str]) -> Vec<TaggedName> {
        names
            .iter()
            .map(|n| TaggedName::parse(n).unwrap())
            .collect()
    }

    fn layers() -> Vec<Vec<u8>> {
        (0..2u8)
            .map(|i| (0..20_000u32).map(|j| (j as u8) ^ i).collect())
            .collect()
    }

    /// What the writer writes in the legacy layout, the reader reads back:
    /// manifest.json, the config and the layers by the names manifest.json
    /// gives, and `repositories`.
    #[test]
    fn legacy_tarball_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let tags = tags(&["app:v1", "localhost:5000/team/app:v2"]);
        let layers = layers();
        let diff_ids: Vec<Digest> = layers.iter().map(|l| sha256_bytes(l)).collect();
        let config = br#"{"os":"linux"}"#;
        let config_digest = sha256_bytes(config);
        let image = DockerSaveImage::legacy(&config_digest, &diff_ids, &tags);

        let mut w = ArchiveWriter::new(Vec::new());
        for (diff_id, layer) in diff_ids.iter().zip(&layers) {
            let copied = w
                .legacy_layer(diff_id, layer.len() as u64, &layer[..])
                .unwrap();
            assert_eq!(&copied, diff_id);
        }
        w.legacy_config(&config_digest, config).unwrap();
        w.manifest_json(&encode_manifest(std::slice::from_ref(&image)).unwrap())
            .unwrap();
        let repos = repositories(&tags, diff_ids.last());
        w.repositories(&encode_repositories(&repos).unwrap())
            .unwrap();
        let path = dir.path().join("legacy.tar");
        std::fs::write(&path, w.finish().unwrap()).unwrap();

        let t = TarFile::open(&path, dir.path()).unwrap();
        let read = t.docker_manifest().unwrap().unwrap();
        assert_eq!(read, std::slice::from_ref(&image));
        assert_eq!(t.read_member(&read[0].config).unwrap(), config);
        assert_eq!(
            sha256_bytes(&t.read_member(&read[0].config).unwrap()),
            config_digest
        );
        for (name, layer) in read[0].layers.iter().zip(&layers) {
            assert_eq!(&t.read_member(name).unwrap(), layer);
        }
        let repos_read: Repositories = t.read_member_json(REPOSITORIES).unwrap();
        assert_eq!(repos_read, repos);
        assert_eq!(
            repos_read["localhost:5000/team/app"]["v2"],
            diff_ids[1].hex()
        );
        assert!(t.oci_index().unwrap().is_none());
    }

    /// The OCI layout with Docker's manifest.json: the reader finds the
    /// tagged index, every blob verified by its descriptor, and manifest.json
    /// naming the same blobs.
    #[test]
    fn oci_tarball_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let tags = tags(&["app:v1"]);
        let layers = layers();
        let layer_descs: Vec<Descriptor> = layers
            .iter()
            .map(|l| Descriptor::new(media_types::OCI_LAYER_TAR, sha256_bytes(l), l.len() as u64))
            .collect();
        let config = br#"{"os":"linux"}"#.to_vec();
        let config_desc = Descriptor::new(
            media_types::OCI_IMAGE_CONFIG,
            sha256_bytes(&config),
            config.len() as u64,
        );
        let manifest = canonical::to_vec(&ImageManifest::new(
            config_desc.clone(),
            layer_descs.clone(),
        ))
        .unwrap();
        let manifest_desc = Descriptor::new(
            media_types::OCI_IMAGE_MANIFEST,
            sha256_bytes(&manifest),
            manifest.len() as u64,
        );
        let mut blobs: Vec<(Descriptor, Vec<u8>)> = vec![
            (manifest_desc.clone(), manifest),
            (config_desc.clone(), config),
        ];
        blobs.extend(layer_descs.iter().cloned().zip(layers));
        blobs.sort_by(|a, b| a.0.digest.cmp(&b.0.digest));
        let image = DockerSaveImage::oci(&config_desc.digest, &layer_descs, &tags);
        let index = tagged_index(&manifest_desc, &tags);

        let mut w = ArchiveWriter::new(Vec::new());
        w.blob_dirs().unwrap();
        for (d, bytes) in &blobs {
            let copied = w.blob(&d.digest, d.size, &bytes[..]).unwrap();
            assert_eq!(copied, d.digest);
        }
        w.index_json(&encode_index(&index).unwrap()).unwrap();
        w.manifest_json(&encode_manifest(std::slice::from_ref(&image)).unwrap())
            .unwrap();
        w.oci_layout().unwrap();
        let path = dir.path().join("oci.tar");
        std::fs::write(&path, w.finish().unwrap()).unwrap();

        let t = TarFile::open(&path, dir.path()).unwrap();
        let read_index = t.oci_index().unwrap().unwrap();
        assert_eq!(read_index.manifests.len(), 1);
        let entry = &read_index.manifests[0];
        assert_eq!(entry.digest, manifest_desc.digest);
        let annotations = entry.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[ANNOTATION_CONTAINERD_NAME],
            "docker.io/library/app:v1"
        );
        assert_eq!(annotations[media_types::ANNOTATION_REF_NAME], "app:v1");
        for (d, bytes) in &blobs {
            assert_eq!(&t.read_verified(d).unwrap(), bytes);
        }
        let read = t.docker_manifest().unwrap().unwrap();
        assert_eq!(read, [image]);
        assert_eq!(read[0].config, blob_name(&config_desc.digest));
        assert_eq!(
            t.read_member(OCI_LAYOUT).unwrap(),
            media_types::OCI_LAYOUT_FILE.as_bytes()
        );
    }

    #[test]
    fn short_stream_is_an_error() {
        let mut w = ArchiveWriter::new(Vec::new());
        let d = sha256_bytes(b"abc");
        assert!(w.blob(&d, 10, &b"abc"[..]).is_err());
    }
}
