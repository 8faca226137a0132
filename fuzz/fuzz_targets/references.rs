//! Names users and registries give: repositories, tagged names, tags,
//! digests, image references (with Docker Hub's defaults). What parses must
//! print as something that parses to the same value.
#![no_main]

use kiln_oci::reference::{validate_tag, Repository, TaggedName};
use kiln_oci::Digest;
use kiln_registry::{ImageRef, RepoRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Repository::parse(s);
    let _ = TaggedName::parse(s).map(|t| t.normalized());
    let _ = validate_tag(s);
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string().parse::<Digest>().expect("digest text parses"), d);
    }
    if let Ok(r) = RepoRef::parse(s) {
        let _ = r.api_url();
        let again = RepoRef::parse(&r.to_string()).expect("a repository's text parses");
        assert_eq!(again, r);
    }
    if let Ok(i) = ImageRef::parse(s) {
        let again = ImageRef::parse(&i.to_string()).expect("an image reference's text parses");
        assert_eq!(again, i);
    }
});
