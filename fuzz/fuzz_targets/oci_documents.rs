//! OCI documents as registries and layouts serve them: index, manifest,
//! descriptor, platform, docker-save manifest.json. Parsed, and what parses
//! is written back canonically and must parse again to the same value.
#![no_main]

use kiln_oci::docker_archive::DockerSaveImage;
use kiln_oci::{canonical, Descriptor, ImageIndex, ImageManifest, Platform};
use libfuzzer_sys::fuzz_target;

fn round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let bytes = canonical::to_vec(&value).expect("a parsed document serializes");
        let again: T = serde_json::from_slice(&bytes).expect("canonical JSON parses");
        assert_eq!(value, again);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ImageIndex>(data);
    round_trip::<ImageManifest>(data);
    round_trip::<Descriptor>(data);
    let _ = serde_json::from_slice::<Vec<DockerSaveImage>>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = s.parse::<Platform>() {
            let again: Platform = p.to_string().parse().expect("a platform's text parses");
            assert_eq!(p, again);
        }
    }
});
