//! Canonical JSON and the hashes built on it: a run's id and a result's content checksum.
//!
//! Ids must not depend on how a config happened to be built (key order, `6` vs `6.0`), or
//! finished runs would be re-run after harmless refactors; so the text hashed here is written
//! by hand instead of trusting whatever map type or number format serde_json was built with.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The field of a stored result that holds its checksum, left out of the hashed text.
pub(crate) const CONTENT_FIELD: &str = "content_sha256";

/// Floats with an integral value below this print as integers (like ECMAScript, RFC 8785), so a
/// config that says `6.0` gets the id of one that says `6`.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Compact JSON with object keys sorted at every level. Strings are escaped as serde_json does,
/// integers print in decimal, integral floats below 2^53 as integers (`-0.0` as `0`), other floats
/// in ryu's shortest round-trip form: the same value always gives the same text.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// A run's id: sha256 of the canonical JSON of its config.
pub fn run_id(config: &Value) -> String {
    sha256_hex(canonical_json(config).as_bytes())
}

/// sha256 over the canonical JSON of a result object without its "content_sha256" field (a
/// non-object is hashed whole), so the checksum can be stored inside the object it covers.
pub fn content_sha256(result: &Value) -> String {
    let mut out = String::new();
    match result {
        Value::Object(map) => write_object(&mut out, map, Some(CONTENT_FIELD)),
        other => write_value(&mut out, other),
    }
    sha256_hex(out.as_bytes())
}

/// The canonical text of many objects that differ only in a few top-level keys (the slots),
/// with everything else written once: `write` costs only the slots' values.
pub struct ObjectTemplate {
    /// The text around the slots' values: one more piece than there are slots.
    pieces: Vec<String>,
    /// Per slot in key order: its position in the `values` given to `write`.
    order: Vec<usize>,
}

impl ObjectTemplate {
    /// `object` gives the fixed keys' values (and may hold the slots too: theirs are ignored).
    pub fn new(object: &Map<String, Value>, slots: &[&str]) -> Self {
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.extend(slots.iter().filter(|s| !object.contains_key(**s)));
        keys.sort_unstable();
        let (mut pieces, mut order, mut text) = (Vec::new(), Vec::new(), String::from("{"));
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            write_string(&mut text, key);
            text.push(':');
            match slots.iter().position(|s| *s == key) {
                Some(slot) => {
                    pieces.push(std::mem::take(&mut text));
                    order.push(slot);
                }
                None => write_value(&mut text, &object[key]),
            }
        }
        text.push('}');
        pieces.push(text);
        Self { pieces, order }
    }

    /// The canonical text of the object with the slots set to `values` (in the order of the
    /// slots given to `new`), equal to `canonical_json` of that object.
    pub fn write(&self, values: &[&Value]) -> String {
        let mut out =
            String::with_capacity(self.pieces.iter().map(String::len).sum::<usize>() + 256);
        for (piece, &slot) in self.pieces.iter().zip(&self.order) {
            out.push_str(piece);
            write_value(&mut out, values[slot]);
        }
        out.push_str(self.pieces.last().map_or("", String::as_str));
        out
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, None),
    }
}

/// Sorts explicitly: with serde_json's `preserve_order` feature (which any crate in the build
/// could switch on) a `Map` keeps insertion order.
fn write_object(out: &mut String, map: &Map<String, Value>, skip: Option<&str>) {
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(key, _)| Some(key.as_str()) != skip)
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, item);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str) {
    // Serialising a str cannot fail; the fallback only keeps this function total.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        write_float(out, f);
    } else {
        out.push_str(&n.to_string());
    }
}

fn write_float(out: &mut String, f: f64) {
    if f.trunc() == f && f.abs() < MAX_EXACT_INT {
        let _ = write!(out, "{}", f as i64);
    } else {
        // `from_f64` is None only for NaN and infinities, which a `Value` cannot hold.
        match Number::from_f64(f) {
            Some(n) => out.push_str(&n.to_string()),
            None => out.push_str("null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_at_every_level() {
        let text = r#"{"z":"x","a":{"c":[{"e":3,"d":2}],"b":1}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"b":1,"c":[{"d":2,"e":3}]},"z":"x"}"#
        );
    }

    #[test]
    fn is_stable_and_independent_of_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":{"y":1,"x":[1,2]},"a":"s"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"s","b":{"x":[1,2],"y":1}}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&a));
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(run_id(&a), run_id(&b));
    }

    #[test]
    fn prints_numbers_one_way() {
        let value = json!([6.0, 6, -0.0, 0.03, 1e300, -5, u64::MAX, 0.1 + 0.2, 2.5e-8]);
        assert_eq!(
            canonical_json(&value),
            "[6,6,0,0.03,1e+300,-5,18446744073709551615,0.30000000000000004,2.5e-8]"
        );
    }

    #[test]
    fn escapes_strings_and_parses_back() {
        let value = json!({"q\"k": "line\nbreak \u{1} é", "n": null, "t": [true, false]});
        let text = canonical_json(&value);
        assert_eq!(
            text,
            r#"{"n":null,"q\"k":"line\nbreak \u0001 é","t":[true,false]}"#
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Every leaf of `value`, replaced in turn by a different value.
    fn mutations(value: &Value) -> Vec<Value> {
        match value {
            Value::Object(map) => map
                .iter()
                .flat_map(|(key, item)| {
                    mutations(item).into_iter().map(move |changed| {
                        let mut copy = map.clone();
                        copy.insert(key.clone(), changed);
                        Value::Object(copy)
                    })
                })
                .collect(),
            Value::Array(items) => (0..items.len())
                .flat_map(|i| {
                    mutations(&items[i]).into_iter().map(move |changed| {
                        let mut copy = items.clone();
                        copy[i] = changed;
                        Value::Array(copy)
                    })
                })
                .collect(),
            Value::Number(n) if n.is_f64() => vec![json!(n.as_f64().unwrap() + 0.001)],
            Value::Number(n) => vec![json!(n.as_i64().unwrap() + 1)],
            Value::String(s) => vec![json!(format!("{s}x"))],
            Value::Bool(b) => vec![json!(!b)],
            Value::Null => vec![json!(0)],
        }
    }

    #[test]
    fn run_id_changes_when_any_value_changes() {
        let config = json!({
            "method": "dynatree",
            "params": {"depth": 6, "branch": 2, "tau": 0.03, "max_nodes": 32},
            "models": {"target": "EleutherAI/pythia-2.8b", "draft": null},
            "prompts": [1, 2, {"stop_at_eos": false}],
        });
        let id = run_id(&config);
        let changed = mutations(&config);
        assert_eq!(changed.len(), 10);
        for other in changed {
            assert_ne!(run_id(&other), id, "{other}");
        }
        // Renaming a key changes it too.
        let mut renamed = config.clone();
        let tau = renamed["params"].as_object_mut().unwrap().remove("tau");
        renamed["params"]["tau_"] = tau.unwrap();
        assert_ne!(run_id(&renamed), id);
    }

    #[test]
    fn a_template_writes_what_canonical_json_writes() {
        let base = json!({"z": 1, "models": {"b": 2, "a": [1]}, "a": "x", "m": null});
        let template = ObjectTemplate::new(base.as_object().unwrap(), &["params", "method", "z"]);
        let (params, method, z) = (json!({"k": 6, "d": 0.5}), json!("linear"), json!(7));
        let mut full = base.clone();
        full["params"] = params.clone();
        full["method"] = method.clone();
        full["z"] = z.clone();
        assert_eq!(
            template.write(&[&params, &method, &z]),
            canonical_json(&full)
        );
        // Slots first, last or alone.
        let only = ObjectTemplate::new(&Map::new(), &["b", "a"]);
        assert_eq!(only.write(&[&z, &method]), r#"{"a":"linear","b":7}"#);
    }

    #[test]
    fn content_hash_ignores_only_its_own_field() {
        let result = json!({"id": "x", "metrics": {"wall_s": 1.5}});
        let mut stamped = result.clone();
        stamped["content_sha256"] = json!("anything");
        assert_eq!(content_sha256(&stamped), content_sha256(&result));
        assert_eq!(
            content_sha256(&result),
            sha256_hex(canonical_json(&result).as_bytes())
        );
        let mut nested = result.clone();
        nested["metrics"]["content_sha256"] = json!("kept");
        assert_ne!(content_sha256(&nested), content_sha256(&result));
    }
}
