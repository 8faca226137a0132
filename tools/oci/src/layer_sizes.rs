//! `kiln-layers.json`: the uncompressed size and diff_id of the layers
//! kiln-image built into a layout, by blob digest, from their
//! [`LayerDescriptor`](crate::LayerDescriptor)s. kiln-load reads it to write
//! a docker-save tarball (whose tar headers need each layer's uncompressed
//! size before its bytes) without decompressing every layer once just to
//! measure it. Layers it does not list (a base's) are measured.
//!
//! ```json
//! {"layers":{"sha256:…":{"diff_id":"sha256:…","uncompressed_size":10240}}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::digest::Digest;

/// The file's name inside the layout directory.
pub const LAYER_SIZES_FILE: &str = "kiln-layers.json";

/// The contents of `kiln-layers.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSizes {
    pub layers: BTreeMap<Digest, UncompressedLayer>,
}

/// What the uncompressed content of one layer blob is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncompressedLayer {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
}

impl LayerSizes {
    /// Reads `LAYOUT/kiln-layers.json`; empty when the layout has none.
    pub fn load(layout: &Path) -> anyhow::Result<LayerSizes> {
        let path = layout.join(LAYER_SIZES_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: parsing", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LayerSizes::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes `DIR/kiln-layers.json` (`DIR` being a layout under
    /// construction), unless there is nothing to record.
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        if self.layers.is_empty() {
            return Ok(());
        }
        let path = dir.join(LAYER_SIZES_FILE);
        std::fs::write(&path, canonical::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_bytes;

    #[test]
    fn round_trip_and_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LayerSizes::load(dir.path()).unwrap(), LayerSizes::default());
        let mut sizes = LayerSizes::default();
        sizes.write_to(dir.path()).unwrap();
        assert!(!dir.path().join(LAYER_SIZES_FILE).exists());
        sizes.layers.insert(
            sha256_bytes(b"blob"),
            UncompressedLayer {
                diff_id: sha256_bytes(b"tar"),
                uncompressed_size: 3,
            },
        );
        sizes.write_to(dir.path()).unwrap();
        assert_eq!(LayerSizes::load(dir.path()).unwrap(), sizes);
        let text = std::fs::read_to_string(dir.path().join(LAYER_SIZES_FILE)).unwrap();
        assert!(text.starts_with("{\"layers\":{\"sha256:"), "{text}");
        assert!(text.ends_with(",\"uncompressed_size\":3}}}"), "{text}");
    }
}
