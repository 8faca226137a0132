//! kiln-layer: files, symlinks, directories, tarballs, .deb packages and
//! concatenations of archive members → a deterministic tar+gzip (or
//! tar+zstd) layer blob, its descriptor and its listing; `kiln-layer tar`
//! decompresses a blob into the uncompressed `<name>-layer.tar`. See
//! docs/internals.md.

mod archive;
mod concat;
mod layer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kiln-layer",
    about = "Build a deterministic OCI layer",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// JSON spec written by the kiln_layer rule.
    #[arg(long, required = true)]
    spec: Option<PathBuf>,
    /// Output: the compressed layer blob.
    #[arg(long, required = true)]
    blob: Option<PathBuf>,
    /// Output: the layer descriptor JSON (with diff_id and uncompressed_size).
    #[arg(long, required = true)]
    descriptor: Option<PathBuf>,
    /// Output: the listing JSON of every entry in the layer.
    #[arg(long, required = true)]
    listing: Option<PathBuf>,
    /// Compressing threads (default: this process's CPUs, at most 4). The
    /// blob's bytes do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: Option<u16>,
}

#[derive(Subcommand)]
enum Command {
    /// Decompress a layer blob into its uncompressed tar, checked against
    /// the descriptor's diff_id and uncompressed_size.
    Tar {
        /// The layer blob (gzip or zstd).
        #[arg(long)]
        blob: PathBuf,
        /// Its descriptor JSON, as written by kiln-layer.
        #[arg(long)]
        descriptor: PathBuf,
        /// Output: the uncompressed tar.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::Tar {
            blob,
            descriptor,
            out,
        }) => layer::write_tar(blob, descriptor, out),
        None => {
            // clap requires these without a subcommand.
            let (Some(spec), Some(blob), Some(descriptor), Some(listing)) =
                (&args.spec, &args.blob, &args.descriptor, &args.listing)
            else {
                unreachable!("clap checks the required arguments")
            };
            let workers = args.jobs.map_or_else(
                || kiln_oci::encoder::default_workers(kiln_oci::encoder::MAX_WORKERS),
                usize::from,
            );
            let outputs = layer::Outputs {
                blob,
                descriptor,
                listing,
                workers,
            };
            layer::run(spec, &outputs)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-layer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
