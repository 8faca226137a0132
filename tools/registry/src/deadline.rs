//! The deadlines of registry and remote-cache requests: connecting, the
//! first byte of an answer (and every later byte: a silence), and the whole
//! transfer. They are separate so that a silent server fails fast while a
//! slow but moving transfer still completes.

use std::time::{Duration, Instant};

use anyhow::bail;

/// The environment variable that sets the transfer deadline's base, in
/// seconds.
pub const TIMEOUT_VARIABLE: &str = "KILN_REGISTRY_TIMEOUT";

/// The environment variable that sets the connect deadline, in seconds.
pub const CONNECT_TIMEOUT_VARIABLE: &str = "KILN_REGISTRY_CONNECT_TIMEOUT";

/// The environment variable that sets the silence deadline (the wait for
/// an answer's first byte, and any later stall), in seconds.
pub const ANSWER_TIMEOUT_VARIABLE: &str = "KILN_REGISTRY_ANSWER_TIMEOUT";

/// The transfer deadline's base when [`TIMEOUT_VARIABLE`] is not set: the
/// whole request (connecting, sending, the answer's last byte) must be
/// done by then.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The connect deadline when [`CONNECT_TIMEOUT_VARIABLE`] is not set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The silence deadline when [`ANSWER_TIMEOUT_VARIABLE`] is not set.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Blob transfers get one more second per this many bytes on top of the
/// base deadline: a registry slower than 1 MiB/s fails a blob transfer.
pub const MIN_BLOB_RATE: u64 = 1 << 20;

/// After the last byte of an upload, the registry gets one more second to
/// answer per this many bytes (it hashes the blob and may move it).
pub const UPLOAD_SETTLE_RATE: u64 = 32 << 20;

/// What the kernel's socket buffers (ours and the peer's) may hold of an
/// upload that the client counts as sent.
pub const SOCKET_BUFFERS: u64 = 8 << 20;

/// A request that got silence (no connection, or no byte within the
/// silence deadline) this many times is not tried again: with the default
/// deadlines a registry that accepts connections and never answers fails
/// within about a minute.
pub const SILENT_ATTEMPTS: u32 = 3;

/// The deadlines in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Establishing the connection (TCP and TLS).
    pub connect: Duration,
    /// From a request sent (an upload: its last byte) to the answer's
    /// first byte, and between bytes of the answer.
    pub answer: Duration,
    /// The base of the whole request's deadline (see [`Deadlines::transfer`]).
    pub transfer: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            connect: DEFAULT_CONNECT_TIMEOUT,
            answer: DEFAULT_ANSWER_TIMEOUT,
            transfer: DEFAULT_TIMEOUT,
        }
    }
}

impl Deadlines {
    /// The defaults, with each variable that is set.
    pub fn from_env() -> anyhow::Result<Deadlines> {
        Ok(Deadlines {
            connect: seconds_from_env(CONNECT_TIMEOUT_VARIABLE, DEFAULT_CONNECT_TIMEOUT)?,
            answer: seconds_from_env(ANSWER_TIMEOUT_VARIABLE, DEFAULT_ANSWER_TIMEOUT)?,
            transfer: seconds_from_env(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)?,
        })
    }

    /// The whole deadline of a request moving `size` bytes of a blob
    /// (`None`: anything else): the base plus a second per
    /// [`MIN_BLOB_RATE`] bytes.
    pub fn transfer(&self, size: Option<u64>) -> Duration {
        self.transfer + Duration::from_secs(size.unwrap_or(0) / MIN_BLOB_RATE)
    }

    /// How long a streamed upload may go without its body being read (nor
    /// waiting for its source) before it is a silence: the silence
    /// deadline, plus the time the socket buffers may take to drain at
    /// [`MIN_BLOB_RATE`] (what was handed over last may still be on its
    /// way; at most [`SOCKET_BUFFERS`]), plus a second per
    /// [`UPLOAD_SETTLE_RATE`] bytes for the registry to store the blob.
    pub fn upload_silence(&self, size: u64) -> Duration {
        let buffered = size.min(SOCKET_BUFFERS) as f64 / MIN_BLOB_RATE as f64;
        self.answer
            + Duration::from_secs_f64(buffered)
            + Duration::from_secs(size / UPLOAD_SETTLE_RATE)
    }

    /// What a request started now waits for, to explain a timeout.
    pub(crate) fn waits(&self, size: Option<u64>) -> Waits {
        Waits {
            deadlines: *self,
            total: self.transfer(size),
            started: Instant::now(),
        }
    }
}

/// The deadlines of one request and when it started, for its error
/// message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waits {
    pub deadlines: Deadlines,
    pub total: Duration,
    pub started: Instant,
}

impl Waits {
    /// Whether a timeout now is the whole deadline's (else a silence's).
    pub fn total_passed(&self) -> bool {
        self.started.elapsed() + Duration::from_millis(250) >= self.total
    }
}

fn seconds_from_env(variable: &str, default: Duration) -> anyhow::Result<Duration> {
    match std::env::var(variable) {
        Err(_) => Ok(default),
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
            _ => bail!("{variable}={v:?} is not a positive number of seconds"),
        },
    }
}
