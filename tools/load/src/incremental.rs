//! `--incremental`: load only what the engine lacks, and say which of the
//! three loads it did.
//!
//! - **tag only**: the engine has the image (Docker: its image ID is the
//!   config digest; podman: `podman image exists`), so only the tags are set;
//! - **incremental**: Docker's classic store has the bottom layers (by chain
//!   ID), so a docker-save tarball without their `layer.tar` files is sent
//!   (what rules_docker's incremental loader did);
//! - **containerd import**: Docker's containerd image store, whose socket is
//!   here: the blobs containerd lacks are written through its content API
//!   and the tags are its image records (src/containerd.rs);
//! - **full**: everything is sent. Also what a failed incremental load falls
//!   back to (the engine dropped a layer since it was asked), and what the
//!   containerd store gets when its socket is not reachable (with a notice).

use std::ffi::OsStr;

use anyhow::Context;
use kiln_oci::reference::TaggedName;
use kiln_oci::{Descriptor, Layout};

use crate::archive::Archive;
use crate::containerd;
use crate::engine::{self, Kind, Store};
use crate::legacy::{chain_ids, Image, LegacyArchive};
use crate::{load, plan, Format, Tarball};

/// What an incremental load did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Tagged,
    Incremental {
        sent: usize,
        skipped: usize,
    },
    /// Written into containerd's content store (only what it lacked).
    Imported(containerd::Imported),
    Full,
}

pub fn incremental_load(
    cli: &OsStr,
    layout: &Layout,
    image: &Descriptor,
    tags: &[TaggedName],
    format: Format,
) -> anyhow::Result<Outcome> {
    let shown = cli.to_string_lossy();
    let in_layout = || format!("--layout {}", layout.dir().display());
    let info = Image::read(layout, image).with_context(in_layout)?;
    let total = info.diff_ids.len();
    let config = info.config_digest().to_string();
    let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let full = |why: &str| -> anyhow::Result<Outcome> {
        eprintln!("kiln-load: full load: all {total} layers ({why})");
        load(
            cli,
            &plan(layout, image, tags, format).with_context(in_layout)?,
        )?;
        Ok(Outcome::Full)
    };
    let tag_only = |engine: &str| -> anyhow::Result<Outcome> {
        for t in &names {
            engine::tag(cli, &config, t)?;
        }
        eprintln!(
            "kiln-load: tag only: {engine} already has image {config}, nothing loaded; tagged {}",
            names.join(", ")
        );
        Ok(Outcome::Tagged)
    };

    match engine::kind(cli) {
        Kind::Other => {
            return full(&format!(
                "`{shown}` answers `--version` like neither docker nor podman"
            ))
        }
        Kind::Podman => {
            // podman's image ID is the config digest too.
            if engine::podman_has(cli, &config) {
                return tag_only(&shown);
            }
            // The legacy layout: podman names its images `localhost/<name>`,
            // as `podman tag` does (from the compressed one's OCI index it
            // takes containerd's `docker.io/...` name when there is one tag).
            eprintln!(
                "kiln-load: full load: all {total} layers ({shown} does not have image {config})"
            );
            let tarball = LegacyArchive::new(layout, &info, tags, 0).with_context(in_layout)?;
            engine::load(cli, &Tarball::Legacy(tarball))?;
            return Ok(Outcome::Full);
        }
        Kind::Docker => {}
    }

    // Docker's classic store: the image ID is the config digest.
    if engine::image_id(cli, &config).as_deref() == Some(config.as_str()) {
        return tag_only(&shown);
    }
    match engine::store(cli)? {
        Store::Classic => {}
        Store::Containerd {
            address: Some(socket),
            namespace,
        } if socket.exists() => {
            // containerd's content API: only the blobs it lacks are written,
            // and the image records Docker lists are the tags.
            match containerd::import(&socket, &namespace, layout, image, tags) {
                Ok(done) => return Ok(Outcome::Imported(done)),
                Err(e) => {
                    eprintln!("kiln-load: notice: containerd import failed ({e:#})");
                    return full(&format!(
                        "{shown} uses the containerd image store, whose `docker load` imports every layer"
                    ));
                }
            }
        }
        Store::Containerd { address, .. } => {
            let why = match address {
                Some(socket) => format!("its containerd socket {} is not here", socket.display()),
                None => "`docker info` names no containerd socket".to_string(),
            };
            eprintln!("kiln-load: notice: {shown} uses the containerd image store and {why}: sending every layer");
            return full(&format!(
                "{shown} uses the containerd image store, whose `docker load` imports every layer"
            ));
        }
    }

    // The classic loader reads only manifest.json and skips the layer files
    // whose chain it has: the legacy layout, whose uncompressed layers every
    // Docker version reads (zstd ones included).
    let known = engine::known_chain_ids(cli, &names);
    let skip = chain_ids(&info.diff_ids)
        .iter()
        .take_while(|c| known.contains(*c))
        .count();
    let legacy = |skip| {
        LegacyArchive::new(layout, &info, tags, skip)
            .map(Tarball::Legacy)
            .with_context(in_layout)
    };
    if skip == 0 {
        eprintln!("kiln-load: full load: all {total} layers ({shown} has none of them)");
        // The layers as built (Docker decompresses them itself, and the pipe
        // carries the compressed bytes) unless one is zstd, which Docker
        // before 23.0 reads only from the legacy layout.
        let compressed = Archive::new(layout, image, tags).with_context(in_layout)?;
        if compressed.has_zstd_layers() {
            engine::load(cli, &legacy(0)?)?;
        } else {
            engine::load(cli, &Tarball::Compressed(compressed))?;
        }
        return Ok(Outcome::Full);
    }
    let tarball = legacy(skip)?;
    let sent = match &tarball {
        Tarball::Legacy(a) => a.layer_files(),
        Tarball::Compressed(_) => total,
    };
    eprintln!(
        "kiln-load: incremental load: sending {sent} layer file(s) of {total} layers, \
         skipping {skip} bottom layers ({shown} has them)"
    );
    match engine::load(cli, &tarball) {
        Ok(()) => Ok(Outcome::Incremental {
            sent,
            skipped: skip,
        }),
        Err(e) => {
            // The engine dropped a layer since it listed them (an rmi, a
            // prune): what it was not sent is missing. Send everything.
            eprintln!("kiln-load: the incremental load failed: {e:#}");
            eprintln!("kiln-load: full load: all {total} layers (retrying with every layer)");
            engine::load(cli, &legacy(0)?).context("full load after a failed incremental load")?;
            Ok(Outcome::Full)
        }
    }
}
