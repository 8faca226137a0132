//! `kiln-source.json`: the data model lives in `kiln_oci::source` (the build
//! tools read and write it without the network); this adds what the
//! registry client needs on top.

pub use kiln_oci::source::{Location, SourceBlob, Sources, SOURCE_FILE};

use crate::reference::RepoRef;

/// The repository `blob` is to be fetched from.
pub fn repo_of(blob: &SourceBlob) -> anyhow::Result<RepoRef> {
    repo_at(&blob.location())
}

/// `location` as a repository of the registry client.
pub fn repo_at(location: &Location) -> anyhow::Result<RepoRef> {
    RepoRef::new(&location.registry, &location.repository)
        .map_err(|e| anyhow::anyhow!("{SOURCE_FILE}: \"{location}\" is not a repository: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_sources() {
        let blob = SourceBlob {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 5,
            registry: "127.0.0.1:5000".into(),
            repository: "kiln/base".into(),
        };
        assert_eq!(
            repo_of(&blob).unwrap().to_string(),
            "127.0.0.1:5000/kiln/base"
        );
        let bad = SourceBlob {
            registry: "nohost".into(),
            ..blob
        };
        assert!(repo_of(&bad).is_err());
    }
}
