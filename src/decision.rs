//! The decision: what `POST /api/v1/optimization/recommend` returns and `rules test --format
//! json` prints, with the optional trace. `schemas/decision.schema.json` is generated from it.

use crate::rules::spec::Scalar;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A full optimizer configuration: every key of the default config, in key order.
pub type Config = BTreeMap<String, Scalar>;

/// The recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Decision {
    /// Recommended optimizer.
    #[schemars(with = "String")]
    pub recommended: Arc<str>,
    /// Its configuration; all keys of the default config appear.
    #[schemars(with = "Config")]
    pub config: Arc<Config>,
    /// Estimated cost in USD.
    pub estimated_cost: f64,
    /// Estimated time in whole minutes.
    pub estimated_time_minutes: u64,
    /// Confidence, 0..1.
    pub confidence: f64,
    /// Why this optimizer, for the user.
    pub reasoning: String,
    /// Other options, each estimated under the default config.
    pub alternatives: Vec<Alternative>,
    /// Id of the rule that fired (or the fallback's id).
    #[schemars(with = "String")]
    pub rule: Arc<str>,
    /// Content hash of the rule set that made the decision.
    #[schemars(with = "String")]
    pub rules_revision: Arc<str>,
    /// Id of the entry in the decision log (only for decisions served by the server or made by
    /// `optimize --auto-select`, never for dry runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<i64>,
    /// How the decision was reached (only when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Trace>")]
    pub trace: Option<Box<Trace>>,
}

impl Decision {
    /// The decision as the decision log keeps it (see `Outcome::write_log_json`): what was
    /// recommended and estimated, without the texts, rule, revision and trace.
    pub fn log_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "recommended": &*self.recommended,
            "config": &*self.config,
            "estimated_cost": self.estimated_cost,
            "estimated_time_minutes": self.estimated_time_minutes,
            "confidence": self.confidence,
            "alternatives": self.alternatives.iter().map(|a| serde_json::json!({
                "optimizer": &*a.optimizer,
                "estimated_cost": a.estimated_cost,
                "estimated_time_minutes": a.estimated_time_minutes,
            })).collect::<Vec<_>>(),
        });
        if let Some(id) = self.decision_id {
            v["decision_id"] = id.into();
        }
        v
    }
}

/// An alternative optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Alternative {
    /// Optimizer name.
    #[schemars(with = "String")]
    pub optimizer: Arc<str>,
    /// Estimated cost in USD.
    pub estimated_cost: f64,
    /// Estimated time in whole minutes.
    pub estimated_time_minutes: u64,
    /// Risk to quality compared with the primary.
    pub quality_risk: f64,
    /// Note for the user.
    #[schemars(with = "String")]
    pub note: Arc<str>,
}

/// How a decision was reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Trace {
    /// The checked input, defaults applied.
    pub input: BTreeMap<String, serde_json::Value>,
    /// Rules tried, in order, up to the one that matched.
    pub rules: Vec<RuleTrace>,
    /// The budget guard's steps, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardTrace>,
    /// How the primary's cost and time were computed.
    pub estimate: EstimateTrace,
    /// How the confidence was computed.
    pub confidence: ConfidenceTrace,
}

/// One rule tried.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RuleTrace {
    /// Rule id.
    pub id: String,
    /// `file:line` of the rule.
    pub at: String,
    /// Whether it matched.
    pub matched: bool,
    /// The comparisons evaluated (short-circuited ones are left out).
    pub conditions: Vec<CondTrace>,
}

/// One comparison evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CondTrace {
    /// The field compared (none for a Rhai expression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `lt`, `le`, `gt`, `ge`, `eq`, `ne`, `in`, `present` or `expr`.
    pub op: String,
    /// The literal compared with (the code, for an expression).
    pub expected: serde_json::Value,
    /// The actual input value (null when left out).
    pub actual: serde_json::Value,
    /// The outcome.
    pub result: bool,
}

/// What the budget guard did.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GuardTrace {
    /// The budget.
    pub budget_usd: f64,
    /// The estimate of the rule's choice.
    pub original_cost: f64,
    /// Steps tried, in order.
    pub steps: Vec<GuardStep>,
    /// `fits`, `downgraded` or `no_fit`.
    pub outcome: String,
}

/// One step of the guard.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct GuardStep {
    /// Optimizer.
    pub optimizer: String,
    /// Variant, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Estimated cost.
    pub estimated_cost: f64,
    /// Whether it fits the budget.
    pub fits: bool,
}

/// How cost and time were computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct EstimateTrace {
    /// The formula with its numbers.
    pub cost_formula: String,
    /// Unrounded cost.
    pub raw_cost: f64,
    /// Rounded cost.
    pub cost: f64,
    /// The time formula with its numbers.
    pub time_formula: String,
    /// Minutes.
    pub minutes: u64,
    /// Model of the price table used.
    pub model: String,
}

/// How confidence was computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct ConfidenceTrace {
    /// Base confidence.
    pub base: f64,
    /// Past outcomes with the same domain and optimizer.
    pub history_matches: usize,
    /// Of those, how many reached the success quality.
    pub history_successes: usize,
    /// After the history adjustment and cap.
    pub after_history: f64,
    /// Small-trainset factor applied (1 when none).
    pub small_trainset_factor: f64,
    /// Final, rounded.
    pub value: f64,
}
