//! The compiled context model: declared input fields, and the checking of a request into a
//! [`Context`] (one value per field, defaults applied, bounds checked).

use super::spec::{FieldSpec, FieldType, Scalar};
use crate::diagnostic::did_you_mean;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// A checked input value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Left out, and no default.
    Null,
    /// true or false.
    Bool(bool),
    /// Whole number.
    Int(i64),
    /// Number.
    Num(f64),
    /// Text.
    Str(Arc<str>),
}

impl Value {
    /// The value as a number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// The value as text, when it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Num(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
        }
    }

    /// Converts a rule-file literal.
    pub fn from_scalar(s: &Scalar) -> Value {
        match s {
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => Value::Int(*i),
            Scalar::Num(n) => Value::Num(*n),
            Scalar::Str(s) => Value::Str(s.as_str().into()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Num(n) => write!(f, "{n}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// One declared field, compiled.
#[derive(Debug, Clone)]
pub struct Field {
    /// Canonical name.
    pub name: Arc<str>,
    /// The declaration.
    pub spec: FieldSpec,
    /// Default as a value (`Null` when none).
    pub default: Value,
}

/// A request checked against the context model: one value per declared field.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    values: Vec<Value>,
}

impl Context {
    /// A context from one value per field, in the model's order, without checking them: for
    /// rule analysis, which builds its inputs from the declared fields and bounds.
    pub(crate) fn from_values(values: Vec<Value>) -> Self {
        Self { values }
    }

    /// The value of field number `i`.
    pub fn get(&self, i: usize) -> &Value {
        &self.values[i]
    }

    /// All values, in the model's field order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputError {
    /// The field path as sent (e.g. `trainset_size`).
    pub field: String,
    /// Lower-case message.
    pub message: String,
    /// Advice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

/// The fields the engine itself reads, by position.
#[derive(Debug, Clone, Copy)]
pub struct WellKnown {
    /// `trainset_size`
    pub trainset_size: usize,
    /// `budget_usd`
    pub budget_usd: usize,
    /// `domain`
    pub domain: usize,
    /// `model`
    pub model: usize,
}

/// The compiled context model.
#[derive(Debug, Clone)]
pub struct ContextModel {
    fields: Vec<Field>,
    /// Names and aliases with their field's position. A context declares a handful of fields:
    /// a scan that compares lengths first beats hashing the key.
    lookup: Vec<(Box<str>, usize)>,
    /// Unique to this model (and its clones): the key of each thread's copy of the defaults.
    id: u64,
    /// Positions of the fields the engine reads.
    pub known: WellKnown,
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl ContextModel {
    /// The problem of a field given twice (under the same name, or under two of its names),
    /// `key` being the second; `None` for a key that names no field.
    pub fn given_twice(&self, key: &str) -> Option<InputError> {
        self.index_of(key).map(|i| self.given_twice_at(i, key))
    }

    fn given_twice_at(&self, i: usize, key: &str) -> InputError {
        InputError {
            field: key.to_string(),
            message: format!(
                "field `{}` is given twice (as `{key}`)",
                self.fields[i].name
            ),
            help: Some("send the field under one name only".into()),
        }
    }

    /// Builds the model; `fields` are already validated (see `compile`).
    pub fn new(fields: Vec<Field>, known: WellKnown) -> Self {
        let mut lookup: Vec<(Box<str>, usize)> = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            for name in
                std::iter::once(f.name.as_ref()).chain(f.spec.aliases.iter().map(String::as_str))
            {
                match lookup.iter_mut().find(|(n, _)| &**n == name) {
                    // As a map would: a later declaration of the same name wins.
                    Some(slot) => slot.1 = i,
                    None => lookup.push((name.into(), i)),
                }
            }
        }
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            fields,
            lookup,
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            known,
        }
    }

    /// One value per field, each field's default. Each thread keeps its own copy, texts
    /// included, so requests on two cores do not share reference counts.
    fn defaults(&self) -> Vec<Value> {
        thread_local! {
            static DEFAULTS: std::cell::RefCell<(u64, Vec<Value>)> =
                const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
        }
        let fresh = || -> Vec<Value> {
            self.fields
                .iter()
                .map(|f| match &f.default {
                    Value::Str(s) => Value::Str(Arc::from(&**s)),
                    v => v.clone(),
                })
                .collect()
        };
        DEFAULTS.with(|d| match d.try_borrow_mut() {
            Ok(mut d) => {
                if d.0 != self.id {
                    *d = (self.id, fresh());
                }
                d.1.clone()
            }
            Err(_) => fresh(),
        })
    }

    /// The declared fields, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Index of a field by name or alias.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.lookup
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|&(_, i)| i)
    }

    /// Checks a request: unknown fields, types, labels, enums, bounds, required fields.
    /// Every problem is returned, not just the first.
    pub fn check(
        &self,
        input: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Context, Vec<InputError>> {
        let mut c = Collected::new(self);
        for (key, raw) in input {
            c.accept(self, key, raw);
        }
        c.finish(self)
    }

    /// Parses and checks a JSON request body in one pass, without building a map first.
    pub fn check_json(&self, body: &[u8]) -> Result<Context, JsonCheckError> {
        use serde::de::Deserializer as _;
        // Nearly every request is a flat object of plain values: read it without serde's
        // machinery. Anything else, errors included, goes the general way below.
        let mut c = Collected::new(self);
        let flat = super::flat_json::each_member(body, |key, raw| {
            // A declared name is the key itself; any other key must be UTF-8 to be named in
            // the error (else serde_json reports it).
            match self.lookup.iter().find(|(n, _)| n.as_bytes() == key) {
                Some((name, i)) => c.accept_at(self, Some(*i), name, &raw),
                None => match std::str::from_utf8(key) {
                    Ok(k) => c.accept_at(self, None, k, &raw),
                    Err(_) => return false,
                },
            }
            true
        });
        if flat {
            return c.finish(self).map_err(JsonCheckError::Input);
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let collected = de
            .deserialize_map(CollectVisitor { model: self })
            .and_then(|c| de.end().map(|()| c));
        match collected {
            Ok(c) => c.finish(self).map_err(JsonCheckError::Input),
            Err(e) if e.classify() == serde_json::error::Category::Data => {
                Err(JsonCheckError::NotObject(json_kind_of_text(body)))
            }
            Err(e) => Err(JsonCheckError::Syntax(e)),
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Why a JSON body was not accepted.
#[derive(Debug)]
pub enum JsonCheckError {
    /// Not JSON (line and column inside).
    Syntax(serde_json::Error),
    /// JSON, but not an object: what it is.
    NotObject(&'static str),
    /// An object with bad fields.
    Input(Vec<InputError>),
}

fn json_kind_of_text(body: &[u8]) -> &'static str {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// What a request gave for one field.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    /// Nothing (or null): the default stands.
    Empty,
    /// A checked value.
    Given,
    /// A value that failed its check (the error is recorded).
    Rejected,
}

/// One mark per field: in two bit sets for up to 128 fields, else in a vector.
enum Marks {
    Inline { given: u128, rejected: u128 },
    Heap(Vec<Mark>),
}

impl Marks {
    fn new(n: usize) -> Self {
        if n <= 128 {
            Marks::Inline {
                given: 0,
                rejected: 0,
            }
        } else {
            Marks::Heap(vec![Mark::Empty; n])
        }
    }

    fn get(&self, i: usize) -> Mark {
        match self {
            Marks::Inline { given, rejected } => {
                if given >> i & 1 == 1 {
                    Mark::Given
                } else if rejected >> i & 1 == 1 {
                    Mark::Rejected
                } else {
                    Mark::Empty
                }
            }
            Marks::Heap(v) => v.get(i).copied().unwrap_or(Mark::Empty),
        }
    }

    fn set(&mut self, i: usize, m: Mark) {
        match self {
            Marks::Inline { given, rejected } => match m {
                Mark::Given => *given |= 1 << i,
                Mark::Rejected => *rejected |= 1 << i,
                Mark::Empty => {}
            },
            Marks::Heap(v) => {
                if let Some(slot) = v.get_mut(i) {
                    *slot = m;
                }
            }
        }
    }
}

/// Most problems listed for one request; the rest are counted (so refusing a body with
/// thousands of bad keys costs little and answers briefly).
pub const MAX_INPUT_ERRORS: usize = 20;

/// Field values gathered from a request: the defaults, overwritten by what was given.
struct Collected {
    values: Vec<Value>,
    marks: Marks,
    errors: Vec<InputError>,
    /// Problems past [`MAX_INPUT_ERRORS`], counted only.
    omitted: usize,
}

impl Collected {
    fn new(m: &ContextModel) -> Self {
        Self {
            values: m.defaults(),
            marks: Marks::new(m.fields.len()),
            errors: Vec::new(),
            omitted: 0,
        }
    }

    /// Records a problem; past the limit it is only counted and `make` is not called.
    fn problem(&mut self, make: impl FnOnce() -> InputError) {
        if self.errors.len() < MAX_INPUT_ERRORS {
            self.errors.push(make());
        } else {
            self.omitted += 1;
        }
    }

    fn accept(&mut self, m: &ContextModel, key: &str, raw: &serde_json::Value) {
        self.accept_at(m, m.index_of(key), key, raw);
    }

    /// [`Self::accept`] with the key already looked up.
    fn accept_at(
        &mut self,
        m: &ContextModel,
        at: Option<usize>,
        key: &str,
        raw: &serde_json::Value,
    ) {
        let Some(i) = at else {
            self.problem(|| InputError {
                field: key.to_string(),
                message: format!("unknown field `{key}`"),
                help: did_you_mean(key, m.lookup.iter().map(|(n, _)| &**n)).or_else(|| {
                    Some(format!(
                        "known fields: {}",
                        m.fields
                            .iter()
                            .map(|f| f.name.as_ref())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
            });
            return;
        };
        let field = &m.fields[i];
        if raw.is_null() {
            return;
        }
        if self.marks.get(i) != Mark::Empty {
            self.problem(|| m.given_twice_at(i, key));
            return;
        }
        match convert(field, key, raw) {
            Ok(v) => {
                self.values[i] = v;
                self.marks.set(i, Mark::Given);
            }
            Err(e) => {
                self.problem(|| e);
                self.marks.set(i, Mark::Rejected);
            }
        }
    }

    fn finish(mut self, m: &ContextModel) -> Result<Context, Vec<InputError>> {
        for (i, f) in m.fields.iter().enumerate() {
            if f.spec.required && self.marks.get(i) == Mark::Empty {
                self.problem(|| InputError {
                    field: f.name.to_string(),
                    message: format!("missing required field `{}`", f.name),
                    help: f.spec.description.clone(),
                });
            }
        }
        let mut errors = self.errors;
        if self.omitted > 0 {
            errors.push(InputError {
                field: String::new(),
                message: format!(
                    "{} more problems not listed (at most {MAX_INPUT_ERRORS} are)",
                    self.omitted
                ),
                help: Some("fix the ones listed first".into()),
            });
        }
        if errors.is_empty() {
            Ok(Context {
                values: self.values,
            })
        } else {
            Err(errors)
        }
    }
}

/// A key as written: borrowed from the body when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

struct CollectVisitor<'m> {
    model: &'m ContextModel,
}

impl<'de> serde::de::Visitor<'de> for CollectVisitor<'_> {
    type Value = Collected;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Collected, A::Error> {
        let mut c = Collected::new(self.model);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let raw: serde_json::Value = map.next_value()?;
            c.accept(self.model, &key, &raw);
        }
        Ok(c)
    }
}

/// Converts and checks one raw value against its field.
pub fn convert(field: &Field, key: &str, raw: &serde_json::Value) -> Result<Value, InputError> {
    let err = |message: String, help: Option<String>| InputError {
        field: key.to_string(),
        message,
        help,
    };
    let spec = &field.spec;
    let wrong_type = || {
        err(
            format!(
                "`{key}` must be {} {}, found {} `{raw}`",
                if spec.kind == FieldType::Integer {
                    "an"
                } else {
                    "a"
                },
                spec.kind.name(),
                json_kind(raw)
            ),
            (!spec.labels.is_empty()).then(|| {
                format!(
                    "or one of the labels {}",
                    spec.labels.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }),
        )
    };
    let value = match (spec.kind, raw) {
        (FieldType::Boolean, serde_json::Value::Bool(b)) => Value::Bool(*b),
        (FieldType::String, serde_json::Value::String(s)) => {
            if let Some(allowed) = &spec.one_of {
                if !allowed.iter().any(|a| a == s) {
                    return Err(err(
                        format!("`{key}` is `{s}`, not one of {}", allowed.join(", ")),
                        did_you_mean(s, allowed.iter().map(String::as_str)),
                    ));
                }
            }
            Value::Str(s.as_str().into())
        }
        (kind, serde_json::Value::String(s)) if kind.is_numeric() && !spec.labels.is_empty() => {
            match spec.labels.get(s) {
                Some(n) if kind == FieldType::Integer => Value::Int(*n as i64),
                Some(n) => Value::Num(*n),
                None => {
                    return Err(err(
                        format!(
                            "`{key}` is `{s}`, not a number nor one of the labels {}",
                            spec.labels.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                        did_you_mean(s, spec.labels.keys().map(String::as_str)),
                    ))
                }
            }
        }
        (FieldType::Integer, serde_json::Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Int(f as i64),
            _ => {
                return Err(err(
                    format!("`{key}` must be a whole number, found `{n}`"),
                    None,
                ))
            }
        },
        (FieldType::Number, serde_json::Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => Value::Num(f),
            _ => return Err(err(format!("`{key}` is not a finite number"), None)),
        },
        _ => return Err(wrong_type()),
    };
    if let Some(x) = value.as_f64() {
        if let Some(min) = spec.min {
            if x < min {
                return Err(err(
                    format!(
                        "`{key}` is {}, below the minimum {}",
                        fmt_num(x),
                        fmt_num(min)
                    ),
                    spec.description
                        .as_ref()
                        .map(|d| format!("`{key}` is the {d}")),
                ));
            }
        }
        if let Some(max) = spec.max {
            if x > max {
                return Err(err(
                    format!(
                        "`{key}` is {}, above the maximum {}",
                        fmt_num(x),
                        fmt_num(max)
                    ),
                    spec.description
                        .as_ref()
                        .map(|d| format!("`{key}` is the {d}")),
                ));
            }
        }
    }
    Ok(value)
}
