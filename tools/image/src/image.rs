//! Reading the spec and inputs, composing config and manifest, writing the
//! layout and the side outputs.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use kiln_oci::atomic::AtomicFile;
use kiln_oci::blob_set::BlobSet;
use kiln_oci::compression::{read_up_to, Compression, MAGIC_LEN};
use kiln_oci::docker_archive::{blob_name, TarFile};
use kiln_oci::media_types;
use kiln_oci::select::{self, BlobStore};
use kiln_oci::{
    canonical, sha256_bytes, Descriptor, Digest, HashingWriter, ImageIndex, ImageManifest,
    LayerDescriptor, Layout, LayoutWriter, ListingEntry, Located, Platform, SourceBlob, Sources,
    Stamp,
};

use crate::config::{self, ConfigSpec, ImageConfig};
use crate::entrypoint::{self, FsView};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub target: String,
    #[serde(default)]
    pub base: Option<BaseSpec>,
    #[serde(default)]
    pub layers: Vec<LayerSpec>,
    pub platform: Platform,
    #[serde(default)]
    pub config: ConfigSpec,
    /// Bazel status files; when given, config strings are stamped.
    #[serde(default)]
    pub stamp: Option<Vec<PathBuf>>,
}

/// `{"blob_set": FILE, "listing": FILE?, "listing_complete": BOOL?}` (a kiln
/// image, index or pulled base: its manifests and configs, see
/// kiln_oci::blob_set),
/// `{"layout": DIR}` or `{"docker_tar": FILE}` (a foreign base, whose layer
/// blobs are written to `--base-blobs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseSpec {
    #[serde(default)]
    pub blob_set: Option<PathBuf>,
    #[serde(default)]
    pub layout: Option<PathBuf>,
    #[serde(default)]
    pub docker_tar: Option<PathBuf>,
    #[serde(default)]
    pub listing: Option<PathBuf>,
    /// False when `listing` lacks files of the base: a kiln image on a
    /// `kiln.pull` or foreign base lists its own layers only.
    #[serde(default = "yes")]
    pub listing_complete: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    pub descriptor: PathBuf,
    pub listing: PathBuf,
}

/// Output paths, from the command line.
pub struct Outputs<'a> {
    pub manifest: &'a Path,
    pub base_blobs: Option<&'a Path>,
    pub config: &'a Path,
    pub digest: &'a Path,
    pub descriptor: &'a Path,
    pub listing: &'a Path,
    pub config_digest: Option<&'a Path>,
}

struct Base {
    layers: BaseLayers,
    config: ImageConfig,
    listing: Option<Vec<ListingEntry>>,
}

/// Where the base's layers come from, and how they get into the output.
enum BaseLayers {
    /// A kiln image, index or pulled base: the descriptors are all the
    /// image needs; the blobs reach push and load through providers.
    Descriptors(Vec<Descriptor>),
    /// An OCI layout directory: descriptors from its manifest, blobs
    /// hard-linked (or copied) as they are. A shallow layout (kiln-pull's,
    /// or one we wrote on it) lacks the blobs its `kiln-source.json` lists:
    /// those stay absent and are listed in ours.
    Layout {
        layout: Layout,
        descs: Vec<Descriptor>,
        sources: Option<Sources>,
    },
    /// An OCI layout inside a tarball: descriptors from its manifest, blobs
    /// copied out and checked against their digest on the way.
    TarLayout {
        tar: TarFile,
        descs: Vec<Descriptor>,
    },
    /// A `docker save` tarball's `manifest.json` layers: the descriptors
    /// are only known once each layer has been read (digest, compression).
    DockerSave { tar: TarFile, members: Vec<String> },
}

impl BaseLayers {
    fn count(&self) -> usize {
        match self {
            BaseLayers::Descriptors(descs)
            | BaseLayers::Layout { descs, .. }
            | BaseLayers::TarLayout { descs, .. } => descs.len(),
            BaseLayers::DockerSave { members, .. } => members.len(),
        }
    }
}

struct NewLayer {
    desc: LayerDescriptor,
    listing: Vec<ListingEntry>,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

pub fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    read_json(path).with_context(|| format!("--spec {}", path.display()))
}

/// A base layer descriptor as written into our (OCI) manifest: Docker v2
/// layer media types become their OCI equivalents (same bytes); anything
/// else is kept as it is.
fn oci_layer(mut d: Descriptor) -> Descriptor {
    d.media_type = match d.media_type.as_str() {
        media_types::DOCKER_LAYER_TAR_GZIP => media_types::OCI_LAYER_TAR_GZIP.to_string(),
        "application/vnd.docker.image.rootfs.diff.tar" => media_types::OCI_LAYER_TAR.to_string(),
        _ => d.media_type,
    };
    d.platform = None;
    d
}

/// `scratch` is where a gzip-compressed `docker_tar` is decompressed to (a
/// temporary file, removed when done).
fn read_base(spec: &BaseSpec, platform: &Platform, scratch: &Path) -> anyhow::Result<Base> {
    let listing = spec.listing.as_deref().map(read_json).transpose()?;
    if let Some(path) = &spec.blob_set {
        if spec.layout.is_some() || spec.docker_tar.is_some() {
            bail!("give only one of \"blob_set\", \"layout\" and \"docker_tar\"");
        }
        let set = BlobSet::load(path, Path::new("."))?;
        let top = set.top().clone();
        let selected = if media_types::is_manifest(&top.media_type) {
            let bytes = set.read_verified(&top)?;
            select::Selected {
                manifest: serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing manifest {}", top.digest))?,
                descriptor: top,
            }
        } else {
            // The top is a real image index, not a layout's index.json: wrap
            // it as a layout would, so that its manifests are chosen by
            // platform (select_manifest takes a lone manifest entry as is).
            select::select_manifest(&set, &ImageIndex::new(vec![top]), platform)?
        };
        if set.is_absent(&selected.manifest.config) {
            bail!(
                "{}: platform {platform} was not pulled; add it to the platforms of kiln.pull(...)",
                set.describe()
            );
        }
        let config = serde_json::from_slice(&set.read_verified(&selected.manifest.config)?)
            .context("parsing the base's image config")?;
        return Ok(Base {
            layers: BaseLayers::Descriptors(
                selected
                    .manifest
                    .layers
                    .into_iter()
                    .map(oci_layer)
                    .collect(),
            ),
            config,
            listing,
        });
    }
    match (&spec.layout, &spec.docker_tar) {
        (Some(dir), None) => {
            let layout = Layout::open(dir)?;
            let sources = Sources::load(dir)?;
            let selected = match &sources {
                None => layout.select(platform)?,
                Some(_) => {
                    let shallow = Shallow {
                        layout: &layout,
                        want: platform,
                    };
                    let selected =
                        select::select_manifest(&shallow, &layout.index_json()?, platform)?;
                    if shallow.is_absent(&selected.manifest.config) {
                        return Err(shallow.not_pulled());
                    }
                    selected
                }
            };
            let config = layout.read_json(&selected.manifest.config, "image config")?;
            Ok(Base {
                layers: BaseLayers::Layout {
                    layout,
                    descs: selected
                        .manifest
                        .layers
                        .into_iter()
                        .map(oci_layer)
                        .collect(),
                    sources,
                },
                config,
                listing,
            })
        }
        (None, Some(tar_path)) => {
            let tar = TarFile::open(tar_path, scratch)?;
            let where_ = || format!("docker_tar {}", tar_path.display());
            if let Some(mut images) = tar.docker_manifest().with_context(where_)? {
                if images.len() != 1 {
                    bail!(
                        "docker_tar {}: manifest.json lists {} images; the tarball must hold exactly one (docker save a single image)",
                        tar_path.display(),
                        images.len()
                    );
                }
                let image = images.remove(0);
                let config = tar
                    .read_member_json(&image.config)
                    .with_context(|| format!("docker_tar {}: image config", tar_path.display()))?;
                Ok(Base {
                    layers: BaseLayers::DockerSave {
                        tar,
                        members: image.layers,
                    },
                    config,
                    listing,
                })
            } else if let Some(index) = tar.oci_index().with_context(where_)? {
                let selected = select::select_manifest(&tar, &index, platform)?;
                let bytes = tar.read_verified(&selected.manifest.config)?;
                let config = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "docker_tar {}: parsing the image config",
                        tar_path.display()
                    )
                })?;
                Ok(Base {
                    layers: BaseLayers::TarLayout {
                        tar,
                        descs: selected
                            .manifest
                            .layers
                            .into_iter()
                            .map(oci_layer)
                            .collect(),
                    },
                    config,
                    listing,
                })
            } else {
                bail!(
                    "docker_tar {}: neither a docker save tarball (no manifest.json) nor an OCI layout (no index.json)",
                    tar_path.display()
                )
            }
        }
        _ => bail!("exactly one of \"layout\" and \"docker_tar\" must be given"),
    }
}

/// A shallow layout seen by `select`: the manifests and configs of the
/// platforms kiln-pull did not pull are absent, and choosing one of them is
/// an error saying so.
struct Shallow<'a> {
    layout: &'a Layout,
    want: &'a Platform,
}

impl Shallow<'_> {
    fn not_pulled(&self) -> anyhow::Error {
        anyhow!(
            "{}: platform {} was not pulled; add it to the platforms of kiln.pull(...)",
            self.layout.dir().display(),
            self.want
        )
    }
}

impl BlobStore for Shallow<'_> {
    fn read_verified(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        if self.is_absent(desc) {
            return Err(self.not_pulled());
        }
        self.layout.read_verified(desc)
    }

    fn describe(&self) -> String {
        self.layout.describe()
    }

    fn is_absent(&self, desc: &Descriptor) -> bool {
        !self.layout.blob_path(&desc.digest).exists()
    }
}

/// Writes to two writers.
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Copies one `docker save` layer into the layout as it is, returning its
/// descriptor. Its diff_id (the digest of the uncompressed tar) is computed
/// in the same pass and must be the config's `rootfs.diff_ids[i]`.
fn import_docker_layer(
    writer: &LayoutWriter,
    tar: &TarFile,
    name: &str,
    expected_diff_id: &Digest,
) -> anyhow::Result<Descriptor> {
    let (mut reader, _) = tar.open_member(name)?;
    let mut head = [0u8; MAGIC_LEN];
    let n = read_up_to(&mut reader, &mut head)?;
    let compression = Compression::detect(&head[..n]);
    let mut reader = io::Cursor::new(head[..n].to_vec()).chain(reader);
    let (media_type, digest, size, diff_id) = match compression {
        Compression::None => {
            let (digest, size, ()) = writer.add_blob_stream(|w| {
                io::copy(&mut reader, w)?;
                Ok(())
            })?;
            (media_types::OCI_LAYER_TAR, digest.clone(), size, digest)
        }
        Compression::Gzip => {
            let (digest, size, diff_id) = writer.add_blob_stream(|w| {
                let mut gunzip = flate2::write::MultiGzDecoder::new(HashingWriter::new(io::sink()));
                io::copy(&mut reader, &mut Tee(w, &mut gunzip))?;
                let (_, diff_id, _) = gunzip
                    .finish()
                    .context("the gzip stream is corrupt")?
                    .finish();
                Ok(diff_id)
            })?;
            (media_types::OCI_LAYER_TAR_GZIP, digest, size, diff_id)
        }
        other => bail!(
            "it is {}-compressed; only uncompressed and gzip layers are supported in a docker_tar",
            other.name()
        ),
    };
    if &diff_id != expected_diff_id {
        bail!("its content has diff_id {diff_id} but the image config says {expected_diff_id}");
    }
    Ok(Descriptor::new(media_type, digest, size))
}

/// Copies one blob of an OCI layout packed in a tarball into the layout,
/// checking size and digest on the way.
fn import_tar_blob(writer: &LayoutWriter, tar: &TarFile, d: &Descriptor) -> anyhow::Result<()> {
    let (mut reader, size) = tar.open_member(&blob_name(&d.digest))?;
    if size != d.size {
        bail!(
            "blob {} has {size} bytes but its descriptor says {}",
            d.digest,
            d.size
        );
    }
    let (digest, _, ()) = writer.add_blob_stream(|w| {
        io::copy(&mut reader, w)?;
        Ok(())
    })?;
    if digest != d.digest {
        bail!(
            "blob {} is corrupt: its content has digest {digest}",
            d.digest
        );
    }
    Ok(())
}

/// Puts the base's layers into the layout; returns their descriptors.
/// `diff_ids` are the base config's. Layers of a shallow base that it does
/// not hold are added to `absent` instead, with their source.
/// A base layer blob must have its descriptor's size (checked on every
/// build: a stat; the digest is checked once, by `verify-layout`).
fn check_blob_size(layout: &Layout, d: &Descriptor) -> anyhow::Result<()> {
    let path = layout.blob_path(&d.digest);
    let len = fs::metadata(&path)
        .with_context(|| format!("base layout: blob {} ({})", d.digest, path.display()))?
        .len();
    if len != d.size {
        bail!(
            "base layout {}: blob {} ({}) has {len} bytes, its descriptor says {}",
            layout.dir().display(),
            d.digest,
            path.display(),
            d.size
        );
    }
    Ok(())
}

fn import_base(
    writer: &LayoutWriter,
    layers: &BaseLayers,
    diff_ids: &[Digest],
    absent: &mut Sources,
) -> anyhow::Result<Vec<Descriptor>> {
    match layers {
        BaseLayers::Descriptors(descs) => Ok(descs.clone()),
        BaseLayers::Layout {
            layout,
            descs,
            sources: Some(sources),
        } => {
            for d in descs {
                match layout.locate(Some(sources), d)? {
                    Located::Present(_) => {
                        check_blob_size(layout, d)?;
                        writer.add_blob_from(layout, &d.digest)?
                    }
                    Located::Absent(listed) => absent.add(
                        d.digest.clone(),
                        SourceBlob {
                            media_type: d.media_type.clone(),
                            ..listed.clone()
                        },
                    )?,
                }
            }
            Ok(descs.clone())
        }
        BaseLayers::Layout {
            layout,
            descs,
            sources: None,
        } => {
            for d in descs {
                check_blob_size(layout, d)?;
                writer.add_blob_from(layout, &d.digest)?;
            }
            Ok(descs.clone())
        }
        BaseLayers::TarLayout { tar, descs } => {
            for d in descs {
                import_tar_blob(writer, tar, d)
                    .with_context(|| format!("docker_tar {}", tar.path().display()))?;
            }
            Ok(descs.clone())
        }
        BaseLayers::DockerSave { tar, members } => members
            .iter()
            .zip(diff_ids)
            .enumerate()
            .map(|(i, (name, diff_id))| {
                import_docker_layer(writer, tar, name, diff_id).with_context(|| {
                    format!("docker_tar {}: layer {i} ({name})", tar.path().display())
                })
            })
            .collect(),
    }
}

/// The manifest descriptor as JSON, with the platform's `os.version` (which
/// `kiln_oci::Platform` does not model) when the image has one.
fn descriptor_json(desc: &Descriptor, os_version: Option<&str>) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(desc)?;
    if let (Some(ver), Some(Value::Object(p))) = (os_version, v.get_mut("platform")) {
        p.insert("os.version".into(), Value::String(ver.to_string()));
    }
    Ok(v)
}

/// Writes `bytes` to a temporary sibling of `path`, renamed into place by
/// `commit` once everything else succeeded.
fn stage(path: &Path, bytes: &[u8], flag: &str) -> anyhow::Result<AtomicFile> {
    let mut f = AtomicFile::create(path).with_context(|| flag.to_string())?;
    f.write_all(bytes)
        .with_context(|| format!("{flag}: writing {}", path.display()))?;
    Ok(f)
}

fn read_layer(spec: &LayerSpec) -> anyhow::Result<NewLayer> {
    let desc: LayerDescriptor = read_json(&spec.descriptor)?;
    let listing = read_json(&spec.listing)?;
    Ok(NewLayer { desc, listing })
}

pub fn run(spec_path: &Path, out: &Outputs) -> anyhow::Result<()> {
    let spec = read_spec(spec_path)?;
    let target = spec.target.as_str();

    let stamp = spec
        .stamp
        .as_deref()
        .map(Stamp::load)
        .transpose()
        .with_context(|| format!("{target}: stamp"))?;
    // Next to the output layout: the same filesystem, with room for it.
    let scratch = match out.manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = spec
        .base
        .as_ref()
        .map(|b| {
            fs::create_dir_all(scratch)
                .with_context(|| format!("creating {}", scratch.display()))?;
            read_base(b, &spec.platform, scratch)
        })
        .transpose()
        .with_context(|| format!("{target}: base"))?;
    let layers = spec
        .layers
        .iter()
        .map(read_layer)
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("{target}: layers"))?;

    // Config: stamping, label files and `created` first, then the merge onto
    // the base config (env `$VAR` expansion happens there).
    let attr_error = |e: config::AttrError| anyhow!("{target}: {}: {}", e.attr, e.message);
    let config_spec = config::resolve(&spec.config, stamp.as_ref()).map_err(attr_error)?;
    let (base_config, base_layer_count) = match &base {
        Some(b) => (b.config.clone(), b.layers.count()),
        None => (ImageConfig::default(), 0),
    };
    let mut cfg = config::apply(base_config, &config_spec, &spec.platform).map_err(attr_error)?;
    config::add_layers(
        &mut cfg,
        base_layer_count,
        layers.iter().map(|l| l.desc.diff_id.clone()).collect(),
        target,
    )
    .with_context(|| format!("{target}: base"))?;

    // Listing and entrypoint check. A base without a listing (any OCI
    // layout or docker_tar not written by us) makes the view incomplete:
    // see `FsView`.
    let base_listing_known = base.as_ref().is_none_or(|b| b.listing.is_some())
        && spec.base.as_ref().is_none_or(|b| b.listing_complete);
    let mut view = FsView::new(base_listing_known);
    if let Some(listing) = base.as_ref().and_then(|b| b.listing.clone()) {
        view.add_layer(listing);
    }
    for l in &layers {
        view.add_layer(l.listing.clone());
    }
    let rc = &cfg.config;
    entrypoint::check(
        rc.entrypoint.as_ref().and_then(|e| e.as_deref()),
        rc.cmd.as_ref().and_then(|c| c.as_deref()),
        &view,
    )
    .map_err(|(attr, msg)| anyhow!("{target}: {attr}: {msg}"))?;

    // Config and manifest. The blobs stay where they were made: a foreign
    // base's layers (a layout directory, a tarball) are the only ones
    // written here, to --base-blobs, with the base layers a shallow one
    // lacks listed in its kiln-source.json.
    let config_bytes = canonical::to_vec(&cfg)?;
    let config_digest = sha256_bytes(&config_bytes);
    let mut base_blobs = None;
    let mut manifest_layers = match &base {
        Some(b) => {
            let writer = match (&b.layers, out.base_blobs) {
                (BaseLayers::Descriptors(_), _) => None,
                (_, Some(dir)) => Some(
                    LayoutWriter::new(dir).with_context(|| format!("{target}: --base-blobs"))?,
                ),
                (_, None) => bail!("{target}: base: a foreign base needs --base-blobs"),
            };
            let mut absent = Sources::default();
            let descs = match &writer {
                Some(w) => import_base(
                    w,
                    &b.layers,
                    &cfg.rootfs.diff_ids[..base_layer_count],
                    &mut absent,
                ),
                None => match &b.layers {
                    BaseLayers::Descriptors(d) => Ok(d.clone()),
                    _ => unreachable!("foreign bases have a writer"),
                },
            }
            .with_context(|| format!("{target}: base"))?;
            if let Some(w) = &writer {
                w.write_absent(absent)
                    .with_context(|| format!("{target}: --base-blobs"))?;
            }
            base_blobs = writer;
            descs
        }
        None => Vec::new(),
    };
    manifest_layers.extend(layers.iter().map(|l| l.desc.descriptor()));
    let manifest = ImageManifest::new(
        Descriptor::new(
            media_types::OCI_IMAGE_CONFIG,
            config_digest.clone(),
            config_bytes.len() as u64,
        ),
        manifest_layers,
    );
    let manifest_bytes = canonical::to_vec(&manifest)?;
    let mut manifest_desc = Descriptor::new(
        media_types::OCI_IMAGE_MANIFEST,
        sha256_bytes(&manifest_bytes),
        manifest_bytes.len() as u64,
    );
    manifest_desc.platform = Some(spec.platform.clone());
    let descriptor = descriptor_json(&manifest_desc, cfg.os_version.as_deref())?;

    // Side outputs are staged first and renamed into place only after the
    // layout, so a failure leaves none of them.
    let mut staged = vec![
        stage(out.manifest, &manifest_bytes, "--manifest")?,
        stage(out.config, &config_bytes, "--config")?,
        stage(
            out.digest,
            manifest_desc.digest.to_string().as_bytes(),
            "--digest",
        )?,
        stage(
            out.descriptor,
            &canonical::to_vec(&descriptor)?,
            "--descriptor",
        )?,
        stage(
            out.listing,
            &canonical::to_vec(&view.listing())?,
            "--listing",
        )?,
    ];
    if let Some(path) = out.config_digest {
        staged.push(stage(
            path,
            config_digest.hex().as_bytes(),
            "--config-digest",
        )?);
    }
    if let Some(w) = base_blobs {
        w.finish(Vec::new())
            .with_context(|| format!("{target}: --base-blobs"))?;
    }
    for f in staged {
        let path = f.path().display().to_string();
        f.commit()
            .with_context(|| format!("{target}: writing {path}"))?;
    }
    Ok(())
}
