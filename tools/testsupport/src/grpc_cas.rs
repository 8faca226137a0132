//! An in-process gRPC remote cache (REAPI `ContentAddressableStorage`
//! FindMissingBlobs and BatchReadBlobs, `google.bytestream.ByteStream/Read`)
//! with faults to inject: a refusal with a status, a hang, a stream that
//! breaks once at a given offset. It records every call (its method,
//! instance or resource name and read offset), so tests can check what the
//! client asked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kiln_reapi::bytestream::byte_stream_server::{ByteStream, ByteStreamServer};
use kiln_reapi::bytestream::{ReadRequest, ReadResponse};
use kiln_reapi::execution::batch_read_blobs_response::Response as BatchResponse;
use kiln_reapi::execution::content_addressable_storage_server::{
    ContentAddressableStorage, ContentAddressableStorageServer,
};
use kiln_reapi::execution::{
    BatchReadBlobsRequest, BatchReadBlobsResponse, FindMissingBlobsRequest,
    FindMissingBlobsResponse,
};
use kiln_reapi::rpc;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// One call the cache got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `FindMissingBlobs`, `BatchReadBlobs` or `Read`.
    pub method: &'static str,
    /// The instance name (CAS methods) or resource name (`Read`).
    pub name: String,
    /// `Read`'s `read_offset` (0 for the others).
    pub offset: i64,
}

/// The faults in force.
#[derive(Default)]
struct Faults {
    /// Every call fails with this code.
    refuse: Option<Code>,
    /// Every call is left unanswered.
    hang: bool,
    /// The next `Read` that reaches this offset fails there with
    /// UNAVAILABLE (once).
    break_at: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Blobs by sha256 hex.
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    faults: Mutex<Faults>,
    calls: Mutex<Vec<Call>>,
}

/// Bytes per `ReadResponse`.
const CHUNK: usize = 64 << 10;

/// A gRPC cache serving on 127.0.0.1 (or a unix socket) from its own
/// thread until dropped.
pub struct GrpcCas {
    /// `grpc://127.0.0.1:PORT` or `unix:PATH`.
    pub url: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GrpcCas {
    /// A cache on a free TCP port of 127.0.0.1.
    pub fn start() -> GrpcCas {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr: SocketAddr = listener.local_addr().expect("local address");
        Self::serve(format!("grpc://{addr}"), move || {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            Incoming::Tcp(tokio_stream::wrappers::TcpListenerStream::new(listener))
        })
    }

    /// A cache on unix socket `path`.
    pub fn start_unix(path: &Path) -> GrpcCas {
        let listener = std::os::unix::net::UnixListener::bind(path).expect("binding the socket");
        listener.set_nonblocking(true).expect("non-blocking");
        Self::serve(format!("unix:{}", path.display()), move || {
            let listener = tokio::net::UnixListener::from_std(listener).expect("tokio listener");
            Incoming::Unix(tokio_stream::wrappers::UnixListenerStream::new(listener))
        })
    }

    fn serve(url: String, incoming: impl FnOnce() -> Incoming + Send + 'static) -> GrpcCas {
        let state = Arc::new(State::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = Service(state.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let router = tonic::transport::Server::builder()
                    .add_service(ContentAddressableStorageServer::new(service.clone()))
                    .add_service(ByteStreamServer::new(service));
                let served = async move {
                    match incoming() {
                        Incoming::Tcp(s) => router.serve_with_incoming(s).await,
                        Incoming::Unix(s) => router.serve_with_incoming(s).await,
                    }
                };
                // Not a graceful shutdown: a client's idle connection (or a
                // hung call) would keep it waiting. The connections' tasks
                // end with this runtime.
                tokio::select! {
                    served = served => served.expect("serving the gRPC cache"),
                    _ = stopped => {}
                }
            });
        });
        GrpcCas {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stores `data`; returns its sha256 hex.
    pub fn put(&self, data: &[u8]) -> String {
        let hex = kiln_oci::sha256_bytes(data).hex().to_string();
        self.put_as(&hex, data);
        hex
    }

    /// Stores `data` under `hex`, whatever its hash (a corrupt cache).
    pub fn put_as(&self, hex: &str, data: &[u8]) {
        self.state
            .blobs
            .lock()
            .unwrap()
            .insert(hex.to_string(), data.to_vec());
    }

    /// Every call fails with `code` from now on.
    pub fn refuse(&self, code: Code) {
        self.state.faults.lock().unwrap().refuse = Some(code);
    }

    /// Every call is left unanswered from now on.
    pub fn hang(&self) {
        self.state.faults.lock().unwrap().hang = true;
    }

    /// The next `Read` reaching `offset` fails there with UNAVAILABLE, once.
    pub fn break_once_at(&self, offset: u64) {
        self.state.faults.lock().unwrap().break_at = Some(offset);
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }
}

impl Drop for GrpcCas {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Incoming {
    Tcp(tokio_stream::wrappers::TcpListenerStream),
    Unix(tokio_stream::wrappers::UnixListenerStream),
}

#[derive(Clone)]
struct Service(Arc<State>);

impl Service {
    /// Records the call and applies the refusal and hang faults.
    async fn enter(&self, method: &'static str, name: &str, offset: i64) -> Result<(), Status> {
        self.0.calls.lock().unwrap().push(Call {
            method,
            name: name.to_string(),
            offset,
        });
        let (refuse, hang) = {
            let f = self.0.faults.lock().unwrap();
            (f.refuse, f.hang)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        match refuse {
            Some(code) => Err(Status::new(code, "refused by the test cache")),
            None => Ok(()),
        }
    }

    fn blob(&self, hash: &str) -> Option<Vec<u8>> {
        self.0.blobs.lock().unwrap().get(hash).cloned()
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ContentAddressableStorage for Service {
    async fn find_missing_blobs(
        &self,
        request: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        let request = request.into_inner();
        self.enter("FindMissingBlobs", &request.instance_name, 0)
            .await?;
        let missing = request
            .blob_digests
            .into_iter()
            .filter(|d| self.blob(&d.hash).is_none())
            .collect();
        Ok(Response::new(FindMissingBlobsResponse {
            missing_blob_digests: missing,
        }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<BatchReadBlobsRequest>,
    ) -> Result<Response<BatchReadBlobsResponse>, Status> {
        let request = request.into_inner();
        self.enter("BatchReadBlobs", &request.instance_name, 0)
            .await?;
        let responses = request
            .digests
            .into_iter()
            .map(|d| {
                let blob = self.blob(&d.hash);
                let status = rpc::Status {
                    code: if blob.is_some() {
                        0
                    } else {
                        Code::NotFound as i32
                    },
                    message: String::new(),
                    details: Vec::new(),
                };
                BatchResponse {
                    digest: Some(d),
                    data: blob.unwrap_or_default(),
                    compressor: 0,
                    status: Some(status),
                }
            })
            .collect();
        Ok(Response::new(BatchReadBlobsResponse { responses }))
    }
}

#[tonic::async_trait]
impl ByteStream for Service {
    type ReadStream = ReadStream;

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadStream>, Status> {
        let request = request.into_inner();
        self.enter("Read", &request.resource_name, request.read_offset)
            .await?;
        // [{instance}/]blobs/{hash}/{size}
        let parts: Vec<&str> = request.resource_name.rsplitn(4, '/').collect();
        let (hash, blobs) = match parts.as_slice() {
            [_, hash, "blobs", ..] => (hash.to_string(), true),
            _ => (String::new(), false),
        };
        if !blobs {
            return Err(Status::invalid_argument("not a blob resource name"));
        }
        let data = self
            .blob(&hash)
            .ok_or_else(|| Status::not_found("no such blob"))?;
        let offset = usize::try_from(request.read_offset)
            .ok()
            .filter(|o| *o <= data.len())
            .ok_or_else(|| Status::out_of_range("read_offset"))?;
        let break_at = self.0.faults.lock().unwrap().break_at.take();
        let mut items = Vec::new();
        let mut at = offset;
        while at < data.len() {
            let mut end = (at + CHUNK).min(data.len());
            if let Some(b) = break_at
                .map(|b| b as usize)
                .filter(|b| *b > at && *b <= end)
            {
                end = b;
                items.push(Ok(ReadResponse {
                    data: data[at..end].to_vec(),
                }));
                items.push(Err(Status::unavailable("the test cache broke the stream")));
                break;
            }
            items.push(Ok(ReadResponse {
                data: data[at..end].to_vec(),
            }));
            at = end;
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }
}
