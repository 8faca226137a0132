//! kiln-layer's `tars` reading: any bytes as a (plain, gzip, zstd or xz)
//! tarball added to a layer tree, which is then written. Errors are fine;
//! panics, hangs and unbounded memory are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tools/layer/src/archive.rs"]
#[allow(dead_code)]
mod archive;

mod common;

fuzz_target!(|data: &[u8]| {
    common::layer_from(data, archive::add_tar);
});
