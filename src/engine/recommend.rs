//! The recommendation: first matching rule, budget guard, estimates, confidence, alternatives.

use super::confidence::confidence;
use super::estimate::{self, estimate, Estimate};
use super::history::History;
use super::EvalError;
use crate::decision::{Alternative, Decision, GuardStep, GuardTrace, RuleTrace, Trace};
use crate::rules::context::Context;
use crate::rules::spec::HistoryRecord;
use crate::rules::template::Extra;
use crate::rules::{AltModel, Resolved, Rule, RuleSet};
use std::sync::Arc;

/// Evaluation options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Record the trace.
    pub explain: bool,
    /// Override the guard's `enabled` (fixtures use this).
    pub guard: Option<bool>,
}

fn select<'a>(
    rs: &'a RuleSet,
    ctx: &Context,
    trace: Option<&mut Trace>,
) -> Result<&'a Rule, EvalError> {
    // Builds the error only when a script fails: the happy path allocates nothing here.
    let script_err = |rule: &'a Rule| {
        move |error| EvalError::Script {
            rule: format!("rule `{}`", rule.id),
            error,
        }
    };
    match trace {
        None => {
            for rule in &rs.rules {
                if let Some(cond) = &rule.cond {
                    if cond(ctx, None).map_err(script_err(rule))? {
                        return Ok(rule);
                    }
                }
            }
        }
        Some(t) => {
            for rule in &rs.rules {
                if let Some(cond) = &rule.cond {
                    let mut conditions = Vec::new();
                    let matched = cond(ctx, Some(&mut conditions)).map_err(script_err(rule))?;
                    t.rules.push(RuleTrace {
                        id: rule.id.to_string(),
                        at: rule.at.clone(),
                        matched,
                        conditions,
                    });
                    if matched {
                        return Ok(rule);
                    }
                }
            }
            t.rules.push(RuleTrace {
                id: rs.fallback.id.to_string(),
                at: rs.fallback.at.clone(),
                matched: true,
                conditions: Vec::new(),
            });
        }
    }
    Ok(&rs.fallback)
}

/// The rule that decides for a checked request (the first whose condition holds, or the
/// fallback), without estimates or the guard.
pub fn select_rule<'a>(rs: &'a RuleSet, ctx: &Context) -> Result<&'a Rule, EvalError> {
    let _timed = crate::rules::deadline::evaluation();
    select(rs, ctx, None)
}

/// A decision that still borrows from its rule set: what [`evaluate`] computes before it is
/// turned into an owned [`Decision`], or written as JSON straight away by the server (no
/// reference counts touched on the hot path).
pub struct Evaluation<'a> {
    /// The recommended optimizer and its config.
    pub choice: &'a Resolved,
    /// The rule that fired.
    pub rule: &'a Rule,
    /// The rule set's revision.
    pub revision: &'a Arc<str>,
    /// Cost and time of the choice.
    pub estimate: super::estimate::Estimate,
    /// Confidence.
    pub confidence: f64,
    /// Why.
    pub reasoning: String,
    /// Alternatives with their estimates (a rule set lists a few: kept inline).
    pub alternatives: smallvec::SmallVec<[(&'a AltModel, super::estimate::Estimate); 4]>,
    /// The trace, when asked for.
    pub trace: Option<Box<Trace>>,
    /// Id in the decision log, set by the caller that logs it.
    pub decision_id: Option<i64>,
}

impl Evaluation<'_> {
    /// The owned decision.
    pub fn into_decision(self) -> Decision {
        Decision {
            recommended: self.choice.optimizer.clone(),
            config: self.choice.config.clone(),
            estimated_cost: self.estimate.cost,
            estimated_time_minutes: self.estimate.minutes,
            confidence: self.confidence,
            reasoning: self.reasoning,
            alternatives: self
                .alternatives
                .iter()
                .map(|(alt, e)| Alternative {
                    optimizer: alt.choice.optimizer.clone(),
                    estimated_cost: e.cost,
                    estimated_time_minutes: e.minutes,
                    quality_risk: alt.quality_risk,
                    note: alt.note.clone(),
                })
                .collect(),
            rule: self.rule.id.clone(),
            rules_revision: self.revision.clone(),
            decision_id: self.decision_id,
            trace: self.trace,
        }
    }

    /// Writes the decision as JSON, byte for byte what `serde_json::to_vec(&decision)` gives,
    /// using fragments the rule set escaped once at build time.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write(out, true);
    }

    /// The decision as the decision log keeps it: what was recommended and estimated, without
    /// the texts (the reasoning and notes are the revision's templates applied to the input, so
    /// a replay of the input on that revision gives them back), the rule and the revision
    /// (columns of their own) and the trace.
    pub fn write_log_json(&self, out: &mut Vec<u8>) {
        self.write(out, false);
    }

    fn write(&self, out: &mut Vec<u8>, full: bool) {
        use crate::util::json::str as json_str;
        fn num<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
            let _ = serde_json::to_writer(&mut *out, v);
        }
        use crate::util::json::{f64 as json_f64, u64 as json_u64};
        out.extend_from_slice(b"{\"recommended\":");
        out.extend_from_slice(self.choice.json_optimizer.as_bytes());
        out.extend_from_slice(b",\"config\":");
        out.extend_from_slice(self.choice.json_config.as_bytes());
        out.extend_from_slice(b",\"estimated_cost\":");
        json_f64(out, self.estimate.cost);
        out.extend_from_slice(b",\"estimated_time_minutes\":");
        json_u64(out, self.estimate.minutes);
        out.extend_from_slice(b",\"confidence\":");
        json_f64(out, self.confidence);
        if full {
            out.extend_from_slice(b",\"reasoning\":");
            json_str(out, &self.reasoning);
        }
        out.extend_from_slice(b",\"alternatives\":[");
        for (i, (alt, e)) in self.alternatives.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"optimizer\":");
            out.extend_from_slice(alt.choice.json_optimizer.as_bytes());
            out.extend_from_slice(b",\"estimated_cost\":");
            json_f64(out, e.cost);
            out.extend_from_slice(b",\"estimated_time_minutes\":");
            json_u64(out, e.minutes);
            if full {
                out.extend_from_slice(b",\"quality_risk\":");
                json_f64(out, alt.quality_risk);
                out.extend_from_slice(b",\"note\":");
                out.extend_from_slice(alt.json_note.as_bytes());
            }
            out.push(b'}');
        }
        out.push(b']');
        if full {
            out.extend_from_slice(b",\"rule\":");
            out.extend_from_slice(self.rule.json_id.as_bytes());
            out.extend_from_slice(b",\"rules_revision\":");
            json_str(out, self.revision);
        }
        if let Some(id) = self.decision_id {
            out.extend_from_slice(b",\"decision_id\":");
            num(out, &id);
        }
        if let (true, Some(t)) = (full, &self.trace) {
            out.extend_from_slice(b",\"trace\":");
            num(out, t);
        }
        out.push(b'}');
    }
}

/// What the budget guard did with a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardVerdict {
    /// The estimate is within the budget: the choice stands.
    Fits,
    /// A cheaper step of `guard.downgrade` fits and replaces it.
    Downgraded,
    /// Nothing fits: the cheapest of the choice and the steps tried is kept.
    NoFit,
}

impl GuardVerdict {
    fn as_str(self) -> &'static str {
        match self {
            GuardVerdict::Fits => "fits",
            GuardVerdict::Downgraded => "downgraded",
            GuardVerdict::NoFit => "no_fit",
        }
    }
}

/// The budget guard: when `est` is above `budget`, walks `guard.downgrade` from after the
/// choice and takes the first step that fits, or the cheapest tried when none does; `choice`
/// and `est` are updated in place. With `steps`, every step tried is recorded (the trace).
fn apply_guard<'a>(
    rs: &'a RuleSet,
    ctx: &Context,
    model: &crate::rules::ModelInfo,
    budget: f64,
    choice: &mut &'a Arc<Resolved>,
    est: &mut Estimate,
    mut steps: Option<&mut Vec<GuardStep>>,
) -> Result<GuardVerdict, EvalError> {
    if est.cost <= budget {
        return Ok(GuardVerdict::Fits);
    }
    let original_cost = est.cost;
    let start = rs
        .guard
        .steps
        .iter()
        .position(|s| s.optimizer == choice.optimizer && s.variant == choice.variant)
        .map_or(0, |i| i + 1);
    // When nothing fits, the cheapest of the original and the steps tried is kept.
    let mut cheapest: Option<(&Arc<Resolved>, Estimate)> = None;
    for step in &rs.guard.steps[start..] {
        let e = estimate(rs, step, ctx, model)?;
        let fits = e.cost <= budget;
        if let Some(steps) = steps.as_mut() {
            steps.push(GuardStep {
                optimizer: step.optimizer.to_string(),
                variant: step.variant.as_ref().map(|v| v.to_string()),
                estimated_cost: e.cost,
                fits,
            });
        }
        if fits {
            *choice = step;
            *est = e;
            return Ok(GuardVerdict::Downgraded);
        }
        if e.cost < cheapest.map_or(original_cost, |(_, c)| c.cost) {
            cheapest = Some((step, e));
        }
    }
    if let Some((step, e)) = cheapest {
        *choice = step;
        *est = e;
    }
    Ok(GuardVerdict::NoFit)
}

/// The optimizer a checked request gets, and its estimate, without reasoning, confidence or
/// alternatives: selection, estimate and (unless `guard` turns it off) the budget guard, as
/// [`evaluate`] decides them. For the decision map, which asks for many inputs at once.
pub fn choose<'a>(
    rs: &'a RuleSet,
    ctx: &Context,
    guard: Option<bool>,
) -> Result<(&'a Arc<Resolved>, Estimate), EvalError> {
    let _timed = crate::rules::deadline::evaluation();
    let fired = select(rs, ctx, None)?;
    let model = rs.model_for(ctx);
    let mut choice: &Arc<Resolved> = &fired.choice;
    let mut est = estimate(rs, choice, ctx, model)?;
    let budget = ctx.get(rs.context.known.budget_usd).as_f64();
    if let (true, Some(budget)) = (guard.unwrap_or(rs.guard.enabled), budget) {
        apply_guard(rs, ctx, model, budget, &mut choice, &mut est, None)?;
    }
    Ok((choice, est))
}

/// Recommends an optimizer for a checked request.
pub fn recommend(
    rs: &RuleSet,
    ctx: &Context,
    history: &[HistoryRecord],
    opts: Options,
) -> Result<Decision, EvalError> {
    evaluate(rs, ctx, history, opts).map(Evaluation::into_decision)
}

/// Evaluates a checked request into an [`Evaluation`] that borrows from `rs`.
pub fn evaluate<'a>(
    rs: &'a RuleSet,
    ctx: &Context,
    history: &[HistoryRecord],
    opts: Options,
) -> Result<Evaluation<'a>, EvalError> {
    evaluate_with(rs, ctx, &super::history::Records(history), opts)
}

/// [`evaluate`] with any [`History`] (the server passes its live [`HistoryIndex`]).
///
/// [`HistoryIndex`]: super::history::HistoryIndex
pub fn evaluate_with<'a>(
    rs: &'a RuleSet,
    ctx: &Context,
    history: &dyn History,
    opts: Options,
) -> Result<Evaluation<'a>, EvalError> {
    // Rhai code of this evaluation runs under its time limit (`rules::deadline`).
    let _timed = crate::rules::deadline::evaluation();
    let known = rs.context.known;
    let values = ctx.values();
    let mut trace = opts.explain.then(|| Box::new(Trace::default()));
    let fired = select(rs, ctx, trace.as_deref_mut())?;
    let model = rs.model_for(ctx);
    let mut choice: &Arc<Resolved> = &fired.choice;
    let mut est = estimate(rs, choice, ctx, model)?;
    let mut reasoning = String::with_capacity(320);
    fired.reasoning.render_into(&mut reasoning, values, &[]);

    let guard_on = opts.guard.unwrap_or(rs.guard.enabled);
    let budget = ctx.get(known.budget_usd).as_f64();
    if let (true, Some(budget)) = (guard_on, budget) {
        let mut steps = trace.is_some().then(Vec::new);
        let original = choice;
        let original_cost = est.cost;
        let verdict = apply_guard(
            rs,
            ctx,
            model,
            budget,
            &mut choice,
            &mut est,
            steps.as_mut(),
        )?;
        if verdict != GuardVerdict::Fits {
            let template = match verdict {
                GuardVerdict::NoFit => &rs.guard.no_fit_reasoning,
                _ => &rs.guard.reasoning,
            };
            reasoning.push(' ');
            template.render_into(
                &mut reasoning,
                values,
                &[
                    Extra::Text(&original.label),
                    Extra::Num(original_cost),
                    Extra::Text(&choice.label),
                    Extra::Num(est.cost),
                ],
            );
        }
        if let Some(t) = trace.as_mut() {
            t.guard = Some(GuardTrace {
                budget_usd: budget,
                original_cost,
                steps: steps.unwrap_or_default(),
                outcome: verdict.as_str().into(),
            });
        }
    }

    let t_size = match ctx.get(known.trainset_size) {
        crate::rules::context::Value::Int(i) => *i,
        other => other.as_f64().unwrap_or(0.0) as i64,
    };
    let domain = ctx.get(known.domain).as_str().unwrap_or("");
    let conf = confidence(&rs.confidence, t_size, domain, &choice.optimizer, history);

    let mut alternatives = smallvec::SmallVec::new();
    for alt in &rs.confidence.alternatives {
        if alt.choice.optimizer == choice.optimizer {
            continue;
        }
        alternatives.push((alt, estimate(rs, &alt.choice, ctx, model)?));
    }

    if let Some(t) = trace.as_mut() {
        t.input = rs
            .context
            .fields()
            .iter()
            .zip(values)
            .map(|(f, v)| (f.name.to_string(), v.to_json()))
            .collect();
        t.estimate = estimate::trace(rs, choice, ctx, model, &est);
        t.confidence = conf.clone();
    }

    Ok(Evaluation {
        choice,
        rule: fired,
        revision: &rs.revision,
        estimate: est,
        confidence: conf.value,
        reasoning,
        alternatives,
        trace,
        decision_id: None,
    })
}
