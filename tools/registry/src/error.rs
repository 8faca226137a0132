//! Turning HTTP failures into messages that say what the registry answered
//! or why it could not be reached.

use std::error::Error as _;

use anyhow::anyhow;

/// At most this much of an error body is quoted in a message.
const BODY_EXCERPT: usize = 2048;

/// A request that got no HTTP answer: says whether the registry could not
/// be reached, was too slow, or broke off, naming `url`.
pub(crate) fn send_error(e: reqwest::Error, url: &str) -> anyhow::Error {
    let what = if e.is_connect() {
        format!("cannot reach the registry at {url}")
    } else if e.is_timeout() {
        format!("no answer from {url} in time")
    } else if e.is_body() || e.is_decode() {
        format!("reading the answer from {url} failed")
    } else {
        format!("the request to {url} failed")
    };
    // reqwest's own message repeats the URL; its sources say why.
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        anyhow!("{what}: {e}")
    } else {
        anyhow!("{what}: {}", causes.join(": "))
    }
}

/// The start of an error response's body, as text on one line;
/// `(empty body)` when there is none.
pub(crate) async fn body_excerpt(response: reqwest::Response) -> String {
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return format!("(the body could not be read: {e})"),
    };
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_EXCERPT)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match (text.is_empty(), bytes.len() > BODY_EXCERPT) {
        (true, _) => "(empty body)".to_string(),
        (false, true) => format!("{text}…"),
        (false, false) => text,
    }
}
