//! kiln-image: base layout + layers + config attributes → an OCI layout with
//! one image manifest. See docs/internals.md.

mod config;
mod created;
mod entrypoint;
mod envexpand;
mod image;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "kiln-image", about = "Assemble an OCI image layout")]
struct Args {
    /// JSON spec written by the kiln_image rule.
    #[arg(long)]
    spec: PathBuf,
    /// Output: the OCI layout directory.
    #[arg(long)]
    layout: PathBuf,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let outputs = image::Outputs {
        layout: &args.layout,
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
