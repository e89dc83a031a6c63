//! Training-data quality: parsing of example records, scoring, trainset selection, gaps,
//! analytics and the post-optimization update.
//!
//! Everything here is pure: the rules come in as a [`TrainingSpec`], the examples as a slice,
//! and time as an argument. Persistence lives in [`crate::store::examples`].

use crate::rules::spec::TrainingSpec;
use crate::util::round;
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

const FIELDS: &[&str] = &[
    "example_id",
    "task_description",
    "category",
    "style",
    "created_at",
    "quality_score",
    "structure_completeness",
    "pattern_clarity",
    "practical_value",
    "human_rating",
    "success_rate",
    "usage_count",
    "last_used",
    "tags",
];

const REQUIRED: &[&str] = &[
    "example_id",
    "task_description",
    "category",
    "style",
    "created_at",
    "quality_score",
    "structure_completeness",
    "pattern_clarity",
    "practical_value",
];

const UNIT: &[&str] = &[
    "quality_score",
    "structure_completeness",
    "pattern_clarity",
    "practical_value",
    "human_rating",
    "success_rate",
];

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

/// Parses one record, naming the field at fault.
pub fn parse_record(index: usize, v: &Value) -> Result<Example, RecordError> {
    let err = |field: Option<&str>, message: String| RecordError {
        index,
        field: field.map(str::to_string),
        message,
    };
    let Some(obj) = v.as_object() else {
        return Err(err(None, "a record must be an object".into()));
    };
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            let help = crate::diagnostic::did_you_mean(k, FIELDS.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(err(Some(k), format!("unknown field{help}")));
        }
    }
    for f in REQUIRED {
        if obj.get(*f).is_none_or(Value::is_null) {
            return Err(err(Some(f), "is missing".into()));
        }
    }
    for (k, x) in obj {
        let k = k.as_str();
        let ok = match k {
            "style" => x.as_str().is_some_and(|s| Style::parse(s).is_some()),
            "usage_count" => x.is_u64(),
            "tags" => x.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "last_used" => x.is_null() || x.is_string(),
            "human_rating" | "success_rate" => x.is_null() || x.is_number(),
            _ if UNIT.contains(&k) => x.is_number(),
            _ => x.is_string(),
        };
        if !ok {
            let expected = match k {
                "style" => format!("one of {}", Style::ALL.map(|s| format!("`{s}`")).join(", ")),
                "usage_count" => "a non-negative integer".into(),
                "tags" => "a list of strings".into(),
                "last_used" => "a timestamp or null".into(),
                "human_rating" | "success_rate" => "a number in 0..1 or null".into(),
                _ if UNIT.contains(&k) => "a number in 0..1".into(),
                _ => "a string".into(),
            };
            return Err(err(Some(k), format!("expected {expected}, found `{x}`")));
        }
    }
    let ex: Example = serde_json::from_value(v.clone()).map_err(|e| err(None, e.to_string()))?;
    if ex.example_id.trim().is_empty() {
        return Err(err(Some("example_id"), "must not be empty".into()));
    }
    if ex.category.trim().is_empty() {
        return Err(err(Some("category"), "must not be empty".into()));
    }
    for f in UNIT {
        let value = if *f == "success_rate" {
            ex.success_rate
        } else {
            ex.sub_score(f)
        };
        if let Some(x) = value {
            if !(0.0..=1.0).contains(&x) || !x.is_finite() {
                return Err(err(Some(f), format!("{x} is outside 0..1")));
            }
        }
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

/// The parts of an example's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreParts {
    /// Quality (the overall score, or the weighted sub-scores).
    #[serde(serialize_with = "round::four")]
    pub quality: f64,
    /// Success rate (the neutral one without history).
    #[serde(serialize_with = "round::four")]
    pub success_rate: f64,
    /// Style match with the request (1 or 0); only when a style was asked.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "round::four_opt"
    )]
    pub relevance: Option<f64>,
    /// Bonus for a category under-represented in the selection; only when diversity was asked.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "round::four_opt"
    )]
    pub diversity: Option<f64>,
    /// Factor of the example's category.
    #[serde(serialize_with = "round::four")]
    pub category_weight: f64,
}

/// What a selection asks for.
#[derive(Debug, Clone, Default)]
pub struct SelectRequest {
    /// Prefer this style (relevance).
    pub style: Option<Style>,
    /// At most this many; default from the rules.
    pub max: Option<usize>,
    /// Minimum score; default from the rules.
    pub min_score: Option<f64>,
    /// Only these categories (all when empty).
    pub categories: Vec<String>,
    /// Add the diversity bonus.
    pub diversity: bool,
    /// List the excluded examples and why (costs time and memory on large sets).
    pub explain: bool,
}

/// A scored example.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// Example id.
    pub example_id: String,
    /// Category.
    pub category: String,
    /// Style.
    pub style: Style,
    /// Score.
    #[serde(serialize_with = "round::four")]
    pub score: f64,
    /// Its parts.
    pub parts: ScoreParts,
}

/// An example left out of a selection, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// Example id.
    pub example_id: String,
    /// Score, when it was scored.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "round::four_opt"
    )]
    pub score: Option<f64>,
    /// Why (shared text: the score is in `score`).
    pub reason: std::sync::Arc<str>,
}

/// A selected trainset.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    /// Minimum score applied.
    #[serde(serialize_with = "round::four")]
    pub min_score: f64,
    /// Maximum size applied.
    pub max_examples: usize,
    /// Selected examples, best first.
    pub selected: Vec<Scored>,
    /// Examples left out, with the reason.
    pub excluded: Vec<Excluded>,
}

/// The quality of an example: the overall score, or the weighted sub-scores when the rules
/// give `quality_parts`.
pub fn quality(spec: &TrainingSpec, ex: &Example) -> f64 {
    let mut sum = 0.0;
    let mut weight = 0.0;
    for (name, w) in &spec.quality_parts {
        if let Some(x) = ex.sub_score(name) {
            sum += w * x;
            weight += w;
        }
    }
    if weight > 0.0 {
        sum / weight
    } else {
        ex.quality_score
    }
}

/// The success rate of an example; one without history gets the neutral rate, whatever its
/// usage count.
pub fn success(spec: &TrainingSpec, ex: &Example) -> f64 {
    ex.success_rate.unwrap_or(spec.neutral_success_rate)
}

/// The factor of a category.
pub fn category_weight(spec: &TrainingSpec, category: &str) -> f64 {
    spec.category_weights
        .get(category)
        .copied()
        .unwrap_or(spec.default_category_weight)
}

/// Scores one example. The weighted parts are divided by the sum of the weights in use
/// (quality and success always; relevance when a style is asked; diversity when asked), then
/// multiplied by the category weight. With the default weights (0.6, 0.4) and nothing asked:
/// `(0.6 × quality + 0.4 × success_rate) × category weight`.
pub fn score_parts(
    spec: &TrainingSpec,
    ex: &Example,
    style: Option<Style>,
    diversity: Option<f64>,
) -> (f64, ScoreParts) {
    let w = &spec.weights;
    let q = quality(spec, ex);
    let s = success(spec, ex);
    let relevance = style.map(|st| if st == ex.style { 1.0 } else { 0.0 });
    let mut sum = w.quality * q + w.success_rate * s;
    let mut total = w.quality + w.success_rate;
    if let Some(r) = relevance {
        sum += w.relevance * r;
        total += w.relevance;
    }
    if let Some(d) = diversity {
        sum += w.diversity * d;
        total += w.diversity;
    }
    let base = if total > 0.0 { sum / total } else { 0.0 };
    let cw = category_weight(spec, &ex.category);
    let parts = ScoreParts {
        quality: q,
        success_rate: s,
        relevance,
        diversity,
        category_weight: cw,
    };
    (base * cw, parts)
}

/// The score with nothing asked (what analytics ranks by).
pub fn score(spec: &TrainingSpec, ex: &Example) -> f64 {
    score_parts(spec, ex, None, None).0
}

/// The diversity bonus of a category: 1 when the selection has none of it yet, less as it
/// fills up.
fn diversity_bonus(count_in_selection: usize) -> f64 {
    1.0 / (1.0 + count_in_selection as f64)
}

/// Selects a trainset: filters by category, scores, keeps those at or above the minimum score,
/// best first, at most `max`. With diversity, examples are picked one by one and each pick
/// lowers the bonus of its category. Never changes the examples.
pub fn select(spec: &TrainingSpec, examples: &[Example], req: &SelectRequest) -> Selection {
    let min_score = req.min_score.unwrap_or(spec.filter.min_score);
    let max = req
        .max
        .unwrap_or(usize::try_from(spec.filter.max_examples).unwrap_or(usize::MAX));
    let mut excluded = Vec::new();
    // Within one category every example gets the same diversity bonus and category weight, so
    // its order does not change as picks are made: sort each category once, then pick the best
    // head among the categories. O(n log n), not O(max × n).
    // Ties break by example id; rank the ids once so the sorts compare numbers, not strings.
    let mut by_id: Vec<u32> = (0..examples.len() as u32).collect();
    by_id.sort_unstable_by(|&a, &b| {
        examples[a as usize]
            .example_id
            .cmp(&examples[b as usize].example_id)
    });
    let mut rank = vec![0u32; examples.len()];
    for (r, &i) in by_id.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    let mut by_category: BTreeMap<&str, Vec<(f64, usize)>> = BTreeMap::new();
    for (i, ex) in examples.iter().enumerate() {
        if !req.categories.is_empty() && !req.categories.contains(&ex.category) {
            if !req.explain {
                continue;
            }
            excluded.push(Excluded {
                example_id: ex.example_id.clone(),
                score: None,
                reason: format!("category `{}` was not asked for", ex.category).into(),
            });
        } else {
            let key = score_parts(spec, ex, req.style, req.diversity.then_some(0.0)).0;
            by_category
                .entry(ex.category.as_str())
                .or_default()
                .push((key, i));
        }
    }
    // (category, its examples as (sort key, index) best first, how many are picked)
    type Lane<'e> = (&'e str, Vec<(f64, usize)>, usize);
    let mut lists: Vec<Lane<'_>> = by_category
        .into_iter()
        .map(|(c, mut v)| {
            v.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(rank[a.1].cmp(&rank[b.1])));
            (c, v, 0)
        })
        .collect();
    let scored = |ex: &Example, picked: usize| {
        let d = req.diversity.then(|| diversity_bonus(picked));
        let (score, parts) = score_parts(spec, ex, req.style, d);
        (score, parts)
    };
    let mut selected: Vec<Scored> = Vec::new();
    while selected.len() < max {
        let mut best: Option<(usize, f64)> = None;
        for (li, (_, list, picked)) in lists.iter().enumerate() {
            let Some(&(_, idx)) = list.get(*picked) else {
                continue;
            };
            let (score, _) = scored(&examples[idx], *picked);
            let better = match best {
                None => true,
                Some((bl, bs)) => {
                    let b = &lists[bl];
                    score > bs || (score == bs && rank[idx] < rank[b.1[b.2].1])
                }
            };
            if better {
                best = Some((li, score));
            }
        }
        let Some((li, score)) = best else { break };
        if score < min_score {
            break;
        }
        let (_, list, picked) = &mut lists[li];
        let ex = &examples[list[*picked].1];
        let (score, parts) = scored(ex, *picked);
        *picked += 1;
        selected.push(Scored {
            example_id: ex.example_id.clone(),
            category: ex.category.clone(),
            style: ex.style,
            score,
            parts,
        });
    }
    let mut rest: Vec<(f64, usize)> = if !req.explain {
        Vec::new()
    } else {
        lists
            .iter()
            .flat_map(|(_, list, picked)| {
                list[*picked..]
                    .iter()
                    .map(move |&(_, idx)| (scored(&examples[idx], *picked).0, idx))
            })
            .collect()
    };
    rest.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(rank[a.1].cmp(&rank[b.1])));
    excluded.reserve(rest.len());
    let below: std::sync::Arc<str> = format!("score is below the minimum {min_score}").into();
    let beyond: std::sync::Arc<str> = format!("beyond the maximum of {max} examples").into();
    for (score, idx) in rest {
        excluded.push(Excluded {
            example_id: examples[idx].example_id.clone(),
            score: Some(score),
            reason: if score < min_score {
                below.clone()
            } else {
                beyond.clone()
            },
        });
    }
    selected.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.example_id.cmp(&b.example_id))
    });
    Selection {
        min_score,
        max_examples: max,
        selected,
        excluded,
    }
}

/// One under-represented category or style.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// `category` or `style`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Examples it has.
    pub count: u64,
    /// Examples it should have at least.
    pub minimum: u64,
    /// True for an expected category with no example at all.
    pub missing: bool,
}

fn count_by<'a>(
    examples: &'a [Example],
    key: impl Fn(&'a Example) -> String,
) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for ex in examples {
        *m.entry(key(ex)).or_insert(0) += 1;
    }
    m
}

/// Categories and styles below the thresholds, and expected categories with no example.
/// Categories first (by name), then styles (in [`Style::ALL`] order).
pub fn gaps(spec: &TrainingSpec, examples: &[Example]) -> Vec<Gap> {
    let g = &spec.gaps;
    let cats = count_by(examples, |e| e.category.clone());
    let mut names: Vec<&String> = cats.keys().collect();
    for c in &g.expected_categories {
        if !cats.contains_key(c) {
            names.push(c);
        }
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let count = cats.get(name).copied().unwrap_or(0);
        if count < g.min_per_category {
            out.push(Gap {
                kind: "category",
                name: name.clone(),
                count,
                minimum: g.min_per_category,
                missing: count == 0,
            });
        }
    }
    let styles = count_by(examples, |e| e.style.as_str().to_string());
    for st in Style::ALL {
        let count = styles.get(st.as_str()).copied().unwrap_or(0);
        if count < g.min_per_style {
            out.push(Gap {
                kind: "style",
                name: st.as_str().to_string(),
                count,
                minimum: g.min_per_style,
                missing: count == 0,
            });
        }
    }
    out
}

/// Examples per quality band.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Distribution {
    /// Quality ≥ `bands.high`.
    pub high: u64,
    /// `bands.medium` ≤ quality < `bands.high`.
    pub medium: u64,
    /// Quality < `bands.medium`.
    pub low: u64,
}

/// A top performer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Performer {
    /// Example id.
    pub name: String,
    /// Score with nothing asked.
    #[serde(serialize_with = "round::four")]
    pub score: f64,
    /// Success rate (neutral without history).
    #[serde(serialize_with = "round::four")]
    pub success_rate: f64,
}

/// What `training analytics` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Analytics {
    /// Examples in the store.
    pub total_examples: u64,
    /// Examples per quality band.
    pub quality_distribution: Distribution,
    /// The five best by score.
    pub top_performers: Vec<Performer>,
    /// Under-represented (or missing) categories.
    pub underrepresented: Vec<String>,
    /// Every gap, categories and styles.
    pub gaps: Vec<Gap>,
    /// Examples per category.
    pub category_breakdown: BTreeMap<String, u64>,
    /// Examples per style.
    pub style_breakdown: BTreeMap<String, u64>,
    /// What to do about it.
    pub recommendations: Vec<String>,
}

/// The analytics of a set of examples.
pub fn analytics(spec: &TrainingSpec, examples: &[Example]) -> Analytics {
    let mut dist = Distribution::default();
    for ex in examples {
        let q = quality(spec, ex);
        if q >= spec.bands.high {
            dist.high += 1;
        } else if q >= spec.bands.medium {
            dist.medium += 1;
        } else {
            dist.low += 1;
        }
    }
    let mut ranked: Vec<(f64, &Example)> = examples.iter().map(|e| (score(spec, e), e)).collect();
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.example_id.cmp(&b.1.example_id))
    });
    let top_performers = ranked
        .iter()
        .take(5)
        .map(|(s, e)| Performer {
            name: e.example_id.clone(),
            score: *s,
            success_rate: success(spec, e),
        })
        .collect();
    let gaps = gaps(spec, examples);
    let underrepresented: Vec<String> = gaps
        .iter()
        .filter(|g| g.kind == "category")
        .map(|g| g.name.clone())
        .collect();
    let category_breakdown = count_by(examples, |e| e.category.clone());
    let style_breakdown = count_by(examples, |e| e.style.as_str().to_string());
    let mut recommendations = Vec::new();
    for g in gaps.iter().filter(|g| g.kind == "category") {
        recommendations.push(format!(
            "add {} `{}` example(s): it has {}, the minimum is {}",
            g.minimum - g.count,
            g.name,
            g.count,
            g.minimum
        ));
    }
    let total = examples.len() as u64;
    if total > 0 {
        let share = dist.low as f64 / total as f64;
        if share > spec.recommendations.prune_low_share {
            recommendations.push(format!(
                "prune or improve low-quality examples: {} of {total} ({:.0}%) are below {}",
                dist.low,
                share * 100.0,
                spec.bands.medium
            ));
        }
    }
    if (category_breakdown.len() as u64) < spec.recommendations.min_categories {
        recommendations.push(format!(
            "add categories: only {} have examples, at least {} are recommended",
            category_breakdown.len(),
            spec.recommendations.min_categories
        ));
    }
    Analytics {
        total_examples: total,
        quality_distribution: dist,
        top_performers,
        underrepresented,
        gaps,
        category_breakdown,
        style_breakdown,
        recommendations,
    }
}

/// The outcome of one example in an optimization run (a record of `--results`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunResult {
    /// Example id.
    pub example_id: String,
    /// Score it got, 0..1.
    pub score: f64,
    /// Whether it passed.
    pub passed: bool,
}

/// What an update changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateOutcome {
    /// The examples after the update (each once).
    pub updated: Vec<Example>,
    /// Ids of results with no such example, in order, each once.
    pub unknown: Vec<String>,
}

/// Applies run results with the rule's moving averages:
/// `quality = (1 - qa) × quality + qa × score`, `success = (1 - sa) × success + sa × passed`
/// (from the neutral rate without history); usage + 1 and `last_used = now` per result.
pub fn apply_results(
    spec: &TrainingSpec,
    examples: &[Example],
    results: &[RunResult],
    now: &str,
) -> UpdateOutcome {
    let qa = spec.update.quality_alpha;
    let sa = spec.update.success_alpha;
    let mut changed: BTreeMap<&str, Example> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for r in results {
        let Some(base) = examples.iter().find(|e| e.example_id == r.example_id) else {
            if !unknown.contains(&r.example_id) {
                unknown.push(r.example_id.clone());
            }
            continue;
        };
        let ex = changed.entry(base.example_id.as_str()).or_insert_with(|| {
            order.push(base.example_id.as_str());
            base.clone()
        });
        let passed = if r.passed { 1.0 } else { 0.0 };
        ex.quality_score = (1.0 - qa) * ex.quality_score + qa * r.score;
        let s = ex.success_rate.unwrap_or(spec.neutral_success_rate);
        ex.success_rate = Some((1.0 - sa) * s + sa * passed);
        ex.usage_count += 1;
        ex.last_used = Some(now.to_string());
    }
    let updated = order
        .into_iter()
        .filter_map(|id| changed.remove(id))
        .collect();
    UpdateOutcome { updated, unknown }
}

/// Checks run results: scores within 0..1, ids not empty.
pub fn check_results(results: &[RunResult]) -> Result<(), RecordError> {
    for (i, r) in results.iter().enumerate() {
        if r.example_id.trim().is_empty() {
            return Err(RecordError {
                index: i,
                field: Some("example_id".into()),
                message: "must not be empty".into(),
            });
        }
        if !(0.0..=1.0).contains(&r.score) {
            return Err(RecordError {
                index: i,
                field: Some("score".into()),
                message: format!("{} is outside 0..1", r.score),
            });
        }
    }
    Ok(())
}

/// The example file shipped with skill-fleet (`config/training/example_metadata.json`).
pub const SHIPPED_EXAMPLES: &str = include_str!("../../config/training/example_metadata.json");

/// `n` pseudo-random examples (deterministic for a `seed`), with scores rounded to hundredths
/// so ties happen: for tests and benchmarks.
pub fn synthetic(n: usize, seed: u64) -> Vec<Example> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let cats = [
        "python", "web", "cli", "database", "devops", "testing", "api", "dspy", "ml", "docs",
    ];
    let styles = [
        Style::Technical,
        Style::Beginner,
        Style::Comprehensive,
        Style::NavigationHub,
        Style::Minimal,
    ];
    (0..n)
        .map(|i| {
            let q = (next() % 101) as f64 / 100.0;
            let s = match next() % 4 {
                0 => None,
                _ => Some((next() % 101) as f64 / 100.0),
            };
            let cat = cats[(next() % cats.len() as u64) as usize];
            let style = styles[(next() % styles.len() as u64) as usize];
            Example {
                example_id: format!("ex-{i:06}"),
                task_description: format!("task {i}"),
                category: cat.into(),
                style,
                created_at: "2026-01-01T00:00:00Z".into(),
                quality_score: q,
                structure_completeness: q,
                pattern_clarity: q,
                practical_value: q,
                human_rating: None,
                success_rate: s,
                usage_count: 0,
                last_used: None,
                tags: vec![],
            }
        })
        .collect()
}

/// The plain greedy selection (one full scan per pick): the oracle of `select`'s test.
#[cfg(test)]
pub(crate) fn select_greedy(
    spec: &TrainingSpec,
    examples: &[Example],
    req: &SelectRequest,
) -> Selection {
    let min_score = req.min_score.unwrap_or(spec.filter.min_score);
    let max = req
        .max
        .unwrap_or(usize::try_from(spec.filter.max_examples).unwrap_or(usize::MAX));
    let mut excluded = Vec::new();
    let mut pool: Vec<&Example> = Vec::new();
    for ex in examples {
        if !req.categories.is_empty() && !req.categories.contains(&ex.category) {
            excluded.push(Excluded {
                example_id: ex.example_id.clone(),
                score: None,
                reason: format!("category `{}` was not asked for", ex.category).into(),
            });
        } else {
            pool.push(ex);
        }
    }
    let mut selected: Vec<Scored> = Vec::new();
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    let scored = |ex: &Example, per: &BTreeMap<&str, usize>| {
        let d = req
            .diversity
            .then(|| diversity_bonus(per.get(ex.category.as_str()).copied().unwrap_or(0)));
        let (score, parts) = score_parts(spec, ex, req.style, d);
        Scored {
            example_id: ex.example_id.clone(),
            category: ex.category.clone(),
            style: ex.style,
            score,
            parts,
        }
    };
    let better = |a: &Scored, b: &Scored| {
        a.score > b.score || (a.score == b.score && a.example_id < b.example_id)
    };
    while !pool.is_empty() {
        let mut best: Option<(usize, Scored)> = None;
        for (i, ex) in pool.iter().enumerate() {
            let s = scored(ex, &per_category);
            if best.as_ref().is_none_or(|(_, b)| better(&s, b)) {
                best = Some((i, s));
            }
        }
        let Some((i, s)) = best else { break };
        if s.score < min_score || selected.len() >= max {
            break;
        }
        let ex = pool.remove(i);
        *per_category.entry(ex.category.as_str()).or_insert(0) += 1;
        selected.push(s);
    }
    let mut rest: Vec<Scored> = pool.iter().map(|ex| scored(ex, &per_category)).collect();
    rest.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.example_id.cmp(&b.example_id))
    });
    for s in rest {
        let reason = if s.score < min_score {
            format!("score is below the minimum {min_score}").into()
        } else {
            format!("beyond the maximum of {max} examples").into()
        };
        excluded.push(Excluded {
            example_id: s.example_id,
            score: Some(s.score),
            reason,
        });
    }
    selected.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.example_id.cmp(&b.example_id))
    });
    Selection {
        min_score,
        max_examples: max,
        selected,
        excluded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TrainingSpec {
        let text = include_str!("../../rules/training.yaml");
        let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        serde_yaml::from_value(v["training"].clone()).unwrap()
    }

    fn ex(id: &str, cat: &str, style: Style, q: f64, s: Option<f64>) -> Example {
        Example {
            example_id: id.into(),
            task_description: format!("task {id}"),
            category: cat.into(),
            style,
            created_at: "2025-01-01T00:00:00Z".into(),
            quality_score: q,
            structure_completeness: q,
            pattern_clarity: q,
            practical_value: q,
            human_rating: None,
            success_rate: s,
            usage_count: 0,
            last_used: None,
            tags: vec![],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn shipped() -> Vec<Example> {
        parse_records(SHIPPED_EXAMPLES).unwrap()
    }

    #[test]
    fn fast_selection_equals_the_plain_greedy_one() {
        let mut sp = spec();
        sp.category_weights.insert("web".into(), 1.2);
        sp.category_weights.insert("docs".into(), 0.7);
        let data = synthetic(600, 42);
        let requests = [
            SelectRequest::default(),
            SelectRequest {
                diversity: true,
                ..SelectRequest::default()
            },
            SelectRequest {
                style: Some(Style::Beginner),
                diversity: true,
                max: Some(30),
                ..SelectRequest::default()
            },
            SelectRequest {
                min_score: Some(0.3),
                max: Some(200),
                ..SelectRequest::default()
            },
            SelectRequest {
                categories: vec!["web".into(), "dspy".into()],
                diversity: true,
                min_score: Some(0.2),
                ..SelectRequest::default()
            },
            SelectRequest {
                style: Some(Style::Minimal),
                max: Some(1000),
                min_score: Some(0.0),
                ..SelectRequest::default()
            },
        ];
        for req in &requests {
            let req = &SelectRequest {
                explain: true,
                ..req.clone()
            };
            let fast = select(&sp, &data, req);
            let slow = select_greedy(&sp, &data, req);
            let quiet = select(
                &sp,
                &data,
                &SelectRequest {
                    explain: false,
                    ..req.clone()
                },
            );
            assert!(quiet.excluded.is_empty());
            assert_eq!(quiet.selected.len(), fast.selected.len());
            let ids = |s: &Selection| {
                s.selected
                    .iter()
                    .map(|x| (x.example_id.clone(), x.score))
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&fast), ids(&slow), "{req:?}");
            let ex = |s: &Selection| {
                s.excluded
                    .iter()
                    .map(|x| (x.example_id.clone(), x.score, x.reason.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(ex(&fast), ex(&slow), "{req:?}");
        }
    }

    #[test]
    fn default_score_is_weighted_quality_and_success_times_category_weight() {
        let mut sp = spec();
        let e = ex("a", "python", Style::Technical, 0.9, Some(0.6));
        assert!(close(score(&sp, &e), 0.6 * 0.9 + 0.4 * 0.6));
        sp.category_weights.insert("python".into(), 0.5);
        assert!(close(score(&sp, &e), (0.6 * 0.9 + 0.4 * 0.6) * 0.5));
    }

    #[test]
    fn changed_weights_change_the_score() {
        let mut sp = spec();
        sp.weights.quality = 1.0;
        sp.weights.success_rate = 0.0;
        let e = ex("a", "python", Style::Technical, 0.9, Some(0.1));
        assert!(close(score(&sp, &e), 0.9));
        sp.quality_parts.insert("pattern_clarity".into(), 1.0);
        let mut e2 = e.clone();
        e2.pattern_clarity = 0.3;
        assert!(close(score(&sp, &e2), 0.3));
    }

    #[test]
    fn style_relevance_applies_only_when_asked() {
        let mut sp = spec();
        sp.weights.relevance = 0.5;
        let a = ex("a", "web", Style::Beginner, 0.8, Some(0.8));
        let (plain, _) = score_parts(&sp, &a, None, None);
        assert!(close(plain, 0.8));
        let (m, p) = score_parts(&sp, &a, Some(Style::Beginner), None);
        assert!(close(m, (0.8 + 0.5) / 1.5));
        assert_eq!(p.relevance, Some(1.0));
        let (n, _) = score_parts(&sp, &a, Some(Style::Technical), None);
        assert!(close(n, 0.8 / 1.5));
    }

    #[test]
    fn an_example_without_history_is_neutral_and_never_punished_for_use() {
        let sp = spec();
        let fresh = ex("a", "cli", Style::Minimal, 0.9, None);
        let mut used = fresh.clone();
        used.example_id = "b".into();
        used.usage_count = 40;
        used.last_used = Some("2025-06-01T00:00:00Z".into());
        assert!(close(score(&sp, &fresh), 0.6 * 0.9 + 0.4 * 0.5));
        assert!(close(score(&sp, &fresh), score(&sp, &used)));
        let sel = select(&sp, &[fresh, used], &SelectRequest::default());
        assert_eq!(sel.selected.len(), 2);
        assert!(sel.excluded.is_empty());
    }

    #[test]
    fn select_filters_orders_limits_and_explains() {
        let sp = spec();
        let all = vec![
            ex("low", "web", Style::Technical, 0.3, Some(0.2)),
            ex("mid", "web", Style::Technical, 0.8, Some(0.8)),
            ex("top", "api", Style::Beginner, 1.0, Some(1.0)),
            ex("other", "dspy", Style::Beginner, 0.95, Some(0.9)),
        ];
        let sel = select(
            &sp,
            &all,
            &SelectRequest {
                categories: vec!["web".into(), "api".into()],
                max: Some(1),
                explain: true,
                ..Default::default()
            },
        );
        let ids: Vec<&str> = sel.selected.iter().map(|s| s.example_id.as_str()).collect();
        assert_eq!(ids, ["top"]);
        let reasons: BTreeMap<&str, &str> = sel
            .excluded
            .iter()
            .map(|e| (e.example_id.as_str(), &*e.reason))
            .collect();
        assert!(reasons["other"].contains("category `dspy`"));
        assert!(reasons["mid"].contains("beyond the maximum of 1"));
        assert!(reasons["low"].contains("below the minimum 0.7"));
        let before = all.clone();
        let _ = select(&sp, &all, &SelectRequest::default());
        assert_eq!(all, before);
    }

    #[test]
    fn diversity_spreads_categories() {
        let mut sp = spec();
        sp.weights.diversity = 0.5;
        let all = vec![
            ex("a1", "web", Style::Technical, 0.95, Some(0.95)),
            ex("a2", "web", Style::Technical, 0.94, Some(0.94)),
            ex("b1", "cli", Style::Technical, 0.85, Some(0.85)),
        ];
        let req = SelectRequest {
            diversity: true,
            max: Some(2),
            min_score: Some(0.0),
            ..Default::default()
        };
        let sel = select(&sp, &all, &req);
        let ids: Vec<&str> = sel.selected.iter().map(|s| s.example_id.as_str()).collect();
        assert_eq!(ids, ["a1", "b1"]);
        let plain = select(
            &sp,
            &all,
            &SelectRequest {
                diversity: false,
                ..req
            },
        );
        let ids: Vec<&str> = plain
            .selected
            .iter()
            .map(|s| s.example_id.as_str())
            .collect();
        assert_eq!(ids, ["a1", "a2"]);
    }

    #[test]
    fn update_follows_the_moving_averages() {
        let sp = spec();
        let mut e = ex("a", "python", Style::Technical, 0.5, Some(0.5));
        let pass = RunResult {
            example_id: "a".into(),
            score: 1.0,
            passed: true,
        };
        let out = apply_results(&sp, &[e.clone()], &[pass], "2025-02-01T00:00:00Z");
        assert!(out.unknown.is_empty());
        e = out.updated[0].clone();
        assert!(close(e.quality_score, 0.6));
        assert!(close(e.success_rate.unwrap_or(0.0), 0.55));
        assert_eq!(e.usage_count, 1);
        assert_eq!(e.last_used.as_deref(), Some("2025-02-01T00:00:00Z"));
        let fail = RunResult {
            example_id: "a".into(),
            score: 0.0,
            passed: false,
        };
        let ghost = RunResult {
            example_id: "ghost".into(),
            score: 0.5,
            passed: true,
        };
        let out = apply_results(&sp, &[e], &[fail, ghost], "2025-02-02T00:00:00Z");
        let e = &out.updated[0];
        assert!(close(e.quality_score, 0.48));
        assert!(close(e.success_rate.unwrap_or(0.0), 0.495));
        assert_eq!(e.usage_count, 2);
        assert_eq!(out.unknown, ["ghost"]);
    }

    #[test]
    fn update_without_history_starts_from_neutral() {
        let sp = spec();
        let e = ex("a", "python", Style::Technical, 0.5, None);
        let r = RunResult {
            example_id: "a".into(),
            score: 1.0,
            passed: true,
        };
        let out = apply_results(&sp, &[e], &[r], "2025-02-01T00:00:00Z");
        assert!(close(out.updated[0].success_rate.unwrap_or(0.0), 0.55));
    }

    #[test]
    fn shipped_examples_parse_and_cover_eight_categories() {
        let all = shipped();
        assert_eq!(all.len(), 50);
        let cats = count_by(&all, |e| e.category.clone());
        assert!(cats.len() >= 8, "{cats:?}");
    }

    #[test]
    fn gaps_on_the_shipped_data() {
        let sp = spec();
        let g = gaps(&sp, &shipped());
        let cats: Vec<(&str, u64)> = g
            .iter()
            .filter(|g| g.kind == "category")
            .map(|g| (g.name.as_str(), g.count))
            .collect();
        assert_eq!(cats, [("database", 2), ("dspy", 1)]);
        let styles: Vec<(&str, u64)> = g
            .iter()
            .filter(|g| g.kind == "style")
            .map(|g| (g.name.as_str(), g.count))
            .collect();
        assert_eq!(styles, [("navigation_hub", 1)]);
        let mut sp2 = sp.clone();
        sp2.gaps.expected_categories.push("security".into());
        let g = gaps(&sp2, &shipped());
        assert!(g
            .iter()
            .any(|g| g.name == "security" && g.missing && g.count == 0));
    }

    #[test]
    fn analytics_on_the_shipped_data() {
        let sp = spec();
        let a = analytics(&sp, &shipped());
        assert_eq!(a.total_examples, 50);
        let d = &a.quality_distribution;
        assert_eq!(d.high + d.medium + d.low, 50);
        assert_eq!((d.high, d.medium, d.low), (25, 20, 5));
        assert_eq!(a.top_performers.len(), 5);
        assert!(a
            .top_performers
            .windows(2)
            .all(|w| w[0].score >= w[1].score));
        assert_eq!(a.underrepresented, ["database", "dspy"]);
        assert_eq!(a.category_breakdown.values().sum::<u64>(), 50);
        assert_eq!(a.style_breakdown.values().sum::<u64>(), 50);
        assert_eq!(a.recommendations.len(), 2, "{:?}", a.recommendations);
        assert!(a.recommendations[0].contains("`database`"));
    }

    #[test]
    fn analytics_recommends_pruning_and_categories() {
        let sp = spec();
        let all = vec![
            ex("a", "web", Style::Technical, 0.2, None),
            ex("b", "web", Style::Technical, 0.9, None),
        ];
        let a = analytics(&sp, &all);
        assert!(a.recommendations.iter().any(|r| r.starts_with("prune")));
        assert!(a
            .recommendations
            .iter()
            .any(|r| r.starts_with("add categories")));
    }

    #[test]
    fn bad_records_name_their_index_and_field() {
        let good = serde_json::to_value(ex("a", "web", Style::Minimal, 0.5, None)).unwrap();
        let mut bad = good.clone();
        bad["quality_score"] = Value::from("high");
        let text = serde_json::to_string(&vec![good.clone(), bad]).unwrap();
        let e = parse_records(&text).unwrap_err();
        assert_eq!((e.index, e.field.as_deref()), (1, Some("quality_score")));
        let mut bad = good.clone();
        bad["style"] = Value::from("fancy");
        let e = parse_record(3, &bad).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("style"));
        assert!(e.to_string().starts_with("record 3, field `style`"), "{e}");
        let mut bad = good.clone();
        bad.as_object_mut().unwrap().remove("category");
        assert_eq!(
            parse_record(0, &bad).unwrap_err().field.as_deref(),
            Some("category")
        );
        let mut bad = good.clone();
        bad["success_rate"] = Value::from(1.5);
        assert_eq!(
            parse_record(0, &bad).unwrap_err().field.as_deref(),
            Some("success_rate")
        );
        let mut bad = good.clone();
        bad["quality"] = Value::from(1.0);
        assert_eq!(
            parse_record(0, &bad).unwrap_err().field.as_deref(),
            Some("quality")
        );
        let text = serde_json::to_string(&vec![good.clone(), good]).unwrap();
        assert_eq!(parse_records(&text).unwrap_err().index, 1);
    }
}
