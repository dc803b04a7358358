//! Deterministic JSON output: the same value always gives the same bytes, so the same image
//! always gets the same digest.

use serde_json::Value;

/// Compact JSON with the keys of every object sorted (by bytes), whatever the map type
/// behind `serde_json::Value` or the iteration order of a `HashMap` that produced it.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::new();
    write_sorted(&value, &mut out)?;
    Ok(out)
}

fn write_sorted(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_sorted(v, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(v, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"z": [ {"y": 1, "x": "é\"q"} ], "c": null}});
        let out = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(out, r#"{"a":{"c":null,"z":[{"x":"é\"q","y":1}]},"b":1}"#);
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), v);
    }

    #[test]
    fn hash_maps_serialise_identically() {
        // HashMap iteration order differs between instances; the output must not.
        let outputs: Vec<Vec<u8>> = (0..8)
            .map(|_| {
                let m: HashMap<String, u32> = (0..32).map(|i| (format!("k{i}"), i)).collect();
                canonical_json(&m).unwrap()
            })
            .collect();
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    }
}
