//! The image config document and how the user's `config` attributes are
//! applied on top of the base image's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use kiln_oci::model::MAX_LAYERS;
use kiln_oci::platform::OPERATING_SYSTEMS;
use kiln_oci::{Digest, Platform, Stamp};

use crate::{created, envexpand};

/// Used when neither the spec nor the base sets `created`: reproducible.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// The OCI image config. Fields this tool does not manage are kept verbatim
/// in `extra` so that a base's settings (StopSignal, Healthcheck, …) survive.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "RunConfig::is_empty")]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// Docker-style `{}` values of `ExposedPorts` and `Volumes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The `config` object of the image config ("container config").
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunConfig {
    /// Outer `None`: absent. `Some(None)`: written as JSON null.
    #[serde(
        rename = "Entrypoint",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Option<Vec<String>>>,
    #[serde(
        rename = "Cmd",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub cmd: Option<Option<Vec<String>>>,
    #[serde(
        rename = "Env",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub env: Vec<String>,
    #[serde(
        rename = "Labels",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub working_dir: String,
    #[serde(
        rename = "User",
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(
        rename = "Volumes",
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl RunConfig {
    fn is_empty(&self) -> bool {
        self.entrypoint.is_none()
            && self.cmd.is_none()
            && self.env.is_empty()
            && self.labels.is_empty()
            && self.working_dir.is_empty()
            && self.user.is_empty()
            && self.exposed_ports.is_empty()
            && self.volumes.is_empty()
            && self.extra.is_empty()
    }
}

/// Distinguishes a key present with `null` (`Some(None)`) from an absent
/// key (`None`, via `#[serde(default)]`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Docker writes `null` for empty maps and lists; read it as empty.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The spec's `config` attributes. Absent keys inherit from the base.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default, deserialize_with = "present")]
    pub entrypoint: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub cmd: Option<Option<Vec<String>>>,
    #[serde(default)]
    pub env: Option<Vec<(String, String)>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub ports: Option<Vec<String>>,
    #[serde(default)]
    pub volumes: Option<Vec<String>>,
    #[serde(default)]
    pub created: Option<String>,
    /// Label name → file whose content is the value.
    #[serde(default)]
    pub label_files: Option<BTreeMap<String, PathBuf>>,
    #[serde(default)]
    pub os_version: Option<String>,
}

/// A user error in the config attributes: which attribute, and what.
#[derive(Debug)]
pub struct AttrError {
    pub attr: String,
    pub message: String,
}

fn attr_err(attr: impl Into<String>, message: String) -> AttrError {
    AttrError {
        attr: attr.into(),
        message,
    }
}

/// Substitutes stamp values when stamping is on; `what` names the attribute.
struct Stamper<'a>(Option<&'a Stamp>);

impl Stamper<'_> {
    fn one(&self, s: &str, what: &str) -> Result<String, AttrError> {
        let Some(stamp) = self.0 else {
            return Ok(s.to_string());
        };
        stamp.expand(s, what).map_err(|e| {
            let msg = e.to_string();
            // Stamp errors start with `what`; keep it as the attribute.
            let cause = msg
                .strip_prefix(&format!("{what}: "))
                .map(str::to_string)
                .unwrap_or(msg);
            attr_err(what, cause)
        })
    }

    fn list(&self, v: &[String], what: &str) -> Result<Vec<String>, AttrError> {
        v.iter().map(|s| self.one(s, what)).collect()
    }
}

/// Resolves what the spec's `config` needs from outside before it can be
/// applied: `label_files` are read into `labels` (as they are), every other
/// string goes through the stamp (when `stamp` is given), and `created` is parsed into RFC 3339
/// UTC. Env `$VAR` expansion happens later, in `apply`, against the base env.
pub fn resolve(spec: &ConfigSpec, stamp: Option<&Stamp>) -> Result<ConfigSpec, AttrError> {
    let st = Stamper(stamp);
    let entrypoint = match &spec.entrypoint {
        Some(Some(v)) => Some(Some(st.list(v, "entrypoint")?)),
        other => other.clone(),
    };
    let cmd = match &spec.cmd {
        Some(Some(v)) => Some(Some(st.list(v, "cmd")?)),
        other => other.clone(),
    };
    let env = match &spec.env {
        Some(pairs) => Some(
            pairs
                .iter()
                .map(|(k, v)| Ok((k.clone(), st.one(v, &format!("env[{k}]"))?)))
                .collect::<Result<Vec<_>, AttrError>>()?,
        ),
        None => None,
    };
    let mut labels: Option<BTreeMap<String, String>> = match &spec.labels {
        Some(m) => Some(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), st.one(v, &format!("labels[{k}]"))?)))
                .collect::<Result<_, AttrError>>()?,
        ),
        None => None,
    };
    if let Some(files) = &spec.label_files {
        let labels = labels.get_or_insert_with(BTreeMap::new);
        for (k, path) in files {
            if spec.labels.as_ref().is_some_and(|l| l.contains_key(k)) {
                return Err(attr_err(
                    "label_files",
                    format!("label {k:?} is set by both labels and label_files"),
                ));
            }
            let bytes = std::fs::read(path).map_err(|e| {
                attr_err(
                    "label_files",
                    format!("{k}: cannot read {}: {e}", path.display()),
                )
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                attr_err(
                    "label_files",
                    format!("{k}: {} is not UTF-8 text", path.display()),
                )
            })?;
            // The file's content is the value as is (a trailing newline too),
            // never stamped: label files are often JSON, full of braces.
            labels.insert(k.clone(), text);
        }
    }
    let created = match &spec.created {
        Some(c) => {
            let c = st.one(c, "creation_time")?;
            Some(created::parse(&c).map_err(|m| attr_err("creation_time", m))?)
        }
        None => None,
    };
    let opt = |v: &Option<String>, what: &str| v.as_deref().map(|s| st.one(s, what)).transpose();
    let optlist =
        |v: &Option<Vec<String>>, what: &str| v.as_deref().map(|l| st.list(l, what)).transpose();
    Ok(ConfigSpec {
        entrypoint,
        cmd,
        env,
        labels,
        workdir: opt(&spec.workdir, "workdir")?,
        user: opt(&spec.user, "user")?,
        ports: optlist(&spec.ports, "ports")?,
        volumes: optlist(&spec.volumes, "volumes")?,
        created,
        label_files: None,
        os_version: opt(&spec.os_version, "os_version")?,
    })
}

/// Applies the spec on top of `base` (the base image's config, or a default
/// for scratch) and sets the platform. Layers and history are handled by the
/// caller.
pub fn apply(
    mut cfg: ImageConfig,
    spec: &ConfigSpec,
    platform: &Platform,
) -> Result<ImageConfig, AttrError> {
    check_values(spec)?;
    if !OPERATING_SYSTEMS.contains(&platform.os.as_str()) {
        return Err(attr_err(
            "operating_system",
            format!(
                "{:?} is not an OCI operating system (one of {})",
                platform.os,
                OPERATING_SYSTEMS.join(", ")
            ),
        ));
    }
    cfg.architecture = platform.architecture.clone();
    cfg.os = platform.os.clone();
    cfg.variant = platform.variant.clone();
    if let Some(created) = &spec.created {
        cfg.created = Some(created.clone());
    }
    if cfg.created.is_none() {
        cfg.created = Some(EPOCH.to_string());
    }
    // An empty os_version is "not set": the base's (if any) is kept.
    if let Some(v) = spec.os_version.as_deref().filter(|v| !v.is_empty()) {
        cfg.os_version = Some(v.to_string());
    }

    let rc = &mut cfg.config;
    if let Some(ep) = &spec.entrypoint {
        // `[]` and null both clear the field; it is written as null.
        rc.entrypoint = Some(ep.clone().filter(|v| !v.is_empty()));
    }
    if let Some(cmd) = &spec.cmd {
        rc.cmd = Some(cmd.clone().filter(|v| !v.is_empty()));
    }
    if let Some(env) = &spec.env {
        merge_env(&mut rc.env, env).map_err(|m| attr_err("env", m))?;
    }
    if let Some(labels) = &spec.labels {
        // Like Dockerfile LABEL: added to the base's, same keys replaced.
        for (k, v) in labels {
            if k.is_empty() {
                return Err(attr_err("labels", "a label key is empty".into()));
            }
            rc.labels.insert(k.clone(), v.clone());
        }
    }
    if let Some(w) = &spec.workdir {
        rc.working_dir = w.clone();
    }
    if let Some(u) = &spec.user {
        rc.user = u.clone();
    }
    if let Some(ports) = &spec.ports {
        // Like Dockerfile EXPOSE: added to the base's.
        for p in ports {
            let key = parse_port(p).map_err(|m| attr_err("ports", m))?;
            rc.exposed_ports.insert(key, Empty {});
        }
    }
    if let Some(volumes) = &spec.volumes {
        // Like Dockerfile VOLUME: added to the base's.
        for v in volumes {
            if !v.starts_with('/') {
                return Err(attr_err(
                    "volumes",
                    format!("{v:?} is not an absolute path (it must start with /)"),
                ));
            }
            rc.volumes.insert(v.clone(), Empty {});
        }
    }
    Ok(cfg)
}

/// The spec's values other than env (checked with its expansion): no NUL
/// anywhere (the runtime passes them as C strings), `workdir` and
/// `volumes` absolute, `workdir` without `..` components, `user` as
/// [`check_user`] (stamped: the analysis-time check lets `{KEY}` through).
fn check_values(spec: &ConfigSpec) -> Result<(), AttrError> {
    let nul = |attr: &str, what: String| attr_err(attr, format!("{what} has a NUL byte"));
    for (attr, list) in [("entrypoint", &spec.entrypoint), ("cmd", &spec.cmd)] {
        for (i, v) in list.iter().flatten().flatten().enumerate() {
            if v.contains('\0') {
                return Err(nul(attr, format!("element {i} ({v:?})")));
            }
        }
    }
    for (attr, v) in [("user", &spec.user), ("workdir", &spec.workdir)] {
        if let Some(v) = v.as_deref().filter(|v| v.contains('\0')) {
            return Err(nul(attr, format!("{v:?}")));
        }
    }
    for (k, v) in spec.labels.iter().flatten() {
        if k.contains('\0') || v.contains('\0') {
            return Err(nul("labels", format!("{k:?} = {v:?}")));
        }
    }
    for v in spec.volumes.iter().flatten() {
        if v.contains('\0') {
            return Err(nul("volumes", format!("{v:?}")));
        }
    }
    if let Some(w) = spec.workdir.as_deref().filter(|w| !w.is_empty()) {
        check_path(w).map_err(|e| attr_err("workdir", e))?;
        if w.split('/').any(|c| c == "..") {
            return Err(attr_err(
                "workdir",
                format!(
                    "{w:?} has a `..` component (the working directory is an absolute path \
                     in the image)"
                ),
            ));
        }
    }
    // Unstamped, a whole `{KEY}` stays as written, like every attribute's
    // braces (the analysis-time check lets it through for stamping).
    if let Some(u) = spec
        .user
        .as_deref()
        .filter(|u| !u.is_empty() && !is_whole_stamp_key(u))
    {
        check_user(u).map_err(|e| attr_err("user", e))?;
    }
    Ok(())
}

/// `{KEY}`: one stamp variable and nothing else.
fn is_whole_stamp_key(value: &str) -> bool {
    value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// The config's `user`: `user[:group]`, each a name or a numeric id of
/// letters, digits, `_`, `.` and `-` (not first). Runtimes look it up in
/// /etc/passwd and /etc/group; spaces and shell metacharacters name nobody.
pub fn check_user(user: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    let mut parts = user.split(':');
    let ok = parts.next().is_some_and(part_ok)
        && parts.next().is_none_or(part_ok)
        && parts.next().is_none();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{user:?} is not `user[:group]` (each a name or a numeric id: letters, digits, \
             `_`, `.`, `-`)"
        ))
    }
}

/// A path in the image's config (workdir, a volume): absolute, no NUL.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.contains('\0') {
        return Err(format!("{path:?} has a NUL byte"));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is not an absolute path (it must start with /)"
        ));
    }
    Ok(())
}

/// Merges `K=V` pairs into `env` in the user's order: an existing key is
/// replaced in place, a new one appended. `$VAR`/`${VAR}` in values are
/// expanded against the env so far, as Dockerfile `ENV` does (see
/// `envexpand`).
pub fn merge_env(env: &mut Vec<String>, pairs: &[(String, String)]) -> Result<(), String> {
    for (k, v) in pairs {
        // The rules' rule too (utils.bzl env_name_error): no whitespace.
        if k.is_empty() || k.contains(['=', '\0', ' ', '\t', '\r', '\n']) {
            return Err(format!(
                "{k:?} is not a valid variable name (it must be non-empty, without '=', \
                 whitespace or NUL)"
            ));
        }
        let v = envexpand::expand(v, env).map_err(|e| format!("{k}: {e}"))?;
        if v.contains('\0') {
            return Err(format!("the value of {k} has a NUL byte"));
        }
        let entry = format!("{k}={v}");
        let existing = env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(name, _)| name) == k);
        match existing {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
    Ok(())
}

/// Validates `N`, `N/tcp`, `N/udp` or `N/sctp` (1..=65535; Docker exposes
/// all three) and returns the
/// `ExposedPorts` key (`N/proto`, tcp by default).
pub fn parse_port(port: &str) -> Result<String, String> {
    let bad =
        || format!("{port:?} is not a port: expected N, N/tcp, N/udp or N/sctp with N in 1..65535");
    let (num, proto) = match port.split_once('/') {
        Some((n, p @ ("tcp" | "udp" | "sctp"))) => (n, p),
        Some(_) => return Err(bad()),
        None => (port, "tcp"),
    };
    // Digits only, no sign or leading zero, so each port has one spelling.
    if num.is_empty() || num.starts_with('0') || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match num.parse::<u16>() {
        Ok(n) if n >= 1 => Ok(format!("{n}/{proto}")),
        _ => Err(bad()),
    }
}

/// The history entry recorded for each new layer.
pub fn history_entry(created: &str, target: &str) -> Value {
    serde_json::json!({"created": created, "created_by": format!("rules_kiln {target}")})
}

/// Appends the new layers' diff_ids and history to `cfg`, after checking the
/// base config agrees with the base manifest.
pub fn add_layers(
    cfg: &mut ImageConfig,
    base_layers: usize,
    diff_ids: Vec<Digest>,
    target: &str,
) -> anyhow::Result<()> {
    if cfg.rootfs.diff_ids.len() != base_layers {
        bail!(
            "the base config lists {} diff_ids but its manifest has {} layers",
            cfg.rootfs.diff_ids.len(),
            base_layers
        );
    }
    let total = base_layers + diff_ids.len();
    if total > MAX_LAYERS {
        bail!(
            "the image would have {total} layers ({base_layers} of the base, {} of its own); \
             Docker and containerd accept at most {MAX_LAYERS}",
            diff_ids.len()
        );
    }
    if cfg.rootfs.kind != "layers" {
        return Err(anyhow!("unsupported rootfs type {:?}", cfg.rootfs.kind));
    }
    let created = cfg.created.clone().unwrap_or_else(|| EPOCH.to_string());
    for d in diff_ids {
        cfg.rootfs.diff_ids.push(d);
        cfg.history.push(history_entry(&created, target));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::canonical;

    fn linux_amd64() -> Platform {
        "linux/amd64".parse().unwrap()
    }

    fn spec(json: Value) -> ConfigSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn env_merge_replaces_in_place_and_appends() {
        let mut env = vec![
            "PATH=/bin".to_string(),
            "HOME=/root".to_string(),
            "ODD".to_string(),
        ];
        merge_env(
            &mut env,
            &[
                ("NEW".into(), "1".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("GREETING".into(), "hi $PATH".into()),
                ("NEW".into(), "2".into()),
                ("ODD".into(), "x=y".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            env,
            [
                "PATH=/usr/bin:/bin",
                "HOME=/root",
                "ODD=x=y",
                "NEW=2",
                "GREETING=hi /usr/bin:/bin"
            ]
        );
        for bad in ["", "A=B"] {
            let err = merge_env(&mut env, &[(bad.into(), "v".into())]).unwrap_err();
            assert!(err.contains("not a valid variable name"), "{err}");
        }
    }

    /// tools/testdata/validation.json, shared with the Starlark analysis test
    /// e2e/basic/vectors.
    pub(crate) fn vectors(kind: &str) -> (Vec<String>, Vec<String>) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/validation.json");
        let all: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let list = |which: &str| -> Vec<String> {
            serde_json::from_value(all[kind][which].clone()).unwrap()
        };
        (list("valid"), list("invalid"))
    }

    #[test]
    fn shared_vectors() {
        let (valid, invalid) = vectors("ports");
        for p in &valid {
            assert!(parse_port(p).is_ok(), "port {p:?} should be valid");
        }
        for p in &invalid {
            assert!(parse_port(p).is_err(), "port {p:?} should be invalid");
        }
        let env = |k: &str| merge_env(&mut Vec::new(), &[(k.to_string(), "v".to_string())]);
        let (valid, invalid) = vectors("env_names");
        for k in &valid {
            assert!(env(k).is_ok(), "env name {k:?} should be valid");
        }
        for k in &invalid {
            assert!(env(k).is_err(), "env name {k:?} should be invalid");
        }
        let (valid, invalid) = vectors("paths");
        for p in &valid {
            assert!(check_path(p).is_ok(), "path {p:?} should be valid");
        }
        for p in &invalid {
            assert!(check_path(p).is_err(), "path {p:?} should be invalid");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080").unwrap(), "8080/tcp");
        assert_eq!(parse_port("8080/tcp").unwrap(), "8080/tcp");
        assert_eq!(parse_port("53/udp").unwrap(), "53/udp");
        assert_eq!(parse_port("9000/sctp").unwrap(), "9000/sctp");
        assert_eq!(parse_port("65535").unwrap(), "65535/tcp");
        assert_eq!(parse_port("1").unwrap(), "1/tcp");
        for bad in [
            "",
            "0",
            "65536",
            "080",
            "-1",
            "+80",
            "80/SCTP",
            "80/",
            "/tcp",
            "80/TCP",
            "8080-8081",
            " 80",
            "eighty",
            "99999999999999999999",
        ] {
            let err = parse_port(bad).unwrap_err();
            assert!(err.starts_with(&format!("{bad:?} is not a port")), "{err}");
        }
        let err = apply(
            ImageConfig::default(),
            &spec(serde_json::json!({"ports": ["80", "70000"]})),
            &linux_amd64(),
        )
        .unwrap_err();
        assert_eq!(err.attr, "ports");
        assert!(err.message.contains("\"70000\""));
    }

    #[test]
    fn inherits_and_overrides() {
        let base: ImageConfig = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
            "author": "someone",
            "config": {
                "Entrypoint": ["/base"], "Cmd": ["x"], "Env": ["PATH=/bin"],
                "Labels": {"a": "1"}, "User": "0", "StopSignal": "SIGTERM",
                "ExposedPorts": {"22/tcp": {}}, "Volumes": null
            },
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created_by": "base"}]
        }))
        .unwrap();
        let s = spec(serde_json::json!({
            "cmd": [], "env": [["GREETING", "hi"]], "labels": {"b": "2", "a": "0"},
            "ports": ["8080"], "workdir": "/app"
        }));
        let out = apply(base, &s, &"linux/arm64/v8".parse().unwrap()).unwrap();
        let json = String::from_utf8(canonical::to_vec(&out).unwrap()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"architecture":"arm64","author":"someone","config":{"Cmd":null,"#,
                r#""Entrypoint":["/base"],"Env":["PATH=/bin","GREETING=hi"],"#,
                r#""ExposedPorts":{"22/tcp":{},"8080/tcp":{}},"Labels":{"a":"0","b":"2"},"#,
                r#""StopSignal":"SIGTERM","User":"0","WorkingDir":"/app"},"#,
                r#""created":"2020-01-01T00:00:00Z","history":[{"created_by":"base"}],"#,
                r#""os":"linux","rootfs":{"diff_ids":[],"type":"layers"},"variant":"v8"}"#
            )
        );
    }

    #[test]
    fn scratch_defaults() {
        let s = spec(serde_json::json!({"entrypoint": null}));
        let mut out = apply(ImageConfig::default(), &s, &linux_amd64()).unwrap();
        add_layers(&mut out, 0, vec![kiln_oci::sha256_bytes(b"l")], "//t:i").unwrap();
        let json = String::from_utf8(canonical::to_vec(&out).unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                concat!(
                    r#"{{"architecture":"amd64","config":{{"Entrypoint":null}},"#,
                    r#""created":"1970-01-01T00:00:00Z","#,
                    r#""history":[{{"created":"1970-01-01T00:00:00Z","created_by":"rules_kiln //t:i"}}],"#,
                    r#""os":"linux","rootfs":{{"diff_ids":["{}"],"type":"layers"}}}}"#
                ),
                kiln_oci::sha256_bytes(b"l")
            )
        );
        // A config with nothing set omits "config" entirely.
        let out = apply(
            ImageConfig::default(),
            &ConfigSpec::default(),
            &linux_amd64(),
        )
        .unwrap();
        let json = String::from_utf8(canonical::to_vec(&out).unwrap()).unwrap();
        assert!(!json.contains("\"config\""), "{json}");
    }

    #[test]
    fn env_expands_against_base_and_earlier_entries() {
        let base: ImageConfig = serde_json::from_value(serde_json::json!({
            "config": {"Env": ["PATH=/bin", "HOME=/root"]}
        }))
        .unwrap();
        let s = spec(serde_json::json!({"env": [
            ["PATH", "$PATH:/app/bin"],
            ["APP", "${HOME}/app"],
            ["LOG", "$APP/log \\$APP ${NOPE:-none} $UNSET."],
        ]}));
        let out = apply(base, &s, &linux_amd64()).unwrap();
        assert_eq!(
            out.config.env,
            [
                "PATH=/bin:/app/bin",
                "HOME=/root",
                "APP=/root/app",
                "LOG=/root/app/log $APP none ."
            ]
        );
        let err = apply(
            ImageConfig::default(),
            &spec(serde_json::json!({"env": [["A", "${B"]]})),
            &linux_amd64(),
        )
        .unwrap_err();
        assert_eq!(err.attr, "env");
        assert!(err.message.starts_with("A: missing '}'"), "{}", err.message);
        let err = apply(
            ImageConfig::default(),
            &spec(serde_json::json!({"env": [["A\u{0}", "x"]]})),
            &linux_amd64(),
        )
        .unwrap_err();
        assert_eq!(err.attr, "env");
        assert!(err.message.contains("\"A\\0\""), "{}", err.message);
    }

    #[test]
    fn resolve_stamps_every_string() {
        let stamp = Stamp::from_pairs([("USER", "alice"), ("TS", "1704164645")]);
        let s = spec(serde_json::json!({
            "entrypoint": ["/{USER}"], "cmd": ["{USER}"], "env": [["A", "{USER} $HOME"]],
            "labels": {"l": "by {USER} {{x}}"}, "workdir": "/{USER}", "user": "{USER}",
            "ports": ["80{TS}"], "volumes": ["/v/{USER}"], "created": "{TS}",
            "os_version": "{USER}"
        }));
        let r = resolve(&s, Some(&stamp)).unwrap();
        assert_eq!(r.entrypoint, Some(Some(vec!["/alice".to_string()])));
        assert_eq!(r.cmd, Some(Some(vec!["alice".to_string()])));
        assert_eq!(r.env.unwrap()[0].1, "alice $HOME");
        assert_eq!(r.labels.unwrap()["l"], "by alice {x}");
        assert_eq!(r.workdir.as_deref(), Some("/alice"));
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert_eq!(r.ports.unwrap(), ["801704164645"]);
        assert_eq!(r.volumes.unwrap(), ["/v/alice"]);
        assert_eq!(r.created.as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(r.os_version.as_deref(), Some("alice"));

        // Without a stamp, braces are left alone.
        let mut s = s;
        s.created = None;
        let r = resolve(&s, None).unwrap();
        assert_eq!(r.labels.unwrap()["l"], "by {USER} {{x}}");
        assert_eq!(r.env.unwrap()[0].1, "{USER} $HOME");

        let err = resolve(
            &spec(serde_json::json!({"env": [["FOO", "{NOPE}"]]})),
            Some(&stamp),
        )
        .unwrap_err();
        assert_eq!(err.attr, "env[FOO]");
        assert!(
            err.message.starts_with("unknown stamp variable {NOPE}"),
            "{}",
            err.message
        );
        let err = resolve(
            &spec(serde_json::json!({"created": "{USER}"})),
            Some(&stamp),
        )
        .unwrap_err();
        assert_eq!(err.attr, "creation_time");
        assert!(
            err.message.starts_with("\"alice\" is not a time"),
            "{}",
            err.message
        );
        let err = resolve(&spec(serde_json::json!({"created": "{TS}"})), None).unwrap_err();
        assert_eq!(err.attr, "creation_time");
        assert!(err.message.contains("\"{TS}\""), "{}", err.message);
    }

    #[test]
    fn label_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        std::fs::write(&text, "line 1\nline 2\n").unwrap();
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        let s = spec(serde_json::json!({
            "labels": {"a": "1"}, "label_files": {"b": text}
        }));
        let r = resolve(&s, None).unwrap();
        assert_eq!(
            r.labels.unwrap(),
            BTreeMap::from([
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "line 1\nline 2\n".to_string())
            ])
        );
        let err = resolve(
            &spec(serde_json::json!({"label_files": {"b": binary}})),
            None,
        )
        .unwrap_err();
        assert_eq!(err.attr, "label_files");
        assert!(err.message.starts_with("b: ") && err.message.ends_with("is not UTF-8 text"));
        let err = resolve(
            &spec(serde_json::json!({"label_files": {"b": dir.path().join("nope")}})),
            None,
        )
        .unwrap_err();
        assert!(err.message.starts_with("b: cannot read ") && err.message.contains("nope"));
        let err = resolve(
            &spec(serde_json::json!({"labels": {"b": "x"}, "label_files": {"b": text}})),
            None,
        )
        .unwrap_err();
        assert_eq!(err.attr, "label_files");
        assert!(err.message.contains("\"b\""), "{}", err.message);
    }

    #[test]
    fn os_version_is_set_or_inherited() {
        let s = spec(serde_json::json!({"os_version": "10.0.17763.1040"}));
        let out = apply(ImageConfig::default(), &s, &linux_amd64()).unwrap();
        let json = String::from_utf8(canonical::to_vec(&out).unwrap()).unwrap();
        assert!(json.contains(r#""os.version":"10.0.17763.1040""#), "{json}");
        let base: ImageConfig =
            serde_json::from_value(serde_json::json!({"os.version": "1.2"})).unwrap();
        let out = apply(base.clone(), &ConfigSpec::default(), &linux_amd64()).unwrap();
        assert_eq!(out.os_version.as_deref(), Some("1.2"));
        let s = spec(serde_json::json!({"os_version": ""}));
        let out = apply(base, &s, &linux_amd64()).unwrap();
        assert_eq!(out.os_version.as_deref(), Some("1.2"));
    }

    #[test]
    fn nul_relative_paths_os_and_layer_count_are_refused() {
        let refused = |spec: ConfigSpec, platform: &Platform| {
            let e = apply(ImageConfig::default(), &spec, platform).unwrap_err();
            format!("{}: {}", e.attr, e.message)
        };
        let p = linux_amd64();
        let e = refused(
            ConfigSpec {
                entrypoint: Some(Some(vec!["/app\0x".into()])),
                ..Default::default()
            },
            &p,
        );
        assert!(
            e.starts_with("entrypoint: element 0") && e.contains("NUL"),
            "{e}"
        );
        for (spec, attr) in [
            (
                ConfigSpec {
                    cmd: Some(Some(vec!["a\0".into()])),
                    ..Default::default()
                },
                "cmd",
            ),
            (
                ConfigSpec {
                    user: Some("u\0".into()),
                    ..Default::default()
                },
                "user",
            ),
            (
                ConfigSpec {
                    labels: Some([("k".to_string(), "v\0".to_string())].into()),
                    ..Default::default()
                },
                "labels",
            ),
        ] {
            let e = refused(spec, &p);
            assert!(e.starts_with(attr) && e.contains("NUL"), "{e}");
        }
        let e = refused(
            ConfigSpec {
                workdir: Some("app".into()),
                ..Default::default()
            },
            &p,
        );
        assert!(
            e.starts_with("workdir: \"app\" is not an absolute path"),
            "{e}"
        );
        let e = refused(
            ConfigSpec {
                workdir: Some("/../../etc".into()),
                ..Default::default()
            },
            &p,
        );
        assert!(
            e.starts_with("workdir: \"/../../etc\" has a `..` component"),
            "{e}"
        );
        let e = refused(
            ConfigSpec {
                user: Some("root; rm -rf /".into()),
                ..Default::default()
            },
            &p,
        );
        assert!(
            e.starts_with("user: \"root; rm -rf /\" is not `user[:group]`"),
            "{e}"
        );
        for good in ["65532", "nonroot:nonroot", "1000:1000", "www-data", "a.b_c"] {
            assert_eq!(check_user(good), Ok(()), "{good}");
        }
        for bad in [
            "", ":", "a:", ":b", "a:b:c", "-x", "a b", "$(id)", "a`b`", "ä",
        ] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
        let e = refused(
            ConfigSpec {
                volumes: Some(vec!["data".into()]),
                ..Default::default()
            },
            &p,
        );
        assert!(e.starts_with("volumes: \"data\" is not an absolute"), "{e}");
        let mut bad_os = linux_amd64();
        bad_os.os = "linuxx".into();
        let e = refused(ConfigSpec::default(), &bad_os);
        assert!(e.starts_with("operating_system: \"linuxx\""), "{e}");

        let mut cfg = ImageConfig::default();
        cfg.rootfs.kind = "layers".into();
        cfg.rootfs.diff_ids = vec![kiln_oci::sha256_bytes(b"x"); 127];
        let err = add_layers(&mut cfg, 127, vec![kiln_oci::sha256_bytes(b"y")], "t").unwrap_err();
        assert!(err.to_string().contains("128 layers"), "{err}");
    }

    #[test]
    fn base_layer_count_must_match() {
        let mut cfg = ImageConfig::default();
        let err = add_layers(&mut cfg, 1, vec![], "t").unwrap_err();
        assert!(err
            .to_string()
            .contains("0 diff_ids but its manifest has 1"));
    }
}
