//! The rule file format: serde + schemars types.
//!
//! Every YAML file under `rules/` is a [`RuleFile`]: a mapping with any of the sections below.
//! Each section except `tests` appears in exactly one file of a rule set. The JSON Schema in
//! `schemas/rule-file.schema.json` is generated from these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One YAML file of a rule set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The input fields of a recommendation.
    pub context: Option<ContextSpec>,
    /// The optimizer catalog and the default configuration.
    pub optimizers: Option<OptimizersSpec>,
    /// Ordered selection rules (first match wins) and the fallback.
    pub selection: Option<SelectionSpec>,
    /// Cost and time model.
    pub cost: Option<CostSpec>,
    /// Confidence model and alternatives.
    pub confidence: Option<ConfidenceSpec>,
    /// Budget guard: what to do when the estimate exceeds the budget.
    pub guard: Option<GuardSpec>,
    /// Training-data quality weights and thresholds.
    pub training: Option<TrainingSpec>,
    /// Fixtures run by `skill-fleet rules test`.
    pub tests: Option<Vec<Fixture>>,
    /// Settings of the rule analysis run by `skill-fleet rules check` (optional).
    pub analysis: Option<AnalysisSpec>,
}

/// Settings of the rule analysis run by `skill-fleet rules check`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Number fields along which a larger value, everything else equal, must never get a
    /// weaker optimizer (strength: the order of `guard.downgrade`, strongest first). Default
    /// `[budget_usd, trainset_size]`; `[]` turns the check off.
    #[serde(default = "default_monotone_in")]
    pub monotone_in: Vec<String>,
}

/// The fields checked for monotonicity when the rule set does not say.
pub const DEFAULT_MONOTONE_IN: [&str; 2] = ["budget_usd", "trainset_size"];

fn default_monotone_in() -> Vec<String> {
    DEFAULT_MONOTONE_IN.iter().map(|s| s.to_string()).collect()
}

/// The input fields of a recommendation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// Fields by name. `trainset_size`, `budget_usd`, `domain` and `model` are used by the
    /// engine itself and must be declared.
    pub fields: BTreeMap<String, FieldSpec>,
}

/// The type of an input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Whole number.
    Integer,
    /// Any number.
    Number,
    /// Text.
    String,
    /// true or false.
    Boolean,
}

impl FieldType {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        }
    }

    /// Integer or number.
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Integer | FieldType::Number)
    }
}

/// One input field.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The field's type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// A request without this field is rejected.
    #[serde(default)]
    pub required: bool,
    /// Value used when the request leaves the field out.
    pub default: Option<Scalar>,
    /// Smallest accepted value (numbers).
    pub min: Option<f64>,
    /// Largest accepted value (numbers).
    pub max: Option<f64>,
    /// Other names accepted for this field in requests.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Text labels accepted for a number field, with the number each stands for.
    #[serde(default)]
    pub labels: BTreeMap<String, f64>,
    /// Allowed values (strings).
    #[serde(rename = "enum")]
    pub one_of: Option<Vec<String>>,
    /// What the field means.
    pub description: Option<String>,
}

/// A literal value in a rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// true or false.
    Bool(bool),
    /// Whole number.
    Int(i64),
    /// Number with a fraction.
    Num(f64),
    /// Text.
    Str(String),
}

/// The optimizer catalog.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizersSpec {
    /// Configuration every result starts from; every key appears in every decision.
    pub default_config: BTreeMap<String, Scalar>,
    /// The config key that holds an optimizer's variant (MIPROv2's `auto`).
    #[serde(default = "default_variant_key")]
    pub variant_key: String,
    /// Optimizers by name.
    pub catalog: BTreeMap<String, OptimizerSpec>,
}

fn default_variant_key() -> String {
    "auto".to_string()
}

/// One optimizer of the catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// What it does and when it fits.
    pub description: Option<String>,
    /// Named variants (e.g. MIPROv2 `light`, `medium`, `heavy`), stored in the variant key.
    #[serde(default)]
    pub variants: Vec<String>,
}

/// Ordered selection rules and the fallback.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectionSpec {
    /// Tried in order; the first whose `when` holds decides.
    pub rules: Vec<RuleSpec>,
    /// Used when no rule matches.
    pub fallback: FallbackSpec,
}

/// One selection rule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique id, reported as `rule` in every decision.
    pub id: String,
    /// What the rule is for.
    pub description: Option<String>,
    /// The condition.
    pub when: Condition,
    /// The result when it holds.
    pub then: Choice,
    /// Why, for the user; `{field}` quotes an input, `{field:.2}` with 2 decimals.
    pub reasoning: String,
}

/// The result used when no rule matches.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    /// Id reported as `rule` (default `fallback`).
    #[serde(default = "default_fallback_id")]
    pub id: String,
    /// The result.
    pub then: Choice,
    /// Why, for the user.
    pub reasoning: String,
}

fn default_fallback_id() -> String {
    "fallback".to_string()
}

/// An optimizer with its variant and config overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// Optimizer name from the catalog.
    pub optimizer: String,
    /// Variant (stored in the variant key of the config).
    pub variant: Option<String>,
    /// Config keys that differ from the default config.
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
}

/// A condition: exactly one of `all`, `any`, `not`, `field` (with comparisons) or `expr`.
///
/// With `field`, every comparison given must hold; a comparison on a field the request left
/// out (no default) is false.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Every condition holds.
    pub all: Option<Vec<Condition>>,
    /// At least one condition holds.
    pub any: Option<Vec<Condition>>,
    /// The condition does not hold.
    pub not: Option<Box<Condition>>,
    /// A context field to compare.
    pub field: Option<String>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub le: Option<f64>,
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub ge: Option<f64>,
    /// Equal.
    pub eq: Option<Scalar>,
    /// Not equal.
    pub ne: Option<Scalar>,
    /// One of.
    #[serde(rename = "in")]
    pub one_of: Option<Vec<Scalar>>,
    /// The request has a value for the field (true) or not (false).
    pub present: Option<bool>,
    /// A Rhai expression over the context fields that returns a boolean.
    pub expr: Option<String>,
}

/// Cost and time model.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    /// Decimals of the estimated cost, rounded like Python's `round` (exact value, ties to even).
    #[serde(default = "default_decimals")]
    #[schemars(range(max = 6))]
    pub decimals: u32,
    /// Lower bound of the time estimate in minutes.
    #[serde(default = "default_min_minutes")]
    pub min_minutes: u64,
    /// Model used when the request names none.
    pub default_model: String,
    /// Model price table, selected by the request's `model`.
    pub models: BTreeMap<String, ModelSpec>,
    /// Per-optimizer parameters.
    pub optimizers: BTreeMap<String, OptimizerCost>,
    /// Name of a Rhai function (in a `.rhai` file of the rule set) that computes cost and time
    /// instead of the built-in formula.
    pub script: Option<String>,
}

fn default_decimals() -> u32 {
    2
}

fn default_min_minutes() -> u64 {
    1
}

/// One model of the price table.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// What the model is.
    pub description: Option<String>,
    /// Factor on the cost of the reference model the constants were measured with.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub cost_multiplier: f64,
    /// Factor on the time of the reference model.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub time_multiplier: f64,
    /// Price of a million input tokens in USD (for scripted cost models).
    #[schemars(range(min = 0))]
    pub input_usd_per_mtok: Option<f64>,
    /// Price of a million output tokens in USD (for scripted cost models).
    #[schemars(range(min = 0))]
    pub output_usd_per_mtok: Option<f64>,
}

fn one() -> f64 {
    1.0
}

/// Cost and time parameters of one optimizer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizerCost {
    /// USD per 100 training examples.
    #[schemars(range(min = 0))]
    pub usd_per_100: f64,
    /// Minutes per 100 training examples.
    #[schemars(range(min = 0))]
    pub minutes_per_100: f64,
    /// Factor per variant, on both cost and time (time base truncated to whole minutes).
    #[serde(default)]
    pub variant_multipliers: BTreeMap<String, f64>,
    /// Extra numbers passed to a cost script.
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
}

/// Confidence model and alternatives.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceSpec {
    /// Confidence without history.
    #[schemars(range(min = 0, max = 1))]
    pub base: f64,
    /// Adjustment from past outcomes of the same domain and optimizer.
    pub history: HistorySpec,
    /// Penalty for small trainsets.
    pub small_trainset: SmallTrainsetSpec,
    /// Decimals of the confidence (Python-style rounding).
    #[serde(default = "default_decimals")]
    #[schemars(range(max = 6))]
    pub decimals: u32,
    /// Alternatives offered beside the primary, in order; one equal to the primary is left out.
    #[serde(default)]
    pub alternatives: Vec<AlternativeSpec>,
}

/// History adjustment: `min(cap, base + weight × share of outcomes with quality ≥ success_quality)`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistorySpec {
    /// Quality at or above which an outcome counts as a success.
    #[schemars(range(min = 0, max = 1))]
    pub success_quality: f64,
    /// Weight of the success share.
    #[schemars(range(min = 0, max = 1))]
    pub weight: f64,
    /// Upper bound after the adjustment.
    #[schemars(range(min = 0, max = 1))]
    pub cap: f64,
}

/// `× factor` when `trainset_size < below`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmallTrainsetSpec {
    /// Threshold on `trainset_size`.
    pub below: i64,
    /// Factor applied under the threshold.
    #[schemars(range(min = 0, max = 1))]
    pub factor: f64,
}

/// An alternative offered beside the primary recommendation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlternativeSpec {
    /// Optimizer name from the catalog (estimated with the default config).
    pub optimizer: String,
    /// Risk to quality compared with the primary, 0..1.
    #[schemars(range(min = 0, max = 1))]
    pub quality_risk: f64,
    /// A short note for the user.
    pub note: String,
}

/// Budget guard.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardSpec {
    /// Off: estimates may exceed the budget, as in the original selector.
    pub enabled: bool,
    /// Steps from most to least expensive; from the chosen step on, the first that fits wins.
    pub downgrade: Vec<Choice>,
    /// Appended to the reasoning after a step down. Placeholders: inputs and `{original}`,
    /// `{original_cost}`, `{optimizer}`, `{estimated_cost}`.
    pub reasoning: String,
    /// Appended when no step fits the budget. Same placeholders.
    pub no_fit_reasoning: String,
}

/// The names `training.quality_parts` may weigh: the sub-scores of a training example.
pub const SUB_SCORES: &[&str] = &[
    "structure_completeness",
    "pattern_clarity",
    "practical_value",
    "human_rating",
    "quality_score",
];

/// Training-data quality: weights, thresholds and update factors.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Weights of the score parts.
    pub weights: ScoreWeights,
    /// Weights of the quality sub-scores; when empty, the overall quality score is used.
    #[serde(default)]
    pub quality_parts: BTreeMap<String, f64>,
    /// Factor per category; categories not listed get `default_category_weight`.
    #[serde(default)]
    pub category_weights: BTreeMap<String, f64>,
    /// Factor for categories not in `category_weights`.
    #[serde(default = "one")]
    pub default_category_weight: f64,
    /// Quality bands.
    pub bands: Bands,
    /// Defaults of `training select`.
    pub filter: FilterSpec,
    /// Success rate assumed for an example without history.
    #[schemars(range(min = 0, max = 1))]
    pub neutral_success_rate: f64,
    /// Under-representation thresholds.
    pub gaps: GapSpec,
    /// Post-optimization update (exponential moving averages).
    pub update: UpdateSpec,
    /// Thresholds of the analytics recommendations.
    pub recommendations: RecommendationSpec,
}

/// Weights of the training score parts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreWeights {
    /// Weight of quality.
    #[schemars(range(min = 0, max = 1))]
    pub quality: f64,
    /// Weight of success rate.
    #[schemars(range(min = 0, max = 1))]
    pub success_rate: f64,
    /// Weight of the style match with the request.
    #[schemars(range(min = 0, max = 1))]
    pub relevance: f64,
    /// Weight of the bonus for categories under-represented in the selection.
    #[schemars(range(min = 0, max = 1))]
    pub diversity: f64,
}

/// Quality bands: high ≥ `high`, medium ≥ `medium`, low below.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    /// Lower bound of high.
    #[schemars(range(min = 0, max = 1))]
    pub high: f64,
    /// Lower bound of medium.
    #[schemars(range(min = 0, max = 1))]
    pub medium: f64,
}

/// Defaults of the trainset filter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Minimum score.
    #[schemars(range(min = 0, max = 1))]
    pub min_score: f64,
    /// Maximum number of examples.
    #[schemars(range(min = 1))]
    pub max_examples: u64,
}

/// Gap detection thresholds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GapSpec {
    /// A category with fewer examples is under-represented.
    pub min_per_category: u64,
    /// A style with fewer examples is under-represented.
    pub min_per_style: u64,
    /// Categories that should exist; one with no example at all is reported.
    #[serde(default)]
    pub expected_categories: Vec<String>,
}

/// Post-optimization update: `new = (1 - alpha) × old + alpha × observed`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSpec {
    /// Alpha of the quality average.
    #[schemars(range(min = 0, max = 1))]
    pub quality_alpha: f64,
    /// Alpha of the success-rate average.
    #[schemars(range(min = 0, max = 1))]
    pub success_alpha: f64,
}

/// Thresholds of the analytics recommendations.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendationSpec {
    /// Recommend pruning when the low-quality share exceeds this.
    #[schemars(range(min = 0, max = 1))]
    pub prune_low_share: f64,
    /// Recommend adding categories when fewer exist.
    pub min_categories: u64,
}

/// A fixture: an input and what the decision must be.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Unique name, used by `rules test --filter`.
    pub name: String,
    /// The request body.
    pub input: serde_json::Map<String, serde_json::Value>,
    /// Past outcomes for the confidence model.
    #[serde(default)]
    pub history: Vec<HistoryRecord>,
    /// Overrides `guard.enabled` for this fixture.
    pub guard: Option<bool>,
    /// What the decision must be; keys left out are not checked.
    pub expect: Expect,
}

/// Expected parts of a decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Expected optimizer.
    pub recommended: Option<String>,
    /// Expected rule id.
    pub rule: Option<String>,
    /// Expected config keys (others are not checked).
    pub config: Option<BTreeMap<String, Scalar>>,
    /// Expected cost in USD.
    pub estimated_cost: Option<f64>,
    /// Expected time in minutes.
    pub estimated_time_minutes: Option<u64>,
    /// Expected confidence.
    pub confidence: Option<f64>,
    /// Expected alternative optimizers, in order.
    pub alternatives: Option<Vec<String>>,
    /// Text the reasoning must contain.
    pub reasoning_contains: Option<String>,
    /// The input must be rejected with a message containing this text.
    pub error: Option<String>,
}

/// One past optimization outcome (a line of `selector_metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryRecord {
    /// When the run finished (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Trainset size of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainset_size: Option<i64>,
    /// Budget of the run in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
    /// Quality target of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_target: Option<f64>,
    /// Domain of the run.
    pub domain: String,
    /// Optimizer used.
    pub optimizer: String,
    /// Actual cost in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_cost: Option<f64>,
    /// Actual time in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_time: Option<f64>,
    /// Quality reached, 0..1.
    pub quality: f64,
}
