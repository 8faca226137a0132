//! kiln-load end to end. Tests that need docker (and go, to build the static
//! binary the test image runs) fail when those are missing, unless
//! KILN_SKIP_DOCKER_TESTS=1 says to skip them. The others use a stand-in CLI
//! through KILN_CONTAINER_CLI.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use kiln_oci::media_types;
use kiln_oci::tar_writer::append_bytes;
use kiln_oci::{sha256_bytes, Descriptor, Digest, ImageIndex, ImageManifest, LayoutWriter};

fn tools_available(tools: &[&str]) -> bool {
    if std::env::var("KILN_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
        eprintln!("KILN_SKIP_DOCKER_TESTS=1: skipping");
        return false;
    }
    for tool in tools {
        let found = Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is required by this test and did not answer `{tool} version` \
             (set KILN_SKIP_DOCKER_TESTS=1 to skip)"
        );
    }
    true
}

/// A statically linked program printing "hello from kiln", built once.
fn static_hello() -> &'static (Vec<u8>, String) {
    static HELLO: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    HELLO.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kiln-load-go");
        let src = base.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("main.go"),
            "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello from kiln\\n\") }\n",
        )
        .unwrap();
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
            "--platform: the index has no image for platform linux/arm64; it has: linux/s390x, linux/amd64"
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
