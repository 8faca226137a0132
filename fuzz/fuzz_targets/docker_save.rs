//! `docker save` tarballs (docker_tar bases): any bytes indexed as a tar,
//! then manifest.json, index.json and every member they name read.
#![no_main]

use std::io::{Read, Write};

use kiln_oci::docker_archive::{blob_name, TarFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("base.tar");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("writing the input");
    let Ok(tar) = TarFile::open(&path, dir.path()) else {
        return;
    };
    if let Ok(Some(images)) = tar.docker_manifest() {
        for image in images.iter().take(4) {
            let _ = tar.read_member(&image.config);
            for layer in image.layers.iter().take(16) {
                if let Ok((mut r, _)) = tar.open_member(layer) {
                    let _ = std::io::copy(&mut r.by_ref().take(1 << 20), &mut std::io::sink());
                }
            }
        }
    }
    if let Ok(Some(index)) = tar.oci_index() {
        for m in index.manifests.iter().take(16) {
            let _ = tar.read_member(&blob_name(&m.digest));
        }
    }
});
