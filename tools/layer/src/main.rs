//! kiln-layer: files, symlinks, directories, tarballs, .deb packages and
//! concatenations of archive members → a deterministic tar+gzip (or
//! tar+zstd) layer blob, its descriptor and its listing, and optionally the
//! uncompressed tar. See docs/internals.md.

mod archive;
mod concat;
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
    /// Output (optional): the uncompressed layer tar, written in the same pass.
    #[arg(long)]
    tar: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outputs = layer::Outputs {
        blob: &args.blob,
        descriptor: &args.descriptor,
        listing: &args.listing,
        tar: args.tar.as_deref(),
    };
    match layer::run(&args.spec, &outputs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-layer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
