//! Loading into containerd's image store through its content API: only the
//! blobs containerd lacks are written, then one image record per tag is
//! created or updated. This is the path for Docker's containerd image store
//! (namespace `moby`, whose `docker load` would import every blob) and for
//! containerd itself (`--containerd SOCKET`, as `ctr import` would load).
//!
//! containerd garbage-collects content that nothing references, so the
//! writes happen under a lease (deleted once the image records exist), and
//! the manifest carries the `containerd.io/gc.ref.content.*` labels that
//! keep its config and layers alive, as containerd's own importer sets them.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateImageRequest, CreateRequest, DeleteRequest, GetImageRequest, Image, Info, InfoRequest,
    UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request};
use containerd_client::types::Descriptor as CtrDescriptor;
use kiln_oci::compression::read_up_to;
use kiln_oci::reference::TaggedName;
use kiln_oci::{Descriptor, Layout};

/// Bytes per write message: large enough that a GiB layer is a thousand
/// messages, small enough to stay far below gRPC's message size limits.
const CHUNK: usize = 1 << 20;

/// A lease that outlives a crashed load is collected after this long.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Blobs written (containerd lacked them) and their bytes.
    pub written: usize,
    pub written_bytes: u64,
    /// Blobs containerd already had.
    pub present: usize,
}

/// Writes the blobs of `image` (manifest, config, layers) that containerd at
/// `socket` lacks in `namespace`, then points each tag (as containerd names
/// it, fully qualified: `docker.io/kiln/app:dev`) at the manifest, and says
/// in one line what it did.
pub fn import(
    socket: &Path,
    namespace: &str,
    layout: &Layout,
    image: &Descriptor,
    tags: &[TaggedName],
) -> anyhow::Result<Imported> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the containerd client")?;
    let what = || format!("containerd at {} (namespace {namespace})", socket.display());
    let normalized: Vec<String> = tags.iter().map(|t| t.normalized()).collect();
    let done = runtime
        .block_on(import_async(socket, namespace, layout, image, &normalized))
        .with_context(what)?;
    let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    eprintln!(
        "kiln-load: containerd import: wrote {} blob(s) ({} bytes), {} already present, \
         into {} namespace {namespace}; tagged {}",
        done.written,
        done.written_bytes,
        done.present,
        socket.display(),
        names.join(", ")
    );
    Ok(done)
}

async fn import_async(
    socket: &Path,
    namespace: &str,
    layout: &Layout,
    image: &Descriptor,
    names: &[String],
) -> anyhow::Result<Imported> {
    let channel = containerd_client::connect(socket)
        .await
        .context("connecting")?;
    let session = Session {
        channel,
        namespace: MetadataValue::try_from(namespace)
            .map_err(|_| anyhow!("namespace {namespace:?} is not a valid header value"))?,
        lease: None,
    };
    let manifest = layout.read_manifest(image)?;

    // Children first, the manifest last: whatever sees the manifest finds
    // its config and layers in place.
    let mut gc_labels = HashMap::new();
    gc_labels.insert(
        "containerd.io/gc.ref.content.config".to_string(),
        manifest.config.digest.to_string(),
    );
    for (i, layer) in manifest.layers.iter().enumerate() {
        gc_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.to_string(),
        );
    }
    let mut blobs: Vec<(&Descriptor, HashMap<String, String>)> =
        vec![(&manifest.config, HashMap::new())];
    blobs.extend(manifest.layers.iter().map(|l| (l, HashMap::new())));
    blobs.push((image, gc_labels));

    let lease_id = session.create_lease().await?;
    let session = Session {
        lease: Some(lease_id.clone()),
        ..session
    };
    let result = async {
        let mut done = Imported::default();
        for (desc, labels) in &blobs {
            let path = layout.blob_path(&desc.digest);
            if session.has(desc).await? {
                done.present += 1;
                if !labels.is_empty() {
                    session.set_labels(desc, labels).await?;
                }
                continue;
            }
            session
                .write(desc, &path, labels)
                .await
                .with_context(|| format!("writing blob {} from {}", desc.digest, path.display()))?;
            done.written += 1;
            done.written_bytes += desc.size;
        }
        for name in names {
            session.put_image(name, image).await?;
        }
        Ok::<_, anyhow::Error>(done)
    }
    .await;
    // The image records reference everything now (or the import failed and
    // the lease's expiry collects what was written).
    let dropped = session.delete_lease(&lease_id).await;
    let done = result?;
    dropped?;
    Ok(done)
}

struct Session {
    channel: Channel,
    namespace: MetadataValue<containerd_client::tonic::metadata::Ascii>,
    lease: Option<String>,
}

impl Session {
    /// A request in our namespace (and lease, once there is one).
    fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = &self.lease {
            let value = MetadataValue::try_from(lease.as_str())
                .map_err(|_| anyhow!("lease id {lease:?} is not a valid header value"))?;
            metadata.insert("containerd-lease", value);
        }
        Ok(request)
    }

    async fn create_lease(&self) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?;
        let expires = time_rfc3339(now + LEASE_EXPIRY);
        let id = format!("kiln-load-{}-{}", std::process::id(), now.as_nanos());
        let mut labels = HashMap::new();
        labels.insert("containerd.io/gc.expire".to_string(), expires);
        LeasesClient::new(self.channel.clone())
            .create(self.request(CreateRequest {
                id: id.clone(),
                labels,
            })?)
            .await
            .context("creating a lease")?;
        Ok(id)
    }

    async fn delete_lease(&self, id: &str) -> anyhow::Result<()> {
        LeasesClient::new(self.channel.clone())
            .delete(self.request(DeleteRequest {
                id: id.to_string(),
                sync: false,
            })?)
            .await
            .with_context(|| format!("deleting lease {id}"))?;
        Ok(())
    }

    /// Whether containerd has the blob (committed content of that digest).
    async fn has(&self, desc: &Descriptor) -> anyhow::Result<bool> {
        let answer = ContentClient::new(self.channel.clone())
            .info(self.request(InfoRequest {
                digest: desc.digest.to_string(),
            })?)
            .await;
        match answer {
            Ok(info) => {
                let size = info.into_inner().info.map(|i| i.size).unwrap_or(-1);
                if size != i64::try_from(desc.size).unwrap_or(-1) {
                    bail!(
                        "containerd has blob {} with {size} bytes, the image says {}",
                        desc.digest,
                        desc.size
                    );
                }
                Ok(true)
            }
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(status).with_context(|| format!("asking for blob {}", desc.digest)),
        }
    }

    /// Sets `labels` on a blob containerd already has.
    async fn set_labels(
        &self,
        desc: &Descriptor,
        labels: &HashMap<String, String>,
    ) -> anyhow::Result<()> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        ContentClient::new(self.channel.clone())
            .update(self.request(UpdateRequest {
                info: Some(Info {
                    digest: desc.digest.to_string(),
                    labels: labels.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            })?)
            .await
            .with_context(|| format!("labelling blob {}", desc.digest))?;
        Ok(())
    }

    /// Streams the file into containerd, which checks size and digest at
    /// the commit.
    async fn write(
        &self,
        desc: &Descriptor,
        path: &Path,
        labels: &HashMap<String, String>,
    ) -> anyhow::Result<()> {
        let file = File::open(path).context("opening")?;
        let total = i64::try_from(desc.size).context("blob size")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let reference = format!(
            "kiln-load-{}-{}-{now}",
            desc.digest.hex(),
            std::process::id()
        );
        let expected = desc.digest.to_string();
        let labels = labels.clone();
        // Reading the file as the transport asks for messages: one chunk in
        // memory at a time. A read error ends the stream without a commit;
        // it is reported from `failed` below.
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
        let failed_in_stream = failed.clone();
        let state = Some((file, 0i64, reference, expected, labels));
        let messages = futures_util::stream::unfold(state, move |state| {
            let failed = failed_in_stream.clone();
            async move {
                let (mut file, offset, reference, expected, labels) = state?;
                let mut data = vec![0u8; CHUNK];
                let n = match read_up_to(&mut file, &mut data) {
                    Ok(n) => n,
                    Err(e) => {
                        if let Ok(mut slot) = failed.lock() {
                            *slot = Some(e);
                        }
                        return None;
                    }
                };
                data.truncate(n);
                let last = n < CHUNK || offset + n as i64 >= total;
                let message = WriteContentRequest {
                    action: if last {
                        WriteAction::Commit as i32
                    } else {
                        WriteAction::Write as i32
                    },
                    r#ref: reference.clone(),
                    total,
                    expected: if last {
                        expected.clone()
                    } else {
                        String::new()
                    },
                    offset,
                    data,
                    labels: if last { labels.clone() } else { HashMap::new() },
                };
                let next = if last {
                    None
                } else {
                    Some((file, offset + n as i64, reference, expected, labels))
                };
                Some((message, next))
            }
        });
        let mut responses = ContentClient::new(self.channel.clone())
            .write(self.request(messages)?)
            .await
            .context("starting the write")?
            .into_inner();
        let mut committed = None;
        while let Some(response) = responses.message().await.context("writing")? {
            if response.action == WriteAction::Commit as i32 {
                committed = Some(response.digest);
            }
        }
        if let Some(e) = failed.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(e).context("reading");
        }
        match committed {
            Some(d) if d == desc.digest.to_string() => Ok(()),
            Some(d) => bail!("containerd committed {d}, expected {}", desc.digest),
            None => bail!("containerd did not confirm the commit"),
        }
    }

    /// Creates the image record `name` → `target`, or points an existing
    /// one there.
    async fn put_image(&self, name: &str, target: &Descriptor) -> anyhow::Result<()> {
        let record = Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(CtrDescriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.to_string(),
                size: i64::try_from(target.size).context("manifest size")?,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let mut images = ImagesClient::new(self.channel.clone());
        let existing = images
            .get(self.request(GetImageRequest {
                name: name.to_string(),
            })?)
            .await;
        match existing {
            Ok(found) => {
                let same = found
                    .into_inner()
                    .image
                    .and_then(|i| i.target)
                    .is_some_and(|t| t.digest == target.digest.to_string());
                if same {
                    return Ok(());
                }
                images
                    .update(self.request(UpdateImageRequest {
                        image: Some(record),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".to_string()],
                        }),
                        source_date_epoch: None,
                    })?)
                    .await
                    .with_context(|| format!("pointing image {name} at {}", target.digest))?;
            }
            Err(status) if status.code() == Code::NotFound => {
                images
                    .create(self.request(CreateImageRequest {
                        image: Some(record),
                        source_date_epoch: None,
                    })?)
                    .await
                    .with_context(|| format!("creating image {name}"))?;
            }
            Err(status) => {
                return Err(status).with_context(|| format!("asking for image {name}"));
            }
        }
        Ok(())
    }
}

/// RFC 3339 in UTC, as containerd's `gc.expire` label reads it.
fn time_rfc3339(since_epoch: Duration) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + since_epoch;
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2100-01-01T00:00:00Z".to_string())
}
