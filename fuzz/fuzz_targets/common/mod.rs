//! What the archive targets share: the input as a file, read into a tree by
//! kiln-layer's reader, the tree written as a tar.
#![allow(dead_code)]

use std::io::Write;

use kiln_oci::tar_writer::{tree_to_vec, Tree};

use crate::archive::ArchiveSource;

pub fn layer_from(data: &[u8], add: fn(&mut Tree, &ArchiveSource) -> anyhow::Result<()>) {
    let mut file = tempfile::NamedTempFile::new().expect("temporary file");
    file.write_all(data).expect("writing the input");
    let src = ArchiveSource {
        target: "//fuzz:layer",
        attr: "tars",
        path: file.path(),
        prefix: String::new(),
        mtime: Some(0),
        expansion_ratio: 32,
    };
    let mut tree = Tree::new();
    if add(&mut tree, &src).is_ok() && tree.check().is_ok() {
        let _ = tree_to_vec(&tree);
    }
}
