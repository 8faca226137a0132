//! Where credentials may go and which URLs a registry may send us to.
//!
//! - Credentials (Basic, or the registry's bearer token) are attached only
//!   to URLs of the registry's own origin: the same scheme, host and port.
//!   An upload `Location` elsewhere gets nothing beyond what its URL
//!   carries (as Docker's client keeps auth per endpoint).
//! - An `https` registry never sends us to plain `http` (realm, upload
//!   location, redirect): that is refused as a downgrade.
//! - Plain `http` is spoken to loopback hosts only (`localhost`,
//!   `127.0.0.0/8`, `::1`).

use std::net::IpAddr;

use anyhow::{anyhow, bail};
use reqwest::Url;

/// Whether `url`'s host is a loopback host.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Same scheme, host and port (the port the scheme implies when none is
/// written).
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Checks that `target`, a URL the registry at `registry` named as `what`
/// (e.g. "upload location", "token service"), may be contacted at all:
/// `https` always; plain `http` only from a plain-`http` registry and to a
/// loopback host.
pub(crate) fn check_target(registry: &Url, target: &Url, what: &str) -> anyhow::Result<()> {
    match target.scheme() {
        "https" => Ok(()),
        "http" if registry.scheme() == "https" => bail!(
            "refusing the {what} {target}: the registry {} speaks https and names a plain \
             http URL (a downgrade that would send requests, and credentials, in cleartext)",
            origin_of(registry)
        ),
        "http" if !is_loopback(target) => {
            bail!("refusing the {what} {target}: plain http is spoken to loopback hosts only")
        }
        "http" => Ok(()),
        other => Err(anyhow!(
            "refusing the {what} {target}: scheme {other:?} is neither https nor http"
        )),
    }
}

/// `scheme://host[:port]` of `url`.
pub(crate) fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback(&u("http://localhost:5000/")));
        assert!(is_loopback(&u("http://127.0.0.2:1/")));
        assert!(is_loopback(&u("http://[::1]:1/")));
        assert!(!is_loopback(&u("http://10.0.0.1/")));
        assert!(!is_loopback(&u("http://localhost.example.com/")));
    }

    #[test]
    fn origins() {
        assert!(same_origin(
            &u("https://r.example/v2/"),
            &u("https://r.example:443/v2/x?y")
        ));
        assert!(!same_origin(
            &u("https://r.example/"),
            &u("http://r.example:443/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:5000/"),
            &u("http://127.0.0.2:5000/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:5000/"),
            &u("http://127.0.0.1:5001/")
        ));
    }

    #[test]
    fn targets() {
        let https = u("https://r.example/");
        let http = u("http://127.0.0.1:5000/");
        assert!(check_target(&https, &u("https://auth.example/token"), "token service").is_ok());
        let e = check_target(&https, &u("http://127.0.0.1/token"), "token service")
            .unwrap_err()
            .to_string();
        assert!(e.contains("downgrade"), "{e}");
        assert!(check_target(&http, &u("http://127.0.0.2:9/up"), "upload location").is_ok());
        let e = check_target(&http, &u("http://10.1.1.1/token"), "token service")
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback hosts only"), "{e}");
        assert!(check_target(&http, &u("ftp://127.0.0.1/"), "x").is_err());
    }
}
