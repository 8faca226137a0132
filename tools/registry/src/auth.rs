//! The registry's authentication challenge (`WWW-Authenticate`) and bearer
//! tokens from its token service, cached per scope.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use serde::Deserialize;

use crate::credentials::{Lookup, Secret};
use crate::deadline::Deadlines;
use crate::error::{body_excerpt, read_capped, send_error};

/// Client id sent with OAuth2 requests, as Docker sends `docker`.
const CLIENT_ID: &str = "rules_kiln";

/// Token lifetime when the token service does not say (the distribution
/// spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Token service answers larger than this are refused (a token answer is
/// a few KiB; the cap keeps a hostile service from filling memory).
pub const MAX_TOKEN_ANSWER: usize = 256 << 10;

/// A token is renewed this long before it expires, so that it does not
/// expire between being picked and being checked by the registry.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// How the registry wants to be authenticated, from `GET /v2/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `/v2/` answered without asking for anything.
    None,
    /// `WWW-Authenticate: Basic …`: credentials on every request.
    Basic,
    /// `WWW-Authenticate: Bearer realm=…,service=…`: tokens from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` header value that
    /// this client can answer (Bearer or Basic).
    pub fn parse(value: &str) -> Option<Challenge> {
        let (scheme, params) = match value.trim().split_once(char::is_whitespace) {
            Some((s, p)) => (s, p),
            None => (value.trim(), ""),
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(params);
        let realm = params.get("realm")?.clone();
        Some(Challenge::Bearer {
            realm,
            service: params.get("service").cloned(),
        })
    }

    /// The challenge among a response's `WWW-Authenticate` headers.
    pub fn from_headers(headers: &HeaderMap) -> Option<Challenge> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Challenge::parse)
    }
}

/// `key=value` or `key="quoted, value"` pairs separated by commas; keys
/// lower-cased. Quoted values may contain commas (`scope="…:pull,push"`)
/// and backslash escapes.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_string();
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if !key.is_empty() {
            out.insert(key, value);
        }
        if chars.peek().is_none() {
            return out;
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct CachedToken {
    token: String,
    renew_at: Instant,
}

/// Bearer tokens of one registry, keyed by the scopes they were asked for.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl TokenCache {
    fn get(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(key)
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.token.clone())
    }

    /// Every token held, to redact from quoted bodies.
    pub fn tokens(&self) -> Vec<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.values().map(|t| t.token.clone()).collect()
    }

    fn put(&self, key: String, token: String, lifetime: Duration) {
        let renew_at = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(key, CachedToken { token, renew_at });
    }

    /// A token for `scopes` (e.g. `repository:kiln/base:pull`), from the
    /// cache or from the token service at `realm`:
    /// - an identity token: `POST realm` with `grant_type=refresh_token`
    ///   (OAuth2, as Docker does);
    /// - user and password: `GET realm?service=…&scope=…` with Basic auth;
    /// - no credentials: the same GET, anonymous.
    ///
    /// The caller has checked that `realm` may be contacted (see
    /// `origin::check_target`) and gives an `http` client that does not
    /// follow a redirect to another origin when there are credentials.
    #[allow(clippy::too_many_arguments)]
    pub async fn token(
        &self,
        http: &reqwest::Client,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        lookup: &Lookup,
        deadlines: &Deadlines,
    ) -> anyhow::Result<String> {
        let waits = deadlines.waits(None);
        let key = scopes.join(" ");
        if let Some(t) = self.get(&key) {
            return Ok(t);
        }
        let request = match lookup.credentials().map(|c| &c.secret) {
            Some(Secret::IdentityToken { token }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", token.clone()),
                    ("client_id", CLIENT_ID.to_string()),
                    ("scope", key.clone()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_string()));
                }
                http.post(realm).form(&form)
            }
            secret => {
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(s) = service {
                    query.push(("service", s));
                }
                for s in scopes {
                    query.push(("scope", s));
                }
                if let Some(Secret::Basic { username, .. }) = secret {
                    query.push(("account", username));
                }
                let req = http.get(realm).query(&query);
                match secret {
                    Some(Secret::Basic { username, password }) => {
                        req.basic_auth(username, Some(password))
                    }
                    _ => req,
                }
            }
        };
        let what = || {
            format!(
                "getting a token for {key:?} from the token service {realm} of {registry} {}",
                lookup.describe()
            )
        };
        let response = request
            .timeout(waits.total)
            .send()
            .await
            .map_err(|e| send_error(e, realm, &waits))
            .with_context(what)?;
        let status = response.status();
        if !status.is_success() {
            let url = response.url().to_string();
            let secret = match lookup.credentials().map(|c| &c.secret) {
                Some(Secret::Basic { password, .. }) => password.as_str(),
                Some(Secret::IdentityToken { token }) => token.as_str(),
                None => "",
            };
            let body = body_excerpt(response, &[secret]).await;
            return Err(anyhow!("HTTP {status} from {url}: {body}")).with_context(what);
        }
        let body = read_capped(
            response,
            MAX_TOKEN_ANSWER,
            "the token answer",
            realm,
            &waits,
        )
        .await
        .with_context(what)?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| anyhow!("the token service's answer is not a token JSON: {e}"))
            .with_context(what)?;
        let token = parsed
            .access_token
            .or(parsed.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("the token service's answer has no token"))
            .with_context(what)?;
        // Checked here, where the token's origin is known, rather than
        // failing every request with "failed to parse header value".
        if let Some(why) = crate::credentials::unsendable(&token) {
            return Err(anyhow!(
                "the token service's answer holds a token with {why}, which cannot be sent \
                 in an Authorization header"
            ))
            .with_context(what);
        }
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(anyhow!(
                "the token service's answer holds a token with characters that cannot be \
                 sent in an Authorization header (only visible ASCII can)"
            ))
            .with_context(what);
        }
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .max(DEFAULT_TOKEN_LIFETIME);
        self.put(key, token.clone(), lifetime);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://127.0.0.1:1/token"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: None
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="kiln""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Basic"), Some(Challenge::Basic));
        assert_eq!(Challenge::parse(r#"Negotiate x"#), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        let p = parse_params(r#"a="x\"y, z", B=plain , c="#);
        assert_eq!(p["a"], "x\"y, z");
        assert_eq!(p["b"], "plain");
        assert_eq!(p["c"], "");
    }
}
