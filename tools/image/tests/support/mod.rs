//! Runs kiln-image as the rules do, then writes the OCI layout the rules'
//! `oci_layout` output group would (kiln_oci::blob_set) at `<name>_layout`,
//! so that tests check the image through what its consumers see.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use kiln_oci::blob_set::{BlobSet, Link};
use kiln_oci::sha256_bytes;
use serde_json::{json, Value};

/// `spec`'s layers may carry `"blob"` (the layer file): kiln-image does not
/// read it; the layout writer does.
pub fn run_image(dir: &Path, name: &str, spec: &Value, extra: &[&str]) -> Output {
    let mut spec = spec.clone();
    // The layout's ref.name is the layout writer's business now.
    if let Some(o) = spec.as_object_mut() {
        o.remove("ref_name");
    }
    let mut blobs = Vec::new();
    if let Some(layers) = spec.get_mut("layers").and_then(Value::as_array_mut) {
        for l in layers {
            if let Some(blob) = l.as_object_mut().and_then(|o| o.remove("blob")) {
                blobs.push(json!({"blob": blob, "digest": l["descriptor"]}));
            }
        }
    }
    fs::write(dir.join(format!("{name}.spec.json")), spec.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-image"))
        .arg("--spec")
        .arg(format!("{name}.spec.json"))
        .arg("--manifest")
        .arg(format!("{name}.manifest.json"))
        .arg("--base-blobs")
        .arg(format!("{name}_base_blobs"))
        .arg("--config")
        .arg(format!("{name}.config.json"))
        .arg("--digest")
        .arg(format!("{name}.digest"))
        .arg("--descriptor")
        .arg(format!("{name}.descriptor.json"))
        .arg("--listing")
        .arg(format!("{name}.listing.json"))
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap();
    if !out.status.success() {
        return out;
    }
    let config = fs::read(dir.join(format!("{name}.config.json"))).unwrap();
    fs::write(
        dir.join(format!("{name}.config.sha")),
        sha256_bytes(&config).to_string(),
    )
    .unwrap();
    blobs.push(
        json!({"blob": format!("{name}.config.json"), "digest": format!("{name}.config.sha")}),
    );
    let mut layouts = Vec::new();
    if dir.join(format!("{name}_base_blobs")).exists() {
        layouts.push(json!(format!("{name}_base_blobs")));
    }
    let set = json!({
        "target": spec["target"],
        "top": {"blob": format!("{name}.manifest.json"), "descriptor": format!("{name}.descriptor.json")},
        "blobs": blobs,
        "layouts": layouts,
        "ref_name": "latest",
    });
    let set = BlobSet::from_spec(serde_json::from_value(set).unwrap(), dir).unwrap();
    set.write_layout(&dir.join(format!("{name}_layout")), Link::HardOrCopy)
        .unwrap();
    out
}
