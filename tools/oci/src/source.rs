//! `kiln-source.json`: the blobs a "shallow" OCI layout references but does
//! not hold, each with the registry repository it can be fetched from.
//!
//! kiln-pull writes one next to a base image's index, manifests and configs
//! (the layers stay in the registry); `kiln-pull layout` (and kiln-image,
//! for a foreign shallow base's `--base-blobs`) carry the entries their
//! layouts still reference; kiln-push mounts or copies those blobs
//! registry-side, and `kiln-pull fetch-blobs` downloads them.
//!
//! ```json
//! {"blobs":{"sha256:…":{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",
//!                       "registry":"127.0.0.1:5000","repository":"kiln/base","size":123}}}
//! ```
//! (canonical JSON: keys sorted, no whitespace). One layout may hold blobs
//! of several sources (an index of images built on different bases).
//!
//! This is the plain data model, with no network code, so that the build
//! tools need not depend on the registry client.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::digest::Digest;
use crate::reference::Repository;

/// The file's name inside the layout directory.
pub const SOURCE_FILE: &str = "kiln-source.json";

/// The contents of `kiln-source.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// Every blob absent from the layout, by digest.
    pub blobs: BTreeMap<Digest, SourceBlob>,
}

/// One absent blob and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBlob {
    /// The media type of a descriptor naming the blob (informative: the
    /// bytes, hence the digest, are what matter).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    /// `host[:port]` as kiln-pull spoke to it (`registry-1.docker.io` for
    /// Docker Hub).
    pub registry: String,
    /// The repository inside `registry`: `kiln/base`, `library/ubuntu`.
    pub repository: String,
}

impl SourceBlob {
    /// `registry/repository`.
    pub fn location(&self) -> Location {
        Location {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
        }
    }
}

/// A registry repository blobs come from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub registry: String,
    pub repository: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

impl Sources {
    /// Reads `LAYOUT/kiln-source.json`; `None` when the layout has none (it
    /// is complete). Every entry's registry and repository are checked.
    pub fn load(layout: &Path) -> anyhow::Result<Option<Sources>> {
        let path = layout.join(SOURCE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let sources: Sources = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        for (digest, blob) in &sources.blobs {
            Repository::parse(&blob.location().to_string()).with_context(|| {
                format!(
                    "{}: blob {digest}: \"{}\" is not a registry repository",
                    path.display(),
                    blob.location()
                )
            })?;
        }
        Ok(Some(sources))
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn get(&self, digest: &Digest) -> Option<&SourceBlob> {
        self.blobs.get(digest)
    }

    /// Records `blob` as the source of `digest`. A digest listed already
    /// keeps its first source (any copy of the bytes will do), but the sizes
    /// must agree.
    pub fn add(&mut self, digest: Digest, blob: SourceBlob) -> anyhow::Result<()> {
        match self.blobs.get(&digest) {
            Some(have) if have.size != blob.size => bail!(
                "blob {digest} has {} bytes according to {} and {} bytes according to {}",
                have.size,
                have.location(),
                blob.size,
                blob.location()
            ),
            Some(_) => Ok(()),
            None => {
                self.blobs.insert(digest, blob);
                Ok(())
            }
        }
    }

    /// Adds every entry of `other` (see [`Sources::add`]).
    pub fn merge(&mut self, other: &Sources) -> anyhow::Result<()> {
        for (digest, blob) in &other.blobs {
            self.add(digest.clone(), blob.clone())?;
        }
        Ok(())
    }

    /// The repositories the blobs come from, sorted.
    pub fn locations(&self) -> BTreeSet<Location> {
        self.blobs.values().map(SourceBlob::location).collect()
    }

    /// The canonical JSON bytes of the file.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        canonical::to_vec(self)
    }

    /// Writes `DIR/kiln-source.json` (`DIR` being a layout under
    /// construction, renamed into place as a whole afterwards).
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(SOURCE_FILE);
        std::fs::write(&path, self.to_bytes()?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_bytes;

    fn blob(registry: &str, size: u64) -> SourceBlob {
        SourceBlob {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size,
            registry: registry.into(),
            repository: "kiln/base".into(),
        }
    }

    #[test]
    fn round_trip_is_canonical() {
        let d = sha256_bytes(b"layer");
        let mut s = Sources::default();
        s.add(d.clone(), blob("127.0.0.1:5000", 5)).unwrap();
        let bytes = s.to_bytes().unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                r#"{{"blobs":{{"{d}":{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","registry":"127.0.0.1:5000","repository":"kiln/base","size":5}}}}}}"#
            )
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Sources::load(dir.path()).unwrap(), None);
        s.write_to(dir.path()).unwrap();
        assert_eq!(Sources::load(dir.path()).unwrap(), Some(s.clone()));
        assert_eq!(
            s.locations()
                .into_iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>(),
            ["127.0.0.1:5000/kiln/base"]
        );

        // The old single-source shape, unknown keys and bad names are refused.
        let path = dir.path().join(SOURCE_FILE);
        std::fs::write(&path, r#"{"blobs":{},"registry":"r","repository":"x"}"#).unwrap();
        assert!(Sources::load(dir.path()).is_err());
        let bad = bytes
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .replace("kiln/base", "Kiln/Base");
        std::fs::write(&path, bad).unwrap();
        let err = format!("{:#}", Sources::load(dir.path()).unwrap_err());
        assert!(err.contains("is not a registry repository"), "{err}");
    }

    #[test]
    fn merging_keeps_the_first_source_and_checks_sizes() {
        let (a, b) = (sha256_bytes(b"a"), sha256_bytes(b"b"));
        let mut one = Sources::default();
        one.add(a.clone(), blob("r1.example", 1)).unwrap();
        let mut two = Sources::default();
        two.add(a.clone(), blob("r2.example", 1)).unwrap();
        two.add(b.clone(), blob("r2.example", 2)).unwrap();
        one.merge(&two).unwrap();
        assert_eq!(one.blobs.len(), 2);
        assert_eq!(one.get(&a).unwrap().registry, "r1.example");
        assert_eq!(one.get(&b).unwrap().registry, "r2.example");
        assert_eq!(one.locations().len(), 2);

        let mut three = Sources::default();
        three.add(a.clone(), blob("r3.example", 9)).unwrap();
        let err = one.merge(&three).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "blob {a} has 1 bytes according to r1.example/kiln/base and 9 bytes according to r3.example/kiln/base"
            )
        );
    }
}
