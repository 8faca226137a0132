//! kiln-layer: files, symlinks and directories → a deterministic tar+gzip
//! layer blob, its descriptor and its listing. See docs/internals.md.

mod layer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "kiln-layer", about = "Build a deterministic OCI layer")]
struct Args {
    /// JSON spec written by the kiln_layer rule.
    #[arg(long)]
    spec: PathBuf,
    /// Output: the compressed layer blob.
    #[arg(long)]
    blob: PathBuf,
    /// Output: the layer descriptor JSON (with diff_id).
    #[arg(long)]
    descriptor: PathBuf,
    /// Output: the listing JSON of every entry in the layer.
    #[arg(long)]
    listing: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match layer::run(&args.spec, &args.blob, &args.descriptor, &args.listing) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-layer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
