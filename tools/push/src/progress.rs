//! What a push tells the person running it, on stderr: on a terminal a live
//! line per blob in flight (bytes sent, rate), redrawn in place; otherwise
//! (CI logs) a line per finished blob. Either way a summary at the end.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts for the summary.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub mounted: u64,
    pub copied: u64,
    pub present: u64,
    pub manifests_written: u64,
    pub manifests_present: u64,
    pub tags_written: u64,
    pub tags_unchanged: u64,
}

struct InFlight {
    id: u64,
    label: String,
    size: u64,
    sent: Arc<AtomicU64>,
    started: Instant,
}

struct State {
    tally: Tally,
    in_flight: Vec<InFlight>,
    next_id: u64,
    /// Live lines drawn last (to erase before the next message).
    drawn: usize,
}

pub struct Progress {
    live: bool,
    started: Instant,
    state: Mutex<State>,
}

/// A blob being uploaded: its byte counter, and its place among the live
/// lines until [`Progress::finish_upload`].
pub struct Upload {
    id: u64,
    pub sent: Arc<AtomicU64>,
    started: Instant,
}

impl Progress {
    /// Live lines when stderr is a terminal.
    pub fn new() -> Progress {
        Self::with_live(std::io::stderr().is_terminal())
    }

    pub fn with_live(live: bool) -> Progress {
        Progress {
            live,
            started: Instant::now(),
            state: Mutex::new(State {
                tally: Tally::default(),
                in_flight: Vec::new(),
                next_id: 0,
                drawn: 0,
            }),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prints `kiln-push: <text>` above the live lines.
    pub fn line(&self, text: &str) {
        let mut state = self.lock();
        let mut err = std::io::stderr().lock();
        if self.live {
            erase(&mut err, state.drawn);
            let _ = writeln!(err, "kiln-push: {text}");
            state.drawn = draw(&mut err, &state.in_flight);
        } else {
            let _ = writeln!(err, "kiln-push: {text}");
        }
    }

    pub fn count(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.lock().tally);
    }

    pub fn tally(&self) -> Tally {
        self.lock().tally.clone()
    }

    /// A blob upload starts.
    pub fn start_upload(&self, label: String, size: u64) -> Upload {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let sent = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        state.in_flight.push(InFlight {
            id,
            label,
            size,
            sent: sent.clone(),
            started,
        });
        Upload { id, sent, started }
    }

    /// The upload is done (or failed): off the live lines; on success a
    /// line `<verb> blob <digest> (<size> bytes) in <t> s, <rate>`.
    pub fn finish_upload(&self, upload: Upload, done: Option<String>) {
        {
            let mut state = self.lock();
            state.in_flight.retain(|f| f.id != upload.id);
        }
        if let Some(text) = done {
            let elapsed = upload.started.elapsed();
            let bytes = upload.sent.load(Ordering::Relaxed);
            self.line(&format!(
                "{text} in {:.2} s, {}",
                elapsed.as_secs_f64(),
                rate(bytes, elapsed)
            ));
        } else {
            self.redraw();
        }
    }

    /// Redraws the live lines (called periodically while uploads run).
    pub fn redraw(&self) {
        if !self.live {
            return;
        }
        let mut state = self.lock();
        let mut err = std::io::stderr().lock();
        erase(&mut err, state.drawn);
        state.drawn = draw(&mut err, &state.in_flight);
    }

    /// Erases the live lines and prints the summary.
    pub fn summary(&self) {
        let t = self.tally();
        {
            let mut state = self.lock();
            let mut err = std::io::stderr().lock();
            if self.live {
                erase(&mut err, state.drawn);
                state.drawn = 0;
            }
        }
        self.line(&summary_text(&t, self.started.elapsed()));
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// The summary line: what was moved, what the registry had, and how long.
pub fn summary_text(t: &Tally, wall: Duration) -> String {
    let mut text = format!(
        "done in {:.2} s: {} blobs uploaded ({} bytes), {} mounted, {} copied, {} already present; \
         {} manifests written, {} already present; {} tags set, {} unchanged",
        wall.as_secs_f64(),
        t.uploaded,
        t.uploaded_bytes,
        t.mounted,
        t.copied,
        t.present,
        t.manifests_written,
        t.manifests_present,
        t.tags_written,
        t.tags_unchanged
    );
    if t.uploaded == 0
        && t.mounted == 0
        && t.copied == 0
        && t.manifests_written == 0
        && t.tags_written == 0
    {
        text.push_str(" (nothing to do: everything was in place)");
    }
    text
}

fn erase(err: &mut impl Write, lines: usize) {
    if lines > 0 {
        // Up `lines` lines, to column 1, and clear to the end of the screen.
        let _ = write!(err, "\x1b[{lines}F\x1b[J");
    }
}

fn draw(err: &mut impl Write, in_flight: &[InFlight]) -> usize {
    for f in in_flight {
        let sent = f.sent.load(Ordering::Relaxed);
        let _ = writeln!(
            err,
            "  uploading {} {}/{} {}",
            f.label,
            human(sent),
            human(f.size),
            rate(sent, f.started.elapsed())
        );
    }
    let _ = err.flush();
    in_flight.len()
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "-".to_string();
    }
    format!("{}/s", human((bytes as f64 / secs) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(rate(10 << 20, Duration::from_secs(2)), "5.0 MiB/s");
    }

    #[test]
    fn live_lines_show_each_blob_in_flight_and_are_erased_in_place() {
        let sent = Arc::new(AtomicU64::new(1536));
        let in_flight = vec![
            InFlight {
                id: 0,
                label: "sha256:0123456789ab".into(),
                size: 4096,
                sent: sent.clone(),
                started: Instant::now() - Duration::from_secs(1),
            },
            InFlight {
                id: 1,
                label: "sha256:ba9876543210".into(),
                size: 10 << 20,
                sent: Arc::new(AtomicU64::new(0)),
                started: Instant::now(),
            },
        ];
        let mut out = Vec::new();
        assert_eq!(draw(&mut out, &in_flight), 2);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("  uploading sha256:0123456789ab 1.5 KiB/4.0 KiB "),
            "{text}"
        );
        assert!(lines[0].ends_with("/s"), "{text}");
        assert!(
            lines[1].starts_with("  uploading sha256:ba9876543210 0 B/10.0 MiB "),
            "{text}"
        );
        let mut out = Vec::new();
        erase(&mut out, 2);
        assert_eq!(out, b"\x1b[2F\x1b[J");
        let mut out = Vec::new();
        erase(&mut out, 0);
        assert!(out.is_empty());
    }

    #[test]
    fn uploads_leave_the_live_lines_when_done() {
        let p = Progress::with_live(false);
        let a = p.start_upload("a".into(), 10);
        let b = p.start_upload("b".into(), 20);
        assert_eq!(p.lock().in_flight.len(), 2);
        p.finish_upload(a, None);
        let left: Vec<String> = p.lock().in_flight.iter().map(|f| f.label.clone()).collect();
        assert_eq!(left, vec!["b".to_string()]);
        p.finish_upload(b, None);
        assert!(p.lock().in_flight.is_empty());
    }

    #[test]
    fn summary_says_when_nothing_was_done() {
        let t = Tally {
            present: 3,
            tags_unchanged: 1,
            ..Tally::default()
        };
        let s = summary_text(&t, Duration::from_millis(1500));
        assert!(
            s.starts_with("done in 1.50 s: 0 blobs uploaded (0 bytes)"),
            "{s}"
        );
        assert!(
            s.ends_with("(nothing to do: everything was in place)"),
            "{s}"
        );
        let t = Tally {
            uploaded: 2,
            uploaded_bytes: 10,
            ..Tally::default()
        };
        let s = summary_text(&t, Duration::ZERO);
        assert!(s.contains("2 blobs uploaded (10 bytes)"), "{s}");
        assert!(!s.contains("nothing to do"), "{s}");
    }
}
