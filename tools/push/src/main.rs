//! kiln-push: pushes the image or index an OCI layout names to a registry.
//!
//! Contract: docs/internals.md, "Pushing (kiln-push)".

mod plan;
mod registry;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kiln_oci::reference::{validate_tag, Repository};
use kiln_oci::{Layout, Stamp};

use crate::registry::Registry;

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
    /// Bazel status file whose `KEY value` lines fill `{KEY}` in the
    /// repository and tags (repeatable).
    #[arg(long = "stamp", value_name = "FILE")]
    stamps: Vec<PathBuf>,
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
    let stamp = if cli.stamps.is_empty() {
        None
    } else {
        Some(Stamp::load(&cli.stamps).context("--stamp")?)
    };
    let (repository, what) = stamped(&cli.repository, "--repository", stamp.as_ref())?;
    let repository = Repository::parse(&repository).context(what)?;
    let mut tags = Vec::with_capacity(cli.tags.len());
    for tag in &cli.tags {
        let (tag, what) = stamped(tag, "--tag", stamp.as_ref())?;
        validate_tag(&tag).context(what)?;
        tags.push(tag);
    }

    let layout = Layout::open(&cli.layout).context("--layout")?;
    let plan = plan::Plan::from_layout(&layout)
        .with_context(|| format!("--layout {}", cli.layout.display()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let digest = runtime.block_on(async {
        let registry = Registry::connect(repository.clone()).await?;
        registry.push(&plan, &tags).await
    })?;

    if let Some(path) = cli.digest_file.as_deref().map(from_user_dir) {
        kiln_oci::atomic::write_file(&path, digest.to_string().as_bytes())
            .with_context(|| format!("--digest-file {}", path.display()))?;
    }
    println!("{repository}@{digest}");
    Ok(())
}

/// `value` with `{KEY}` replaced when there is a stamp, and how to name it
/// in errors: `--tag "v{X}"`, plus the stamped value when it differs.
fn stamped(value: &str, flag: &str, stamp: Option<&Stamp>) -> anyhow::Result<(String, String)> {
    let what = format!("{flag} {value:?}");
    let Some(stamp) = stamp else {
        return Ok((value.to_string(), what));
    };
    let expanded = stamp.expand(value, &what)?;
    if expanded == value {
        return Ok((expanded, what));
    }
    let what = format!("{what} (stamped: {expanded:?})");
    Ok((expanded, what))
}

/// A path the user typed: under `bazel run` the tool runs in the runfiles
/// tree, so a relative path means the directory `bazel run` was started in.
fn from_user_dir(path: &Path) -> PathBuf {
    match std::env::var_os("BUILD_WORKING_DIRECTORY") {
        Some(dir) if path.is_relative() && !dir.is_empty() => Path::new(&dir).join(path),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_expands_and_names_both_values() {
        let stamp = Stamp::from_pairs([("V", "1.2"), ("BAD", "a b")]);
        assert_eq!(
            stamped("v{V}", "--tag", Some(&stamp)).unwrap(),
            (
                "v1.2".to_string(),
                "--tag \"v{V}\" (stamped: \"v1.2\")".to_string()
            )
        );
        assert_eq!(
            stamped("plain", "--tag", Some(&stamp)).unwrap(),
            ("plain".to_string(), "--tag \"plain\"".to_string())
        );
        // Without a stamp the value is kept as is (and then fails validation).
        assert_eq!(
            stamped("v{V}", "--tag", None).unwrap(),
            ("v{V}".to_string(), "--tag \"v{V}\"".to_string())
        );
        let err = stamped("v{NOPE}", "--tag", Some(&stamp)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--tag \"v{NOPE}\": unknown stamp variable {NOPE}"),
            "{err}"
        );
    }
}
