//! Retrying what a registry fails transiently: 408, 429 and 5xx answers,
//! connections that break or time out. Refusals (401, 403, 404, 405, any
//! other 4xx) are final. Waits grow exponentially with jitter, and a
//! `Retry-After` the registry sends is honoured (within a bound).

use std::time::{Duration, SystemTime};

use anyhow::bail;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// The environment variable that sets how many times a request is tried
/// in all (1: no retry).
pub const ATTEMPTS_VARIABLE: &str = "KILN_REGISTRY_ATTEMPTS";

/// How transient failures are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure (before jitter).
    pub base_delay: Duration,
    /// No computed wait is longer.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is cut to it: a registry cannot
    /// park a release for an hour.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The default policy, with [`ATTEMPTS_VARIABLE`] when it is set.
    pub fn from_env() -> anyhow::Result<RetryPolicy> {
        let mut policy = RetryPolicy::default();
        if let Ok(v) = std::env::var(ATTEMPTS_VARIABLE) {
            if !v.trim().is_empty() {
                match v.trim().parse::<u32>() {
                    Ok(n) if (1..=100).contains(&n) => policy.attempts = n,
                    _ => {
                        bail!("{ATTEMPTS_VARIABLE}={v:?} is not a number of attempts from 1 to 100")
                    }
                }
            }
        }
        Ok(policy)
    }

    /// The wait before the next try, after `failed` tries failed (1 after
    /// the first). `jitter` in [0, 1) picks a point in the upper half of
    /// the exponential step, so that clients that failed together do not
    /// come back together; `retry_after` (the registry's own wish) wins.
    pub fn delay(&self, failed: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let doubling = failed.saturating_sub(1).min(20);
        let step = self
            .base_delay
            .saturating_mul(1u32 << doubling)
            .min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        step / 2 + step.mul_f64(jitter / 2.0)
    }

    /// [`RetryPolicy::delay`] with a random jitter.
    pub fn next_delay(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(failed, retry_after, fastrand::f64())
    }
}

/// Whether an answer with `status` is worth trying again: the registry is
/// overloaded, restarting or behind a proxy that lost its upstream.
pub fn transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The wait a `Retry-After` header asks for: delta-seconds, or an HTTP
/// date (a date in the past means now).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn delays_double_within_jitter_and_stop_at_the_cap() {
        let p = RetryPolicy::default();
        // Without jitter: half the step; with the most: the whole step.
        assert_eq!(p.delay(1, None, 0.0), Duration::from_millis(100));
        assert_eq!(p.delay(1, None, 1.0), Duration::from_millis(200));
        assert_eq!(p.delay(2, None, 1.0), Duration::from_millis(400));
        assert_eq!(p.delay(3, None, 0.5), Duration::from_millis(600));
        assert_eq!(p.delay(30, None, 1.0), p.max_delay);
        for failed in 1..10 {
            let d = p.next_delay(failed, None);
            let step = (p.base_delay * (1 << (failed - 1))).min(p.max_delay);
            assert!(d >= step / 2 && d <= step, "{failed}: {d:?}");
        }
    }

    #[test]
    fn retry_after_wins_but_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), 0.9),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600)), 0.0),
            p.max_retry_after
        );
    }

    #[test]
    fn retry_after_header_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&m, now)
        };
        assert_eq!(h("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            h("Sun, 06 Nov 1994 08:49:40 GMT"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(h("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(h("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn which_statuses_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 501] {
            assert!(!transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
