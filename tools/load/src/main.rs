//! kiln-load: loads an image from an OCI layout into docker or podman, by
//! streaming a docker-save tarball into `docker load` / `podman load`.
//!
//! Contract: docs/internals.md, section kiln-load.

mod archive;
mod engine;
mod platform;

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use kiln_oci::atomic::AtomicFile;
use kiln_oci::media_types;
use kiln_oci::reference::TaggedName;
use kiln_oci::{Descriptor, Layout, Platform};

use crate::archive::Archive;

#[derive(Parser, Debug)]
#[command(
    name = "kiln-load",
    version,
    about = "Load an OCI image layout into docker or podman"
)]
struct Cli {
    /// OCI layout directory whose index.json names an image manifest or index.
    #[arg(long, value_name = "DIR")]
    layout: PathBuf,
    /// Name for the loaded image, REPO:TAG (repeatable, at least one).
    #[arg(
        long = "tag",
        value_name = "REPO:TAG",
        required = true,
        allow_hyphen_values = true
    )]
    tags: Vec<String>,
    /// Image to pick from an index (default: linux on this machine's CPU).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Write the tarball to this file instead of running `docker load`.
    #[arg(long, value_name = "FILE.tar")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let tags = cli
        .tags
        .iter()
        .map(|t| TaggedName::parse(t).with_context(|| format!("--tag {t:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let explicit_platform = cli
        .platform
        .as_deref()
        .map(|p| p.parse::<Platform>().context("--platform"))
        .transpose()?;

    let layout = Layout::open(&cli.layout).context("--layout")?;
    let image = choose_image(&layout, explicit_platform.as_ref())
        .with_context(|| format!("--layout {}", cli.layout.display()))?;
    let archive = Archive::new(&layout, &image, &tags)
        .with_context(|| format!("--layout {}", cli.layout.display()))?;

    match cli.output.as_deref().map(from_user_dir) {
        Some(path) => {
            let mut file = AtomicFile::create(&path).context("--output")?;
            archive
                .write(BufWriter::new(file.file()))
                .and_then(|w| {
                    w.into_inner()
                        .map_err(|e| anyhow::Error::new(e.into_error()))
                })
                .and_then(|f| f.sync_all().context("syncing"))
                .with_context(|| format!("--output {}", path.display()))?;
            file.commit().context("--output")?;
        }
        None => {
            let cli = engine::find_cli()?;
            engine::load(&cli, &archive)?;
        }
    }
    Ok(())
}

/// A path the user typed: under `bazel run` the tool runs in the runfiles
/// tree, so a relative path means the directory `bazel run` was started in.
fn from_user_dir(path: &Path) -> PathBuf {
    match std::env::var_os("BUILD_WORKING_DIRECTORY") {
        Some(dir) if path.is_relative() && !dir.is_empty() => Path::new(&dir).join(path),
        _ => path.to_path_buf(),
    }
}

/// The image manifest to load: the layout's top entry, or the entry of its
/// index that matches the platform.
fn choose_image(layout: &Layout, explicit: Option<&Platform>) -> anyhow::Result<Descriptor> {
    let top = layout.top()?;
    if media_types::is_manifest(&top.media_type) {
        // A single image is loaded as is; only an explicit --platform that
        // contradicts the platform recorded for it is an error.
        if let (Some(want), Some(have)) = (explicit, &top.platform) {
            if platform::pick(std::slice::from_ref(&top), want).is_err() {
                bail!("--platform {want}: the layout holds a single image for {have}");
            }
        }
        return Ok(top);
    }
    if !media_types::is_index(&top.media_type) {
        bail!(
            "index.json names {} of media type {:?}, neither an image manifest nor an index",
            top.digest,
            top.media_type
        );
    }
    let index = layout.read_index(&top)?;
    let want = explicit.cloned().unwrap_or_else(platform::host_platform);
    match platform::pick(&index.manifests, &want) {
        Ok(d) => Ok(d.clone()),
        Err(e) if explicit.is_some() => Err(e).context("--platform"),
        Err(e) => Err(e).context(format!(
            "this machine is {want} (pick another image with --platform)"
        )),
    }
}
