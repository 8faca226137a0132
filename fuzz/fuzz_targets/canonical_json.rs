//! Canonical JSON: any JSON value written canonically parses back to the
//! same value, and writing that again gives the same bytes.
#![no_main]

use kiln_oci::canonical;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let bytes = canonical::to_vec(&value).expect("a JSON value serializes");
    let again: serde_json::Value = serde_json::from_slice(&bytes).expect("canonical JSON parses");
    assert_eq!(value, again);
    assert_eq!(canonical::to_vec(&again).expect("serializes"), bytes);
});
