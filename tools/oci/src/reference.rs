//! Repository names and tags, checked against the OCI distribution spec
//! grammar before anything talks to a registry or a container engine.
//!
//! Grammar (distribution spec, "Pulling manifests" and docker/reference):
//! - path component: `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`
//! - host: dot-separated labels `[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?` or a
//!   bracketed IPv6 address, optionally followed by `:PORT` (1..65535)
//! - tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
//! - `HOST/PATH` together at most 255 characters.
//!
//! Two readings of a name share that grammar: [`Repository`] and
//! [`TaggedName`] (kiln-push, kiln-load) need the registry host where a push
//! must never silently go to Docker Hub; [`RepoRef`] and [`ImageRef`]
//! (kiln-pull, the registry client) read names as `docker pull` does, a name
//! without a host being a Docker Hub one.

use std::fmt;
use std::net::Ipv6Addr;

use crate::digest::Digest;

/// Longest `HOST[:PORT]/PATH` most registries and clients accept.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag allowed by the distribution spec.
pub const MAX_TAG_LEN: usize = 128;

/// Why a name or tag was rejected. The caller adds which flag and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, NameError> {
    Err(NameError(msg.into()))
}

fn err_msg(msg: impl Into<String>) -> NameError {
    NameError(msg.into())
}

/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// True for the names Docker accepts for Docker Hub (in image references
/// and as keys of its config.json).
pub fn is_docker_hub_alias(host: &str) -> bool {
    matches!(host, "docker.io" | "index.docker.io" | DOCKER_HUB_REGISTRY)
}

/// Loopback registries (`localhost`, `127.0.0.1`, `[::1]`; `host` without
/// its port) are spoken to over plain HTTP (a local test registry rarely has
/// a certificate); everything else needs HTTPS.
pub fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// A repository in a registry: `HOST[:PORT]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `host[:port]` exactly as written (e.g. `127.0.0.1:5000`, `[::1]:5000`).
    pub registry: String,
    /// The host without the port (brackets kept for IPv6).
    pub host: String,
    pub port: Option<u16>,
    /// The repository path inside the registry, e.g. `team/app`.
    pub path: String,
}

impl Repository {
    /// Parses `HOST[:PORT]/PATH`; the registry host is mandatory, because a
    /// push must never silently go to Docker Hub.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let Some((first, rest)) = s.split_once('/') else {
            return err("expected HOST[:PORT]/NAME (e.g. localhost:5000/app or ghcr.io/owner/app)");
        };
        if !looks_like_host(first) {
            return err(format!(
                "{first:?} is not a registry host: expected HOST[:PORT]/NAME \
                 (a host contains a '.' or a ':', or is 'localhost')"
            ));
        }
        let (host, port) = parse_host(first)?;
        validate_path(rest)?;
        if s.len() > MAX_NAME_LEN {
            return err(format!(
                "is {} characters long, at most {MAX_NAME_LEN} are allowed",
                s.len()
            ));
        }
        Ok(Repository {
            registry: first.to_string(),
            host,
            port,
            path: rest.to_string(),
        })
    }

    /// See [`is_loopback_host`].
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// A Docker-style image name with a tag, `[HOST[:PORT]/]PATH:TAG`, as given
/// to `docker tag` (the host is optional: Docker then means Docker Hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedName {
    /// Everything before the tag, as written.
    pub name: String,
    /// `host[:port]` when the name starts with one.
    pub registry: Option<String>,
    pub path: String,
    pub tag: String,
}

impl TaggedName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains('@') {
            return err("expected REPO:TAG; a digest (@sha256:...) cannot be used as a tag");
        }
        // The tag is after the last ':' only when no '/' follows it; otherwise
        // that ':' belongs to a registry port (`localhost:5000/app`).
        let (name, tag) = match s.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => return err("expected REPO:TAG (the :TAG is missing)"),
        };
        validate_tag(tag)?;
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => {
                parse_host(first)?;
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        validate_path(path)?;
        if name.len() > MAX_NAME_LEN {
            return err(format!(
                "name is {} characters long, at most {MAX_NAME_LEN} are allowed",
                name.len()
            ));
        }
        Ok(TaggedName {
            name: name.to_string(),
            registry,
            path: path.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The fully qualified name Docker and containerd store the image under:
    /// `docker.io/library/app:tag` for `app:tag`.
    pub fn normalized(&self) -> String {
        let registry = match self.registry.as_deref() {
            // docker/reference's normalisation: only the legacy
            // `index.docker.io` becomes `docker.io`; an image tagged
            // `registry-1.docker.io/…` is stored under that name.
            None | Some("index.docker.io") => "docker.io",
            Some(r) => r,
        };
        let library = if registry == "docker.io" && !self.path.contains('/') {
            "library/"
        } else {
            ""
        };
        format!("{registry}/{library}{}:{}", self.path, self.tag)
    }
}

impl fmt::Display for TaggedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// A repository in a registry, with Docker Hub names resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoRef {
    /// `host[:port]` to connect to: `127.0.0.1:5000`, `ghcr.io`,
    /// `registry-1.docker.io` for Docker Hub, `[::1]:5000`.
    pub registry: String,
    /// The repository inside the registry: `kiln/base`, `library/ubuntu`.
    pub repository: String,
}

impl RepoRef {
    /// A repository from its two parts, both checked.
    pub fn new(registry: &str, repository: &str) -> Result<RepoRef, NameError> {
        if !looks_like_host(registry) && !is_docker_hub_alias(registry) {
            return Err(err_msg(format!(
                "{registry:?} is not a registry host (a host contains a '.' or a ':', \
                 or is 'localhost')"
            )));
        }
        Self::from_parts(registry, repository)
    }

    /// Parses `[HOST[:PORT]/]REPO` (no tag, no digest). Without a host the
    /// name is a Docker Hub one; one-component Hub names get `library/`.
    pub fn parse(name: &str) -> Result<RepoRef, NameError> {
        if name.contains('@') {
            return Err(err_msg(
                "expected [HOST[:PORT]/]REPO without a digest (give the digest separately)",
            ));
        }
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains(':') {
            return Err(err_msg(
                "expected [HOST[:PORT]/]REPO without a tag (give the tag separately)",
            ));
        }
        let (host, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => (first, rest),
            _ => ("docker.io", name),
        };
        Self::from_parts(host, path)
    }

    fn from_parts(host: &str, path: &str) -> Result<RepoRef, NameError> {
        let (host, path) = if is_docker_hub_alias(host) {
            let path = if path.contains('/') || path.is_empty() {
                path.to_string()
            } else {
                format!("library/{path}")
            };
            (DOCKER_HUB_REGISTRY, path)
        } else {
            (host, path.to_string())
        };
        let parsed = Repository::parse(&format!("{host}/{path}"))?;
        Ok(RepoRef {
            registry: parsed.registry,
            repository: parsed.path,
        })
    }

    /// Loopback registries (`localhost`, `127.0.0.1`, `[::1]`, any port) are
    /// spoken to over plain HTTP; everything else over HTTPS.
    pub fn is_loopback(&self) -> bool {
        parse_host(&self.registry).is_ok_and(|(host, _)| is_loopback_host(&host))
    }

    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB_REGISTRY
    }

    /// `http` for loopback registries, `https` otherwise.
    pub fn scheme(&self) -> &'static str {
        if self.is_loopback() {
            "http"
        } else {
            "https"
        }
    }

    /// `SCHEME://HOST[:PORT]`, the registry's base URL.
    pub fn registry_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.registry)
    }

    /// `SCHEME://HOST[:PORT]/v2/REPO`, the base of the repository's API URLs.
    pub fn api_url(&self) -> String {
        format!("{}/v2/{}", self.registry_url(), self.repository)
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// What in a repository a reference points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Tag(String),
    Digest(Digest),
}

impl Target {
    /// A tag, checked against `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    pub fn tag(tag: &str) -> Result<Target, NameError> {
        validate_tag(tag)?;
        Ok(Target::Tag(tag.to_string()))
    }
}

impl fmt::Display for Target {
    /// The path segment used in URLs: the tag, or `sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tag(t) => f.write_str(t),
            Target::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// A manifest in a repository, by tag or by digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub repo: RepoRef,
    pub target: Target,
}

impl ImageRef {
    pub fn new(repo: RepoRef, target: Target) -> ImageRef {
        ImageRef { repo, target }
    }

    /// Parses `[HOST[:PORT]/]REPO[:TAG][@sha256:…]`. A digest wins over a
    /// tag written with it; neither means the tag `latest`, as in Docker.
    pub fn parse(s: &str) -> Result<ImageRef, NameError> {
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest: Digest = d
                    .parse()
                    .map_err(|e: crate::digest::DigestError| NameError(e.to_string()))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        let repo = RepoRef::parse(name)?;
        let target = match (digest, tag) {
            (Some(d), _) => Target::Digest(d),
            (None, Some(t)) => Target::tag(t)?,
            (None, None) => Target::Tag("latest".to_string()),
        };
        Ok(ImageRef { repo, target })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tag(t) => write!(f, "{}:{t}", self.repo),
            Target::Digest(d) => write!(f, "{}@{d}", self.repo),
        }
    }
}

/// Checks a tag against `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    let Some(&first) = b.first() else {
        return err("tag is empty");
    };
    if b.len() > MAX_TAG_LEN {
        return err(format!(
            "tag is {} characters long, at most {MAX_TAG_LEN} are allowed",
            b.len()
        ));
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return err(format!(
            "tag {tag:?} must start with a letter, a digit or '_' \
             (tags match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"
        ));
    }
    if let Some(c) = tag
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return err(format!(
            "tag {tag:?} contains {c:?} (tags match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"
        ));
    }
    Ok(())
}

/// Docker's rule for telling a registry host from a first path component.
pub fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

/// Splits and checks `host[:port]`; returns the host (IPv6 kept in brackets).
fn parse_host(s: &str) -> Result<(String, Option<u16>), NameError> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return err(format!("registry host {s:?}: missing ']'"));
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return err(format!(
                "registry host {s:?}: {addr:?} is not an IPv6 address"
            ));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return err(format!("registry host {s:?}: unexpected {p:?} after ']'")),
            },
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.is_empty() || !host.split('.').all(valid_host_label) {
            return err(format!(
                "registry host {host:?} is not a valid host name \
                 (dot-separated labels of letters, digits and inner '-')"
            ));
        }
        (host.to_string(), port)
    };
    let port = port.map(|p| parse_port(s, p)).transpose()?;
    Ok((host, port))
}

fn parse_port(registry: &str, p: &str) -> Result<u16, NameError> {
    let valid = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    match p.parse::<u32>() {
        Ok(n) if valid && (1..=65535).contains(&n) => Ok(n as u16),
        _ => err(format!(
            "registry {registry:?}: port {p:?} must be a number from 1 to 65535"
        )),
    }
}

fn valid_host_label(label: &str) -> bool {
    let b = label.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        _ => false,
    }
}

fn validate_path(path: &str) -> Result<(), NameError> {
    if path.is_empty() {
        return err("the repository path is empty");
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return err(format!(
                "path component {component:?} is invalid: components are lowercase letters \
                 and digits, separated by '.', '_', '__' or '-' \
                 ([a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`, scanned by hand so that the
/// tools need no regex engine.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false; // empty, or a separator not followed by [a-z0-9]
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tools/testdata/validation.json, shared with the Starlark analysis test
    /// e2e/basic/vectors (kiln-push's grammar: the host is required).
    #[test]
    fn shared_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/validation.json");
        let all: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let list = |kind: &str, which: &str| -> Vec<String> {
            serde_json::from_value(all[kind][which].clone()).unwrap()
        };
        for r in list("repositories", "valid") {
            assert!(
                Repository::parse(&r).is_ok(),
                "repository {r:?} should be valid"
            );
        }
        for r in list("repositories", "invalid") {
            assert!(
                Repository::parse(&r).is_err(),
                "repository {r:?} should be invalid"
            );
        }
        for t in list("tags", "valid") {
            assert!(validate_tag(&t).is_ok(), "tag {t:?} should be valid");
        }
        for t in list("tags", "invalid") {
            assert!(validate_tag(&t).is_err(), "tag {t:?} should be invalid");
        }
    }

    #[test]
    fn repositories_accepted() {
        let r = Repository::parse("127.0.0.1:5000/team/app").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.host, "127.0.0.1");
        assert_eq!(r.port, Some(5000));
        assert_eq!(r.path, "team/app");
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app");

        for ok in [
            "localhost/app",
            "localhost:1/a",
            "localhost:65535/a",
            "ghcr.io/owner/app",
            "registry.example.com/a.b/c_d/e__f/g--h/x-1",
            "[::1]:5000/app",
            "[::1]/app",
            "my-registry.internal:443/a0/b9",
        ] {
            assert!(Repository::parse(ok).is_ok(), "{ok} should be accepted");
        }
        assert!(!Repository::parse("ghcr.io/a").unwrap().is_loopback());
        assert!(Repository::parse("[::1]:5000/app").unwrap().is_loopback());
        assert!(Repository::parse("localhost/app").unwrap().is_loopback());
    }

    #[test]
    fn repositories_rejected() {
        for (bad, why) in [
            ("app", "HOST[:PORT]/NAME"),
            ("team/app", "not a registry host"),
            ("localhost:5000", "HOST[:PORT]/NAME"),
            ("localhost:5000/", "path is empty"),
            ("localhost:5000/App", "\"App\""),
            ("localhost:5000/a//b", "\"\""),
            ("localhost:5000/a/", "\"\""),
            ("localhost:5000/-a", "\"-a\""),
            ("localhost:5000/a-", "\"a-\""),
            ("localhost:5000/a___b", "\"a___b\""),
            ("localhost:5000/a..b", "\"a..b\""),
            ("localhost:5000/a:b", "\"a:b\""),
            ("localhost:0/a", "port \"0\""),
            ("localhost:65536/a", "port \"65536\""),
            ("localhost:99999999999/a", "port"),
            ("localhost:/a", "port \"\""),
            ("localhost:5x/a", "port \"5x\""),
            ("bad_host.io/a", "\"bad_host.io\" is not a valid host"),
            ("-x.io/a", "\"-x.io\" is not a valid host"),
            ("x..io/a", "not a valid host"),
            ("[::1/a", "missing ']'"),
            ("[zz]:1/a", "IPv6"),
            ("[::1]x/a", "after ']'"),
        ] {
            let e = Repository::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e:?} should mention {why:?}");
        }
        let long = format!("localhost/{}", "a".repeat(250));
        assert!(Repository::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 255"));
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", "0", &"a".repeat(128)] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (".x", "must start"),
            ("-x", "must start"),
            ("a:b", "':'"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("é", "must start"),
            ("aé", "'é'"),
        ] {
            let e = validate_tag(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e:?} should mention {why:?}");
        }
        assert!(validate_tag(&"a".repeat(129))
            .unwrap_err()
            .to_string()
            .contains("at most 128"));
    }

    #[test]
    fn tagged_names() {
        let t = TaggedName::parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!(t.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(t.path, "team/app");
        assert_eq!(t.tag, "v1");
        assert_eq!(t.to_string(), "localhost:5000/team/app:v1");
        assert_eq!(t.normalized(), "localhost:5000/team/app:v1");

        let t = TaggedName::parse("app:latest").unwrap();
        assert_eq!(t.registry, None);
        assert_eq!(t.normalized(), "docker.io/library/app:latest");
        assert_eq!(
            TaggedName::parse("me/app:1").unwrap().normalized(),
            "docker.io/me/app:1"
        );
        assert_eq!(
            TaggedName::parse("docker.io/app:1").unwrap().normalized(),
            "docker.io/library/app:1"
        );

        for (bad, why) in [
            ("app", "the :TAG is missing"),
            ("localhost:5000/app", "the :TAG is missing"),
            ("app:", "tag is empty"),
            ("App:1", "\"App\""),
            ("app:a/b", "the :TAG is missing"),
            ("app@sha256:abcd", "digest"),
            (":1", "path is empty"),
            ("bad_host.io/app:1", "\"bad_host.io\" is not a valid host"),
        ] {
            let e = TaggedName::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e:?} should mention {why:?}");
        }
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_hub_names() {
        for (name, repo) in [
            ("ubuntu", "library/ubuntu"),
            ("library/ubuntu", "library/ubuntu"),
            ("docker.io/ubuntu", "library/ubuntu"),
            ("docker.io/library/ubuntu", "library/ubuntu"),
            ("index.docker.io/grafana/grafana", "grafana/grafana"),
            ("registry-1.docker.io/ubuntu", "library/ubuntu"),
            ("grafana/grafana", "grafana/grafana"),
        ] {
            let r = RepoRef::parse(name).unwrap();
            assert_eq!(r.registry, DOCKER_HUB_REGISTRY, "{name}");
            assert_eq!(r.repository, repo, "{name}");
            assert!(r.is_docker_hub());
            assert_eq!(r.scheme(), "https");
        }
    }

    #[test]
    fn hosts_and_schemes() {
        let r = RepoRef::parse("127.0.0.1:5000/kiln/base").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "kiln/base");
        assert_eq!(r.api_url(), "http://127.0.0.1:5000/v2/kiln/base");
        assert_eq!(r.to_string(), "127.0.0.1:5000/kiln/base");
        for (name, http) in [
            ("localhost/a", true),
            ("localhost:1234/a", true),
            ("[::1]:5000/a", true),
            ("[::1]/a", true),
            ("127.0.0.1/a", true),
            ("ghcr.io/o/a", false),
            ("localhost.example.com/a", false),
            ("127.0.0.2:5000/a", false),
        ] {
            let r = RepoRef::parse(name).unwrap();
            assert_eq!(r.is_loopback(), http, "{name}");
            assert_eq!(r.scheme(), if http { "http" } else { "https" });
        }
        assert_eq!(
            RepoRef::new("ghcr.io", "o/a").unwrap(),
            RepoRef::parse("ghcr.io/o/a").unwrap()
        );
        assert_eq!(
            RepoRef::new("docker.io", "ubuntu").unwrap().repository,
            "library/ubuntu"
        );
        assert!(RepoRef::new("team", "a").is_err());
    }

    #[test]
    fn bad_names() {
        for bad in [
            "",
            "Ubuntu",
            "ghcr.io/",
            "ghcr.io/a//b",
            "ubuntu:22.04",
            "ghcr.io/a:1",
            &format!("ghcr.io/a@{D}"),
            "localhost:99999/a",
        ] {
            assert!(RepoRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("ubuntu").unwrap();
        assert_eq!(r.to_string(), "registry-1.docker.io/library/ubuntu:latest");
        let r = ImageRef::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.target, Target::Tag("v1".into()));
        assert_eq!(r.repo.registry, "localhost:5000");
        let r = ImageRef::parse(&format!("localhost:5000/a:v1@{D}")).unwrap();
        assert_eq!(r.target, Target::Digest(D.parse().unwrap()));
        assert_eq!(r.to_string(), format!("localhost:5000/a@{D}"));
        assert!(ImageRef::parse("a:-x").is_err());
        assert!(ImageRef::parse("a@sha256:12").is_err());
    }
}
