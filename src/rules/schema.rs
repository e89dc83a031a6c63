//! JSON Schemas generated from the Rust types, and validation of rule files against them (by
//! `util::schema_check`, the one validator) with every error placed at its line and column.

use super::spec::RuleFile;
use super::yaml::Parsed;
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::util::schema_check::{self, At, Checker};
use serde_json::Value;
use std::sync::OnceLock;

/// Rewrites `anyOf: [X, {type: null}]` (how schemars writes `Option<Struct>`) to `X`, so
/// errors inside X are reported as such instead of as "matches none of anyOf". A section or
/// key written with no value is then an error, which is what a maintainer wants to hear.
fn strip_optional(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let replacement = m.get("anyOf").and_then(Value::as_array).and_then(|a| {
                let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
                let annotations_only = m
                    .keys()
                    .all(|k| matches!(k.as_str(), "anyOf" | "description" | "title" | "default"));
                (a.len() == 2 && annotations_only && a.iter().any(is_null))
                    .then(|| a.iter().find(|s| !is_null(s)).cloned())
                    .flatten()
            });
            if let Some(mut r) = replacement {
                if let (Some(d), Some(obj)) = (m.get("description").cloned(), r.as_object_mut()) {
                    obj.entry("description").or_insert(d);
                }
                *v = r;
                strip_optional(v);
                return;
            }
            m.values_mut().for_each(strip_optional);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_optional),
        _ => {}
    }
}

/// The draft-07 JSON Schema of `T`, with optional structs written as the struct itself.
pub fn generate<T: schemars::JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
    strip_optional(&mut v);
    v
}

/// The JSON Schema of a rule file, as a value.
pub fn rule_file_schema() -> Value {
    generate::<RuleFile>()
}

fn checker() -> Option<&'static Checker> {
    static CELL: OnceLock<Option<Checker>> = OnceLock::new();
    CELL.get_or_init(|| Checker::new(rule_file_schema()).ok())
        .as_ref()
}

/// Validates one parsed rule file against the rule-file schema; every error is returned,
/// placed at its key or value.
pub fn validate(file: &SourceFile, parsed: &Parsed) -> Vec<Diagnostic> {
    let Some(checker) = checker() else {
        return vec![Diagnostic::error(
            "internal error: the rule-file schema does not compile",
        )];
    };
    let mut out: Vec<Diagnostic> = checker
        .problems(&parsed.value, &schema_check::YAML)
        .into_iter()
        .map(|p| {
            let pos = match p.at {
                At::Key => parsed.spans.key(&p.pointer),
                At::Value => parsed.spans.value(&p.pointer),
                // Placed at the mapping that lacks it.
                At::Missing => parsed
                    .spans
                    .value(p.pointer.rsplit_once('/').map_or("", |(parent, _)| parent)),
            };
            Diagnostic::error(p.message)
                .at(&file.path, pos)
                .with_help_opt(p.help)
        })
        .collect();
    // One problem per position is enough.
    out.dedup_by(|a, b| a.pos == b.pos && a.message == b.message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::yaml::parse;

    fn check(text: &str) -> Vec<Diagnostic> {
        let f = SourceFile::new("t.yaml", text);
        let p = parse(&f).unwrap();
        validate(&f, &p)
    }

    #[test]
    fn unknown_key_is_placed_at_the_key_with_a_suggestion() {
        let d = check("confidence:\n  base: 0.75\n  histroy: {}\n");
        let unk = d
            .iter()
            .find(|d| d.message == "unknown key `histroy`")
            .unwrap();
        assert_eq!(unk.pos.map(|p| (p.line, p.col)), Some((3, 3)));
        assert_eq!(unk.help.as_deref(), Some("did you mean `history`?"));
    }

    #[test]
    fn wrong_type_and_range_point_at_the_value() {
        let d = check(
            "confidence:\n  base: 1.5\n  history: {success_quality: x, weight: 0.1, cap: 0.9}\n  small_trainset: {below: 20, factor: 0.8}\n",
        );
        let range = d
            .iter()
            .find(|d| d.message == "`base` is 1.5, above the maximum 1")
            .unwrap();
        assert_eq!(range.pos.map(|p| p.line), Some(2));
        let ty = d
            .iter()
            .find(|d| d.message.starts_with("expected a number"))
            .unwrap();
        assert_eq!(ty.pos.map(|p| (p.line, p.col)), Some((3, 30)));
    }
}
