//! kiln-index: per-platform manifest descriptors → one OCI image index. See docs/internals.md.

mod index;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kiln-index",
    about = "Assemble a multi-platform OCI image index"
)]
struct Args {
    /// JSON spec written by the kiln_index rule.
    #[arg(long)]
    spec: PathBuf,
    /// Output: the image index (canonical JSON).
    #[arg(long)]
    index: PathBuf,
    /// Output: the index's descriptor (media type, digest, size).
    #[arg(long)]
    descriptor: PathBuf,
    /// Output: the index digest (`sha256:…`, no newline).
    #[arg(long)]
    digest: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match index::run(
        &args.spec,
        &index::Outputs {
            index: &args.index,
            descriptor: &args.descriptor,
            digest: &args.digest,
        },
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-index: {e:#}");
            ExitCode::FAILURE
        }
    }
}
