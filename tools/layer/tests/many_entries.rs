//! A tar of a million empty files is read in bounded memory, and kiln's own
//! gzip layer of it (about 7 MB for 512 MB of headers, far beyond the
//! 32-times expansion of file data) is accepted when fed back as `tars`.
//! Memory is the tool's maximum resident set size, as `/usr/bin/time -v`
//! reports it.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::Path;
use std::process::Command;

const ENTRIES: usize = 1_000_000;
/// The memory the KilnLayer action declares (rules/private/layer.bzl).
const MAX_RSS_KIB: u64 = 256 * 1024;

/// Runs kiln-layer on a spec with the one archive `source` under
/// `/usr/bin/time -v`; returns its maximum resident set size in KiB.
fn layer_rss(dir: &Path, source: &Path, out: &str) -> u64 {
    let spec = serde_json::json!({
        "target": "//many:layer",
        "entries": [{"attr": "tars", "kind": "tar", "path": "/", "source": source}]
    });
    let spec_path = dir.join(format!("{out}.spec.json"));
    fs::write(&spec_path, spec.to_string()).unwrap();
    let run = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_kiln-layer"))
        .arg("--spec")
        .arg(&spec_path)
        .args(["--blob", &format!("{out}.tar.gz")])
        .args(["--descriptor", &format!("{out}.json")])
        .args(["--listing", &format!("{out}.listing.json")])
        .current_dir(dir)
        .output()
        .expect("running /usr/bin/time (GNU time)");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no maximum resident set size in: {stderr}"))
}

#[test]
fn a_million_entry_tar_is_read_in_bounded_memory_and_its_layer_read_back() {
    if !Path::new("/usr/bin/time").exists() {
        assert!(
            std::env::var_os("KILN_REQUIRE_TOOLS").is_none(),
            "/usr/bin/time is missing"
        );
        println!("SKIP: no /usr/bin/time (GNU time) to measure memory with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tar_path = d.join("many.tar");
    let mut b = tar::Builder::new(BufWriter::new(File::create(&tar_path).unwrap()));
    for i in 0..ENTRIES {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let name = format!("d{:03}/f{i:07}", i / 10_000);
        b.append_data(&mut h, name, io::empty()).unwrap();
    }
    b.into_inner().unwrap();

    let plain = layer_rss(d, &tar_path, "plain");
    assert!(
        plain <= MAX_RSS_KIB,
        "{ENTRIES} entries took {plain} KiB, more than {MAX_RSS_KIB}"
    );
    let listing = fs::read(d.join("plain.listing.json")).unwrap();
    let listed = listing.windows(8).filter(|w| w == b"\"kind\":\"").count();
    assert_eq!(listed, ENTRIES + 100, "every file and its 100 directories");

    // kiln's own layer of those files, compressed about 75 times (the
    // headers), fed back: accepted, in the same memory, the same layer.
    let blob = d.join("plain.tar.gz");
    let again = layer_rss(d, &blob, "again");
    assert!(
        again <= MAX_RSS_KIB,
        "the layer read back took {again} KiB, more than {MAX_RSS_KIB}"
    );
    assert_eq!(
        fs::read(d.join("again.tar.gz")).unwrap(),
        fs::read(&blob).unwrap(),
        "the layer read back gives another layer"
    );
}
