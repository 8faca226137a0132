//! Image references as Docker understands them: `[HOST[:PORT]/]REPO[:TAG][@DIGEST]`.
//!
//! Names without a registry host are Docker Hub names (`ubuntu` is
//! `registry-1.docker.io/library/ubuntu`), as `docker pull` reads them. The
//! grammar of hosts and path components is `kiln_oci::reference`'s.

use std::fmt;

use kiln_oci::reference::{validate_tag, Repository};
use kiln_oci::Digest;

/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// The names Docker accepts for Docker Hub in an image reference.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", DOCKER_HUB_REGISTRY];

/// Why a name, tag or digest was refused. The caller adds which value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NameError {}

impl From<kiln_oci::reference::NameError> for NameError {
    fn from(e: kiln_oci::reference::NameError) -> Self {
        NameError(e.to_string())
    }
}

fn name_error(msg: impl Into<String>) -> NameError {
    NameError(msg.into())
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
        if !looks_like_host(registry) && !DOCKER_HUB_ALIASES.contains(&registry) {
            return Err(name_error(format!(
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
            return Err(name_error(
                "expected [HOST[:PORT]/]REPO without a digest (give the digest separately)",
            ));
        }
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains(':') {
            return Err(name_error(
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
        let (host, path) = if DOCKER_HUB_ALIASES.contains(&host) {
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
        let host = match self.registry.strip_prefix('[') {
            Some(rest) => format!("[{}]", rest.split(']').next().unwrap_or_default()),
            None => self
                .registry
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
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
                let digest: Digest = d.parse().map_err(|e| name_error(format!("{e}")))?;
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

/// Docker's rule for telling a registry host from a first path component.
fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

#[cfg(test)]
mod tests {
    use super::*;

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
