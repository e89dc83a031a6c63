//! The one validator of structured input: a JSON value checked against a JSON Schema generated
//! from the Rust type it will become (schemars), with every problem as data: where it is (a
//! JSON pointer; for an unknown key, the key's own pointer), what is wrong, and a help line.
//! Rule files (placed at `file:line:col` by `rules::schema`) and HTTP request bodies (named
//! by field by `http::extract`) both go through it. Pure.

use crate::diagnostic::{did_you_mean, suggest};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::ValidationError;
use serde_json::Value;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// How problems are worded for one kind of input.
#[derive(Debug, Clone, Copy)]
pub struct Words {
    /// What a key is called (`key` in a rule file, `field` in a request body).
    pub key: &'static str,
    /// What an object is called (`a mapping` in YAML, `an object` in JSON).
    pub object: &'static str,
    /// What an array is called.
    pub array: &'static str,
    /// Suggest `add `KEY:` here` for a missing key (YAML).
    pub add_key_help: bool,
}

/// Wording for YAML rule files.
pub const YAML: Words = Words {
    key: "key",
    object: "a mapping",
    array: "a list",
    add_key_help: true,
};

/// Wording for JSON request bodies.
pub const JSON: Words = Words {
    key: "field",
    object: "an object",
    array: "an array",
    add_key_help: false,
};

/// What a problem's pointer points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A value that is wrong.
    Value,
    /// A key that is not allowed.
    Key,
    /// A key that should be there and is not (its object is the pointer's parent).
    Missing,
}

/// One problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// JSON pointer of the value, key or missing key at fault.
    pub pointer: String,
    /// What the pointer points at.
    pub at: At,
    /// What is wrong (lower case, input in backticks).
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

/// A schema and its compiled validator.
pub struct Checker {
    schema: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

impl Checker {
    /// Compiles `schema`.
    pub fn new(schema: Value) -> Result<Self, String> {
        let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
        Ok(Self { schema, validator })
    }

    /// The schema for `T`, compiled.
    pub fn of<T: schemars::JsonSchema>() -> Result<Self, String> {
        let schema = serde_json::to_value(schemars::schema_for!(T)).map_err(|e| e.to_string())?;
        Self::new(schema)
    }

    /// The schema for `T`, compiled once per type and shared (request bodies, the config,
    /// training records).
    pub fn cached<T: schemars::JsonSchema + 'static>() -> Result<Arc<Self>, String> {
        static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Checker>>>> = OnceLock::new();
        let mut cache = CACHE
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&TypeId::of::<T>()) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Self::of::<T>()?);
        cache.insert(TypeId::of::<T>(), Arc::clone(&c));
        Ok(c)
    }

    /// Every problem of `instance`, in the validator's order; none when it is valid.
    pub fn problems(&self, instance: &Value, words: &Words) -> Vec<Problem> {
        let errors = optional_unwrapped(
            self.validator
                .iter_errors(instance)
                .map(ValidationError::to_owned)
                .collect(),
        );
        // A misspelt key (`reasonning`) also makes its correct name missing; the unknown-key
        // problem with its suggestion says it all, so the missing key is left out.
        let misspelt: Vec<(String, String)> = errors
            .iter()
            .flat_map(|err| {
                let ValidationErrorKind::AdditionalProperties { unexpected } = &err.kind else {
                    return Vec::new();
                };
                let known = self.known_keys(err.schema_path.as_str());
                let ptr = err.instance_path.as_str();
                unexpected
                    .iter()
                    .filter_map(|k| suggest(k, known.iter().map(String::as_str)))
                    .map(|s| (ptr.to_string(), s))
                    .collect()
            })
            .collect();
        let mut out: Vec<Problem> = Vec::new();
        for err in errors {
            let ptr = err.instance_path.as_str().to_string();
            let at_value = |message: String, help: Option<String>| Problem {
                pointer: ptr.clone(),
                at: At::Value,
                message,
                help,
            };
            // `additionalProperties: false` with no `properties` (an empty struct) is reported
            // as a false schema at the object: its keys are all unknown.
            let no_keys = matches!(err.kind, ValidationErrorKind::FalseSchema)
                && err.schema_path.as_str().ends_with("/additionalProperties");
            let all_keys = |ptr: &str| -> Vec<String> {
                instance
                    .pointer(ptr)
                    .and_then(Value::as_object)
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let p = match &err.kind {
                _ if no_keys => {
                    for key in all_keys(&ptr) {
                        out.push(Problem {
                            pointer: format!("{ptr}/{}", escape_segment(&key)),
                            at: At::Key,
                            message: format!("unknown {} `{key}`", words.key),
                            help: Some(format!("no {}s are allowed here", words.key)),
                        });
                    }
                    continue;
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let known = self.known_keys(err.schema_path.as_str());
                    for key in unexpected {
                        let help =
                            did_you_mean(key, known.iter().map(String::as_str)).or_else(|| {
                                (!known.is_empty()).then(|| {
                                    format!("allowed {}s here: {}", words.key, known.join(", "))
                                })
                            });
                        out.push(Problem {
                            pointer: format!("{ptr}/{}", escape_segment(key)),
                            at: At::Key,
                            message: format!("unknown {} `{key}`", words.key),
                            help,
                        });
                    }
                    continue;
                }
                ValidationErrorKind::Required { property } => {
                    let p = short(property);
                    if misspelt.iter().any(|(at, key)| *at == ptr && *key == p) {
                        continue;
                    }
                    Problem {
                        pointer: format!("{ptr}/{}", escape_segment(&p)),
                        at: At::Missing,
                        message: format!("missing required {} `{p}`", words.key),
                        help: words.add_key_help.then(|| format!("add `{p}:` here")),
                    }
                }
                ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
                    let (message, help) = match self.choices(err.schema_path.as_str()) {
                        Some(choices) => not_one_of(&err.instance, &choices),
                        None => value_problem(&err, &ptr, words),
                    };
                    at_value(message, help)
                }
                _ => {
                    let (message, help) = value_problem(&err, &ptr, words);
                    at_value(message, help)
                }
            };
            out.push(p);
        }
        // One problem per place is enough; nested anyOf branches can repeat.
        out.dedup_by(|a, b| a.pointer == b.pointer && a.message == b.message);
        out
    }

    /// The values a `oneOf`/`anyOf` allows when each of its branches is one constant (how
    /// schemars writes an enum whose variants have doc comments), from the error's schema path.
    fn choices(&self, schema_path: &str) -> Option<Vec<String>> {
        let branches = resolve(&self.schema, schema_path)?.as_array()?;
        branches
            .iter()
            .map(|b| deref(&self.schema, b).get("const").map(short))
            .collect()
    }

    /// The keys an object may have, from the schema path of an `additionalProperties` error.
    fn known_keys(&self, schema_path: &str) -> Vec<String> {
        let parent = schema_path
            .strip_suffix("/additionalProperties")
            .unwrap_or(schema_path);
        resolve(&self.schema, parent)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// The message and help of a problem with a value (not with a key), by the kind of error.
fn value_problem(
    err: &ValidationError<'static>,
    ptr: &str,
    words: &Words,
) -> (String, Option<String>) {
    let done = |message: String, help: Option<String>| (message, help);
    match &err.kind {
        ValidationErrorKind::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => type_name(&t.to_string(), words).to_string(),
                TypeKind::Multiple(ts) => {
                    let names: Vec<String> = ts
                        .iter()
                        .map(|t| t.to_string())
                        .filter(|t| t != "null")
                        .map(|t| type_name(&t, words).to_string())
                        .collect();
                    names.join(" or ")
                }
            };
            done(
                format!(
                    "expected {want}, found {} `{}`",
                    kind_of(&err.instance, words),
                    short(&err.instance)
                ),
                None,
            )
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => done(
            out_of_range(ptr, &err.instance, &format!("below the minimum {limit}")),
            None,
        ),
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => done(
            out_of_range(ptr, &err.instance, &format!("above the maximum {limit}")),
            None,
        ),
        ValidationErrorKind::MaxLength { limit } => done(
            out_of_range(
                ptr,
                &err.instance,
                &format!("longer than {limit} characters"),
            ),
            None,
        ),
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(short).collect())
                .unwrap_or_default();
            not_one_of(&err.instance, &opts)
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => done(
            format!(
                "expected a string, number or boolean, found {} `{}`",
                kind_of(&err.instance, words),
                short(&err.instance)
            ),
            None,
        ),
        _ => {
            let msg = err.to_string();
            let mut c = msg.chars();
            let msg: String = match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => msg,
            };
            done(msg, None)
        }
    }
}

/// A value that is not one of `choices`, with the nearest as a suggestion.
fn not_one_of(instance: &Value, choices: &[String]) -> (String, Option<String>) {
    let got = short(instance);
    (
        format!("`{got}` is not one of {}", choices.join(", ")),
        did_you_mean(&got, choices.iter().map(String::as_str)),
    )
}

/// Errors of an optional value (`anyOf: [X, null]`, how schemars writes `Option<X>`) that is
/// present are the errors of X: "`progress.percent` is above the maximum", not "`progress`
/// matches none of anyOf".
fn optional_unwrapped(errors: Vec<ValidationError<'static>>) -> Vec<ValidationError<'static>> {
    let only_null = |b: &Vec<ValidationError<'static>>| {
        b.len() == 1
            && matches!(
                &b[0].kind,
                ValidationErrorKind::Type { kind: TypeKind::Single(t) }
                    if *t == jsonschema::JsonType::Null
            )
    };
    let mut out = Vec::new();
    for err in errors {
        let ValidationError {
            instance,
            kind,
            instance_path,
            schema_path,
        } = err;
        match kind {
            ValidationErrorKind::AnyOf { context }
                if !instance.is_null()
                    && context.len() == 2
                    && context.iter().filter(|b| only_null(b)).count() == 1 =>
            {
                let real = context.into_iter().filter(|b| !only_null(b));
                out.extend(real.flat_map(optional_unwrapped));
            }
            kind => out.push(ValidationError {
                instance,
                kind,
                instance_path,
                schema_path,
            }),
        }
    }
    out
}

/// A key as one segment of a JSON pointer.
pub fn escape_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a dotted field name (`/progress/percent` → `progress.percent`).
pub fn dotted(pointer: &str) -> String {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn kind_of(v: &Value, words: &Words) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => words.array,
        Value::Object(_) => words.object,
    }
}

fn type_name<'a>(t: &'a str, words: &Words) -> &'a str {
    match t {
        "object" => words.object,
        "array" => words.array,
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

/// "`key` is VALUE, WHAT" for the value of an object's entry, "`VALUE` is WHAT" otherwise.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        worker: String,
        #[serde(default)]
        lease_seconds: Option<u64>,
        #[serde(default)]
        progress: Option<Inner>,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[schemars(range(min = 0, max = 100))]
        percent: f64,
        #[serde(default)]
        phase: Option<String>,
    }

    fn first(v: Value) -> Problem {
        let c = Checker::of::<Body>().unwrap();
        c.problems(&v, &JSON).into_iter().next().expect("a problem")
    }

    #[test]
    fn problems_are_placed_and_worded() {
        let p = first(json!({"worker": "w", "lease_second": 5}));
        assert_eq!((dotted(&p.pointer), p.at), ("lease_second".into(), At::Key));
        assert_eq!(p.message, "unknown field `lease_second`");
        assert_eq!(p.help.as_deref(), Some("did you mean `lease_seconds`?"));
        let p = first(json!({"lease_seconds": 5}));
        assert_eq!((dotted(&p.pointer), p.at), ("worker".into(), At::Missing));
        assert_eq!(p.message, "missing required field `worker`");
        let p = first(json!({"worker": "w", "lease_seconds": "60"}));
        assert_eq!(dotted(&p.pointer), "lease_seconds");
        assert_eq!(p.message, "expected an integer, found a string `60`");
        let p = first(json!({"worker": "w", "progress": {"percent": 101}}));
        assert_eq!(dotted(&p.pointer), "progress.percent");
        assert_eq!(p.message, "`percent` is 101, above the maximum 100");
        let p = first(json!({"worker": "w", "progress": {"percent": 5, "phse": "x"}}));
        assert_eq!(dotted(&p.pointer), "progress.phse");
        assert_eq!(p.help.as_deref(), Some("did you mean `phase`?"));
        let p = first(json!({"worker": "w", "progress": [1]}));
        assert_eq!(p.message, "expected an object, found an array `[1]`");
        let c = Checker::of::<Body>().unwrap();
        assert!(c.problems(&json!({"worker": "w"}), &JSON).is_empty());
    }

    #[test]
    fn an_enum_with_documented_variants_lists_its_values() {
        /// A colour.
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        #[allow(dead_code)]
        enum Colour {
            /// Like the sky.
            SkyBlue,
            /// Like grass.
            Green,
        }
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Paint {
            colour: Colour,
        }
        let c = Checker::of::<Paint>().unwrap();
        let p = c
            .problems(&json!({"colour": "sky_blu"}), &JSON)
            .into_iter()
            .next()
            .expect("a problem");
        assert_eq!(dotted(&p.pointer), "colour");
        assert_eq!(p.message, "`sky_blu` is not one of sky_blue, green");
        assert_eq!(p.help.as_deref(), Some("did you mean `sky_blue`?"));
    }

    #[test]
    fn an_empty_object_names_every_key() {
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        let c = Checker::of::<Empty>().unwrap();
        let all = c.problems(&json!({"reason": "x", "why": 1}), &JSON);
        let keys: Vec<(String, At)> = all.iter().map(|p| (dotted(&p.pointer), p.at)).collect();
        assert_eq!(keys, [("reason".into(), At::Key), ("why".into(), At::Key)]);
        assert!(c.problems(&json!({}), &JSON).is_empty());
    }

    #[test]
    fn a_misspelt_key_is_not_also_missing() {
        let c = Checker::of::<Body>().unwrap();
        let all = c.problems(&json!({"workr": "w"}), &JSON);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].help.as_deref(), Some("did you mean `worker`?"));
    }
}
