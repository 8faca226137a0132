//! kiln-image: base descriptors + layer descriptors + config attributes →
//! the config and manifest of one image (no blob copies). See docs/internals.md.

mod binaries;
mod config;
mod created;
mod entrypoint;
mod envexpand;
mod image;
mod sbom;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "kiln-image", about = "Assemble an OCI image layout")]
struct Args {
    /// JSON spec written by the kiln_image rule.
    #[arg(long)]
    spec: PathBuf,
    /// Output: the image manifest (canonical JSON).
    #[arg(long)]
    manifest: PathBuf,
    /// Output, for a foreign base (an OCI layout or docker-save tarball not
    /// built by kiln): a layout directory holding its layer blobs.
    #[arg(long)]
    base_blobs: Option<PathBuf>,
    /// Output: the config blob.
    #[arg(long)]
    config: PathBuf,
    /// Output: the manifest digest (`sha256:…`, no newline).
    #[arg(long)]
    digest: PathBuf,
    /// Output: the manifest descriptor with platform.
    #[arg(long)]
    descriptor: PathBuf,
    /// Output: the listing of the whole image filesystem.
    #[arg(long)]
    listing: PathBuf,
    /// Output (optional): the config blob's sha256 as 64 hex digits, no newline.
    #[arg(long)]
    config_digest: Option<PathBuf>,
}

/// `kiln-image verify-layout`: the base verification action (see verify.rs).
#[derive(Parser)]
#[command(name = "kiln-image verify-layout")]
struct VerifyArgs {
    /// The base OCI layout directory.
    #[arg(long)]
    layout: PathBuf,
    /// Output: the list of verified blobs.
    #[arg(long)]
    stamp: PathBuf,
}

/// `kiln-image sbom`: the SBOM action (see sbom.rs).
#[derive(Parser)]
#[command(name = "kiln-image sbom")]
struct SbomArgs {
    /// JSON spec written by the image rule.
    #[arg(long)]
    spec: PathBuf,
    /// Output: the SPDX 2.3 JSON document.
    #[arg(long)]
    output: PathBuf,
}

/// `kiln-image check-binaries`: the KilnCheckBinaries action (see binaries.rs).
#[derive(Parser)]
#[command(name = "kiln-image check-binaries")]
struct CheckBinariesArgs {
    /// JSON spec written by the image rule.
    #[arg(long)]
    spec: PathBuf,
    /// Output: the report (files checked, files skipped and why).
    #[arg(long)]
    output: PathBuf,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("check-binaries") {
        let args = CheckBinariesArgs::parse_from(std::env::args().skip(1));
        return match binaries::run(&args.spec, &args.output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kiln-image: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if std::env::args().nth(1).as_deref() == Some("sbom") {
        let args = SbomArgs::parse_from(std::env::args().skip(1));
        return match sbom::run(&args.spec, &args.output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kiln-image: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // A second mode rather than subcommands, so that the image action's
    // command line stays as it is.
    if std::env::args().nth(1).as_deref() == Some("verify-layout") {
        let args = VerifyArgs::parse_from(std::env::args().skip(1));
        return match verify::verify_layout(&args.layout, &args.stamp) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kiln-image: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    let outputs = image::Outputs {
        manifest: &args.manifest,
        base_blobs: args.base_blobs.as_deref(),
        config: &args.config,
        digest: &args.digest,
        descriptor: &args.descriptor,
        listing: &args.listing,
        config_digest: args.config_digest.as_deref(),
    };
    match image::run(&args.spec, &outputs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}
