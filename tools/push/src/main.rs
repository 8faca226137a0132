//! kiln-push: pushes the image or index an OCI layout names to a registry.
//!
//! Contract: docs/internals.md, "Pushing (kiln-push)".

mod plan;
mod progress;
mod referrers;
mod registry;
mod release;
mod sign;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use kiln_oci::reference::{validate_tag, Repository};
use kiln_oci::{Layout, Stamp};
use kiln_registry::cas::RemoteCache;

use crate::progress::Progress;
use crate::registry::{Pusher, Sbom, Service};
use crate::release::ReleaseSpec;
use crate::sign::SigningKey;

#[derive(Parser, Debug)]
#[command(
    name = "kiln-push",
    version,
    about = "Push OCI images to registries: one image from a layout, or a whole release"
)]
struct Cli {
    /// OCI layout directory whose index.json names one image manifest or index.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "release",
        conflicts_with = "release"
    )]
    layout: Option<PathBuf>,
    /// A release spec (written by image_release and lazy image_push): every
    /// service in one run, each blob once, tags last.
    #[arg(long, value_name = "FILE")]
    release: Option<PathBuf>,
    /// What the release spec's paths are relative to (the runfiles directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// What the lazy blobs' output paths are relative to (Bazel's exec root).
    #[arg(long, value_name = "DIR", default_value = ".")]
    outputs_root: PathBuf,
    /// Target repository, HOST[:PORT]/NAME (plain HTTP for localhost,
    /// 127.0.0.1 and [::1]). With --release: of its only service.
    #[arg(long, value_name = "HOST[:PORT]/NAME")]
    repository: Option<String>,
    /// With --release: push to this registry instead of each repository's
    /// own (ghcr.io/acme/api becomes HOST[:PORT]/acme/api).
    #[arg(long, value_name = "HOST[:PORT]", requires = "release")]
    registry: Option<String>,
    /// Tag to point at the pushed manifest once everything else is uploaded
    /// (repeatable). With --release: added to every service's own tags.
    #[arg(long = "tag", value_name = "TAG", allow_hyphen_values = true)]
    tags: Vec<String>,
    /// The Bazel remote cache lazy blobs are read from, as given to Bazel's
    /// --remote_cache: http(s):// (GET /cas/<hex>), or grpc://, grpcs://,
    /// unix: (REAPI).
    #[arg(long, value_name = "URL")]
    remote_cache: Option<String>,
    /// The instance name of a gRPC remote cache (Bazel's
    /// --remote_instance_name).
    #[arg(long, value_name = "NAME", default_value = "")]
    remote_instance_name: String,
    /// Also write the pushed digest (sha256:..., no newline) to this file
    /// (one service only).
    #[arg(long, value_name = "OUT")]
    digest_file: Option<PathBuf>,
    /// Bazel status file whose `KEY value` lines fill `{KEY}` in the
    /// repository and tags (repeatable).
    #[arg(long = "stamp", value_name = "FILE")]
    stamps: Vec<PathBuf>,
    /// With --layout: an SPDX SBOM (written by the image rule) to attach as
    /// an OCI referrer of the manifest it describes (repeatable).
    #[arg(long = "sbom", value_name = "FILE", conflicts_with = "release")]
    sboms: Vec<PathBuf>,
    /// Sign each pushed digest, as cosign does (a `sha256-<hex>.sig` tag),
    /// with this key: a PKCS#8 EC P-256 PEM, or cosign's encrypted key
    /// (its password in COSIGN_PASSWORD). Read and checked before anything
    /// is pushed.
    #[arg(long, value_name = "KEY")]
    sign_key: Option<PathBuf>,
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
    let layout_repository = match (&cli.release, &cli.repository) {
        (None, Some(repository)) => {
            let (repository, what) = stamped(repository, "--repository", stamp.as_ref())?;
            Some(Repository::parse(&repository).context(what)?)
        }
        (None, None) => bail!("--repository is required with --layout"),
        _ => None,
    };
    let mut cli_tags = Vec::with_capacity(cli.tags.len());
    for tag in &cli.tags {
        let (tag, what) = stamped(tag, "--tag", stamp.as_ref())?;
        validate_tag(&tag).context(what)?;
        cli_tags.push(tag);
    }
    let registry = match &cli.registry {
        Some(host) => {
            Repository::parse(&format!("{host}/x"))
                .with_context(|| format!("--registry {host:?}: not HOST[:PORT]"))?;
            Some(host.clone())
        }
        None => None,
    };

    // The key is read (and decrypted) before the network is touched: a bad
    // key or password pushes nothing.
    let sign_key = match &cli.sign_key {
        Some(path) => Some(SigningKey::load(&from_user_dir(path), || {
            std::env::var(sign::PASSWORD_VARIABLE).ok()
        })?),
        None => None,
    };

    let services = match &cli.release {
        None => {
            let repository = layout_repository.expect("checked above");
            let dir = cli.layout.as_deref().unwrap_or(Path::new("."));
            let layout = Layout::open(dir).context("--layout")?;
            let plan = plan::Plan::from_layout(&layout)
                .with_context(|| format!("--layout {}", dir.display()))?;
            let sboms = cli
                .sboms
                .iter()
                .map(|p| Sbom::load(p, &plan))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut service = Service::new(
                format!("--layout {}", dir.display()),
                repository,
                cli_tags,
                plan,
            )?;
            service.sboms = sboms;
            vec![service]
        }
        Some(path) => {
            let spec = ReleaseSpec::load(path)?;
            if cli.repository.is_some() && spec.services.len() != 1 {
                bail!(
                    "--repository names one repository, but {} has {} services (use --registry)",
                    path.display(),
                    spec.services.len()
                );
            }
            let mut services = Vec::new();
            for s in &spec.services {
                let service_stamp = if s.stamp { stamp.as_ref() } else { None };
                let given = cli.repository.as_deref().unwrap_or(&s.repository);
                if given.is_empty() {
                    bail!(
                        "{}: no repository: give --repository HOST[:PORT]/NAME",
                        s.target
                    );
                }
                let (repository, what) = stamped(given, "repository", service_stamp)?;
                let mut repository = Repository::parse(&repository)
                    .with_context(|| format!("{}: {what}", s.target))?;
                if let Some(host) = &registry {
                    repository = Repository::parse(&format!("{host}/{}", repository.path))
                        .with_context(|| format!("{}: --registry {host}", s.target))?;
                }
                let mut tags = Vec::new();
                for tag in &s.tags {
                    let (tag, what) = stamped(tag, "remote_tags", service_stamp)?;
                    validate_tag(&tag).with_context(|| format!("{}: {what}", s.target))?;
                    tags.push(tag);
                }
                for tag in &cli_tags {
                    if !tags.contains(tag) {
                        tags.push(tag.clone());
                    }
                }
                let plan = s.plan(&cli.root, &cli.outputs_root)?;
                let sboms = s
                    .sboms
                    .iter()
                    .map(|p| Sbom::load(&cli.root.join(p), &plan))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .with_context(|| s.target.clone())?;
                let mut service = Service::new(s.target.clone(), repository, tags, plan)?;
                service.sboms = sboms;
                services.push(service);
            }
            services
        }
    };
    if cli.digest_file.is_some() && services.len() != 1 {
        bail!(
            "--digest-file: the release has {} services, not one",
            services.len()
        );
    }
    let lazy = services.iter().any(|s| {
        s.plan
            .blobs
            .iter()
            .any(|b| matches!(b.source, plan::BlobSource::Lazy(_)))
    });
    let user_agent = concat!("rules_kiln-kiln-push/", env!("CARGO_PKG_VERSION"));
    let no_cas = "no remote cache was given (--@rules_kiln//settings:remote_cache=URL, \
                  or -- --remote-cache URL)"
        .to_string();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let progress = Arc::new(Progress::new());
    let digests = runtime.block_on(async {
        // Inside the runtime: a gRPC cache's channel runs on it.
        let cas = match cli.remote_cache.as_deref().filter(|u| !u.is_empty()) {
            Some(url) if lazy => Some(
                RemoteCache::new(url, &cli.remote_instance_name, user_agent)
                    .context("--remote-cache")?,
            ),
            _ => None,
        };
        let pusher = Pusher::connect(&services, progress.clone(), cas, no_cas, sign_key).await?;
        pusher.push(&services).await
    })?;
    progress.summary();

    if let Some(path) = cli.digest_file.as_deref().map(from_user_dir) {
        kiln_oci::atomic::write_file(&path, digests[0].to_string().as_bytes())
            .with_context(|| format!("--digest-file {}", path.display()))?;
    }
    for (service, digest) in services.iter().zip(&digests) {
        if cli.release.is_none() {
            println!("{}@{digest}", service.display);
        } else {
            println!(
                "{} {}@{digest} tags: {}",
                service.target,
                service.display,
                service.tags.join(", ")
            );
        }
    }
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
