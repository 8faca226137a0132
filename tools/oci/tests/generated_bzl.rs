//! rules/private/generated.bzl is what kiln_oci's tables render: the rules
//! and the tools cannot disagree on a platform, a limit or a level.

use std::path::Path;

#[test]
fn the_rules_generated_tables_match_the_tools_constants() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(kiln_oci::generated_bzl::PATH);
    let want = kiln_oci::generated_bzl::render();
    if std::env::var_os("KILN_UPDATE_GENERATED").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).expect("writing rules/private/generated.bzl");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: run `KILN_UPDATE_GENERATED=1 cargo test -p kiln-oci --test generated_bzl`",
        kiln_oci::generated_bzl::PATH
    );
}
