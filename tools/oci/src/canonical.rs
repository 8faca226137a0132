//! Canonical JSON: object keys sorted bytewise at every depth, no
//! insignificant whitespace, UTF-8, no trailing newline.
//!
//! The key order is produced here rather than inherited from `serde_json::Map`,
//! because feature unification (`preserve_order`) anywhere in the workspace
//! would silently change the map's iteration order and with it every digest.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

/// Serialises `value` as canonical JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<Vec<u8>> {
    let value = serde_json::to_value(value).context("converting to JSON")?;
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, &value)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> anyhow::Result<()> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // `str` ordering is bytewise over UTF-8, which is the canonical order.
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key)?;
                out.push(b':');
                write_value(out, val)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::String(s) => write_string(out, s)?,
        // Scalars have a single compact form in serde_json.
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            serde_json::to_writer(&mut *out, value).context("writing JSON scalar")?;
        }
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, s).context("writing JSON string")?;
    Ok(())
}

/// Writes canonical JSON to `writer`.
pub fn to_writer<W: Write, T: Serialize + ?Sized>(mut writer: W, value: &T) -> anyhow::Result<()> {
    let bytes = to_vec(value)?;
    writer.write_all(&bytes).context("writing JSON")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn numbers_round_trip_exactly() {
        // `1e-0307` parsed without float_roundtrip came back as 1.0000000000000001e-307.
        for text in ["[1e-0307]", "[0.1]", "[1.7976931348623157e308]", "[5e-324]"] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let again: serde_json::Value =
                serde_json::from_slice(&to_vec(&value).unwrap()).unwrap();
            assert_eq!(value, again, "{text}");
        }
    }

    #[test]
    fn sorts_keys_at_every_depth() {
        let v = json!({
            "b": {"z": 1, "a": [ {"y": true, "x": null} ]},
            "a": "s",
            "B": 2,
            "aa": 1.5,
        });
        let out = String::from_utf8(to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"B":2,"a":"s","aa":1.5,"b":{"a":[{"x":null,"y":true}],"z":1}}"#
        );
    }

    #[test]
    fn bytewise_not_locale_order() {
        // Uppercase sorts before lowercase, and multi-byte UTF-8 after ASCII.
        let mut m = HashMap::new();
        for k in ["é", "z", "Z", "_", "a/b", "a-b", "a"] {
            m.insert(k, 0);
        }
        let out = String::from_utf8(to_vec(&m).unwrap()).unwrap();
        assert_eq!(out, r#"{"Z":0,"_":0,"a":0,"a-b":0,"a/b":0,"z":0,"é":0}"#);
    }

    #[test]
    fn compact_escaped_no_newline() {
        let v = json!({"k": "line\n\"q\"\u{1}", "n": [1, -2, 3]});
        let out = to_vec(&v).unwrap();
        assert_eq!(out, br#"{"k":"line\n\"q\"\u0001","n":[1,-2,3]}"#);
        assert_ne!(out.last(), Some(&b'\n'));
    }

    #[test]
    fn struct_field_order_is_irrelevant() {
        #[derive(Serialize)]
        struct S {
            zeta: u8,
            #[serde(rename = "mediaType")]
            media_type: &'static str,
            alpha: Option<u8>,
        }
        let out = to_vec(&S {
            zeta: 1,
            media_type: "m",
            alpha: None,
        })
        .unwrap();
        assert_eq!(out, br#"{"alpha":null,"mediaType":"m","zeta":1}"#);
    }
}
