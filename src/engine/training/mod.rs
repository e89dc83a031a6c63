//! Training-data quality: parsing of example records, scoring, trainset selection, gaps,
//! analytics and the post-optimization update.
//!
//! Everything here is pure: the rules come in as a [`TrainingSpec`], the examples as a slice,
//! and time as an argument. Persistence lives in [`crate::store::examples`].

use crate::rules::spec::TrainingSpec;
use crate::util::round;
use crate::util::schema_check::{self, At, Checker};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The style of a training example.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Dense, for practitioners.
    Technical,
    /// Step by step, for newcomers.
    Beginner,
    /// Covers the whole topic.
    Comprehensive,
    /// Points to other skills.
    NavigationHub,
    /// The shortest useful form.
    Minimal,
}

impl Style {
    /// Every style, in a fixed order.
    pub const ALL: [Style; 5] = [
        Style::Technical,
        Style::Beginner,
        Style::Comprehensive,
        Style::NavigationHub,
        Style::Minimal,
    ];

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Technical => "technical",
            Style::Beginner => "beginner",
            Style::Comprehensive => "comprehensive",
            Style::NavigationHub => "navigation_hub",
            Style::Minimal => "minimal",
        }
    }

    /// Parses a style name.
    pub fn parse(s: &str) -> Option<Style> {
        Style::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Style {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The metadata of one training example (a record of `example_metadata.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// Unique id; imports merge by it.
    #[schemars(length(min = 1))]
    pub example_id: String,
    /// What the skill teaches.
    pub task_description: String,
    /// Category, e.g. `python`, `web`, `dspy`.
    #[schemars(length(min = 1))]
    pub category: String,
    /// Writing style.
    pub style: Style,
    /// When the example was written (RFC 3339).
    pub created_at: String,
    /// Overall quality, 0..1.
    #[schemars(range(min = 0, max = 1))]
    pub quality_score: f64,
    /// Sub-score: structure completeness, 0..1.
    #[schemars(range(min = 0, max = 1))]
    pub structure_completeness: f64,
    /// Sub-score: pattern clarity, 0..1.
    #[schemars(range(min = 0, max = 1))]
    pub pattern_clarity: f64,
    /// Sub-score: practical value, 0..1.
    #[schemars(range(min = 0, max = 1))]
    pub practical_value: f64,
    /// A human's rating, 0..1, when one was given.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub human_rating: Option<f64>,
    /// Share of optimizations it passed, 0..1; null when it has no history yet.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub success_rate: Option<f64>,
    /// Optimizations it took part in.
    #[serde(default)]
    pub usage_count: u64,
    /// When it was last used (RFC 3339), null when never.
    #[serde(default)]
    pub last_used: Option<String>,
    /// Free tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

pub use crate::rules::spec::SUB_SCORES;

impl Example {
    /// A sub-score by name (the keys of `quality_parts`).
    pub fn sub_score(&self, name: &str) -> Option<f64> {
        match name {
            "quality_score" => Some(self.quality_score),
            "structure_completeness" => Some(self.structure_completeness),
            "pattern_clarity" => Some(self.pattern_clarity),
            "practical_value" => Some(self.practical_value),
            "human_rating" => self.human_rating,
            _ => None,
        }
    }
}

/// A record that cannot be imported: where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record {index}{}: {message}", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
pub struct RecordError {
    /// Position in the file, from 0.
    pub index: usize,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Whether `s` has the shape of an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS…`).
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains(['+', '-']))
}

/// Parses one record, naming the field at fault: its shape, types and ranges checked against
/// [`Example`]'s JSON Schema, then what the schema cannot say (ids and categories that are
/// only blanks, timestamps).
pub fn parse_record(index: usize, v: &Value) -> Result<Example, RecordError> {
    let err = |field: Option<&str>, message: String| RecordError {
        index,
        field: field.map(str::to_string),
        message,
    };
    if !v.is_object() {
        return Err(err(None, "a record must be an object".into()));
    }
    let checker =
        Checker::cached::<Example>().map_err(|e| err(None, format!("the record schema: {e}")))?;
    if let Some(p) = checker.problems(v, &schema_check::JSON).into_iter().next() {
        let field = schema_check::dotted(&p.pointer);
        let message = match p.at {
            At::Key => "unknown field".to_string(),
            At::Missing => "is missing".to_string(),
            At::Value => p.message,
        };
        let message = match p.help {
            Some(help) => format!("{message} ({help})"),
            None => message,
        };
        return Err(err((!field.is_empty()).then_some(&field), message));
    }
    let ex = Example::deserialize(v).map_err(|e| err(None, e.to_string()))?;
    if ex.example_id.trim().is_empty() {
        return Err(err(Some("example_id"), "must not be empty".into()));
    }
    if ex.category.trim().is_empty() {
        return Err(err(Some("category"), "must not be empty".into()));
    }
    if !is_timestamp(&ex.created_at) {
        return Err(err(
            Some("created_at"),
            format!("`{}` is not an RFC 3339 timestamp", ex.created_at),
        ));
    }
    if let Some(t) = &ex.last_used {
        if !is_timestamp(t) {
            return Err(err(
                Some("last_used"),
                format!("`{t}` is not an RFC 3339 timestamp"),
            ));
        }
    }
    Ok(ex)
}

/// Parses a whole file: a JSON array of records. Any bad record fails the whole file; ids
/// must be unique within it.
pub fn parse_records(text: &str) -> Result<Vec<Example>, RecordError> {
    let v: Value = serde_json::from_str(text).map_err(|e| RecordError {
        index: 0,
        field: None,
        message: format!("not valid JSON: {e}"),
    })?;
    let Value::Array(items) = v else {
        return Err(RecordError {
            index: 0,
            field: None,
            message: "the file must hold a JSON array of records".into(),
        });
    };
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let ex = parse_record(i, item)?;
        if let Some(first) = seen.insert(ex.example_id.clone(), i) {
            return Err(RecordError {
                index: i,
                field: Some("example_id".into()),
                message: format!("`{}` is already used by record {first}", ex.example_id),
            });
        }
        out.push(ex);
    }
    Ok(out)
}

/// The example file shipped with skill-fleet (`config/training/example_metadata.json`).
pub const SHIPPED_EXAMPLES: &str = include_str!("../../../config/training/example_metadata.json");

mod analytics;
mod score;
mod select;
mod synthetic;
mod update;

pub use analytics::*;
use score::diversity_bonus;
pub use score::*;
pub use select::*;
pub use synthetic::synthetic;
pub use update::*;

#[cfg(test)]
use analytics::count_by;

#[cfg(test)]
mod tests;
