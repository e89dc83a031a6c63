//! The rule set: the file format ([`spec`]), parsing with positions ([`yaml`]), schema
//! validation ([`schema`]), compilation into an immutable [`RuleSet`] ([`compile`]), the Rhai
//! sandbox ([`script`]) with its time limits ([`deadline`]). Running the fixtures is in `check`.
//!
//! Nothing here touches files, network, environment or clock: the loader hands in
//! [`SourceFile`]s and gets back a `RuleSet` or every problem found.

pub mod compile;
pub mod condition;
pub mod context;
pub mod deadline;
mod flat_json;
pub mod instrument;
pub mod origin;
pub mod schema;
pub mod script;
pub mod spec;
pub mod template;
pub mod yaml;

use crate::decision::Config;
use crate::diagnostic::Pos;
use crate::diagnostic::{Diagnostic, SourceFile};
use condition::{CondFn, Pred};
use context::{ContextModel, InputError};
use origin::Origin;
use script::ScriptHost;
use spec::{Fixture, OptimizerSpec, TrainingSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use template::Template;
use yaml::SpanIndex;

pub use compile::{build, build_instrumented};

/// A file with its node positions, for placing diagnostics.
#[derive(Clone, Copy)]
pub struct Located<'a> {
    /// The file.
    pub file: &'a SourceFile,
    /// Its positions.
    pub spans: &'a SpanIndex,
}

impl Located<'_> {
    /// Places `d` at the value at `ptr`.
    pub fn value(&self, d: Diagnostic, ptr: &str) -> Diagnostic {
        d.at(&self.file.path, self.spans.value(ptr))
    }

    /// Places `d` at the key of the entry at `ptr`.
    pub fn key(&self, d: Diagnostic, ptr: &str) -> Diagnostic {
        d.at(&self.file.path, self.spans.key(ptr))
    }

    /// `file:line` of the node at `ptr`.
    pub fn line_of(&self, ptr: &str) -> String {
        match self.spans.value(ptr) {
            Some(p) => format!("{}:{}", self.file.path, p.line),
            None => self.file.path.clone(),
        }
    }
}

/// An optimizer choice resolved against the catalog and cost model.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Optimizer name.
    pub optimizer: Arc<str>,
    /// `optimizer (variant)` or `optimizer`, for reasoning texts.
    pub label: Arc<str>,
    /// Variant, when the optimizer has variants.
    pub variant: Option<Arc<str>>,
    /// The full config (default config + overrides).
    pub config: Arc<Config>,
    /// `usd_per_100 × variant multiplier`.
    pub cost_factor: f64,
    /// `trunc(minutes_per_100 × variant multiplier)`.
    pub time_base: f64,
    /// Extra parameters for a cost script.
    pub params: BTreeMap<String, f64>,
    /// Cost parameters as written (for traces and scripts).
    pub usd_per_100: f64,
    /// Time parameter as written.
    pub minutes_per_100: f64,
    /// The variant multiplier applied.
    pub variant_multiplier: f64,
    /// `optimizer` as a JSON string literal, escaped once.
    pub json_optimizer: Box<str>,
    /// `config` as JSON, serialized once.
    pub json_config: Box<str>,
}

/// A compiled selection rule (or the fallback, which has no condition).
#[derive(Clone)]
pub struct Rule {
    /// Rule id.
    pub id: Arc<str>,
    /// The id as a JSON string literal.
    pub json_id: Box<str>,
    /// Condition; `None` for the fallback.
    pub cond: Option<CondFn>,
    /// The condition's structure, for rule analysis; `None` for the fallback.
    pub pred: Option<Pred>,
    /// The result.
    pub choice: Arc<Resolved>,
    /// Reasoning template.
    pub reasoning: Template,
    /// `file:line` of the rule.
    pub at: String,
    /// File of the rule.
    pub file: String,
    /// Position of the rule in `file`.
    pub pos: Option<Pos>,
}

/// A model of the price table.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Name.
    pub name: Arc<str>,
    /// Cost factor.
    pub cost_multiplier: f64,
    /// Time factor.
    pub time_multiplier: f64,
    /// Input token price (USD per million), if any.
    pub input_usd_per_mtok: Option<f64>,
    /// Output token price (USD per million), if any.
    pub output_usd_per_mtok: Option<f64>,
}

/// The compiled cost and time model.
#[derive(Debug, Clone)]
pub struct CostModel {
    /// Decimals of the cost.
    pub decimals: u32,
    /// Lower bound of the time estimate.
    pub min_minutes: u64,
    /// Model used when the request names none.
    pub default_model: Arc<str>,
    /// Price table.
    pub models: HashMap<String, ModelInfo>,
    /// The default model's row (looked up once, at build time).
    pub default: ModelInfo,
    /// Script function replacing the formula, with where it is named.
    pub script: Option<(String, Origin)>,
}

/// An alternative offered beside the primary.
#[derive(Debug, Clone)]
pub struct AltModel {
    /// The optimizer under the default config.
    pub choice: Arc<Resolved>,
    /// Quality risk.
    pub quality_risk: f64,
    /// Note.
    pub note: Arc<str>,
    /// The note as a JSON string literal.
    pub json_note: Box<str>,
    /// `file:line` of its entry in `confidence.alternatives`.
    pub at: String,
}

/// The compiled confidence model.
#[derive(Debug, Clone)]
pub struct ConfidenceModel {
    /// Base.
    pub base: f64,
    /// Success threshold of an outcome.
    pub success_quality: f64,
    /// Weight of the success share.
    pub weight: f64,
    /// Cap after the adjustment.
    pub cap: f64,
    /// Small-trainset threshold.
    pub small_below: i64,
    /// Small-trainset factor.
    pub small_factor: f64,
    /// Decimals.
    pub decimals: u32,
    /// Alternatives, in order.
    pub alternatives: Vec<AltModel>,
}

/// The compiled budget guard.
#[derive(Debug, Clone)]
pub struct GuardModel {
    /// On or off.
    pub enabled: bool,
    /// Steps, most expensive first.
    pub steps: Vec<Arc<Resolved>>,
    /// Reasoning after a step down.
    pub reasoning: Template,
    /// Reasoning when nothing fits.
    pub no_fit_reasoning: Template,
    /// `file:line` of each step.
    pub steps_at: Vec<String>,
    /// `file:line` of `no_fit_reasoning`.
    pub no_fit_at: String,
}

/// Names usable in guard templates besides the context fields.
pub const GUARD_PLACEHOLDERS: [&str; 4] =
    ["original", "original_cost", "optimizer", "estimated_cost"];

/// A fixture with where it is written.
#[derive(Debug, Clone)]
pub struct FixtureDef {
    /// The fixture.
    pub spec: Fixture,
    /// File.
    pub file: String,
    /// `file:line:col` of its name.
    pub at: String,
}

/// An immutable, validated rule set. Built whole by [`build`], shared behind an `Arc`.
pub struct RuleSet {
    /// Content hash of all files (first 12 hex digits of SHA-256).
    pub revision: Arc<str>,
    /// Paths of the files, sorted.
    pub files: Vec<String>,
    /// Input fields.
    pub context: ContextModel,
    /// Optimizers by name.
    pub catalog: BTreeMap<String, OptimizerSpec>,
    /// The config every result starts from.
    pub default_config: Arc<Config>,
    /// The config key holding the variant.
    pub variant_key: String,
    /// Selection rules in order.
    pub rules: Vec<Rule>,
    /// Fallback.
    pub fallback: Rule,
    /// Cost and time model.
    pub cost: CostModel,
    /// Confidence and alternatives.
    pub confidence: ConfidenceModel,
    /// Budget guard.
    pub guard: GuardModel,
    /// Training-data quality settings.
    pub training: TrainingSpec,
    /// Fixtures.
    pub fixtures: Vec<FixtureDef>,
    /// Compiled scripts.
    pub scripts: Arc<ScriptHost>,
    /// Warnings found while building (the set is valid).
    pub warnings: Vec<Diagnostic>,
    /// Context fields (by index) along which more must not get a weaker optimizer; checked
    /// by rule analysis.
    pub monotone_in: Vec<usize>,
    /// Whether an evaluation can enter Rhai (an `expr:` condition or a cost script): the
    /// server then evaluates on its blocking pool, so a script that runs up to its time limit
    /// never holds a thread that serves other requests.
    pub runs_rhai: bool,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("revision", &self.revision)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// Checks a request body against the context and the model price table.
    pub fn check_input(
        &self,
        input: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<context::Context, Vec<InputError>> {
        let ctx = self.context.check(input)?;
        self.check_model(ctx).map_err(|e| vec![e])
    }

    /// Parses and checks a JSON request body in one pass (the server's path).
    pub fn check_input_json(
        &self,
        body: &[u8],
    ) -> Result<context::Context, context::JsonCheckError> {
        let ctx = self.context.check_json(body)?;
        self.check_model(ctx)
            .map_err(|e| context::JsonCheckError::Input(vec![e]))
    }

    fn check_model(&self, ctx: context::Context) -> Result<context::Context, InputError> {
        if let Some(m) = ctx.get(self.context.known.model).as_str() {
            if !self.cost.models.contains_key(m) {
                let names: Vec<&str> = self.cost.models.keys().map(String::as_str).collect();
                return Err(InputError {
                    field: "model".into(),
                    message: format!("unknown model `{m}`"),
                    help: crate::diagnostic::did_you_mean(m, names.iter().copied()).or_else(|| {
                        let mut n = names.clone();
                        n.sort_unstable();
                        Some(format!("models in the price table: {}", n.join(", ")))
                    }),
                });
            }
        }
        Ok(ctx)
    }

    /// The model a checked request uses.
    pub fn model_for(&self, ctx: &context::Context) -> &ModelInfo {
        let named = ctx
            .get(self.context.known.model)
            .as_str()
            .and_then(|name| self.cost.models.get(name));
        named.unwrap_or(&self.cost.default)
    }
}
