//! kiln-load: loads an image from an OCI layout into docker or podman, by
//! streaming a docker-save tarball into `docker load` / `podman load`.
//!
//! Contract: docs/internals.md, "Docker (kiln-load)".

mod archive;
mod containerd;
mod engine;
mod incremental;
mod layer;
mod legacy;
mod shell;

use std::ffi::OsStr;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use kiln_oci::atomic::AtomicFile;
use kiln_oci::media_types;
use kiln_oci::reference::TaggedName;
use kiln_oci::select;
use kiln_oci::{Descriptor, Layout, Platform, Stamp};

use crate::archive::Archive;
use crate::legacy::{Image, LegacyArchive};

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
    /// Write the tarball to this file instead of running `docker load`
    /// (then --incremental and --run-flags do nothing).
    #[arg(long, value_name = "FILE.tar")]
    output: Option<PathBuf>,
    /// Tarball layout: `compressed` (the layout's blobs plus Docker's
    /// manifest.json) or `legacy` (docker save's, uncompressed layers).
    #[arg(long, value_enum, default_value_t = Format::Compressed)]
    format: Format,
    /// Send only the layers the engine does not have yet (Docker's classic
    /// image store; other engines get a full load).
    #[arg(long)]
    incremental: bool,
    /// Load into containerd at this socket through its content API (only the
    /// blobs it lacks are written; each tag becomes an image record), instead
    /// of into docker or podman.
    #[arg(long, value_name = "SOCKET")]
    containerd: Option<PathBuf>,
    /// containerd namespace for --containerd (Docker's is `moby`, k3s's `k8s.io`).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "default",
        requires = "containerd"
    )]
    namespace: String,
    /// Bazel status file whose `KEY value` lines fill `{KEY}` in tags (repeatable).
    #[arg(long = "stamp", value_name = "FILE")]
    stamps: Vec<PathBuf>,
    /// After loading, `docker run FLAGS <first tag>` (FLAGS split as by a POSIX
    /// shell, without expansion); the exit status is the container's.
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    run_flags: Option<String>,
    /// Do not run the image even though --run-flags is given.
    #[arg(long)]
    norun: bool,
    /// Arguments for the container, after `--` (with --run-flags).
    #[arg(last = true, value_name = "ARG")]
    args: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Compressed,
    Legacy,
}

/// The tarball fed to the engine or written to --output.
pub enum Tarball {
    Compressed(Archive),
    Legacy(LegacyArchive),
}

impl Tarball {
    pub fn write<W: Write>(&self, out: W) -> anyhow::Result<W> {
        match self {
            Tarball::Compressed(a) => a.write(out),
            Tarball::Legacy(a) => a.write(out),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Expands `{KEY}` with the stamp (when there is one), then checks the tag.
fn parse_tag(tag: &str, stamp: Option<&Stamp>) -> anyhow::Result<TaggedName> {
    let what = format!("--tag {tag:?}");
    let Some(stamp) = stamp else {
        return TaggedName::parse(tag).context(what);
    };
    let expanded = stamp.expand(tag, &what)?;
    if expanded == tag {
        return TaggedName::parse(tag).context(what);
    }
    TaggedName::parse(&expanded).with_context(|| format!("{what} (stamped: {expanded:?})"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let stamp = if cli.stamps.is_empty() {
        None
    } else {
        Some(Stamp::load(&cli.stamps).context("--stamp")?)
    };
    let tags = cli
        .tags
        .iter()
        .map(|t| parse_tag(t, stamp.as_ref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let run_flags = match cli.run_flags.as_deref() {
        Some(flags) if !cli.norun => Some(
            shell::split(flags)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--run-flags {flags:?}"))?,
        ),
        _ => None,
    };
    let explicit_platform = cli
        .platform
        .as_deref()
        .map(|p| p.parse::<Platform>().context("--platform"))
        .transpose()?;

    let layout = Layout::open(&cli.layout).context("--layout")?;
    let in_layout = || format!("--layout {}", cli.layout.display());
    let image = choose_image(&layout, explicit_platform.as_ref()).with_context(in_layout)?;

    if let Some(path) = cli.output.as_deref().map(from_user_dir) {
        let tarball = plan(&layout, &image, &tags, cli.format).with_context(in_layout)?;
        let mut file = AtomicFile::create(&path).context("--output")?;
        tarball
            .write(BufWriter::new(file.file()))
            .and_then(|w| {
                w.into_inner()
                    .map_err(|e| anyhow::Error::new(e.into_error()))
            })
            .and_then(|f| f.sync_all().context("syncing"))
            .with_context(|| format!("--output {}", path.display()))?;
        file.commit().context("--output")?;
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(socket) = cli.containerd.as_deref() {
        if run_flags.is_some() {
            bail!("--run-flags runs the image with docker or podman; it does not apply to --containerd");
        }
        containerd::import(socket, &cli.namespace, &layout, &image, &tags)
            .with_context(in_layout)?;
        return Ok(ExitCode::SUCCESS);
    }
    let engine = engine::find_cli()?;
    if cli.incremental {
        incremental::incremental_load(&engine, &layout, &image, &tags, cli.format)?;
    } else {
        let tarball = plan(&layout, &image, &tags, cli.format).with_context(in_layout)?;
        load(&engine, &tarball)?;
    }

    match run_flags {
        Some(flags) => engine::run(&engine, &flags, &tags[0].to_string(), &cli.args),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The whole tarball in `format`.
pub fn plan(
    layout: &Layout,
    image: &Descriptor,
    tags: &[TaggedName],
    format: Format,
) -> anyhow::Result<Tarball> {
    Ok(match format {
        Format::Compressed => Tarball::Compressed(Archive::new(layout, image, tags)?),
        Format::Legacy => {
            let info = Image::read(layout, image)?;
            Tarball::Legacy(LegacyArchive::new(layout, &info, tags, 0)?)
        }
    })
}

/// Loads `tarball`; a failure of a compressed tarball with zstd layers gets a
/// hint, because Docker before 23.0 reads them as truncated gzip.
pub fn load(engine: &OsStr, tarball: &Tarball) -> anyhow::Result<()> {
    let result = engine::load(engine, tarball);
    match tarball {
        Tarball::Compressed(a) if a.has_zstd_layers() => result.context(
            "the image has zstd layers, which Docker before 23.0 cannot read from this \
             tarball: load it with --format legacy",
        ),
        _ => result,
    }
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
            if select::pick_entry(std::slice::from_ref(&top), want).is_err() {
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
    let want = explicit.cloned().unwrap_or_else(select::host_platform);
    match select::pick_entry(&index.manifests, &want) {
        Ok(d) => Ok(d.clone()),
        Err(e) if explicit.is_some() => Err(e).context("--platform"),
        Err(e) => Err(e).context(format!(
            "this machine is {want} (pick another image with --platform)"
        )),
    }
}
