//! kiln-imagetest: runs container-structure-test configs (schemaVersion
//! 2.0.0) against an image given as the blob Files the build made (a
//! blob-set spec), with no container runtime and no network: the image's
//! layers are unpacked into a directory, file and metadata checks read it
//! and its config, commands run inside it (chroot or bubblewrap, qemu-user
//! for another CPU). The test behind rules_kiln's `image_test`.
//!
//! Contract: `docs/image-test.md`.

mod checks;
mod command;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use kiln_oci::blob_set::{BlobSet, Located};
use kiln_oci::rootfs::Rootfs;
use kiln_oci::select::{host_platform, select_manifest, BlobStore};
use kiln_oci::{ImageIndex, Platform};

use crate::checks::{ImageConfig, Report};

#[derive(Parser)]
#[command(
    name = "kiln-imagetest",
    about = "Runs container-structure-test configs against an image's blobs (rules_kiln image_test)"
)]
struct Cli {
    /// Blob-set spec of the image or index (paths relative to --root).
    #[arg(long)]
    spec: PathBuf,
    /// Directory the spec's and the configs' paths are relative to.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// A structure test config, YAML or JSON (repeatable; relative to --root).
    #[arg(long = "config", required = true)]
    configs: Vec<PathBuf>,
    /// OS/ARCH[/VARIANT] of the index's image to test (default: this machine's).
    #[arg(long)]
    platform: Option<String>,
    /// Where to unpack the image (default: $TEST_TMPDIR, else a temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kiln-imagetest: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    // Every config is read first: a broken one fails before anything runs.
    let mut configs = Vec::new();
    for path in &cli.configs {
        let full = cli.root.join(path);
        configs.push((path.clone(), config::load(&full, path)?));
    }
    let set = BlobSet::load(&cli.root.join(&cli.spec), &cli.root)?;
    let target = set.target().to_string();
    let want: Platform = match &cli.platform {
        Some(p) => p.parse().map_err(|e| anyhow!("{target}: platform: {e}"))?,
        None => host_platform(),
    };
    let selected = select_manifest(&set, &ImageIndex::new(vec![set.top().clone()]), &want)
        .with_context(|| format!("{target}: choosing the image for {want}"))?;
    let config_json: serde_json::Value =
        serde_json::from_slice(&set.read_verified(&selected.manifest.config)?)
            .with_context(|| format!("{target}: parsing the image config"))?;
    let image_config = ImageConfig::from_json(&config_json);
    let arch = config_json
        .get("architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let os = config_json.get("os").and_then(|v| v.as_str()).unwrap_or("");
    println!(
        "kiln-imagetest: {target}: image {} ({os}/{arch})",
        selected.descriptor.digest
    );

    let mut layers = Vec::new();
    for (n, l) in selected.manifest.layers.iter().enumerate() {
        match set.locate(&l.digest) {
            Located::File(p) => layers.push(p),
            Located::Absent(_) | Located::Missing => bail!(
                "{target}: layer {n} ({}) is not among the test's runfiles (a pulled base's layers are only in its registry)",
                l.digest
            ),
        }
    }
    let temp;
    let workdir = match cli
        .workdir
        .or_else(|| std::env::var_os("TEST_TMPDIR").map(PathBuf::from))
    {
        Some(w) => w,
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };
    let root_dir = workdir.join("kiln-imagetest-root");
    if root_dir.exists() {
        make_writable(&root_dir);
        std::fs::remove_dir_all(&root_dir)
            .with_context(|| format!("removing {}", root_dir.display()))?;
    }
    let mut rootfs = Rootfs::create(&root_dir)?;
    rootfs
        .apply_layers(&layers)
        .with_context(|| format!("{target}: unpacking the image"))?;

    let mut report = Report::default();
    for (path, c) in &configs {
        println!("kiln-imagetest: config {}", path.display());
        if !c.command_tests.is_empty() {
            match command::Runner::new(&rootfs, &image_config, &arch, &c.global_env_vars) {
                Ok(runner) => {
                    println!("kiln-imagetest: commands run through {}", runner.describe());
                    for t in &c.command_tests {
                        report.record("commandTests", &t.name, &runner.run(&rootfs, t));
                    }
                }
                Err(e) => {
                    for t in &c.command_tests {
                        report.record(
                            "commandTests",
                            &t.name,
                            &[checks::Mismatch {
                                what: "command".into(),
                                expected: "a way to run it".into(),
                                actual: format!("{e:#}"),
                            }],
                        );
                    }
                }
            }
        }
        for t in &c.file_existence_tests {
            report.record(
                "fileExistenceTests",
                &t.name,
                &checks::file_existence(&rootfs, t),
            );
        }
        for t in &c.file_content_tests {
            report.record(
                "fileContentTests",
                &t.name,
                &checks::file_content(&rootfs, t),
            );
        }
        if let Some(m) = &c.metadata_test {
            report.record(
                "metadataTest",
                "metadata",
                &checks::metadata(&image_config, m),
            );
        }
    }
    make_writable(&root_dir);
    let _ = std::fs::remove_dir_all(&root_dir);
    println!(
        "kiln-imagetest: {target}: {} passed, {} failed",
        report.passed, report.failed
    );
    if report.passed + report.failed == 0 {
        bail!("{target}: the configs hold no tests");
    }
    Ok(report.failed == 0)
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-imagetest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Gives the owner write access to every directory under `dir`, so that a
/// read-only directory of the image can be removed.
fn make_writable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
    );
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            make_writable(&e.path());
        }
    }
}
