//! Registry starters for the kiln-registry and kiln-pull integration
//! tests: a real registry
//! (Debian's `docker-registry`, distribution 2.8) on a free loopback port,
//! OCI layouts written here and pushed with skopeo, and a small HTTP proxy
//! that can corrupt blobs or play a token-authenticated registry.
//!
//! Nothing is skipped: a missing `docker-registry`, `skopeo` or `htpasswd`
//! makes the test fail with a message saying what to install.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_oci::{
    media_types, Descriptor, Digest, ImageIndex, ImageManifest, LayoutWriter, Platform,
};

use crate::free_port;

/// Runs `program args…`, failing the test (with what to install) when the
/// program is missing.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (apt-get install it): {e}"))
}

/// Like `run`, but the command must succeed.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `docker-registry serve` process, killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An open registry (no authentication).
    pub fn start() -> Registry {
        Self::start_inner(None)
    }

    /// A registry with htpasswd (bcrypt) authentication: it answers
    /// `WWW-Authenticate: Basic`.
    pub fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\n\
             log: {{level: error, accesslog: {{disabled: true}}}}\n\
             storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http: {{addr: {addr}}}\n",
            data.display()
        );
        if let Some((user, password)) = auth {
            let out = run_ok("htpasswd", &["-Bbn", user, password]);
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).expect("writing htpasswd");
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: kiln-test, path: {}}}}}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("writing the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run docker-registry (apt-get install docker-registry): {e}")
            });
        let mut registry = Registry { addr, child, dir };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/") {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One image of a test layout.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub platform: Platform,
    /// With its platform, as in the index.
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An OCI layout written by `write_layout`.
#[derive(Clone, Debug)]
pub struct TestLayout {
    pub dir: PathBuf,
    /// The entry of index.json: the index, or the only manifest.
    pub top: Descriptor,
    pub top_bytes: Vec<u8>,
    pub images: Vec<TestImage>,
}

impl TestLayout {
    pub fn image(&self, platform: &str) -> &TestImage {
        self.images
            .iter()
            .find(|i| i.platform.to_string() == platform)
            .unwrap_or_else(|| panic!("no test image for {platform}"))
    }
}

/// `len` deterministic bytes that gzip cannot shrink much (xorshift), a
/// different run for each `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A gzipped tar holding one file.
pub fn layer_bytes(path: &str, content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, content).expect("tar");
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// Writes an OCI layout at `dir` with one image per platform: a layer
/// shared by all (`etc/kiln-base`, ~300 KiB so transfers take several
/// reads) and one of its own (`etc/kiln-<arch>`). With `index`, the
/// layout's entry is an image index of them all; otherwise there must be
/// one platform and the entry is its manifest. The entry is annotated
/// with `tag` (for `skopeo copy oci:DIR:TAG` and `umoci --image DIR:TAG`).
pub fn write_layout(dir: &Path, platforms: &[&str], index: bool, tag: &str) -> TestLayout {
    assert!(index || platforms.len() == 1);
    let w = LayoutWriter::new(dir).expect("layout writer");
    let base = layer_bytes("etc/kiln-base", &noise(7, 300 * 1024));
    let base_digest = w.add_blob_bytes(&base).expect("blob");
    let base_desc = Descriptor::new(
        media_types::OCI_LAYER_TAR_GZIP,
        base_digest,
        base.len() as u64,
    );
    let mut images = Vec::new();
    for p in platforms {
        let platform: Platform = p.parse().expect("platform");
        let own = layer_bytes(&format!("etc/kiln-{}", platform.architecture), p.as_bytes());
        let own_desc = Descriptor::new(
            media_types::OCI_LAYER_TAR_GZIP,
            w.add_blob_bytes(&own).expect("blob"),
            own.len() as u64,
        );
        let mut config = serde_json::json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [
                kiln_oci::sha256_bytes(&gunzip(&base)).to_string(),
                kiln_oci::sha256_bytes(&gunzip(&own)).to_string(),
            ]},
        });
        if let Some(v) = &platform.variant {
            config["variant"] = serde_json::json!(v);
        }
        let config = w
            .add_json(media_types::OCI_IMAGE_CONFIG, &config)
            .expect("config");
        let layers = vec![base_desc.clone(), own_desc];
        let manifest = ImageManifest::new(config.clone(), layers.clone());
        let mut manifest_desc = w
            .add_json(media_types::OCI_IMAGE_MANIFEST, &manifest)
            .expect("manifest");
        manifest_desc.platform = Some(platform.clone());
        images.push(TestImage {
            platform,
            manifest: manifest_desc,
            config,
            layers,
        });
    }
    let mut top = if index {
        let idx = ImageIndex::new(images.iter().map(|i| i.manifest.clone()).collect());
        w.add_json(media_types::OCI_IMAGE_INDEX, &idx)
            .expect("index")
    } else {
        images[0].manifest.clone()
    };
    let top_bytes = std::fs::read(w.blob_path(&top.digest)).expect("top blob");
    top.annotations = Some(BTreeMap::from([(
        media_types::ANNOTATION_REF_NAME.to_string(),
        tag.to_string(),
    )]));
    w.finish(vec![top.clone()]).expect("finish");
    top.annotations = None;
    TestLayout {
        dir: dir.to_path_buf(),
        top,
        top_bytes,
        images,
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// Pushes the layout (every image of an index, digests preserved) to
/// `dest` (`HOST:PORT/REPO:TAG`) with skopeo.
pub fn skopeo_push(layout: &TestLayout, tag: &str, dest: &str, creds: Option<&str>) {
    let src = format!("oci:{}:{tag}", layout.dir.display());
    let dest = format!("docker://{dest}");
    let mut args = vec![
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ];
    if let Some(c) = creds {
        args.push("--dest-creds");
        args.push(c);
    }
    args.push(&src);
    args.push(&dest);
    run_ok("skopeo", &args);
}

/// The digest of `docker://REF` according to skopeo (plain HTTP).
/// A registry behind htpasswd `user:password` holding a one-platform image
/// (`linux/amd64`) at `kiln/base:v1`, pushed by skopeo; with the tempdir
/// the layout was written in (kept alive by the caller).
pub fn auth_registry_with_image(
    user: &str,
    password: &str,
) -> (Registry, tempfile::TempDir, TestLayout) {
    let registry = Registry::start_with_htpasswd(user, password);
    let tmp = tempfile::tempdir().expect("tempdir");
    let layout = write_layout(&tmp.path().join("src"), &["linux/amd64"], false, "v1");
    skopeo_push(
        &layout,
        "v1",
        &format!("{}/kiln/base:v1", registry.addr),
        Some(&format!("{user}:{password}")),
    );
    (registry, tmp, layout)
}

pub fn skopeo_digest(reference: &str) -> Digest {
    let out = run_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
    );
    kiln_oci::sha256_bytes(&out.stdout)
}

/// One HTTP request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

/// What the proxy does with a request.
pub enum Action {
    /// Sends it to the upstream registry; with `corrupt`, flips the last
    /// byte of a successful answer's body.
    Forward { corrupt: bool },
    /// Sends it to the upstream registry; of a successful answer, sends the
    /// head (with its full Content-Length) and half the body, then closes:
    /// a connection that breaks mid-body.
    ForwardCut,
    /// Answers itself.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Answers itself, slowly: the head at once, then the body one byte
    /// every `pause` (a server that drip-feeds).
    Drip {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        pause: Duration,
    },
    /// Answers itself after `after` (a slow first byte).
    Late {
        after: Duration,
        status: u16,
        body: Vec<u8>,
    },
    /// Never answers, holding the connection until the client closes it
    /// (a server that accepted and went silent).
    Silent,
    /// Closes the connection with a reset (RST) and no answer. From a
    /// `before_body` hook ([`Proxy::start_with_faults`]) half the request's
    /// body is read first: a connection that breaks mid-upload.
    Reset,
    /// Sends it to the upstream registry (which acts on it), then resets
    /// the connection instead of answering: the client cannot know whether
    /// it was done.
    ForwardThenReset,
    /// Sends it to the upstream registry; of a successful answer, sends the
    /// head (with its full Content-Length) and half the body, then resets
    /// the connection (RST): a download that breaks mid-body.
    ForwardCutReset,
    /// Sends it to the upstream registry; a successful answer with a body
    /// is sent with its `Content-Length` off by this many bytes (the body
    /// as it is).
    ForwardWrongLength(i64),
    /// Sends it to the upstream registry after this long (a slow first
    /// byte).
    ForwardLate(Duration),
}

type Handler = dyn Fn(&Request) -> Action + Send + Sync;

/// Decides from a request's head (its body not read yet) whether it gets
/// an action of its own (see [`Proxy::start_with_faults`]).
type BeforeBody = dyn Fn(&Request) -> Option<Action> + Send + Sync;

/// Kinds of registry request, for [`Faults`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /v2/`.
    Ping,
    ManifestHead,
    ManifestGet,
    ManifestPut,
    BlobHead,
    BlobGet,
    /// `POST …/blobs/uploads/` without `mount=`.
    UploadStart,
    /// `POST …/blobs/uploads/?mount=…`.
    Mount,
    /// The `PUT` of an upload session (with `digest=`): the blob's bytes.
    BlobPut,
    /// `DELETE` of an upload session.
    UploadCancel,
}

impl Kind {
    /// The kind of `r`, `None` for anything else (tokens, referrers…).
    pub fn of(r: &Request) -> Option<Kind> {
        let path = r.path();
        let method = r.method.as_str();
        if path == "/v2/" || path == "/v2" {
            return (method == "GET").then_some(Kind::Ping);
        }
        if !path.starts_with("/v2/") {
            return None;
        }
        if path.contains("/blobs/uploads/") {
            return match method {
                "POST" if r.query().contains("mount=") => Some(Kind::Mount),
                "POST" => Some(Kind::UploadStart),
                "PUT" => Some(Kind::BlobPut),
                "DELETE" => Some(Kind::UploadCancel),
                _ => None,
            };
        }
        if path.contains("/manifests/") {
            return match method {
                "HEAD" => Some(Kind::ManifestHead),
                "GET" => Some(Kind::ManifestGet),
                "PUT" => Some(Kind::ManifestPut),
                _ => None,
            };
        }
        if path.contains("/blobs/") {
            return match method {
                "HEAD" => Some(Kind::BlobHead),
                "GET" => Some(Kind::BlobGet),
                _ => None,
            };
        }
        None
    }
}

/// What a [`Faults`] rule does to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers `status` itself, with `Retry-After: <retry_after>` when
    /// given (e.g. 429 or 503).
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// [`Action::Reset`]: mid-upload for a request with a body.
    Reset,
    /// [`Action::ForwardThenReset`].
    ForwardThenReset,
    /// [`Action::ForwardCutReset`]: a download that breaks mid-body.
    CutBody,
    /// [`Action::ForwardWrongLength`].
    WrongLength(i64),
    /// [`Action::ForwardLate`]: a slow first byte.
    Late(Duration),
    /// [`Action::Silent`].
    Silent,
    /// A `307` to the same path and query on `host` (`HOST:PORT`).
    Redirect(String),
}

impl Fault {
    /// `status` without `Retry-After`.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            retry_after: None,
        }
    }

    /// `status` with `Retry-After: <retry_after>`.
    pub fn status_retry_after(status: u16, retry_after: &str) -> Fault {
        Fault::Status {
            status,
            retry_after: Some(retry_after.to_string()),
        }
    }

    fn action(&self, r: &Request) -> Action {
        match self {
            Fault::Status {
                status,
                retry_after,
            } => Action::Respond {
                status: *status,
                headers: retry_after
                    .iter()
                    .map(|v| ("Retry-After".to_string(), v.clone()))
                    .collect(),
                body: format!("kiln-test fault: HTTP {status}").into_bytes(),
            },
            Fault::Reset => Action::Reset,
            Fault::ForwardThenReset => Action::ForwardThenReset,
            Fault::CutBody => Action::ForwardCutReset,
            Fault::WrongLength(delta) => Action::ForwardWrongLength(*delta),
            Fault::Late(after) => Action::ForwardLate(*after),
            Fault::Silent => Action::Silent,
            Fault::Redirect(host) => Action::Respond {
                status: 307,
                headers: vec![("Location".into(), format!("http://{host}{}", r.target))],
                body: vec![],
            },
        }
    }
}

struct Rule {
    kind: Kind,
    fault: Fault,
    /// Requests still to get the fault; `None`: every one.
    left: Option<usize>,
}

/// Faults played on requests by kind, each rule for the first N requests
/// of its kind (or all of them), in the order the rules were added: e.g.
/// the first two blob uploads reset, the third forwarded. Requests no rule
/// takes are forwarded untouched. Cheap to clone (shared counters).
#[derive(Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Rule>>>,
    played: Arc<Mutex<Vec<(Kind, Fault)>>>,
}

impl Faults {
    pub fn new() -> Faults {
        Faults::default()
    }

    /// The next `times` requests of `kind` (after earlier rules of that
    /// kind are used up) get `fault`.
    pub fn first(self, times: usize, kind: Kind, fault: Fault) -> Faults {
        self.rule(kind, fault, Some(times))
    }

    /// Every request of `kind` (after earlier rules of that kind are used
    /// up) gets `fault`: a fault that never stops.
    pub fn always(self, kind: Kind, fault: Fault) -> Faults {
        self.rule(kind, fault, None)
    }

    fn rule(self, kind: Kind, fault: Fault, left: Option<usize>) -> Faults {
        self.rules
            .lock()
            .expect("rules")
            .push(Rule { kind, fault, left });
        self
    }

    /// The fault `r` gets, if any, counted.
    fn take(&self, r: &Request) -> Option<Fault> {
        let kind = Kind::of(r)?;
        let mut rules = self.rules.lock().expect("rules");
        let rule = rules
            .iter_mut()
            .find(|rule| rule.kind == kind && rule.left != Some(0))?;
        if let Some(left) = &mut rule.left {
            *left -= 1;
        }
        let fault = rule.fault.clone();
        self.played
            .lock()
            .expect("played")
            .push((kind, fault.clone()));
        Some(fault)
    }

    /// How many requests of `kind` got a fault.
    pub fn played(&self, kind: Kind) -> usize {
        self.played
            .lock()
            .expect("played")
            .iter()
            .filter(|(k, _)| *k == kind)
            .count()
    }

    /// Every fault played, in order.
    pub fn log(&self) -> Vec<(Kind, Fault)> {
        self.played.lock().expect("played").clone()
    }
}

/// A one-request-per-connection HTTP/1.1 proxy in front of a registry,
/// on its own loopback port; stopped on drop. Every request is recorded.
/// Faults it can play: [`Action`] (corrupt, cut, reset, wrong length,
/// drip-feed, late, silence, answers of its own, e.g. redirects and token
/// services), a slow reader of request bodies ([`Proxy::start_paced`]),
/// and [`Faults`] counted by kind of request ([`Proxy::start_with_faults`]).
pub struct Proxy {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(
        upstream: &str,
        handler: impl Fn(&Request) -> Action + Send + Sync + 'static,
    ) -> Proxy {
        Self::start_paced(upstream, None, handler)
    }

    /// [`Proxy::start`] reading request bodies slowly: `(bytes, pause)`
    /// reads at most `bytes` at a time with `pause` between reads (a
    /// registry on a slow link that still makes progress).
    pub fn start_paced(
        upstream: &str,
        pace: Option<(usize, Duration)>,
        handler: impl Fn(&Request) -> Action + Send + Sync + 'static,
    ) -> Proxy {
        Self::start_inner(upstream, pace, None, Arc::new(handler))
    }

    /// A proxy playing `faults` (decided from each request's head, before
    /// its body is read, so that a reset can come mid-upload) and
    /// forwarding everything else.
    pub fn start_with_faults(upstream: &str, faults: &Faults) -> Proxy {
        let faults = faults.clone();
        let before_body: Arc<BeforeBody> =
            Arc::new(move |r: &Request| faults.take(r).map(|f| f.action(r)));
        Self::start_inner(
            upstream,
            None,
            Some(before_body),
            Arc::new(|_: &Request| Action::Forward { corrupt: false }),
        )
    }

    fn start_inner(
        upstream: &str,
        pace: Option<(usize, Duration)>,
        before_body: Option<Arc<BeforeBody>>,
        handler: Arc<Handler>,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_string();
        {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (handler, before_body, upstream, requests) = (
                        handler.clone(),
                        before_body.clone(),
                        upstream.clone(),
                        requests.clone(),
                    );
                    std::thread::spawn(move || {
                        let _ = serve(
                            conn,
                            &upstream,
                            pace,
                            before_body.as_deref(),
                            &*handler,
                            &requests,
                        );
                    });
                }
            });
        }
        Proxy {
            addr,
            requests,
            stop,
        }
    }

    /// A proxy that corrupts the answer to `GET` of blob `digest`.
    pub fn corrupting(upstream: &str, digest: &Digest) -> Proxy {
        let suffix = format!("/blobs/{digest}");
        Proxy::start(upstream, move |r| Action::Forward {
            corrupt: r.method == "GET" && r.path().ends_with(&suffix),
        })
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    /// The requests of `kind` received so far.
    pub fn requests_of(&self, kind: Kind) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| Kind::of(r) == Some(kind))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// A request or status line and its headers (names lower-cased).
type Head = (String, Vec<(String, String)>);

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok(Some((first.trim_end().to_string(), headers)))
}

/// The status line and headers of an answer of `len` body bytes, on a
/// connection closed after it.
fn response_head(status: u16, headers: &[(String, String)], len: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Kiln-Test\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n\r\n"
    ));
    out.into_bytes()
}

/// Reads `length` bytes of request body, at `pace` when given.
fn read_body(
    reader: &mut impl Read,
    length: usize,
    pace: Option<(usize, Duration)>,
) -> std::io::Result<Vec<u8>> {
    let mut body = vec![0; length];
    match pace {
        None => reader.read_exact(&mut body)?,
        Some((bytes, pause)) => {
            let mut at = 0;
            while at < length {
                let end = (at + bytes.max(1)).min(length);
                reader.read_exact(&mut body[at..end])?;
                at = end;
                std::thread::sleep(pause);
            }
        }
    }
    Ok(body)
}

/// Makes the connection's close a reset (RST) rather than an orderly
/// FIN: SO_LINGER with a zero timeout, as a crashed peer or a middlebox
/// dropping the connection does. Takes effect when the last handle of the
/// socket is closed.
fn reset_on_close(conn: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, and a pointer to a live value of
    // the size passed.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn serve(
    conn: TcpStream,
    upstream: &str,
    pace: Option<(usize, Duration)>,
    before_body: Option<&BeforeBody>,
    handler: &Handler,
    requests: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    // Heads and bodies go out in separate writes: without this, Nagle and
    // delayed ACKs hold each answer ~40 ms.
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some((line, headers)) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let early = before_body.and_then(|decide| decide(&request));
    if let Some(Action::Reset) = early {
        // Mid-upload: half the body read, then the connection dropped.
        request.body = read_body(&mut reader, length / 2, pace)?;
        requests.lock().expect("requests").push(request);
        reset_on_close(&conn)?;
        return Ok(());
    }
    request.body = read_body(&mut reader, length, pace)?;
    requests.lock().expect("requests").push(request.clone());
    let action = match early {
        Some(action) => action,
        None => handler(&request),
    };
    let mut conn = conn;
    match action {
        Action::Respond {
            status,
            headers,
            body,
        } => {
            conn.write_all(&response_head(status, &headers, body.len()))?;
            conn.write_all(&body)?;
        }
        Action::Drip {
            status,
            headers,
            body,
            pause,
        } => {
            conn.write_all(&response_head(status, &headers, body.len()))?;
            for byte in body {
                std::thread::sleep(pause);
                // The client gave up: stop.
                conn.write_all(&[byte])?;
                conn.flush()?;
            }
        }
        Action::Late {
            after,
            status,
            body,
        } => {
            std::thread::sleep(after);
            let head = format!(
                "HTTP/1.1 {status} Kiln-Test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(&body)?;
        }
        Action::Silent => {
            // Returns when the client closes the connection.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            return Ok(());
        }
        Action::Reset => {
            reset_on_close(&conn)?;
            return Ok(());
        }
        action => {
            if let Action::ForwardLate(after) = action {
                std::thread::sleep(after);
            }
            let mut answer = forward(upstream, &request)?;
            if let Action::ForwardThenReset = action {
                reset_on_close(&conn)?;
                return Ok(());
            }
            let split = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
                .unwrap_or(answer.len());
            let (head, body) = answer.split_at_mut(split);
            let ok = head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200");
            let mut end = body.len();
            let mut length = None;
            let mut reset = false;
            match action {
                Action::Forward { corrupt: true } if ok => {
                    if let Some(last) = body.last_mut() {
                        *last ^= 0x01;
                    }
                }
                Action::ForwardCut if ok => end /= 2,
                Action::ForwardCutReset if ok => {
                    end /= 2;
                    reset = true;
                }
                Action::ForwardWrongLength(delta) if ok && !body.is_empty() => {
                    length = Some((body.len() as i64 + delta).max(0));
                }
                _ => {}
            }
            let body = &body[..end];
            let head = String::from_utf8_lossy(head)
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    // Written below: ours, and the wrong length when asked.
                    let replaced = l.starts_with("connection:")
                        || (length.is_some() && l.starts_with("content-length:"));
                    !replaced && !l.is_empty()
                })
                .map(|l| format!("{l}\r\n"))
                .collect::<String>();
            conn.write_all(head.as_bytes())?;
            if let Some(length) = length {
                conn.write_all(format!("Content-Length: {length}\r\n").as_bytes())?;
            }
            conn.write_all(b"Connection: close\r\n\r\n")?;
            conn.write_all(body)?;
            if reset {
                conn.flush()?;
                reset_on_close(&conn)?;
                return Ok(());
            }
        }
    }
    conn.flush()?;
    conn.shutdown(std::net::Shutdown::Both)
}

/// Sends `request` to `upstream` on a connection of its own; returns the
/// whole answer, head and body.
fn forward(upstream: &str, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_nodelay(true)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (k, v) in &request.headers {
        if k != "connection" {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&request.body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    Ok(answer)
}

/// Base64 of `user:password`, as in Docker's config `auths[…].auth`.
pub fn basic_auth(user: &str, password: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes `DIR/config.json` with `json`.
pub fn docker_config(dir: &Path, json: &serde_json::Value) {
    std::fs::create_dir_all(dir).expect("config dir");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(json).expect("json"),
    )
    .expect("writing config.json");
}

/// `GET path` from `addr` (`HOST:PORT`) over plain HTTP/1.0, without a
/// client library: what a registry holds, checked behind the back of the
/// client under test. Returns the status and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {}, {}\r\n\r\n",
        media_types::OCI_IMAGE_MANIFEST,
        media_types::OCI_IMAGE_INDEX
    )
    .expect("sending the request");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("reading the answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, answer[split..].to_vec())
}
