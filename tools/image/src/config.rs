//! The image config document and how the user's `config` attributes are
//! applied on top of the base image's.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use kiln_oci::{Digest, Platform};

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
}

/// A user error in the config attributes: which attribute, and what.
#[derive(Debug)]
pub struct AttrError {
    pub attr: &'static str,
    pub message: String,
}

fn attr_err(attr: &'static str, message: String) -> AttrError {
    AttrError { attr, message }
}

/// Applies the spec on top of `base` (the base image's config, or a default
/// for scratch) and sets the platform. Layers and history are handled by the
/// caller.
pub fn apply(
    mut cfg: ImageConfig,
    spec: &ConfigSpec,
    platform: &Platform,
) -> Result<ImageConfig, AttrError> {
    cfg.architecture = platform.architecture.clone();
    cfg.os = platform.os.clone();
    cfg.variant = platform.variant.clone();
    if let Some(created) = &spec.created {
        cfg.created = Some(created.clone());
    }
    if cfg.created.is_none() {
        cfg.created = Some(EPOCH.to_string());
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
            if v.is_empty() || v.contains('\0') {
                return Err(attr_err("volumes", format!("{v:?} is not a valid path")));
            }
            rc.volumes.insert(v.clone(), Empty {});
        }
    }
    Ok(cfg)
}

/// Merges `K=V` pairs into `env` in the user's order: an existing key is
/// replaced in place, a new one appended. Values are literal (no `$VAR`
/// expansion).
pub fn merge_env(env: &mut Vec<String>, pairs: &[(String, String)]) -> Result<(), String> {
    for (k, v) in pairs {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(format!(
                "{k:?} is not a valid variable name (it must be non-empty without '=')"
            ));
        }
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

/// Validates `N`, `N/tcp` or `N/udp` (1..=65535) and returns the
/// `ExposedPorts` key (`N/proto`, tcp by default).
pub fn parse_port(port: &str) -> Result<String, String> {
    let bad = || format!("{port:?} is not a port: expected N, N/tcp or N/udp with N in 1..65535");
    let (num, proto) = match port.split_once('/') {
        Some((n, p @ ("tcp" | "udp"))) => (n, p),
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
                "GREETING=hi $PATH"
            ]
        );
        for bad in ["", "A=B"] {
            let err = merge_env(&mut env, &[(bad.into(), "v".into())]).unwrap_err();
            assert!(err.contains("not a valid variable name"), "{err}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080").unwrap(), "8080/tcp");
        assert_eq!(parse_port("8080/tcp").unwrap(), "8080/tcp");
        assert_eq!(parse_port("53/udp").unwrap(), "53/udp");
        assert_eq!(parse_port("65535").unwrap(), "65535/tcp");
        assert_eq!(parse_port("1").unwrap(), "1/tcp");
        for bad in [
            "",
            "0",
            "65536",
            "080",
            "-1",
            "+80",
            "80/sctp",
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
    fn base_layer_count_must_match() {
        let mut cfg = ImageConfig::default();
        let err = add_layers(&mut cfg, 1, vec![], "t").unwrap_err();
        assert!(err
            .to_string()
            .contains("0 diff_ids but its manifest has 1"));
    }
}
