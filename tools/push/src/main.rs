//! kiln-push: pushes the image or index an OCI layout names to a registry.
//!
//! Contract: docs/internals.md, section kiln-push.

mod plan;
mod registry;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kiln_oci::reference::{validate_tag, Repository};
use kiln_oci::Layout;

use crate::registry::{Credentials, Registry};

#[derive(Parser, Debug)]
#[command(
    name = "kiln-push",
    version,
    about = "Push an OCI image layout to a registry"
)]
struct Cli {
    /// OCI layout directory whose index.json names one image manifest or index.
    #[arg(long, value_name = "DIR")]
    layout: PathBuf,
    /// Target repository, HOST[:PORT]/NAME (plain HTTP for localhost, 127.0.0.1 and [::1]).
    #[arg(long, value_name = "HOST[:PORT]/NAME")]
    repository: String,
    /// Tag to point at the pushed manifest once everything else is uploaded (repeatable).
    #[arg(long = "tag", value_name = "TAG", allow_hyphen_values = true)]
    tags: Vec<String>,
    /// Also write the pushed digest (sha256:..., no newline) to this file.
    #[arg(long, value_name = "OUT")]
    digest_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-push: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Names are checked before the layout is read or the network touched, so a
    // typo costs nothing and never reaches a registry.
    let repository = Repository::parse(&cli.repository)
        .with_context(|| format!("--repository {:?}", cli.repository))?;
    for tag in &cli.tags {
        validate_tag(tag).with_context(|| format!("--tag {tag:?}"))?;
    }

    let layout = Layout::open(&cli.layout).context("--layout")?;
    let plan = plan::Plan::from_layout(&layout)
        .with_context(|| format!("--layout {}", cli.layout.display()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let credentials = Credentials::for_registry(&repository.registry);
    let digest = runtime.block_on(async {
        let registry = Registry::connect(repository.clone(), credentials).await?;
        registry.push(&plan, &cli.tags).await
    })?;

    if let Some(path) = cli.digest_file.as_deref().map(from_user_dir) {
        kiln_oci::atomic::write_file(&path, digest.to_string().as_bytes())
            .with_context(|| format!("--digest-file {}", path.display()))?;
    }
    println!("{repository}@{digest}");
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
