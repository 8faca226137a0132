//! Bazel workspace status ("stamp") values and their `{KEY}` substitution.
//!
//! Bazel writes `stable-status.txt` and `volatile-status.txt` as `KEY value`
//! lines. rules_docker substituted them into attributes with Python's
//! `str.format`, so `{BUILD_USER}` is a key and `{{`/`}}` are literal braces.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The keys and values of one or more Bazel status files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stamp {
    values: BTreeMap<String, String>,
}

impl Stamp {
    /// Reads status files in order; a key in a later file replaces an earlier one.
    pub fn load<P: AsRef<Path>>(files: &[P]) -> Result<Self> {
        let mut stamp = Stamp::default();
        for file in files {
            let file = file.as_ref();
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading stamp file {}", file.display()))?;
            stamp.add_status_text(&text);
        }
        Ok(stamp)
    }

    /// Builds a stamp from explicit pairs (tests, and callers that have no files).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Stamp {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn add_status_text(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            // The value is everything after the first space; it may itself hold spaces.
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            self.values.insert(key.to_string(), value.to_string());
        }
    }

    /// The value of `key`, if the status files define it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Replaces every `{KEY}` in `input`. `what` names the attribute in errors.
    pub fn expand(&self, input: &str, what: &str) -> Result<String> {
        let mut out = String::with_capacity(input.len());
        let mut rest = input;
        while let Some(pos) = rest.find(['{', '}']) {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("{{") {
                out.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                out.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                bail!("{what}: single '}}' in {input:?} (write '}}}}' for a literal brace)");
            } else {
                let Some(end) = tail.find('}') else {
                    bail!("{what}: unclosed '{{' in {input:?} (write '{{{{' for a literal brace)");
                };
                let key = &tail[1..end];
                match self.values.get(key) {
                    Some(value) => out.push_str(value),
                    None => bail!(
                        "{what}: unknown stamp variable {{{key}}} in {input:?}; known: {}",
                        self.values.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                }
                rest = &tail[end + 1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        let mut s = Stamp::default();
        s.add_status_text("BUILD_USER alice\nBUILD_TIMESTAMP 1700000000\nBUILD_EMBED_LABEL release 1.2\n\nEMPTY\n");
        s
    }

    #[test]
    fn substitutes_keys() {
        let s = stamp();
        assert_eq!(
            s.expand("v{BUILD_EMBED_LABEL}-{BUILD_USER}", "tag")
                .unwrap(),
            "vrelease 1.2-alice"
        );
        assert_eq!(s.expand("x{EMPTY}y", "tag").unwrap(), "xy");
        assert_eq!(s.expand("plain", "tag").unwrap(), "plain");
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(
            stamp().expand("{{BUILD_USER}}", "label").unwrap(),
            "{BUILD_USER}"
        );
    }

    #[test]
    fn unknown_key_names_attribute_and_key() {
        let err = stamp()
            .expand("{NOPE}", "labels[a]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("labels[a]") && err.contains("{NOPE}"), "{err}");
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        assert!(stamp().expand("{BUILD_USER", "tag").is_err());
        assert!(stamp().expand("a}b", "tag").is_err());
    }

    #[test]
    fn later_files_win() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("stable-status.txt");
        let b = dir.path().join("volatile-status.txt");
        std::fs::write(&a, "K one\nA a\n").unwrap();
        std::fs::write(&b, "K two\n").unwrap();
        let s = Stamp::load(&[&a, &b]).unwrap();
        assert_eq!(s.get("K"), Some("two"));
        assert_eq!(s.get("A"), Some("a"));
        let missing = Stamp::load(&[dir.path().join("nope")]).unwrap_err();
        assert!(format!("{missing:#}").contains("nope"));
    }
}
