//! Feeding the tarball to `docker load` or `podman load`.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};

use crate::archive::Archive;

/// Environment variable naming the container CLI to run instead of looking
/// for docker, then podman, on PATH.
pub const CLI_ENV: &str = "KILN_CONTAINER_CLI";

/// The container CLI to run: `$KILN_CONTAINER_CLI`, else docker, else podman.
pub fn find_cli() -> anyhow::Result<OsString> {
    if let Some(cli) = std::env::var_os(CLI_ENV).filter(|v| !v.is_empty()) {
        return Ok(cli);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["docker", "podman"] {
        if find_in_path(name, &path).is_some() {
            return Ok(name.into());
        }
    }
    bail!(
        "neither docker nor podman is on PATH: install one, name the CLI in \
         {CLI_ENV}, or write the tarball to a file with --output"
    )
}

fn find_in_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Runs `CLI load` with the tarball streamed into its stdin. Its stdout (the
/// "Loaded image" lines) goes to ours; its stderr is collected for errors.
pub fn load(cli: &OsStr, archive: &Archive) -> anyhow::Result<()> {
    let shown = cli.to_string_lossy();
    let mut child = Command::new(cli)
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{shown} load`"))?;

    // Drain stderr concurrently: a CLI that fills the pipe while we are
    // still writing its stdin would otherwise deadlock.
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("`{shown} load` has no stderr pipe"))?;
    let stderr_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });

    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("`{shown} load` has no stdin pipe"))?;
    let written = archive
        .write(BufWriter::with_capacity(256 * 1024, stdin))
        .and_then(|w| {
            w.into_inner()
                .map_err(|e| anyhow::Error::new(e.into_error()))
        })
        // Dropping stdin closes the pipe: the CLI sees the end of the tarball.
        .map(drop);

    let broken_pipe = match &written {
        Err(e) => e
            .chain()
            .filter_map(|c| c.downcast_ref::<io::Error>())
            .any(|io| io.kind() == io::ErrorKind::BrokenPipe),
        Ok(()) => false,
    };
    if written.is_err() && !broken_pipe {
        // Our side failed (e.g. a corrupt blob): make sure the CLI does not
        // load whatever it received. The child is ours, killed by its handle.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{shown} load`"))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();

    match written {
        Err(e) if !broken_pipe => return Err(e),
        _ => {}
    }
    if !status.success() {
        let detail = if stderr.is_empty() {
            "(no output on stderr)"
        } else {
            stderr
        };
        bail!("`{shown} load` failed ({status}): {detail}");
    }
    if let Err(e) = written {
        // The CLI closed its stdin early yet reported success: the image may
        // be incomplete, so this is still an error.
        return Err(e.context(format!("`{shown} load` stopped reading the tarball")));
    }
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn finds_executables_on_path_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("podman");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("docker");
        std::fs::write(&plain, "not executable").unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(find_in_path("podman", &path), Some(exe));
        assert_eq!(find_in_path("docker", &path), None);
        assert_eq!(find_in_path("nerdctl", &path), None);
    }
}
