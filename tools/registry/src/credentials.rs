//! Registry credentials from Docker's configuration, looked up as `docker`
//! does:
//!
//! 1. `credHelpers[host]` in `config.json`: `docker-credential-<helper> get`,
//!    the host on stdin;
//! 2. else `credsStore`: the same with the store's helper;
//! 3. else (or when the helper has nothing for the host) `auths[host]`:
//!    `auth` (base64 `user:password`), `username`/`password`, or
//!    `identitytoken` (an OAuth2 refresh token).
//!
//! `config.json` is `$DOCKER_CONFIG/config.json`, else
//! `$HOME/.docker/config.json`; a missing file means no credentials.
//!
//! Secrets never appear in `Debug` output or in messages: [`Credentials`]
//! describes itself by user name and origin only.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use serde::Deserialize;

/// The key Docker stores Docker Hub credentials under, and the server URL
/// credential helpers are asked about for Docker Hub.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// The user name a credential helper returns when the secret is an identity
/// (refresh) token rather than a password.
const TOKEN_USERNAME: &str = "<token>";

/// A secret to authenticate with.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// User name and password (or access token used as one).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token, exchanged at the registry's token service
    /// (`grant_type=refresh_token`), as `docker login` stores for some
    /// registries (Azure, Docker Hub with SSO).
    IdentityToken { token: String },
}

impl fmt::Debug for Secret {
    /// The user name only: secrets must not reach logs or messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Secret::IdentityToken { .. } => f.write_str("IdentityToken(..)"),
        }
    }
}

/// Credentials for one registry and where they were found.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub secret: Secret,
    /// Where they come from, e.g. `credential helper docker-credential-gcloud
    /// (credHelpers in /home/u/.docker/config.json)`. Never a secret.
    pub source: String,
}

impl Credentials {
    /// The user name, for Basic credentials.
    pub fn username(&self) -> Option<&str> {
        match &self.secret {
            Secret::Basic { username, .. } => Some(username),
            Secret::IdentityToken { .. } => None,
        }
    }

    /// `credentials for user "u" from <source>` / `an identity token from <source>`.
    pub fn describe(&self) -> String {
        match &self.secret {
            Secret::Basic { username, .. } => {
                format!("credentials for user {username:?} from {}", self.source)
            }
            Secret::IdentityToken { .. } => format!("an identity token from {}", self.source),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The outcome of a credential lookup for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Credentials),
    /// Nothing configured; says what was searched (and any helper that
    /// failed), for error messages.
    None {
        searched: String,
    },
}

impl Lookup {
    pub fn credentials(&self) -> Option<&Credentials> {
        match self {
            Lookup::Found(c) => Some(c),
            Lookup::None { .. } => None,
        }
    }

    /// For messages: `using credentials for user "u" from …` or
    /// `anonymously: no credentials for HOST in …`.
    pub fn describe(&self) -> String {
        match self {
            Lookup::Found(c) => format!("using {}", c.describe()),
            Lookup::None { searched } => format!("anonymously: {searched}"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Docker's `config.json`, read once.
#[derive(Debug)]
pub struct DockerConfig {
    path: PathBuf,
    file: Option<ConfigFile>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`. When
    /// neither variable is set there is no config (no credentials).
    pub fn load_default() -> anyhow::Result<DockerConfig> {
        let dir = match (std::env::var_os("DOCKER_CONFIG"), std::env::var_os("HOME")) {
            (Some(d), _) if !d.is_empty() => PathBuf::from(d),
            (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".docker"),
            _ => {
                return Ok(DockerConfig {
                    path: PathBuf::from("$HOME/.docker/config.json"),
                    file: None,
                })
            }
        };
        Self::load(&dir)
    }

    /// `DIR/config.json`; a missing file is an empty config, an unreadable
    /// or malformed one an error.
    pub fn load(dir: &Path) -> anyhow::Result<DockerConfig> {
        let path = dir.join("config.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing Docker's config {}", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading Docker's config {}", path.display()))
            }
        };
        Ok(DockerConfig { path, file })
    }

    /// A config holding nothing (anonymous access everywhere).
    pub fn empty() -> DockerConfig {
        DockerConfig {
            path: PathBuf::from("(no Docker config)"),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Credentials for `registry` (`host[:port]` as in [`crate::RepoRef`]).
    /// A credential helper that cannot be run or fails is not fatal (Docker
    /// ignores it too): the lookup goes on, and the failure is recorded in
    /// [`Lookup::None`] so that a refusal by the registry can explain it.
    pub fn lookup(&self, registry: &str) -> Lookup {
        let path = self.path.display();
        let Some(file) = &self.file else {
            return Lookup::None {
                searched: format!("no credentials for {registry}: there is no {path}"),
            };
        };
        let hub = is_docker_hub(registry);
        // Helpers are asked about the host (Docker Hub: its config key).
        let server = if hub { DOCKER_HUB_CONFIG_KEY } else { registry };
        let mut notes = Vec::new();

        let helper = find_key(&file.cred_helpers, registry)
            .map(|(_, h)| (h.as_str(), "credHelpers"))
            .or(file.creds_store.as_deref().map(|h| (h, "credsStore")));
        if let Some((helper, key)) = helper.filter(|(h, _)| !h.is_empty()) {
            let source = format!("credential helper docker-credential-{helper} ({key} in {path})");
            match run_helper(helper, server).and_then(checked) {
                Ok(Some(secret)) => return Lookup::Found(Credentials { secret, source }),
                Ok(None) => notes.push(format!("{source} has none for {server}")),
                Err(e) => notes.push(format!("{source} failed: {e:#}")),
            }
        }

        if let Some((key, entry)) = find_key(&file.auths, registry) {
            let source = format!("auths[{key:?}] in {path}");
            match entry_secret(entry).and_then(checked) {
                Ok(Some(secret)) => return Lookup::Found(Credentials { secret, source }),
                Ok(None) => {}
                Err(e) => notes.push(format!("{source}: {e:#}")),
            }
        }

        let mut searched = format!("no credentials for {registry} in {path}");
        if !notes.is_empty() {
            searched.push_str(" (");
            searched.push_str(&notes.join("; "));
            searched.push(')');
        }
        Lookup::None { searched }
    }
}

fn is_docker_hub(registry: &str) -> bool {
    kiln_oci::reference::is_docker_hub_alias(registry)
}

/// The host a config key names: Docker writes keys as `host[:port]`, or as
/// URLs (`https://index.docker.io/v1/`), so scheme and path are dropped.
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// The entry for `registry` in a map keyed by host or URL: an exact key
/// first, then any key naming the same host (Docker Hub's aliases count as
/// one host).
fn find_key<'a, V>(map: &'a BTreeMap<String, V>, registry: &str) -> Option<(&'a str, &'a V)> {
    if let Some((k, v)) = map.get_key_value(registry) {
        return Some((k, v));
    }
    if is_docker_hub(registry) {
        if let Some((k, v)) = map.get_key_value(DOCKER_HUB_CONFIG_KEY) {
            return Some((k, v));
        }
    }
    map.iter()
        .find(|(k, _)| {
            let host = key_host(k);
            host == registry || (is_docker_hub(registry) && is_docker_hub(host))
        })
        .map(|(k, v)| (k.as_str(), v))
}

/// `secret`, when every part of it can be sent: a line break or another
/// control character in a user name, password or token is refused naming
/// the part (never its value), so the lookup says which credential of
/// which source is unusable instead of a request failing later with
/// "failed to parse header value".
fn checked(secret: Option<Secret>) -> anyhow::Result<Option<Secret>> {
    let parts: Vec<(&str, &str)> = match &secret {
        Some(Secret::Basic { username, password }) => {
            vec![("user name", username), ("password", password)]
        }
        Some(Secret::IdentityToken { token }) => vec![("identity token", token)],
        None => vec![],
    };
    for (what, value) in parts {
        if let Some(why) = unsendable(value) {
            bail!("the {what} contains {why}, which cannot be sent: not used");
        }
    }
    Ok(secret)
}

/// What makes `value` unfit for an HTTP header or form: a line break (CR
/// or LF) or another control character.
pub(crate) fn unsendable(value: &str) -> Option<&'static str> {
    if value.contains(['\r', '\n']) {
        Some("a line break (CR or LF)")
    } else if value.chars().any(char::is_control) {
        Some("a control character")
    } else {
        None
    }
}

fn entry_secret(entry: &AuthEntry) -> anyhow::Result<Option<Secret>> {
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Secret::IdentityToken {
            token: token.to_string(),
        }));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| anyhow::anyhow!("\"auth\" is not valid base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| anyhow::anyhow!("\"auth\" does not decode to UTF-8 text"))?;
        let Some((username, password)) = decoded.split_once(':') else {
            bail!("\"auth\" does not decode to USER:PASSWORD");
        };
        return Ok(Some(Secret::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Secret::Basic {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

/// How long a credential helper may take, its whole answer read: one that
/// waits for a desktop prompt nobody answers (or hangs) would otherwise
/// stall a release forever.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// A helper's stdout and stderr are read up to this much each (an answer
/// is a few hundred bytes); more ends the helper and fails the lookup.
pub const HELPER_OUTPUT_LIMIT: usize = 64 << 10;

/// How long the output pipes may stay open once the helper has exited
/// (something it started in the background may hold them forever): then
/// its process group is ended and what was read is its answer.
const HELPER_EXIT_GRACE: Duration = Duration::from_secs(1);

/// Runs `docker-credential-<helper> get` with `server` on stdin. `Ok(None)`
/// when the helper has no credentials for it.
fn run_helper(helper: &str, server: &str) -> anyhow::Result<Option<Secret>> {
    run_helper_within(
        &format!("docker-credential-{helper}"),
        server,
        HELPER_TIMEOUT,
    )
}

/// Ends every process of the process group `group` (the helper's own: it
/// is started as its leader).
fn kill_group(group: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(group) {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // takes no pointers.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// What a pipe of the helper gave: its bytes, and whether it went on past
/// [`HELPER_OUTPUT_LIMIT`] (the rest is never read).
struct PipeOutput {
    bytes: Vec<u8>,
    over: bool,
}

/// [`run_helper`] of the helper program `program`. The helper runs in a
/// process group of its own; `timeout` covers its exit and the reading of
/// its answer, and when it passes (or an output goes past
/// [`HELPER_OUTPUT_LIMIT`]) the whole group is ended with SIGKILL.
fn run_helper_within(
    program: &str,
    server: &str,
    timeout: Duration,
) -> anyhow::Result<Option<Secret>> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;

    let started = Instant::now();
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {program} (is it on PATH?)"))?;
    let group = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE: its exit status
        // and output tell more, so the write error is not reported. A host
        // name fits a pipe's buffer, so this does not block.
        let _ = stdin.write_all(server.as_bytes());
    }
    // Read on threads, each up to the limit, so that neither a helper
    // filling a pipe nor one whose background child keeps a pipe open can
    // hold this thread past the deadline.
    let (sender, received) = mpsc::channel::<(usize, PipeOutput)>();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for (i, pipe) in pipes.into_iter().enumerate() {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe
                    .take(HELPER_OUTPUT_LIMIT as u64 + 1)
                    .read_to_end(&mut bytes);
            }
            let over = bytes.len() > HELPER_OUTPUT_LIMIT;
            bytes.truncate(HELPER_OUTPUT_LIMIT);
            let _ = sender.send((i, PipeOutput { bytes, over }));
        });
    }
    drop(sender);
    let names = ["stdout", "stderr"];
    let mut outputs: [Option<PipeOutput>; 2] = [None, None];
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    let stop = |child: &mut std::process::Child| {
        kill_group(group);
        let _ = child.kill();
        let _ = child.wait();
    };
    loop {
        if exited.is_none() {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for {program}"))?
            {
                exited = Some((status, Instant::now()));
            }
        }
        if let Some(i) = outputs
            .iter()
            .position(|o| o.as_ref().is_some_and(|o| o.over))
        {
            stop(&mut child);
            bail!(
                "{program} get printed more than {} KiB on {} and was stopped (a credential \
                 helper's answer is a few hundred bytes)",
                HELPER_OUTPUT_LIMIT >> 10,
                names[i]
            );
        }
        let all_read = outputs.iter().all(Option::is_some);
        match exited {
            Some(_) if all_read => break,
            Some((_, at)) if at.elapsed() >= HELPER_EXIT_GRACE || started.elapsed() >= timeout => {
                // Something the helper started holds its output open: end
                // it, and take what the helper itself printed.
                kill_group(group);
                break;
            }
            _ => {}
        }
        if started.elapsed() >= timeout {
            stop(&mut child);
            bail!(
                "{program} get did not answer within {} s and was stopped",
                timeout.as_secs_f64()
            );
        }
        if let Ok((i, output)) = received.recv_timeout(Duration::from_millis(20)) {
            outputs[i] = Some(output);
        }
    }
    // Pipes still being read when the group was ended close now.
    let wait_until = Instant::now() + Duration::from_millis(200);
    while outputs.iter().any(Option::is_none) {
        let left = wait_until.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok((i, output)) => outputs[i] = Some(output),
            Err(_) => break,
        }
    }
    let [stdout, stderr] = outputs.map(|o| o.map(|o| o.bytes).unwrap_or_default());
    let status = exited.map(|(s, _)| s).context("the helper's exit status")?;
    if !status.success() {
        let stdout_text = String::from_utf8_lossy(&stdout);
        let stderr_text = String::from_utf8_lossy(&stderr);
        // The helpers' protocol: this message means "nothing stored".
        if stdout_text.contains("credentials not found")
            || stderr_text.contains("credentials not found")
        {
            return Ok(None);
        }
        // A helper may print its answer and still fail: its Secret is
        // redacted wherever it shows, and so is anything that looks like
        // a credential.
        let secret = serde_json::from_slice::<HelperOutput>(&stdout)
            .map(|o| o.secret)
            .unwrap_or_default();
        let msg = [stdout_text.trim(), stderr_text.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
                crate::error::redact(&line, &[secret.as_str()])
            })
            .collect::<Vec<_>>()
            .join("; ");
        bail!("{program} get exited with {status}: {msg}");
    }
    let parsed: HelperOutput = serde_json::from_slice(&stdout).map_err(|_| {
        // serde's message could quote part of the output, i.e. the secret.
        anyhow::anyhow!("{program} get printed something that is not its JSON answer")
    })?;
    if parsed.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if parsed.username == TOKEN_USERNAME {
        Secret::IdentityToken {
            token: parsed.secret,
        }
    } else {
        Secret::Basic {
            username: parsed.username,
            password: parsed.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, json: &str) -> DockerConfig {
        std::fs::write(dir.join("config.json"), json).unwrap();
        DockerConfig::load(dir).unwrap()
    }

    fn basic(u: &str, p: &str) -> Secret {
        Secret::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn auths_entries() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            dir.path(),
            r#"{"auths": {
                "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://ghcr.io/v2/": {"username": "gh", "password": "tok"},
                "https://index.docker.io/v1/": {"identitytoken": "refresh"},
                "bad.example": {"auth": "!!"},
                "empty.example": {}
            }}"#,
        );
        let found = |r: &str| c.lookup(r).credentials().cloned().unwrap();
        let cr = found("127.0.0.1:5000");
        assert_eq!(cr.secret, basic("user", "pa:ss"));
        assert!(
            cr.source.contains("auths[\"127.0.0.1:5000\"]"),
            "{}",
            cr.source
        );
        assert_eq!(found("ghcr.io").secret, basic("gh", "tok"));
        assert_eq!(
            found("registry-1.docker.io").secret,
            Secret::IdentityToken {
                token: "refresh".into()
            }
        );
        // Secrets never show in Debug or descriptions.
        let shown = format!("{cr:?} {}", c.lookup("127.0.0.1:5000").describe());
        assert!(!shown.contains("pa:ss"), "{shown}");
        assert!(shown.contains("user"), "{shown}");

        let none = c.lookup("127.0.0.1:5001");
        assert!(none.credentials().is_none());
        assert!(none
            .describe()
            .contains("no credentials for 127.0.0.1:5001"));
        let bad = c.lookup("bad.example").describe();
        assert!(bad.contains("not valid base64"), "{bad}");
        assert!(c.lookup("empty.example").credentials().is_none());
    }

    #[test]
    fn missing_and_malformed_configs() {
        let dir = tempfile::tempdir().unwrap();
        let c = DockerConfig::load(dir.path()).unwrap();
        assert!(c.lookup("ghcr.io").describe().contains("there is no"));
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        let err = DockerConfig::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("parsing Docker's config"));
    }

    #[test]
    fn a_hanging_helper_is_stopped_and_named() {
        let _scripts = scripts();
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-hangs");
        std::fs::write(&helper, "#!/bin/sh\nexec sleep 60\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = Instant::now();
        let err = run_helper_within(
            helper.to_str().unwrap(),
            "r.example",
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.contains("docker-credential-hangs get did not answer within 0.3 s"),
            "{err}"
        );

        // A quick helper within the deadline answers as usual.
        std::fs::write(
            &helper,
            "#!/bin/sh\necho '{\"Username\":\"u\",\"Secret\":\"s\"}'\n",
        )
        .unwrap();
        let got = run_helper_within(
            helper.to_str().unwrap(),
            "r.example",
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(got, Some(basic("u", "s")));
    }

    /// Held by every test that writes and runs a script: a script being
    /// written while another test forks would be "Text file busy".
    static SCRIPTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn scripts() -> std::sync::MutexGuard<'static, ()> {
        SCRIPTS.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes an executable helper script `docker-credential-NAME` in `dir`.
    fn helper_script(dir: &Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let helper = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&helper, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        helper.to_str().unwrap().to_string()
    }

    /// Whether process `pid` is gone (or a zombie), waiting up to 10 s for
    /// the kernel to deliver a SIGKILL.
    fn process_ends(pid: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .starts_with('Z') =>
                {
                    return true
                }
                Ok(_) if Instant::now() >= until => return false,
                Ok(_) => std::thread::yield_now(),
            }
        }
    }

    #[test]
    fn a_helper_whose_background_child_keeps_its_output_open_is_bounded() {
        let _scripts = scripts();
        let dir = tempfile::tempdir().unwrap();
        // Answers, then exits leaving a child on its stdout: the answer is
        // taken once the grace after its exit is over.
        let answers = helper_script(
            dir.path(),
            "daemon",
            "( sleep 200 ) &\necho '{\"Username\":\"u\",\"Secret\":\"s\"}'",
        );
        let started = Instant::now();
        let got = run_helper_within(&answers, "r.example", Duration::from_secs(1)).unwrap();
        assert_eq!(got, Some(basic("u", "s")));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        // Never exits, with a background child: both are ended at the limit.
        let pid_file = dir.path().join("child.pid");
        let hangs = helper_script(
            dir.path(),
            "hangs-with-child",
            &format!(
                "( sleep 200 ) &\necho $! > {}\nexec sleep 200",
                pid_file.display()
            ),
        );
        let started = Instant::now();
        let err = run_helper_within(&hangs, "r.example", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.contains("did not answer within 1 s and was stopped"),
            "{err}"
        );
        let child = std::fs::read_to_string(&pid_file).unwrap();
        assert!(
            process_ends(child.trim()),
            "the background child {child} still runs"
        );
    }

    #[test]
    fn a_helper_printing_without_end_is_stopped_at_the_output_limit() {
        let _scripts = scripts();
        let dir = tempfile::tempdir().unwrap();
        let floods = helper_script(dir.path(), "floods", "head -c 1073741824 /dev/zero");
        let started = Instant::now();
        let err = run_helper_within(&floods, "r.example", Duration::from_secs(30))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("printed more than 64 KiB on stdout and was stopped"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_failing_helper_never_shows_its_secret() {
        let _scripts = scripts();
        let dir = tempfile::tempdir().unwrap();
        let fails = helper_script(
            dir.path(),
            "fails",
            "echo '{\"ServerURL\":\"r.example\",\"Username\":\"u\",\"Secret\":\"hunter2-helper-secret\"}'\n\
             echo 'could not store hunter2-helper-secret for r.example' >&2\nexit 1",
        );
        let err = run_helper_within(&fails, "r.example", Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("get exited with exit status: 1"), "{err}");
        assert!(err.contains("[redacted]"), "{err}");
        assert!(err.contains("could not store"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn credentials_with_line_breaks_are_refused_naming_their_source() {
        let _scripts = scripts();
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            dir.path(),
            r#"{"auths": {
                "token.example": {"identitytoken": "abc\r\ndef"},
                "basic.example": {"username": "u", "password": "pw\n"}
            }}"#,
        );
        let token = c.lookup("token.example");
        assert!(token.credentials().is_none());
        let said = token.describe();
        assert!(
            said.contains("auths[\"token.example\"] in ",)
                && said.contains(
                    ": the identity token contains a line break (CR or LF), which cannot be sent"
                ),
            "{said}"
        );
        assert!(!said.contains("abc"), "{said}");
        let said = c.lookup("basic.example").describe();
        assert!(
            said.contains("the password contains a line break"),
            "{said}"
        );

        // A helper's answer is checked the same way (lookup: checked).
        let helper = helper_script(
            dir.path(),
            "crlf",
            "cat <<'JSON'\n{\"Username\":\"<token>\",\"Secret\":\"a\\r\\nb\"}\nJSON",
        );
        let err = run_helper_within(&helper, "r.example", Duration::from_secs(10))
            .and_then(checked)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the identity token contains a line break"),
            "{err}"
        );
    }

    #[test]
    fn missing_helper_falls_back_to_auths() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            dir.path(),
            r#"{"credsStore": "kiln-no-such-helper",
                "auths": {"r.example": {"auth": "dTpw"}}}"#,
        );
        assert_eq!(
            c.lookup("r.example").credentials().unwrap().secret,
            basic("u", "p")
        );
        let other = c.lookup("s.example").describe();
        assert!(
            other.contains("docker-credential-kiln-no-such-helper (credsStore in"),
            "{other}"
        );
        assert!(other.contains("failed"), "{other}");
    }

    #[test]
    fn key_hosts() {
        assert_eq!(key_host("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(key_host("http://localhost:5000"), "localhost:5000");
        assert_eq!(key_host("ghcr.io"), "ghcr.io");
    }
}
