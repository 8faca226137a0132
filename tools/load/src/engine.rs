//! Feeding the tarball to `docker load` or `podman load`.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};

use std::collections::HashSet;
use std::process::Output;

use kiln_oci::Digest;

use crate::legacy::chain_ids;
use crate::Tarball;

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
pub fn load(cli: &OsStr, tarball: &Tarball) -> anyhow::Result<()> {
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
    let written = tarball
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

/// Which engine a CLI drives, told by `<cli> --version` (no daemon round
/// trip): podman's CLI, and docker when it is podman-docker, print
/// "podman version ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Docker,
    Podman,
    /// Neither answers like docker nor podman (nerdctl, a wrapper, ...).
    Other,
}

/// Runs `<cli> ARGS` and captures its output.
fn capture(cli: &OsStr, args: &[&str]) -> io::Result<Output> {
    Command::new(cli).args(args).stdin(Stdio::null()).output()
}

pub fn kind(cli: &OsStr) -> Kind {
    match capture(cli, &["--version"]) {
        Ok(out) if out.status.success() => parse_kind(&String::from_utf8_lossy(&out.stdout)),
        _ => Kind::Other,
    }
}

fn parse_kind(version: &str) -> Kind {
    let first = version.trim_start().to_ascii_lowercase();
    if first.starts_with("podman") {
        Kind::Podman
    } else if first.starts_with("docker") {
        Kind::Docker
    } else {
        Kind::Other
    }
}

/// The containerd namespace Docker uses unless `docker info` names another.
pub const DOCKER_NAMESPACE: &str = "moby";

/// How a Docker daemon stores images, which decides what an incremental
/// load can skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Docker's own image and layer store (graph drivers: overlay2,
    /// fuse-overlayfs, ...): it skips reading a layer file of a docker-save
    /// tarball whose chain ID it already has.
    Classic,
    /// The containerd image store (Docker 24+ with snapshotters): `docker
    /// load` imports every blob. `address` is the containerd socket the
    /// daemon reports (`docker info`'s Containerd.Address), when it does;
    /// `namespace` the one its images live in (Containerd.Namespaces).
    Containerd {
        address: Option<PathBuf>,
        namespace: String,
    },
}

/// Asks the daemon which image store it has (`docker info`, read as JSON:
/// older CLIs lack the Containerd field a template would name).
pub fn store(cli: &OsStr) -> anyhow::Result<Store> {
    let shown = cli.to_string_lossy();
    let out = capture(cli, &["info", "--format", "{{json .}}"])
        .with_context(|| format!("starting `{shown} info`"))?;
    if !out.status.success() {
        bail!(
            "`{shown} info` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_store(&out.stdout)
        .with_context(|| format!("reading `{shown} info --format '{{{{json .}}}}'`"))
}

fn parse_store(info: &[u8]) -> anyhow::Result<Store> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Info {
        #[serde(default)]
        driver_status: Option<Vec<Vec<String>>>,
        #[serde(default)]
        containerd: Option<Containerd>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Containerd {
        #[serde(default)]
        address: String,
        #[serde(default)]
        namespaces: Option<Namespaces>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Namespaces {
        #[serde(default)]
        containers: String,
    }
    let info: Info = serde_json::from_slice(info)?;
    let snapshotter = info
        .driver_status
        .unwrap_or_default()
        .iter()
        .flatten()
        .any(|v| v.starts_with("io.containerd.snapshotter"));
    if !snapshotter {
        return Ok(Store::Classic);
    }
    let (address, namespace) = match info.containerd {
        Some(c) => (
            Some(c.address).filter(|a| !a.is_empty()).map(PathBuf::from),
            c.namespaces.map(|n| n.containers).unwrap_or_default(),
        ),
        None => (None, String::new()),
    };
    Ok(Store::Containerd {
        address,
        // Docker keeps its images in the namespace of its containers.
        namespace: if namespace.is_empty() {
            DOCKER_NAMESPACE.to_string()
        } else {
            namespace
        },
    })
}

/// `podman image exists REFERENCE`: exit 0 when it has it, 1 when not.
pub fn podman_has(cli: &OsStr, reference: &str) -> bool {
    capture(cli, &["image", "exists", reference]).is_ok_and(|out| out.status.success())
}

/// The ID of the image `reference` names, if the engine has it.
pub fn image_id(cli: &OsStr, reference: &str) -> Option<String> {
    let out = capture(cli, &["image", "inspect", "--format", "{{.Id}}", reference]).ok()?;
    if !out.status.success() {
        return None;
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!id.is_empty()).then_some(id)
}

/// `<cli> tag SOURCE TARGET`.
pub fn tag(cli: &OsStr, source: &str, target: &str) -> anyhow::Result<()> {
    let shown = cli.to_string_lossy();
    let out = capture(cli, &["tag", source, target])
        .with_context(|| format!("starting `{shown} tag`"))?;
    if !out.status.success() {
        bail!(
            "`{shown} tag {source} {target}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// At most this many images are inspected to find the layers the engine
/// has (one `docker image inspect` call; the most recent images first).
pub const MAX_INSPECTED_IMAGES: usize = 300;

/// The chain IDs of the layers of the images named by `tags` and of the
/// most recent images the engine lists. Best effort: an engine that does
/// not answer has none (and the load then sends every layer).
pub fn known_chain_ids(cli: &OsStr, tags: &[String]) -> HashSet<Digest> {
    let mut names: Vec<String> = tags.to_vec();
    if let Ok(out) = capture(cli, &["image", "ls", "--quiet", "--no-trunc"]) {
        if out.status.success() {
            let mut seen = HashSet::new();
            names.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && seen.insert(l.to_string()))
                    .take(MAX_INSPECTED_IMAGES)
                    .map(String::from),
            );
        }
    }
    let mut args = vec!["image", "inspect", "--format", "{{json .RootFS.Layers}}"];
    args.extend(names.iter().map(String::as_str));
    // A tag the engine does not have makes the command fail, but the images
    // it found are still printed: read stdout whatever the status.
    let Ok(out) = capture(cli, &args) else {
        return HashSet::new();
    };
    parse_layer_lists(&String::from_utf8_lossy(&out.stdout))
}

/// Chain IDs from `docker image inspect --format '{{json .RootFS.Layers}}'`
/// output: one JSON list of diff_ids per line (`null` for no layers).
fn parse_layer_lists(text: &str) -> HashSet<Digest> {
    let mut known = HashSet::new();
    for line in text.lines() {
        let Ok(Some(diff_ids)) = serde_json::from_str::<Option<Vec<Digest>>>(line.trim()) else {
            continue;
        };
        known.extend(chain_ids(&diff_ids));
    }
    known
}

/// Replaces this process with `<cli> run FLAGS IMAGE ARGS` (on Unix; elsewhere
/// runs it and returns its exit code).
pub fn run(
    cli: &OsStr,
    flags: &[String],
    image: &str,
    args: &[String],
) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let shown = cli.to_string_lossy();
    let mut cmd = Command::new(cli);
    cmd.arg("run").args(flags).arg(image).args(args);
    let _ = io::stdout().flush();
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(err).with_context(|| format!("starting `{shown} run`"))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .with_context(|| format!("starting `{shown} run`"))?;
        let code = status.code().unwrap_or(1);
        Ok(std::process::ExitCode::from(
            u8::try_from(code).unwrap_or(1),
        ))
    }
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

    #[cfg(unix)]
    #[test]
    fn known_chain_ids_inspects_tags_and_a_bounded_number_of_images() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let args_file = dir.path().join("args");
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        // `image ls` lists 400 images (one twice); `image inspect` records its
        // arguments, prints one layer list and fails (as for a missing tag).
        let cli = dir.path().join("docker");
        std::fs::write(
            &cli,
            format!(
                "#!/bin/sh\ncase \"$2\" in\n\
                 ls) echo sha256:dup; seq 1 400 | sed 's/^/sha256:/';;\n\
                 inspect) printf '%s\\n' \"$@\" > '{}'; echo '[\"{a}\"]'; \
                 echo 'Error: No such image: app:v1' >&2; exit 1;;\n\
                 esac\n",
                args_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
        let known = known_chain_ids(cli.as_os_str(), &["app:v1".to_string()]);
        assert_eq!(known, HashSet::from([a]));
        let args = std::fs::read_to_string(&args_file).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert_eq!(
            args[..5],
            [
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                "app:v1"
            ]
        );
        assert_eq!(args[5], "sha256:dup");
        assert_eq!(args.len(), 5 + MAX_INSPECTED_IMAGES);
        assert_eq!(*args.last().unwrap(), "sha256:299");
    }

    #[test]
    fn version_tells_the_engine() {
        assert_eq!(parse_kind("podman version 4.3.1\n"), Kind::Podman);
        assert_eq!(
            parse_kind("Docker version 28.2.2, build e6534b4\n"),
            Kind::Docker
        );
        assert_eq!(parse_kind("nerdctl version 1.7.0\n"), Kind::Other);
        assert_eq!(parse_kind(""), Kind::Other);
    }

    #[test]
    fn info_tells_the_image_store() {
        let classic = br#"{"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"]]}"#;
        assert_eq!(parse_store(classic).unwrap(), Store::Classic);
        // Docker 20.10 through a newer CLI: no DriverStatus, no Containerd.
        let old = br#"{"Driver":"fuse-overlayfs","DriverStatus":null,"Containerd":null}"#;
        assert_eq!(parse_store(old).unwrap(), Store::Classic);
        let containerd = br#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]],"Containerd":{"Address":"/run/containerd/containerd.sock","Namespaces":{"Containers":"moby-other"}}}"#;
        assert_eq!(
            parse_store(containerd).unwrap(),
            Store::Containerd {
                address: Some(PathBuf::from("/run/containerd/containerd.sock")),
                namespace: "moby-other".to_string(),
            }
        );
        let no_address = br#"{"DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}"#;
        assert_eq!(
            parse_store(no_address).unwrap(),
            Store::Containerd {
                address: None,
                namespace: DOCKER_NAMESPACE.to_string(),
            }
        );
        assert!(parse_store(b"not json").is_err());
    }

    #[test]
    fn layer_lists_give_chain_ids() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let text = format!("[\"{a}\",\"{b}\"]\nnull\n\ngarbage\n[\"{b}\"]\n");
        let known = parse_layer_lists(&text);
        let mut expected: HashSet<Digest> = chain_ids(&[a, b.clone()]).into_iter().collect();
        expected.insert(b);
        assert_eq!(known, expected);
    }
}
