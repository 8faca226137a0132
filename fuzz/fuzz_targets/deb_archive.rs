//! kiln-layer's `debs` reading: any bytes as a Debian package (ar, then its
//! data.tar member in any compression) added to a layer tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tools/layer/src/archive.rs"]
#[allow(dead_code)]
mod archive;

mod common;

fuzz_target!(|data: &[u8]| {
    common::layer_from(data, archive::add_deb);
});
