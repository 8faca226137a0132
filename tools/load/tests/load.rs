//! kiln-load end to end. Tests that need docker (and go, to build the static
//! binary the test image runs) print a SKIP when those are missing, and fail
//! under KILN_REQUIRE_TOOLS (set by e2e/suites/rust.sh). The others use a stand-in CLI
//! through KILN_CONTAINER_CLI.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use kiln_oci::media_types;
use kiln_oci::tar_writer::append_bytes;
use kiln_oci::{sha256_bytes, Descriptor, Digest, ImageIndex, ImageManifest, LayoutWriter};

/// True when the test's tools are there (see kiln_testsupport::require_tools:
/// a SKIP line, or a panic under KILN_REQUIRE_TOOLS).
fn tools_available(tools: &[&str]) -> bool {
    let test = std::thread::current().name().unwrap_or("load").to_string();
    kiln_testsupport::require_tools(&test, tools)
}

/// Prints "hello from kiln"; then `greeting: $GREETING` and `args: A|B|...`
/// when set, and exits with `$EXIT_CODE` (default 0).
const HELLO_GO: &str = r#"package main

import (
	"os"
	"strconv"
	"strings"
)

func main() {
	os.Stdout.WriteString("hello from kiln\n")
	if g := os.Getenv("GREETING"); g != "" {
		os.Stdout.WriteString("greeting: " + g + "\n")
	}
	if len(os.Args) > 1 {
		os.Stdout.WriteString("args: " + strings.Join(os.Args[1:], "|") + "\n")
	}
	if c := os.Getenv("EXIT_CODE"); c != "" {
		n, _ := strconv.Atoi(c)
		os.Exit(n)
	}
}
"#;

/// A statically linked program (HELLO_GO), built once.
fn static_hello() -> &'static (Vec<u8>, String) {
    static HELLO: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    HELLO.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kiln-load-go");
        let src = base.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("main.go"), HELLO_GO).unwrap();
        let out = Command::new("go")
            .args(["build", "-trimpath", "-o", "hello", "main.go"])
            .current_dir(&src)
            .env("CGO_ENABLED", "0")
            .env("GO111MODULE", "off")
            .env("GOCACHE", base.join("cache"))
            .env("GOPATH", base.join("gopath"))
            .output()
            .expect("running go build");
        assert!(
            out.status.success(),
            "go build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let arch = Command::new("go").args(["env", "GOARCH"]).output().unwrap();
        let arch = String::from_utf8(arch.stdout).unwrap().trim().to_string();
        (std::fs::read(src.join("hello")).unwrap(), arch)
    })
}

/// A gzip layer holding `files` (path, bytes, mode); returns (blob, diff_id).
fn layer(files: &[(&str, &[u8], u32)]) -> (Vec<u8>, Digest) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in files {
        append_bytes(&mut b, path, *mode, bytes).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), sha256_bytes(&tar))
}

struct Image {
    manifest: Descriptor,
    config: Digest,
}

fn add_image(
    w: &LayoutWriter,
    arch: &str,
    files: &[(&str, &[u8], u32)],
    diff_id_ok: bool,
) -> Image {
    let (blob, diff_id) = layer(files);
    let digest = w.add_blob_bytes(&blob).unwrap();
    let diff_id = if diff_id_ok {
        diff_id
    } else {
        sha256_bytes(b"not the layer")
    };
    let config = w
        .add_json(
            media_types::OCI_IMAGE_CONFIG,
            &serde_json::json!({
                "architecture": arch,
                "os": "linux",
                "config": {"Entrypoint": ["/hello"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }),
        )
        .unwrap();
    let manifest = ImageManifest::new(
        config.clone(),
        vec![Descriptor::new(
            media_types::OCI_LAYER_TAR_GZIP,
            digest,
            blob.len() as u64,
        )],
    );
    let mut desc = w
        .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
        .unwrap();
    desc.platform = Some(format!("linux/{arch}").parse().unwrap());
    Image {
        manifest: desc,
        config: config.digest,
    }
}

/// An index with an image for `arch` running `program`, and a decoy image
/// for another architecture that must not be picked.
fn index_layout(dir: &Path, arch: &str, program: &[u8], diff_id_ok: bool) -> Image {
    let w = LayoutWriter::new(dir).unwrap();
    let decoy_arch = if arch == "s390x" { "ppc64le" } else { "s390x" };
    let decoy = add_image(&w, decoy_arch, &[("hello", b"decoy", 0o755)], true);
    let host = add_image(&w, arch, &[("hello", program, 0o755)], diff_id_ok);
    let index = ImageIndex::new(vec![decoy.manifest.clone(), host.manifest.clone()]);
    let desc = w.add_json(media_types::OCI_IMAGE_INDEX, &index).unwrap();
    w.finish(vec![desc]).unwrap();
    host
}

fn kiln_load(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln-load"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Removes the test's images from docker, whatever the test's outcome.
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "--force"])
            .args(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

#[test]
fn loads_the_host_image_into_docker_and_it_runs() {
    if !tools_available(&["docker", "go"]) {
        return;
    }
    let (program, arch) = static_hello();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = index_layout(&layout, arch, program, true);

    let name = format!("kiln-load-test/hello-{}", std::process::id());
    let tags = [format!("{name}:v1"), format!("{name}:latest")];
    let _cleanup = DockerImages(tags.to_vec());
    let out = kiln_load(
        &[
            "--layout",
            layout.to_str().unwrap(),
            "--tag",
            &tags[0],
            "--tag",
            &tags[1],
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "kiln-load failed: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("Loaded image: {}", tags[0])));

    // Docker's image ID is the digest of the config blob.
    for tag in &tags {
        let inspect = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
        assert!(inspect.status.success(), "{tag}: {}", text(&inspect.stderr));
        assert_eq!(text(&inspect.stdout).trim(), image.config.to_string());
    }
    let inspect = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoTags}}",
        &tags[0],
    ]);
    let repo_tags = text(&inspect.stdout);
    for tag in &tags {
        assert!(repo_tags.contains(tag.as_str()), "{repo_tags}");
    }

    let run = docker(&["run", "--rm", "--network", "none", &tags[0]]);
    assert!(run.status.success(), "docker run: {}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "hello from kiln\n");
}

#[test]
fn docker_refusal_carries_its_stderr() {
    if !tools_available(&["docker", "go"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let (_, arch) = static_hello();
    // The config's diff_id does not match the layer: docker must refuse.
    index_layout(&layout, arch, b"#!/bin/false\n", false);
    let tag = format!("kiln-load-test/broken-{}:v1", std::process::id());
    let _cleanup = DockerImages(vec![tag.clone()]);
    let out = kiln_load(&["--layout", layout.to_str().unwrap(), "--tag", &tag], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`docker load` failed (exit status: 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("diffID"), "{stderr}");
    assert!(!docker(&["image", "inspect", &tag]).status.success());
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

fn fake_layout(dir: &Path) -> Image {
    // A program big enough to overflow a pipe buffer many times over.
    let program: Vec<u8> = (0..2_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
    index_layout(dir, "amd64", &program, true)
}

#[test]
fn output_file_equals_what_the_cli_receives() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = fake_layout(&layout);
    let captured = tmp.path().join("captured.tar");
    let cli = script(
        tmp.path(),
        "fake-docker",
        &format!(
            "[ \"$1\" = load ] || {{ echo \"unexpected: $*\" >&2; exit 9; }}\ncat > '{}'\necho 'Loaded image: x'",
            captured.display()
        ),
    );
    let args = [
        "--layout",
        layout.to_str().unwrap(),
        "--tag",
        "app:v1",
        "--platform",
        "linux/amd64",
    ];
    let out = kiln_load(&args, &[("KILN_CONTAINER_CLI", &cli)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Loaded image: x\n");

    let file = tmp.path().join("out").join("image.tar");
    std::fs::create_dir(file.parent().unwrap()).unwrap();
    let mut with_output = args.to_vec();
    with_output.extend(["--output", file.to_str().unwrap()]);
    // --output never runs a CLI, even a broken one.
    let out = kiln_load(
        &with_output,
        &[("KILN_CONTAINER_CLI", Path::new("/nonexistent"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read(&file).unwrap();
    assert_eq!(written, std::fs::read(&captured).unwrap());
    // Only the tarball is left in the output directory (no temporary file).
    assert_eq!(
        std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
        1
    );

    // Under `bazel run`, a relative --output is relative to where the user was.
    let out = kiln_load(
        &[
            "--layout",
            layout.to_str().unwrap(),
            "--tag",
            "app:v1",
            "--platform",
            "linux/amd64",
            "--output",
            "relative.tar",
        ],
        &[("BUILD_WORKING_DIRECTORY", tmp.path())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(tmp.path().join("relative.tar")).unwrap(),
        written
    );

    let mut archive = tar::Archive::new(&written[..]);
    let mut manifest_json = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().as_os_str() == "manifest.json" {
            entry.read_to_string(&mut manifest_json).unwrap();
        }
    }
    let parsed: serde_json::Value = serde_json::from_str(&manifest_json).unwrap();
    assert_eq!(
        parsed[0]["Config"],
        format!("blobs/sha256/{}", image.config.hex())
    );
    assert_eq!(parsed[0]["RepoTags"], serde_json::json!(["app:v1"]));
}

#[test]
fn failing_cli_is_an_error_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    fake_layout(&layout);
    for (body, status) in [
        // Reads everything, then fails.
        (
            "cat > /dev/null\necho 'daemon says no' >&2\nexit 3",
            "exit status: 3",
        ),
        // Fails at once without reading: kiln-load sees a broken pipe.
        ("echo 'daemon says no' >&2\nexit 4", "exit status: 4"),
    ] {
        let cli = script(tmp.path(), "failing-docker", body);
        let out = kiln_load(
            &["--layout", layout.to_str().unwrap(), "--tag", "app:v1"],
            &[("KILN_CONTAINER_CLI", &cli)],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("load` failed ({status}): daemon says no")),
            "{stderr}"
        );
    }
}

#[test]
fn wrong_platform_and_names_fail_before_running_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    fake_layout(&layout);
    let marker = tmp.path().join("ran");
    let cli = script(
        tmp.path(),
        "docker",
        &format!("touch '{}'", marker.display()),
    );
    let env = [("KILN_CONTAINER_CLI", cli.as_path())];
    let dir = layout.to_str().unwrap();

    let out = kiln_load(
        &["--layout", dir, "--tag", "a:1", "--platform", "linux/arm64"],
        &env,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "--platform: no image for platform linux/arm64; there are images for: linux/s390x, linux/amd64"
        ),
        "{stderr}"
    );

    for (args, want) in [
        (vec!["--tag", "Bad:1"], "--tag \"Bad:1\""),
        (vec!["--tag", "app"], "--tag \"app\": expected REPO:TAG"),
        (vec!["--tag", "-x:1"], "--tag \"-x:1\""),
        (
            vec!["--tag", "a:1", "--platform", "linux"],
            "--platform: invalid platform",
        ),
    ] {
        let mut all = vec!["--layout", dir];
        all.extend(args);
        let out = kiln_load(&all, &env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want), "{stderr:?} lacks {want:?}");
    }
    // No --tag at all: clap refuses.
    assert!(!kiln_load(&["--layout", dir], &env).status.success());
    assert!(!marker.exists(), "the container CLI ran");
}

// ---------------------------------------------------------------------------
// --format legacy, --incremental, --run-flags, --stamp

#[derive(Clone, Copy)]
enum Comp {
    Plain,
    Gzip,
    Zstd,
}

fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in files {
        append_bytes(&mut b, path, *mode, bytes).unwrap();
    }
    b.into_inner().unwrap()
}

/// A layout holding one image (entrypoint /hello) made of `layers`; returns
/// the image and its diff_ids.
fn stacked_layout(dir: &Path, arch: &str, layers: &[(&[u8], Comp)]) -> (Image, Vec<Digest>) {
    let w = LayoutWriter::new(dir).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, comp) in layers {
        let (blob, media_type) = match comp {
            Comp::Plain => (tar.to_vec(), media_types::OCI_LAYER_TAR),
            Comp::Gzip => {
                let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar).unwrap();
                (gz.finish().unwrap(), media_types::OCI_LAYER_TAR_GZIP)
            }
            Comp::Zstd => (
                zstd::stream::encode_all(*tar, 3).unwrap(),
                media_types::OCI_LAYER_TAR_ZSTD,
            ),
        };
        let digest = w.add_blob_bytes(&blob).unwrap();
        descs.push(Descriptor::new(media_type, digest, blob.len() as u64));
        diff_ids.push(sha256_bytes(tar));
    }
    let config = w
        .add_json(
            media_types::OCI_IMAGE_CONFIG,
            &serde_json::json!({
                "architecture": arch,
                "os": "linux",
                "config": {"Entrypoint": ["/hello"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }),
        )
        .unwrap();
    let manifest = ImageManifest::new(config.clone(), descs);
    let mut desc = w
        .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
        .unwrap();
    desc.platform = Some(format!("linux/{arch}").parse().unwrap());
    w.finish(vec![desc.clone()]).unwrap();
    (
        Image {
            manifest: desc,
            config: config.digest,
        },
        diff_ids,
    )
}

/// Bytes no other test (or earlier run) has in a layer, so that what the
/// engine already has is known.
fn nonce(what: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what} {} {now}\n", std::process::id())
}

/// `tar -tvf` in UTC, one line per entry.
fn tar_tv(path: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(path)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -tvf: {}", text(&out.stderr));
    text(&out.stdout).lines().map(String::from).collect()
}

fn image_field(reference: &str, format: &str) -> String {
    let out = docker(&["image", "inspect", "--format", format, reference]);
    assert!(
        out.status.success(),
        "docker image inspect {reference}: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

fn json_digests(ids: &[Digest]) -> String {
    serde_json::to_string(&ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn legacy_output_is_deterministic_and_loads_into_docker() {
    if !tools_available(&["docker", "go", "skopeo"]) {
        return;
    }
    let (program, arch) = static_hello();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let n = nonce("legacy");
    let base = tar_of(&[("hello", program, 0o755), ("nonce", n.as_bytes(), 0o644)]);
    let middle = tar_of(&[("etc/zstd", b"zstd layer", 0o600)]);
    let top = tar_of(&[("etc/plain", b"plain layer", 0o644)]);
    // Docker 20.10 cannot read zstd layers from a compressed tarball; the
    // legacy one carries them uncompressed.
    let (image, diff_ids) = stacked_layout(
        &layout,
        arch,
        &[
            (&base, Comp::Gzip),
            (&middle, Comp::Zstd),
            (&top, Comp::Plain),
        ],
    );
    let tag = format!("kiln-load-test/legacy-{}:v1", std::process::id());
    let _cleanup = DockerImages(vec![tag.clone()]);

    let outputs = [tmp.path().join("one.tar"), tmp.path().join("two.tar")];
    for output in &outputs {
        let out = kiln_load(
            &[
                "--layout",
                layout.to_str().unwrap(),
                "--tag",
                &tag,
                "--format",
                "legacy",
                "--output",
                output.to_str().unwrap(),
            ],
            &[("KILN_CONTAINER_CLI", Path::new("/nonexistent"))],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let bytes = std::fs::read(&outputs[0]).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&outputs[1]).unwrap(),
        "not deterministic"
    );
    // Only the two tarballs (no temporary files) are left.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3);

    // Layer directories sorted by diff_id, then config, manifest.json, repositories.
    let mut hexes: Vec<&str> = diff_ids.iter().map(|d| d.hex()).collect();
    hexes.sort();
    let mut expected = Vec::new();
    for (hex, tar) in hexes.iter().map(|h| {
        let i = diff_ids.iter().position(|d| d.hex() == *h).unwrap();
        (h, [&base, &middle, &top][i])
    }) {
        expected.push(("drwxr-xr-x", 0, format!("{hex}/")));
        expected.push(("-rw-r--r--", tar.len(), format!("{hex}/layer.tar")));
    }
    let listing = tar_tv(&outputs[0]);
    assert_eq!(listing.len(), expected.len() + 3, "{listing:#?}");
    for (line, (mode, size, name)) in listing.iter().zip(&expected) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields,
            [*mode, "0/0", &size.to_string(), "1970-01-01", "00:00", name],
            "{line}"
        );
    }
    let tail: Vec<&str> = listing[expected.len()..]
        .iter()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        tail,
        [
            format!("{}.json", image.config.hex()).as_str(),
            "manifest.json",
            "repositories"
        ]
    );
    assert!(listing
        .iter()
        .all(|l| l.contains(" 0/0 ") && l.contains(" 1970-01-01 00:00 ")));

    // containers/image (podman's and skopeo's library) reads it.
    let skopeo = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", outputs[0].display()))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "{}", text(&skopeo.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    assert_eq!(
        inspected["Layers"],
        serde_json::json!(diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>())
    );

    // And Docker: the image ID is the config digest, the layers are ours.
    let load = docker(&["load", "-i", outputs[0].to_str().unwrap()]);
    assert!(load.status.success(), "docker load: {}", text(&load.stderr));
    assert_eq!(image_field(&tag, "{{.Id}}"), image.config.to_string());
    assert_eq!(
        image_field(&tag, "{{json .RootFS.Layers}}"),
        json_digests(&diff_ids)
    );
    let run = docker(&["run", "--rm", "--network", "none", &tag]);
    assert!(run.status.success(), "docker run: {}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "hello from kiln\n");
}

/// A CLI that hands everything to docker, keeping a copy of what `load` reads.
fn teeing_docker(dir: &Path, captured: &Path) -> PathBuf {
    script(
        dir,
        "teeing-docker",
        &format!(
            "if [ \"$1\" = load ]; then tee '{}' | docker \"$@\"; else exec docker \"$@\"; fi",
            captured.display()
        ),
    )
}

/// The layer.tar entries of a captured tarball.
fn layer_files(path: &Path) -> Vec<String> {
    tar_tv(path)
        .iter()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| n.ends_with("/layer.tar"))
        .map(String::from)
        .collect()
}

#[test]
fn incremental_load_sends_only_the_layers_docker_lacks() {
    if !tools_available(&["docker", "go"]) {
        return;
    }
    let (program, arch) = static_hello();
    let tmp = tempfile::tempdir().unwrap();
    let n = nonce("incremental");
    let base = tar_of(&[("hello", program, 0o755), ("nonce", n.as_bytes(), 0o644)]);
    let middle = tar_of(&[("etc/middle", b"shared middle layer", 0o644)]);
    let top_a = tar_of(&[("etc/top", b"top of A", 0o644)]);
    let top_b = tar_of(&[("etc/top", b"top of B", 0o644)]);
    let (a, a_diffs) = stacked_layout(
        &tmp.path().join("a"),
        arch,
        &[
            (&base, Comp::Gzip),
            (&middle, Comp::Zstd),
            (&top_a, Comp::Gzip),
        ],
    );
    let (b, b_diffs) = stacked_layout(
        &tmp.path().join("b"),
        arch,
        &[
            (&base, Comp::Gzip),
            (&middle, Comp::Zstd),
            (&top_b, Comp::Gzip),
        ],
    );
    let name = format!("kiln-load-test/incremental-{}", std::process::id());
    let tags = [
        format!("{name}:a"),
        format!("{name}:b"),
        format!("{name}:b2"),
    ];
    let _cleanup = DockerImages(tags.to_vec());
    let captured = tmp.path().join("captured.tar");
    let cli = teeing_docker(tmp.path(), &captured);
    let env = [("KILN_CONTAINER_CLI", cli.as_path())];
    let load = |layout: &str, tag: &str| {
        let layout = tmp.path().join(layout);
        let out = kiln_load(
            &[
                "--layout",
                layout.to_str().unwrap(),
                "--tag",
                tag,
                "--incremental",
            ],
            &env,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };

    // Nothing of A is in docker yet (its base layer holds a nonce).
    let stderr = load("a", &tags[0]);
    assert!(
        stderr.contains("full load: all 3 layers (") && stderr.contains(" has none of them)"),
        "{stderr}"
    );
    assert_eq!(layer_files(&captured).len(), 3);
    assert_eq!(image_field(&tags[0], "{{.Id}}"), a.config.to_string());

    // B shares A's two lower layers: only its top layer is sent.
    std::fs::remove_file(&captured).unwrap();
    let stderr = load("b", &tags[1]);
    assert!(
        stderr.contains(
            "incremental load: sending 1 layer file(s) of 3 layers, skipping 2 bottom layers ("
        ),
        "{stderr}"
    );
    assert_eq!(
        layer_files(&captured),
        [format!("{}/layer.tar", b_diffs[2].hex())]
    );
    assert_eq!(image_field(&tags[1], "{{.Id}}"), b.config.to_string());
    assert_eq!(
        image_field(&tags[1], "{{json .RootFS.Layers}}"),
        json_digests(&b_diffs)
    );
    assert_eq!(a_diffs[..2], b_diffs[..2]);
    let run = docker(&["run", "--rm", "--network", "none", &tags[1]]);
    assert!(run.status.success(), "docker run: {}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "hello from kiln\n");

    // B again under another name: docker has the image, it is only tagged.
    std::fs::remove_file(&captured).unwrap();
    let stderr = load("b", &tags[2]);
    assert!(
        stderr.contains(&format!(
            "tag only: {} already has image {}, nothing loaded; tagged {}",
            cli.display(),
            b.config,
            tags[2]
        )),
        "{stderr}"
    );
    assert!(!captured.exists(), "docker load ran");
    assert_eq!(image_field(&tags[2], "{{.Id}}"), b.config.to_string());

    // What the incremental loads made is what a full load makes: remove
    // everything, load B in full under the same tags, compare.
    let inspected = |t: &str| image_field(t, "{{.Id}} {{json .RepoTags}} {{json .RootFS.Layers}}");
    let incremental = inspected(&tags[1]);
    let rm = docker(&["image", "rm", "--force", &tags[0], &tags[1], &tags[2]]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    let full = tmp.path().join("full.tar");
    let out = kiln_load(
        &[
            "--layout",
            tmp.path().join("b").to_str().unwrap(),
            "--tag",
            &tags[1],
            "--tag",
            &tags[2],
            "--format",
            "legacy",
            "--output",
            full.to_str().unwrap(),
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let load_full = docker(&["load", "-i", full.to_str().unwrap()]);
    assert!(load_full.status.success(), "{}", text(&load_full.stderr));
    assert_eq!(inspected(&tags[1]), incremental);
}

#[test]
fn incremental_load_falls_back_to_a_full_load_when_docker_lost_a_layer() {
    if !tools_available(&["docker", "go"]) {
        return;
    }
    let (program, arch) = static_hello();
    let tmp = tempfile::tempdir().unwrap();
    let n = nonce("lost-layer");
    let base = tar_of(&[("hello", program, 0o755), ("nonce", n.as_bytes(), 0o644)]);
    let top_a = tar_of(&[("etc/top", b"top of A", 0o644)]);
    let top_b = tar_of(&[("etc/top", b"top of B", 0o644)]);
    stacked_layout(
        &tmp.path().join("a"),
        arch,
        &[(&base, Comp::Gzip), (&top_a, Comp::Gzip)],
    );
    let (b, b_diffs) = stacked_layout(
        &tmp.path().join("b"),
        arch,
        &[(&base, Comp::Gzip), (&top_b, Comp::Gzip)],
    );
    let name = format!("kiln-load-test/lost-layer-{}", std::process::id());
    let (tag_a, tag_b) = (format!("{name}:a"), format!("{name}:b"));
    let _cleanup = DockerImages(vec![tag_a.clone(), tag_b.clone()]);
    let load = |layout: &str, tag: &str, cli: &Path| {
        let layout = tmp.path().join(layout);
        kiln_load(
            &[
                "--layout",
                layout.to_str().unwrap(),
                "--tag",
                tag,
                "--incremental",
            ],
            &[("KILN_CONTAINER_CLI", cli)],
        )
    };
    let out = load("a", &tag_a, Path::new("docker"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Between listing A's layers and loading B, the engine loses the base
    // layer (A is removed, as by `docker rmi` or a prune): the tarball
    // without it fails, and kiln-load sends everything instead.
    let captured = tmp.path().join("captured.tar");
    let cli = script(
        tmp.path(),
        "racing-docker",
        &format!(
            "if [ \"$1\" = load ] && [ ! -e '{marker}' ]; then touch '{marker}'; \
             docker image rm --force '{tag_a}' >/dev/null; fi\n\
             if [ \"$1\" = load ]; then tee '{captured}' | docker \"$@\"; else exec docker \"$@\"; fi",
            marker = tmp.path().join("raced").display(),
            captured = captured.display(),
        ),
    );
    let out = load("b", &tag_b, &cli);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("incremental load: sending 1 layer file(s) of 2 layers")
            && stderr.contains("the incremental load failed")
            && stderr.contains("full load: all 2 layers (retrying with every layer)"),
        "{stderr}"
    );
    assert_eq!(
        layer_files(&captured).len(),
        2,
        "the retry sent both layers"
    );
    assert_eq!(image_field(&tag_b, "{{.Id}}"), b.config.to_string());
    assert_eq!(
        image_field(&tag_b, "{{json .RootFS.Layers}}"),
        json_digests(&b_diffs)
    );
    let run = docker(&["run", "--rm", "--network", "none", &tag_b]);
    assert!(run.status.success(), "docker run: {}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "hello from kiln\n");
}

#[test]
fn incremental_load_into_podman_tags_what_it_has_and_loads_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = fake_layout(&layout);
    let captured = tmp.path().join("captured.tar");
    let calls = tmp.path().join("calls");
    // A podman whose `image exists` answers from a file: 1 (no such image), then 0.
    let exists = tmp.path().join("exists");
    std::fs::write(&exists, "1").unwrap();
    let cli = script(
        tmp.path(),
        "podman",
        &format!(
            "echo \"$*\" >> '{calls}'\n\
             case \"$1\" in --version) echo 'podman version 4.3.1';; \
             load) cat > '{captured}';; \
             image) exit $(cat '{exists}');; tag) ;; *) exit 125;; esac",
            calls = calls.display(),
            captured = captured.display(),
            exists = exists.display(),
        ),
    );
    let base = ["--layout", layout.to_str().unwrap(), "--tag", "app:v1"];
    let args = [&base[..], &["--incremental"]].concat();
    let out = kiln_load(&args, &[("KILN_CONTAINER_CLI", &cli)]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "full load: all 1 layers ({} does not have image {})",
            cli.display(),
            image.config
        )),
        "{stderr}"
    );
    // The full load is the legacy tarball --output writes (podman names
    // its images from it as `podman tag` does).
    let file = tmp.path().join("full.tar");
    let out = kiln_load(
        &[
            &base[..],
            &["--format", "legacy", "--output", file.to_str().unwrap()],
        ]
        .concat(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&captured).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // Now podman has it: only tagged.
    std::fs::write(&exists, "0").unwrap();
    std::fs::remove_file(&captured).unwrap();
    std::fs::remove_file(&calls).unwrap();
    let out = kiln_load(&args, &[("KILN_CONTAINER_CLI", &cli)]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("tag only: "), "{stderr}");
    assert!(!captured.exists(), "podman load ran");
    let config = image.config.to_string();
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!("--version\nimage exists {config}\ntag {config} app:v1\n")
    );
}

#[test]
fn incremental_load_into_an_unknown_engine_is_a_full_load() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    fake_layout(&layout);
    let captured = tmp.path().join("captured.tar");
    let cli = script(
        tmp.path(),
        "nerdctl",
        &format!(
            "case \"$1\" in load) cat > '{}';; *) exit 125;; esac",
            captured.display()
        ),
    );
    let out = kiln_load(
        &[
            "--layout",
            layout.to_str().unwrap(),
            "--tag",
            "app:v1",
            "--incremental",
        ],
        &[("KILN_CONTAINER_CLI", &cli)],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("full load: all 1 layers (")
            && stderr.contains("like neither docker nor podman"),
        "{stderr}"
    );
    assert!(captured.exists());
}

/// Containers created from `image` (running or not).
fn containers_of(image: &str) -> String {
    let out = docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("ancestor={image}"),
    ]);
    text(&out.stdout).trim().to_string()
}

#[test]
fn run_flags_run_the_image_and_norun_does_not() {
    if !tools_available(&["docker", "go"]) {
        return;
    }
    let (program, arch) = static_hello();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    index_layout(&layout, arch, program, true);
    let tag = format!("kiln-load-test/run-{}:v1", std::process::id());
    let _cleanup = DockerImages(vec![tag.clone()]);
    let dir = layout.to_str().unwrap();

    let out = kiln_load(
        &[
            "--layout",
            dir,
            "--tag",
            &tag,
            "--run-flags",
            "--rm --network none -e 'GREETING=hi there' \\\n -e EXIT_CODE=7",
            "--",
            "one",
            "two three",
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout} {}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("Loaded image: {tag}\n")),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("hello from kiln\ngreeting: hi there\nargs: one|two three\n"),
        "{stdout}"
    );
    assert_eq!(containers_of(&tag), "", "--rm left a container");

    // --norun (as `bazel run :img -- --norun` adds it): loaded, not run.
    let out = kiln_load(
        &[
            "--layout",
            dir,
            "--tag",
            &tag,
            "--run-flags",
            "--network none",
            "--norun",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("Loaded image: {tag}\n"));
    assert_eq!(containers_of(&tag), "", "--norun ran a container");

    // An unbalanced quote is refused before anything is loaded.
    let out = kiln_load(
        &["--layout", dir, "--tag", &tag, "--run-flags", "-e 'A=b"],
        &[("KILN_CONTAINER_CLI", Path::new("/nonexistent"))],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("kiln-load: --run-flags \"-e 'A=b\": a single quote (') is not closed"),
        "{stderr}"
    );
}

#[test]
fn stamped_tags_are_expanded_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    fake_layout(&layout);
    let stable = tmp.path().join("stable-status.txt");
    let volatile = tmp.path().join("volatile-status.txt");
    std::fs::write(&stable, "BUILD_EMBED_LABEL 1.2.3\nSTABLE_USER alice\n").unwrap();
    std::fs::write(&volatile, "BUILD_TIMESTAMP 1700000000\nBAD a b\n").unwrap();
    let dir = layout.to_str().unwrap();
    let stamps = [
        "--stamp",
        stable.to_str().unwrap(),
        "--stamp",
        volatile.to_str().unwrap(),
    ];
    let file = tmp.path().join("out.tar");
    let out = kiln_load(
        &[
            &[
                "--layout",
                dir,
                "--platform",
                "linux/amd64",
                "--format",
                "legacy",
            ][..],
            &stamps,
            &[
                "--tag",
                "team/{STABLE_USER}:v{BUILD_EMBED_LABEL}-{BUILD_TIMESTAMP}",
                "--tag",
                "app:plain",
                "--output",
                file.to_str().unwrap(),
            ],
        ]
        .concat(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let mut docs = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" || name == "repositories" {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            docs.insert(name, serde_json::from_str::<serde_json::Value>(&s).unwrap());
        }
    }
    assert_eq!(
        docs["manifest.json"][0]["RepoTags"],
        serde_json::json!(["team/alice:v1.2.3-1700000000", "app:plain"])
    );
    let repositories = &docs["repositories"];
    assert!(repositories["team/alice"]["v1.2.3-1700000000"].is_string());
    assert!(repositories["app"]["plain"].is_string());

    let cli = [("KILN_CONTAINER_CLI", Path::new("/nonexistent"))];
    for (extra, want) in [
        // Without --stamp, a placeholder is just an invalid name.
        (
            vec!["--tag", "app:{BUILD_EMBED_LABEL}"],
            "kiln-load: --tag \"app:{BUILD_EMBED_LABEL}\": ",
        ),
        (
            [&stamps[..], &["--tag", "app:{NOPE}"]].concat(),
            "kiln-load: --tag \"app:{NOPE}\": unknown stamp variable {NOPE}",
        ),
        (
            [&stamps[..], &["--tag", "app:{BAD}"]].concat(),
            "kiln-load: --tag \"app:{BAD}\" (stamped: \"app:a b\"): ",
        ),
        (
            vec!["--stamp", "/nonexistent/status.txt", "--tag", "app:v1"],
            "kiln-load: --stamp: reading stamp file /nonexistent/status.txt",
        ),
    ] {
        let out = kiln_load(&[&["--layout", dir][..], &extra].concat(), &cli);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.starts_with(want), "{stderr:?} lacks {want:?}");
    }
}

#[test]
fn stamped_tag_loads_into_docker() {
    if !tools_available(&["docker", "go"]) {
        return;
    }
    let (program, arch) = static_hello();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let image = index_layout(&layout, arch, program, true);
    let status = tmp.path().join("stable-status.txt");
    std::fs::write(&status, format!("BUILD_PID {}\n", std::process::id())).unwrap();
    let tag = format!("kiln-load-test/stamped-{}:v1", std::process::id());
    let _cleanup = DockerImages(vec![tag.clone()]);
    let out = kiln_load(
        &[
            "--layout",
            layout.to_str().unwrap(),
            "--stamp",
            status.to_str().unwrap(),
            "--tag",
            "kiln-load-test/stamped-{BUILD_PID}:v1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(image_field(&tag, "{{.Id}}"), image.config.to_string());
}

#[test]
fn failed_compressed_load_of_zstd_layers_suggests_legacy() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let top = tar_of(&[("etc/top", b"zstd", 0o644)]);
    stacked_layout(&layout, "amd64", &[(&top, Comp::Zstd)]);
    // What Docker 20.10 answers for a zstd layer in the compressed format.
    let cli = script(
        tmp.path(),
        "old-docker",
        "cat > /dev/null\necho 'Error processing tar file(exit status 1): unexpected EOF' >&2\nexit 1",
    );
    let out = kiln_load(
        &["--layout", layout.to_str().unwrap(), "--tag", "app:v1"],
        &[("KILN_CONTAINER_CLI", &cli)],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("zstd layers, which Docker before 23.0 cannot read")
            && stderr.contains("--format legacy")
            && stderr.contains("unexpected EOF"),
        "{stderr}"
    );
}
