//! JSON parsing that notes duplicate keys at any depth. `serde_json::Value` keeps the last of
//! two equal keys, so a body such as `{"task": "a", "task": "b"}` would be accepted with one
//! value silently dropped; every request body of the API, and the CLI's `--input`, is read
//! through here instead, and the first duplicate is refused naming its path.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

/// Parses `bytes` as JSON; `Ok((value, Some(path)))` when a key is repeated, `path` being the
/// first repeated key's path (`payload.items[2].name`).
pub fn parse(bytes: &[u8]) -> Result<(Value, Option<String>), serde_json::Error> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Seed {
        path: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, duplicate.into_inner()))
}

struct Seed<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let seed = Seed {
                path: format!("{}[{}]", self.path, out.len()),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if out.contains_key(&key) {
                let mut first = self.duplicate.borrow_mut();
                if first.is_none() {
                    *first = Some(path.clone());
                }
            }
            let value = map.next_value_seed(Seed {
                path,
                duplicate: self.duplicate,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use serde_json::json;

    #[test]
    fn equal_to_serde_json_without_duplicates() {
        let text = br#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        let (v, dup) = parse(text).unwrap();
        assert_eq!(
            v,
            serde_json::from_slice::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(dup, None);
    }

    #[test]
    fn the_first_duplicate_is_named_with_its_path() {
        let (_, dup) = parse(br#"{"task": "a", "task": "b"}"#).unwrap();
        assert_eq!(dup.as_deref(), Some("task"));
        let (v, dup) = parse(br#"{"payload": {"items": [{"n": 1}, {"n": 2, "n": 3}]}}"#).unwrap();
        assert_eq!(dup.as_deref(), Some("payload.items[1].n"));
        assert_eq!(v["payload"]["items"][1], json!({"n": 3}));
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let e = parse(b"{\n  \"a\": tru }").unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 11));
        assert!(parse(b"{} x").is_err());
    }
}
