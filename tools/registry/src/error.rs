//! Turning HTTP failures into messages that say what the registry answered
//! or why it could not be reached; reading bodies within a cap; keeping
//! credentials out of quoted bodies.

use std::error::Error as _;

use crate::deadline::{Waits, ANSWER_TIMEOUT_VARIABLE, CONNECT_TIMEOUT_VARIABLE, TIMEOUT_VARIABLE};

use anyhow::{anyhow, bail};

/// At most this much of an error body is read and quoted in a message.
pub(crate) const BODY_EXCERPT: usize = 2048;

/// What replaces a credential in a quoted body.
const REDACTED: &str = "[redacted]";

/// A request that got no (complete) HTTP answer: says whether the registry
/// could not be reached, stayed silent, was too slow, broke off or speaks
/// plain HTTP where HTTPS was expected, naming `url` and, for a deadline
/// that passed, the deadline and the variable that sets it.
pub(crate) fn send_error(e: reqwest::Error, url: &str, waits: &Waits) -> anyhow::Error {
    // reqwest's own message repeats the URL; its sources say why.
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let plain_http = causes
        .iter()
        .any(|c| c.contains("InvalidContentType") || c.contains("invalid HTTP version"));
    let host = host_of(url);
    let d = &waits.deadlines;
    let what = if plain_http && url.starts_with("https://") {
        // rustls reads an HTTP answer as a corrupt TLS record.
        return anyhow!(
            "the request to {url} failed: this registry speaks plain HTTP; only loopback \
             registries may (localhost, 127.0.0.1, [::1] are spoken to over plain HTTP, \
             every other registry over HTTPS)"
        );
    } else if e.is_timeout() && e.is_connect() {
        return anyhow!(
            "could not connect to {host} within {} s, for {url} ({CONNECT_TIMEOUT_VARIABLE} \
             sets this deadline in seconds)",
            d.connect.as_secs()
        );
    } else if e.is_timeout() && !waits.total_passed() {
        return anyhow!(
            "{host} sent nothing for {} s while the answer to {url} was awaited \
             ({ANSWER_TIMEOUT_VARIABLE} sets this deadline in seconds)",
            d.answer.as_secs()
        );
    } else if e.is_timeout() {
        format!(
            "no complete answer from {url} within the deadline of {} s ({TIMEOUT_VARIABLE} \
             sets the base deadline in seconds)",
            waits.total.as_secs()
        )
    } else if e.is_connect() {
        format!("cannot reach the registry at {url}")
    } else if e.is_body() || e.is_decode() {
        format!("reading the answer from {url} failed")
    } else {
        format!("the request to {url} failed")
    };
    if causes.is_empty() {
        anyhow!("{what}: {e}")
    } else {
        anyhow!("{what}: {}", causes.join(": "))
    }
}

/// Whether `e` is a silence: no connection within the connect deadline, or
/// no byte within the silence deadline (not the whole deadline passing).
pub(crate) fn is_silence(e: &reqwest::Error, waits: &Waits) -> bool {
    e.is_timeout() && (e.is_connect() || !waits.total_passed())
}

/// `host[:port]` of `url`, for messages.
pub(crate) fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| url.to_string())
}

/// Whether a request that got no (complete) answer is worth another try:
/// the connection was refused, reset or timed out. Not a refused redirect
/// (a downgrade), a request that could not be built, or TLS spoken to a
/// plain HTTP server: those fail the same way every time.
pub(crate) fn is_transient(e: &reqwest::Error) -> bool {
    if e.is_builder() || e.is_redirect() || e.is_status() {
        return false;
    }
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("InvalidContentType") || text.contains("invalid HTTP version") {
            return false;
        }
        source = s.source();
    }
    true
}

/// Reads at most `limit` bytes of `response`'s body; `Ok((bytes, true))`
/// when there was more (the rest is never read). A `Content-Length` above
/// `limit` is not trusted either way: reading stops at `limit`.
pub(crate) async fn read_up_to(
    mut response: reqwest::Response,
    limit: usize,
) -> reqwest::Result<(Vec<u8>, bool)> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// Reads the whole body of `response` when it is at most `limit` bytes,
/// else fails saying so (`what` names the body, e.g. "the token answer").
pub(crate) async fn read_capped(
    response: reqwest::Response,
    limit: usize,
    what: &str,
    url: &str,
    waits: &Waits,
) -> anyhow::Result<Vec<u8>> {
    let (bytes, more) = read_up_to(response, limit)
        .await
        .map_err(|e| send_error(e, url, waits))?;
    if more {
        bail!("{what} from {url} is larger than {limit} bytes");
    }
    Ok(bytes)
}

/// The start of an error response's body (at most [`BODY_EXCERPT`] bytes
/// are read), as text on one line with anything that looks like a
/// credential, and each of `secrets`, replaced by `[redacted]`;
/// `(empty body)` when there is none.
pub(crate) async fn body_excerpt(response: reqwest::Response, secrets: &[&str]) -> String {
    let (bytes, more) = match read_up_to(response, BODY_EXCERPT).await {
        Ok(b) => b,
        Err(e) => return format!("(the body could not be read: {e})"),
    };
    excerpt(&bytes, more, secrets)
}

/// [`body_excerpt`] of bytes already read; `cut` says the body went on.
pub(crate) fn excerpt(bytes: &[u8], cut: bool, secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if cut && !text.ends_with(char::is_whitespace) {
        // The last word was cut: a credential's start is still one.
        words.pop();
    }
    let text = redact(&words.join(" "), secrets);
    if text.is_empty() && cut {
        return format!("(a body of more than {BODY_EXCERPT} bytes without a space: not quoted)");
    }
    match (text.is_empty(), cut) {
        (true, false) => "(empty body)".to_string(),
        (_, true) => format!("{text}…"),
        (false, false) => text,
    }
}

/// Field names whose values are credentials, in JSON (`"token": "…"`),
/// forms and queries (`password=…`) or headers (`Authorization: …`).
const SECRET_KEYS: &[&str] = &[
    "authorization",
    "access_token",
    "refresh_token",
    "identitytoken",
    "identity_token",
    "registrytoken",
    "token",
    "password",
    "passwd",
    "secret",
    "auth",
];

/// Replaces credentials in `text` (one line): the value after `Basic` and
/// `Bearer`, the values of [`SECRET_KEYS`] fields, JSON Web Tokens
/// (`eyJ…`), and every occurrence of each of `secrets`.
///
/// Hand-written rather than with a regex crate: four small scans, and the
/// workspace has no regex dependency.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, REDACTED);
    }
    let out = redact_schemes(&out);
    let out = redact_fields(&out);
    redact_jwts(&out)
}

/// Whether `c` may be part of a token (base64, base64url, hex, JWT dots).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_' | '.' | '~')
}

/// `Basic X` / `Bearer X` (any case): X replaced.
fn redact_schemes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, len)) = find_scheme(rest) {
        let (before, after) = rest.split_at(at + len);
        out.push_str(before);
        let value_len = after
            .find(|c: char| !is_token_char(c))
            .unwrap_or(after.len());
        if value_len > 0 {
            out.push_str(REDACTED);
        }
        rest = &after[value_len..];
    }
    out.push_str(rest);
    out
}

/// The first `basic ` or `bearer ` (a whole word, any case, one space
/// after it) in `text`: its position and length including the space.
fn find_scheme(text: &str) -> Option<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<(usize, usize)> = None;
    for word in ["basic ", "bearer "] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(word) {
            let at = from + i;
            let starts_word = lower[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric());
            if starts_word {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, word.len()));
                }
                break;
            }
            from = at + word.len();
        }
    }
    best
}

/// `KEY":"V"`, `KEY=V`, `KEY: V` for KEY in [`SECRET_KEYS`] (any case,
/// as the end of a name: `x_access_token` too): V replaced.
fn redact_fields(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        let key = SECRET_KEYS
            .iter()
            .find(|k| lower[i..].starts_with(*k) && !is_name_byte(bytes.get(i + k.len())));
        let Some(key) = key else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        };
        // After the key: an optional closing quote, spaces, `:` or `=`,
        // spaces, an optional opening quote, then the value.
        let mut j = i + key.len();
        if matches!(bytes.get(j), Some(b'"' | b'\'')) {
            j += 1;
        }
        while bytes.get(j) == Some(&b' ') {
            j += 1;
        }
        if !matches!(bytes.get(j), Some(b':' | b'=')) {
            i += key.len();
            continue;
        }
        j += 1;
        while bytes.get(j) == Some(&b' ') {
            j += 1;
        }
        let quote = match bytes.get(j) {
            Some(q @ (b'"' | b'\'')) => {
                j += 1;
                Some(*q)
            }
            _ => None,
        };
        let value_end = match quote {
            Some(q) => value_end_quoted(bytes, j, q),
            None => {
                j + text[j..]
                    .find([',', '&', ';', '}', ']', ' ', '"', '\''])
                    .unwrap_or(text.len() - j)
            }
        };
        // `Authorization: Basic X` is handled by the scheme pass; the
        // field pass must not swallow the scheme name only.
        let scheme_word = quote.is_none()
            && ["basic", "bearer"]
                .iter()
                .any(|w| text[j..value_end].eq_ignore_ascii_case(w));
        if value_end > j && !scheme_word {
            out.push_str(&text[copied..j]);
            out.push_str(REDACTED);
            copied = value_end;
        }
        i = value_end.max(i + key.len());
    }
    out.push_str(&text[copied..]);
    out
}

fn is_name_byte(b: Option<&u8>) -> bool {
    matches!(b, Some(c) if c.is_ascii_alphanumeric() || *c == b'_')
}

/// The end of a quoted value starting at `from` (backslash escapes skipped).
fn value_end_quoted(bytes: &[u8], from: usize, quote: u8) -> usize {
    let mut k = from;
    while k < bytes.len() {
        match bytes[k] {
            b'\\' => k += 2,
            c if c == quote => return k,
            _ => k += 1,
        }
    }
    bytes.len()
}

/// JSON Web Tokens (`eyJ` followed by token characters with two dots).
fn redact_jwts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("eyJ") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let len = after
            .find(|c: char| !is_token_char(c))
            .unwrap_or(after.len());
        if after[..len].matches('.').count() >= 2 {
            out.push_str(REDACTED);
        } else {
            out.push_str(&after[..len]);
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_fields_are_redacted() {
        let r = |s: &str| redact(s, &[]);
        assert_eq!(
            r("denied: Authorization: Basic dXNlcjpwYXNz, retry"),
            "denied: Authorization: Basic [redacted], retry"
        );
        assert_eq!(r("got bearer abc.def-ghi"), "got bearer [redacted]");
        assert_eq!(
            r(r#"{"token":"t0k3n","access_token": "x y","expires_in":60}"#),
            r#"{"token":"[redacted]","access_token": "[redacted]","expires_in":60}"#
        );
        assert_eq!(
            r("a?password=hunter2&user=u"),
            "a?password=[redacted]&user=u"
        );
        assert_eq!(
            r(
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#
            ),
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#
        );
        // Words that merely contain a key are left alone.
        assert_eq!(r("authentication required"), "authentication required");
        assert_eq!(r("tokens: 3"), "tokens: 3");
        assert_eq!(
            r("jwt eyJhbGciOi.eyJzdWIiOiIx.c2ln end"),
            "jwt [redacted] end"
        );
        assert_eq!(
            redact("echo s3cr3t-pass here", &["s3cr3t-pass"]),
            "echo [redacted] here"
        );
    }

    #[test]
    fn excerpts_are_bounded_and_drop_a_cut_word() {
        assert_eq!(excerpt(b"", false, &[]), "(empty body)");
        assert_eq!(excerpt(b"  a \n b ", false, &[]), "a b");
        assert_eq!(
            excerpt(b"not found Basic abcd", true, &[]),
            "not found Basic…"
        );
        assert_eq!(excerpt(b"x y ", true, &[]), "x y…");
    }
}
