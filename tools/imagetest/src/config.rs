//! container-structure-test configs, schemaVersion 2.0.0 (YAML or JSON).
//!
//! The keys and their defaults are container-structure-test's: a file
//! existence test expects the file to exist unless `shouldExist: false`,
//! owners are only checked when given, `exitCode` defaults to 0. Any key
//! that is not part of the schema is an error naming it, so a typo never
//! silently skips a check.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

pub const SCHEMA_VERSION: &str = "2.0.0";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub schema_version: Option<String>,
    #[serde(default)]
    pub global_env_vars: Vec<EnvVar>,
    #[serde(default)]
    pub file_existence_tests: Vec<FileExistenceTest>,
    #[serde(default)]
    pub file_content_tests: Vec<FileContentTest>,
    #[serde(default)]
    pub metadata_test: Option<MetadataTest>,
    #[serde(default)]
    pub command_tests: Vec<CommandTest>,
    /// Part of the schema, not supported here: refused by `validate`.
    #[serde(default)]
    pub license_tests: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileExistenceTest {
    pub name: String,
    pub path: String,
    #[serde(default = "yes")]
    pub should_exist: bool,
    /// Go's `os.FileMode` string, e.g. `-rwxr-xr-x`, `drwxr-xr-x`.
    pub permissions: Option<String>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    /// `owner`, `group`, `other` or `any`.
    pub is_executable_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileContentTest {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub expected_contents: Vec<String>,
    #[serde(default)]
    pub excluded_contents: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataTest {
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    #[serde(default)]
    pub labels: Vec<EnvVar>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub unexposed_ports: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub unmounted_volumes: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandTest {
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    #[serde(default)]
    pub expected_output: Vec<String>,
    #[serde(default)]
    pub excluded_output: Vec<String>,
    #[serde(default)]
    pub expected_error: Vec<String>,
    #[serde(default)]
    pub excluded_error: Vec<String>,
    #[serde(default)]
    pub exit_code: i32,
    /// Part of the schema, not supported here: refused by `validate`.
    pub setup: Option<serde_json::Value>,
    pub teardown: Option<serde_json::Value>,
}

/// Parses `text` (JSON when `path` ends in `.json`, else YAML, of which
/// JSON is a subset) and validates it; errors name `path`.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Config> {
    let shown = path.display();
    let is_json = path.extension().is_some_and(|e| e == "json");
    let config: Config = if is_json {
        serde_json::from_str(text)
            .with_context(|| format!("config {shown}: not a valid structure test config"))?
    } else {
        serde_yaml_ng::from_str(text)
            .with_context(|| format!("config {shown}: not a valid structure test config"))?
    };
    validate(&config).with_context(|| format!("config {shown}"))?;
    Ok(config)
}

/// Reads and parses the config file at `path`; errors name it `name` (the
/// path the user wrote).
pub fn load(path: &Path, name: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("config {}: cannot read {}", name.display(), path.display()))?;
    parse(name, &text)
}

fn validate(c: &Config) -> anyhow::Result<()> {
    match c.schema_version.as_deref() {
        Some(SCHEMA_VERSION) => {}
        Some(other) => bail!("schemaVersion: {other:?} is not supported (only {SCHEMA_VERSION:?})"),
        None => bail!("schemaVersion: missing (write schemaVersion: {SCHEMA_VERSION:?})"),
    }
    if c.license_tests.is_some() {
        bail!("licenseTests: not supported by image_test");
    }
    let named = |kind: &str, i: usize, name: &str| -> anyhow::Result<()> {
        if name.trim().is_empty() {
            bail!("{kind}[{i}]: name: empty (every test needs a name)");
        }
        Ok(())
    };
    let regexes = |kind: &str, name: &str, key: &str, list: &[String]| -> anyhow::Result<()> {
        for r in list {
            regex::Regex::new(r)
                .with_context(|| format!("{kind} {name:?}: {key}: {r:?} is not a valid regex"))?;
        }
        Ok(())
    };
    for (i, t) in c.file_existence_tests.iter().enumerate() {
        named("fileExistenceTests", i, &t.name)?;
        if t.path.is_empty() {
            bail!("fileExistenceTests {:?}: path: empty", t.name);
        }
        if let Some(p) = &t.permissions {
            if p.len() < 10 {
                bail!("fileExistenceTests {:?}: permissions: {p:?} is not a mode string like \"-rwxr-xr-x\"", t.name);
            }
        }
        if let Some(e) = &t.is_executable_by {
            if !matches!(e.as_str(), "owner" | "group" | "other" | "any") {
                bail!("fileExistenceTests {:?}: isExecutableBy: {e:?} is not owner, group, other or any", t.name);
            }
        }
    }
    for (i, t) in c.file_content_tests.iter().enumerate() {
        named("fileContentTests", i, &t.name)?;
        if t.path.is_empty() {
            bail!("fileContentTests {:?}: path: empty", t.name);
        }
        regexes(
            "fileContentTests",
            &t.name,
            "expectedContents",
            &t.expected_contents,
        )?;
        regexes(
            "fileContentTests",
            &t.name,
            "excludedContents",
            &t.excluded_contents,
        )?;
    }
    for (i, t) in c.command_tests.iter().enumerate() {
        named("commandTests", i, &t.name)?;
        if t.command.is_empty() {
            bail!("commandTests {:?}: command: empty", t.name);
        }
        if t.setup.is_some() || t.teardown.is_some() {
            bail!("commandTests {:?}: setup and teardown are not supported by image_test (each command runs in a fresh copy of nothing: give the whole command)", t.name);
        }
        regexes(
            "commandTests",
            &t.name,
            "expectedOutput",
            &t.expected_output,
        )?;
        regexes(
            "commandTests",
            &t.name,
            "excludedOutput",
            &t.excluded_output,
        )?;
        regexes("commandTests", &t.name, "expectedError", &t.expected_error)?;
        regexes("commandTests", &t.name, "excludedError", &t.excluded_error)?;
    }
    if let Some(m) = &c.metadata_test {
        for e in m.env_vars.iter().chain(&m.labels) {
            if e.key.is_empty() {
                bail!("metadataTest: an envVars or labels entry has an empty key");
            }
            if e.is_regex {
                regex::Regex::new(&e.value).with_context(|| {
                    format!(
                        "metadataTest: {}: {:?} is not a valid regex",
                        e.key, e.value
                    )
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> anyhow::Result<Config> {
        parse(Path::new("t.yaml"), text)
    }

    #[test]
    fn yaml_defaults_follow_container_structure_test() {
        let c = yaml(
            "schemaVersion: 2.0.0\n\
             fileExistenceTests:\n\
             - name: bin\n  path: /app\n  permissions: -rwxr-xr-x\n  uid: 0\n\
             commandTests:\n\
             - name: version\n  command: /app\n  args: [--version]\n  expectedOutput: ['app \\S+']\n",
        )
        .unwrap();
        let f = &c.file_existence_tests[0];
        assert!(f.should_exist);
        assert_eq!(f.uid, Some(0));
        assert_eq!(f.gid, None);
        assert_eq!(c.command_tests[0].exit_code, 0);
        assert_eq!(c.command_tests[0].args, ["--version"]);
    }

    #[test]
    fn json_is_read_as_json() {
        let c = parse(
            Path::new("t.json"),
            r#"{"schemaVersion": "2.0.0", "metadataTest": {"user": "65532", "envVars": [{"key": "PATH", "value": "/usr/.*", "isRegex": true}]}}"#,
        )
        .unwrap();
        let m = c.metadata_test.unwrap();
        assert_eq!(m.user.as_deref(), Some("65532"));
        assert!(m.env_vars[0].is_regex);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = yaml("schemaVersion: 2.0.0\nfileExistenceTests:\n- name: a\n  path: /a\n  shouldexist: true\n")
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("t.yaml") && msg.contains("shouldexist"),
            "{msg}"
        );
        let err = parse(
            Path::new("c.json"),
            r#"{"schemaVersion": "2.0.0", "fileTests": []}"#,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("c.json") && msg.contains("fileTests"), "{msg}");
    }

    #[test]
    fn schema_version_must_be_2_0_0() {
        let msg = format!("{:#}", yaml("schemaVersion: 1.0.0\n").unwrap_err());
        assert!(
            msg.contains("schemaVersion") && msg.contains("1.0.0"),
            "{msg}"
        );
        let msg = format!("{:#}", yaml("commandTests: []\n").unwrap_err());
        assert!(msg.contains("schemaVersion: missing"), "{msg}");
    }

    #[test]
    fn bad_regexes_and_unsupported_keys_fail_early() {
        let msg = format!(
            "{:#}",
            yaml("schemaVersion: 2.0.0\nfileContentTests:\n- name: c\n  path: /a\n  expectedContents: ['(']\n")
                .unwrap_err()
        );
        assert!(msg.contains("expectedContents"), "{msg}");
        let msg = format!(
            "{:#}",
            yaml("schemaVersion: 2.0.0\ncommandTests:\n- name: c\n  command: x\n  setup: [[a]]\n")
                .unwrap_err()
        );
        assert!(msg.contains("setup"), "{msg}");
        let msg = format!(
            "{:#}",
            yaml("schemaVersion: 2.0.0\nfileExistenceTests:\n- name: f\n  path: /a\n  isExecutableBy: world\n")
                .unwrap_err()
        );
        assert!(msg.contains("isExecutableBy"), "{msg}");
    }
}
