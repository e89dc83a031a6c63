//! JSON Schemas generated from the Rust types, and validation of rule files against them with
//! every error placed at its line and column.

use super::spec::RuleFile;
use super::yaml::{escape_segment, Parsed};
use crate::diagnostic::{did_you_mean, suggest, Diagnostic, SourceFile};
use jsonschema::error::{TypeKind, ValidationErrorKind};
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

struct Compiled {
    schema: Value,
    validator: Option<jsonschema::Validator>,
}

fn compiled() -> &'static Compiled {
    static CELL: OnceLock<Compiled> = OnceLock::new();
    CELL.get_or_init(|| {
        let schema = rule_file_schema();
        let validator = jsonschema::validator_for(&schema).ok();
        Compiled { schema, validator }
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn type_name(t: &str) -> &str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        "null" => "nothing",
        other => other,
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// "`key` is VALUE, WHAT" for the value of a mapping entry, "`VALUE` is WHAT" otherwise.
fn out_of_range(ptr: &str, v: &Value, what: &str) -> String {
    match ptr.rsplit_once('/') {
        Some((_, key)) if !key.is_empty() && !key.bytes().all(|b| b.is_ascii_digit()) => {
            let key = key.replace("~1", "/").replace("~0", "~");
            format!("`{key}` is {}, {what}", short(v))
        }
        _ => format!("`{}` is {what}", short(v)),
    }
}

/// Follows a schema keyword path (with `$ref`s) to the sub-schema it names.
fn resolve<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        node = deref(root, node);
        if seg == "$ref" {
            continue;
        }
        let seg = seg.replace("~1", "/").replace("~0", "~");
        node = match node {
            Value::Object(m) => m.get(&seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(deref(root, node))
}

fn deref<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(n) => node = n,
                None => break,
            },
            None => break,
        }
    }
    node
}

/// The keys a mapping may have, from the schema path of an `additionalProperties` error.
fn known_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    resolve(schema, parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Validates one parsed rule file against the rule-file schema; every error is returned.
pub fn validate(file: &SourceFile, parsed: &Parsed) -> Vec<Diagnostic> {
    let c = compiled();
    let Some(validator) = &c.validator else {
        return vec![Diagnostic::error(
            "internal error: the rule-file schema does not compile",
        )];
    };
    let mut out: Vec<Diagnostic> = Vec::new();
    let errors: Vec<_> = validator.iter_errors(&parsed.value).collect();
    // A misspelt key (`reasonning`) also makes its correct name missing; the unknown-key error
    // with its suggestion says it all, so the "missing required key" for it is left out.
    let misspelt: Vec<(String, String)> = errors
        .iter()
        .flat_map(|err| {
            let ValidationErrorKind::AdditionalProperties { unexpected } = &err.kind else {
                return Vec::new();
            };
            let known = known_keys(&c.schema, err.schema_path.as_str());
            let ptr = err.instance_path.as_str();
            unexpected
                .iter()
                .filter_map(|k| suggest(k, known.iter().map(String::as_str)))
                .map(|s| (ptr.to_string(), s))
                .collect()
        })
        .collect();
    for err in errors {
        let ptr = err.instance_path.as_str().to_string();
        let schema_path = err.schema_path.as_str().to_string();
        let at_value = |d: Diagnostic| d.at(&file.path, parsed.spans.value(&ptr));
        let d = match &err.kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = known_keys(&c.schema, &schema_path);
                for key in unexpected {
                    let kptr = format!("{ptr}/{}", escape_segment(key));
                    let help = did_you_mean(key, known.iter().map(String::as_str)).or_else(|| {
                        (!known.is_empty())
                            .then(|| format!("allowed keys here: {}", known.join(", ")))
                    });
                    out.push(
                        Diagnostic::error(format!("unknown key `{key}`"))
                            .at(&file.path, parsed.spans.key(&kptr))
                            .with_help_opt(help),
                    );
                }
                continue;
            }
            ValidationErrorKind::Type { kind } => {
                let want = match kind {
                    TypeKind::Single(t) => type_name(&t.to_string()).to_string(),
                    TypeKind::Multiple(ts) => {
                        let names: Vec<String> = ts
                            .iter()
                            .map(|t| t.to_string())
                            .filter(|t| t != "null")
                            .map(|t| type_name(&t).to_string())
                            .collect();
                        names.join(" or ")
                    }
                };
                at_value(Diagnostic::error(format!(
                    "expected {want}, found {} `{}`",
                    kind_of(&err.instance),
                    short(&err.instance)
                )))
            }
            ValidationErrorKind::Required { property } => {
                let p = short(property);
                if misspelt.iter().any(|(at, key)| *at == ptr && *key == p) {
                    continue;
                }
                at_value(Diagnostic::error(format!("missing required key `{p}`")))
                    .with_help(format!("add `{p}:` here"))
            }
            ValidationErrorKind::Minimum { limit }
            | ValidationErrorKind::ExclusiveMinimum { limit } => at_value(Diagnostic::error(
                out_of_range(&ptr, &err.instance, &format!("below the minimum {limit}")),
            )),
            ValidationErrorKind::Maximum { limit }
            | ValidationErrorKind::ExclusiveMaximum { limit } => at_value(Diagnostic::error(
                out_of_range(&ptr, &err.instance, &format!("above the maximum {limit}")),
            )),
            ValidationErrorKind::Enum { options } => {
                let opts: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(short).collect())
                    .unwrap_or_default();
                let got = short(&err.instance);
                at_value(Diagnostic::error(format!(
                    "`{got}` is not one of {}",
                    opts.join(", ")
                )))
                .with_help_opt(did_you_mean(&got, opts.iter().map(String::as_str)))
            }
            ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
                at_value(Diagnostic::error(format!(
                    "expected a string, number or boolean, found {} `{}`",
                    kind_of(&err.instance),
                    short(&err.instance)
                )))
            }
            _ => {
                let msg = err.to_string();
                let mut c = msg.chars();
                let msg: String = match c.next() {
                    Some(f) => f.to_lowercase().chain(c).collect(),
                    None => msg,
                };
                at_value(Diagnostic::error(msg))
            }
        };
        out.push(d);
    }
    // One problem per position is enough; nested anyOf branches can repeat.
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
