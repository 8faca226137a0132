//! `kiln-image sbom`: the SPDX SBOM of one image (`kiln_oci::sbom`), read
//! from its layer blobs as the build made them (the image's blob set).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use kiln_oci::blob_set::{read_digest_file, BlobSet, Located};
use kiln_oci::sbom::{self, Base, BasePackages, Contents, Subject};
use kiln_oci::ImageManifest;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    target: String,
    /// The image's blob set: its manifest as top, every layer blob.
    blob_set: PathBuf,
    /// How many of the manifest's layers (the last ones) are the image's own.
    own_layers: usize,
    platform: String,
    #[serde(default)]
    base: Option<BaseSpec>,
    /// For an image on a pulled base: the packages of the base's layers
    /// (`kiln-pull base-packages`), whose bytes the build does not have.
    #[serde(default)]
    base_packages: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseSpec {
    name: String,
    /// A file holding the base's digest (`sha256:…` text or a descriptor).
    digest: PathBuf,
}

pub fn run(spec_path: &Path, output: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: Spec = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing {}", spec_path.display()))?;
    let target = spec.target.clone();
    build(&spec, output).with_context(|| format!("{target}: sbom"))
}

fn read_blob(set: &BlobSet, digest: &kiln_oci::Digest, what: &str) -> anyhow::Result<Vec<u8>> {
    match set.locate(digest) {
        Located::File(p) => {
            let bytes =
                std::fs::read(&p).with_context(|| format!("reading {what} {}", p.display()))?;
            if kiln_oci::sha256_bytes(&bytes) != *digest {
                bail!("{what} {} does not match its digest {digest}", p.display());
            }
            Ok(bytes)
        }
        _ => Err(anyhow!("{what} {digest} is not in the blob set")),
    }
}

fn build(spec: &Spec, output: &Path) -> anyhow::Result<()> {
    let set = BlobSet::load(&spec.blob_set, Path::new("."))?;
    let top = set.top().clone();
    let manifest: ImageManifest =
        serde_json::from_slice(&read_blob(&set, &top.digest, "manifest")?)
            .context("parsing the manifest")?;
    let config: serde_json::Value =
        serde_json::from_slice(&read_blob(&set, &manifest.config.digest, "config")?)
            .context("parsing the config")?;
    let created = config
        .get("created")
        .and_then(|v| v.as_str())
        .unwrap_or("1970-01-01T00:00:00Z")
        .to_string();
    if spec.own_layers > manifest.layers.len() {
        bail!(
            "own_layers: {} but the manifest has {} layers",
            spec.own_layers,
            manifest.layers.len()
        );
    }
    let first_own = manifest.layers.len() - spec.own_layers;
    let mut contents = Contents::default();
    let layer_digests: Vec<kiln_oci::Digest> =
        manifest.layers.iter().map(|l| l.digest.clone()).collect();
    // The pulled base's layers come first; its packages stand for them.
    let mut covered = 0;
    if let Some(path) = &spec.base_packages {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let base = BasePackages::from_json(&bytes)
            .and_then(|b| b.check_prefix_of(&layer_digests).map(|()| b))
            .with_context(|| format!("base_packages {}", path.display()))?;
        if base.layers.len() > first_own {
            bail!(
                "base_packages {}: {} base layers, but the image has only {first_own} layers before its own",
                path.display(),
                base.layers.len()
            );
        }
        contents.add_base_packages(&base);
        covered = base.layers.len();
    }
    for (i, layer) in manifest.layers.iter().enumerate().skip(covered) {
        let own = i >= first_own;
        match set.locate(&layer.digest) {
            Located::File(p) => {
                let file = File::open(&p)
                    .with_context(|| format!("opening layer {} ({})", layer.digest, p.display()))?;
                contents
                    .add_layer(file, own)
                    .with_context(|| format!("layer {i} ({}, {})", layer.digest, p.display()))?;
            }
            Located::Absent(_) if !own => contents.unavailable_layers.push(layer.digest.clone()),
            _ => bail!("layer {i} ({}) is not in the blob set", layer.digest),
        }
    }
    let base = match &spec.base {
        Some(b) => Some(Base {
            name: b.name.clone(),
            digest: read_digest_file(&b.digest).context("base")?,
        }),
        None => None,
    };
    let subject = Subject {
        name: spec.target.clone(),
        platform: spec.platform.clone(),
        digest: top.digest.clone(),
        created,
    };
    let creator = concat!("rules_kiln-", env!("CARGO_PKG_VERSION"));
    let doc = sbom::document(&subject, base.as_ref(), &contents, creator)?;
    kiln_oci::atomic::write_file(output, &doc)
        .with_context(|| format!("writing {}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gzip_tar(path: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b.into_inner().expect("tar")).expect("gzip");
        gz.finish().expect("gzip")
    }

    /// An image whose first layer is a pulled base's, absent (listed in a
    /// shallow layout's kiln-source.json), and whose second is its own.
    /// Returns the spec and the absent layer's digest.
    fn shallow_image(dir: &Path) -> (Spec, kiln_oci::Digest) {
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).expect("write");
            p
        };
        let base_layer = gzip_tar("var/lib/dpkg/status.d/x", b"unused");
        let base_digest = kiln_oci::sha256_bytes(&base_layer);
        let own = gzip_tar("app/server", b"hello");
        let own_digest = kiln_oci::sha256_bytes(&own);
        let config = br#"{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z"}"#;
        let config_digest = kiln_oci::sha256_bytes(config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": base_digest.to_string(), "size": base_layer.len()},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": own_digest.to_string(), "size": own.len()},
            ],
        }))
        .expect("manifest");
        let manifest_digest = kiln_oci::sha256_bytes(&manifest);
        let layout = dir.join("base.oci");
        std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout");
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        std::fs::write(
            layout.join("index.json"),
            br#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .expect("index.json");
        std::fs::write(
            layout.join("kiln-source.json"),
            serde_json::to_vec(&json!({"blobs": {base_digest.to_string(): {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "registry": "127.0.0.1:5000", "repository": "kiln/base", "size": base_layer.len()}}}))
            .expect("json"),
        )
        .expect("kiln-source.json");
        let set = json!({
            "target": "//t:image",
            "top": {
                "blob": write("manifest.json", &manifest),
                "descriptor": write("descriptor.json", &serde_json::to_vec(&json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest.to_string(), "size": manifest.len()})).expect("json")),
            },
            "blobs": [
                {"blob": write("config.json", config), "digest": write("config.digest", config_digest.to_string().as_bytes())},
                {"blob": write("own.tar.gz", &own), "digest": write("own.digest", own_digest.to_string().as_bytes())},
            ],
            "layouts": [layout],
        });
        let spec = Spec {
            target: "//t:image".into(),
            blob_set: write("set.json", &serde_json::to_vec(&set).expect("json")),
            own_layers: 1,
            platform: "linux/amd64".into(),
            base: None,
            base_packages: None,
        };
        (spec, base_digest)
    }

    fn base_packages(dir: &Path, layers: Vec<kiln_oci::Digest>) -> PathBuf {
        let mut contents = Contents::default();
        contents
            .add_layer(
                &gzip_tar(
                    "var/lib/dpkg/status.d/tzdata",
                    b"Package: tzdata\nVersion: 2025b\nArchitecture: all\n",
                )[..],
                false,
            )
            .expect("status");
        let packages = BasePackages::new(kiln_oci::sha256_bytes(b"base"), layers, &contents);
        let path = dir.join("packages.json");
        std::fs::write(&path, packages.to_json().expect("json")).expect("write");
        path
    }

    fn sbom(spec: &Spec, dir: &Path) -> anyhow::Result<serde_json::Value> {
        let out = dir.join("out.spdx.json");
        build(spec, &out)?;
        Ok(serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json"))
    }

    fn image_comment(doc: &serde_json::Value) -> String {
        doc["packages"][0]["comment"]
            .as_str()
            .expect("comment")
            .to_string()
    }

    #[test]
    fn a_pulled_bases_packages_are_listed_and_its_layers_not_noted() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (mut spec, base_layer) = shallow_image(tmp.path());
        let without = sbom(&spec, tmp.path()).expect("sbom");
        assert!(
            image_comment(&without).contains(&base_layer.to_string()),
            "{without}"
        );
        spec.base_packages = Some(base_packages(tmp.path(), vec![base_layer]));
        let with = sbom(&spec, tmp.path()).expect("sbom");
        assert_eq!(image_comment(&with), "platform linux/amd64");
        let tzdata = with["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == "tzdata")
            .expect("tzdata listed");
        assert_eq!(tzdata["versionInfo"], "2025b");
        assert_eq!(
            tzdata["sourceInfo"],
            "dpkg status /var/lib/dpkg/status.d/tzdata"
        );
        assert_eq!(with["files"][0]["fileName"], "./app/server");
    }

    #[test]
    fn base_packages_of_other_layers_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (mut spec, _) = shallow_image(tmp.path());
        spec.base_packages = Some(base_packages(
            tmp.path(),
            vec![kiln_oci::sha256_bytes(b"another base")],
        ));
        let err = format!("{:#}", sbom(&spec, tmp.path()).expect_err("refused"));
        assert!(
            err.contains("base_packages") && err.contains("the image's layers start"),
            "{err}"
        );
        assert!(!tmp.path().join("out.spdx.json").exists());
    }
}
