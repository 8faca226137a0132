//! kiln-pull: a base image from a registry as a shallow OCI layout (index,
//! manifests and configs; the layers stay in the registry, listed in
//! `kiln-source.json`), `fetch-blobs` to complete such a layout, and
//! `base-packages` to read the Debian packages of its layers.
//!
//! Contract: `docs/internals.md`, "Registry".

mod fetch;
mod packages;
mod pull;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use kiln_oci::blob_set::{BlobSet, Link};
use kiln_oci::reference::validate_tag;
use kiln_oci::{Digest, Platform};
use kiln_registry::{Client, ClientOptions, DockerConfig, RepoRef, Sources, Target};

#[derive(Parser)]
#[command(
    name = "kiln-pull",
    about = "Pulls a base image into a shallow OCI layout (rules_kiln)",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// HOST[:PORT]/REPO (a name without host is a Docker Hub one).
    #[arg(long, required = true)]
    image: Option<String>,
    /// sha256:… of the manifest or index to pull.
    #[arg(long)]
    digest: Option<String>,
    /// The tag: pulled only with --allow-tag and no --digest; otherwise it
    /// only names the image in the layout's index.json.
    #[arg(long)]
    tag: Option<String>,
    /// Allow pulling by --tag (not reproducible).
    #[arg(long)]
    allow_tag: bool,
    /// OS/ARCH[/VARIANT] to keep (repeatable).
    #[arg(long = "platform", required = true)]
    platforms: Vec<String>,
    /// The layout directory to write.
    #[arg(long, required = true)]
    output: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Completes a shallow layout: downloads the blobs kiln-source.json
    /// lists into a copy of it.
    FetchBlobs {
        #[arg(long)]
        layout: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Writes the Debian packages (JSON, `kiln_oci::sbom::BasePackages`) of
    /// one platform's image of a pulled layout, streaming the layers it
    /// lacks from the registry: what the SBOMs of images on it list.
    BasePackages {
        #[arg(long)]
        layout: PathBuf,
        /// OS/ARCH[/VARIANT] of the image to read.
        #[arg(long)]
        platform: String,
        #[arg(long)]
        output: PathBuf,
    },
    /// Writes an OCI layout of an image or index from the blob Files the
    /// build made (a blob-set spec, see kiln_oci::blob_set). With --fetch,
    /// the blobs of a pulled base that the layout lacks are downloaded.
    Layout {
        /// The blob-set spec written by the rules.
        #[arg(long)]
        spec: PathBuf,
        /// Directory the spec's paths are relative to.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Symlink the blobs instead of hard-linking or copying them (a
        /// layout for one `bazel run`).
        #[arg(long)]
        symlink: bool,
        /// Download the blobs a pulled (shallow) base lacks.
        #[arg(long)]
        fetch: bool,
        /// With --fetch: a directory of blobs fetched before (blobs/sha256/HEX,
        /// kept across runs), taken from there when present and filled with
        /// what is downloaded. The launchers of `bazel run` pass one, so a
        /// second `:load` of an image on a pulled base downloads nothing.
        #[arg(long, value_name = "DIR", requires = "fetch")]
        cache: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (label, result) = match cli.command {
        Some(Command::FetchBlobs { layout, output }) => {
            // Errors name the image the layout came from when there is one
            // (blob errors name their own repository anyway).
            let locations = match Sources::load(&layout) {
                Ok(Some(s)) => s.locations().into_iter().collect(),
                _ => Vec::new(),
            };
            let label = match locations.as_slice() {
                [only] => only.to_string(),
                _ => layout.display().to_string(),
            };
            (
                label,
                run(|client| fetch::fetch_blobs(client, layout, output, None)),
            )
        }
        Some(Command::BasePackages {
            layout,
            platform,
            output,
        }) => (
            layout.display().to_string(),
            platform
                .parse::<Platform>()
                .map_err(|e| anyhow!("--platform: {e}"))
                .and_then(|platform| {
                    run(|client| packages::base_packages(client, layout, platform, output))
                }),
        ),
        Some(Command::Layout {
            spec,
            root,
            output,
            symlink,
            fetch,
            cache,
        }) => (
            spec.display().to_string(),
            write_layout(&spec, &root, &output, symlink, fetch, cache),
        ),
        None => {
            let image = cli.image.clone().unwrap_or_default();
            (image, pull_command(cli))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-pull: {label}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn pull_command(cli: Cli) -> anyhow::Result<()> {
    let image = cli.image.unwrap_or_default();
    let output = cli.output.unwrap_or_default();
    let repo = RepoRef::parse(&image).map_err(|e| anyhow!("--image: {e}"))?;
    let digest = cli
        .digest
        .as_deref()
        .map(|d| d.parse::<Digest>().map_err(|e| anyhow!("--digest: {e}")))
        .transpose()?;
    if let Some(tag) = &cli.tag {
        validate_tag(tag).map_err(|e| anyhow!("--tag: {e}"))?;
    }
    let target = match (digest, &cli.tag) {
        (Some(d), _) => Target::Digest(d),
        (None, Some(tag)) if cli.allow_tag => Target::Tag(tag.clone()),
        (None, Some(tag)) => bail!(
            "--tag {tag:?} without --digest: pulling by tag is not reproducible \
             (the tag can move); give the digest (--digest sha256:…), or pass \
             --allow-tag to pull the tag anyway and be told its digest"
        ),
        (None, None) => bail!("--digest sha256:… is required"),
    };
    let mut platforms = Vec::new();
    for p in &cli.platforms {
        let platform: Platform = p.parse().map_err(|e| anyhow!("--platform: {e}"))?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    let args = pull::PullArgs {
        repo,
        target,
        tag: cli.tag,
        platforms,
        output,
    };
    run(|client| pull::pull(client, args))
}

fn write_layout(
    spec: &std::path::Path,
    root: &std::path::Path,
    output: &std::path::Path,
    symlink: bool,
    fetch: bool,
    cache: Option<PathBuf>,
) -> anyhow::Result<()> {
    let set = BlobSet::load(spec, root)?;
    let link = if symlink {
        Link::Symlink
    } else {
        Link::HardOrCopy
    };
    if !fetch {
        set.write_layout(output, link)?;
        return Ok(());
    }
    // The shallow layout goes next to the output, then fetch-blobs completes
    // it into place; a complete one is renamed as it is.
    let shallow = output.with_extension("shallow");
    let absent = set.write_layout(&shallow, link)?;
    let result = if absent.is_empty() {
        std::fs::rename(&shallow, output)
            .with_context(|| format!("renaming {} to {}", shallow.display(), output.display()))
    } else {
        let (s, o) = (shallow.clone(), output.to_path_buf());
        run(|client| fetch::fetch_blobs(client, s, o, cache))
    };
    let _ = std::fs::remove_dir_all(&shallow);
    result
}

/// Runs `f` with a registry client on a single-threaded runtime (the work
/// is network-bound; blob downloads overlap on it).
fn run<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let docker_config = DockerConfig::load_default().context("reading registry credentials")?;
    let client = Client::new(ClientOptions {
        docker_config,
        user_agent: concat!("rules_kiln-kiln-pull/", env!("CARGO_PKG_VERSION")).to_string(),
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(f(client))
}
