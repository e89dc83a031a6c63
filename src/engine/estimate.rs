//! Cost and time estimates: the built-in formula, or a Rhai function of the rule set.

use super::EvalError;
use crate::decision::EstimateTrace;
use crate::rules::context::Context;
use crate::rules::script::to_dynamic;
use crate::rules::{ModelInfo, Resolved, RuleSet};
use crate::util::round::round_py;

/// A cost and time estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Unrounded cost in USD.
    pub raw_cost: f64,
    /// Rounded cost in USD.
    pub cost: f64,
    /// Whole minutes, at least the model's minimum.
    pub minutes: u64,
}

/// Estimates `choice` for the checked request `ctx`.
pub fn estimate(
    rs: &RuleSet,
    choice: &Resolved,
    ctx: &Context,
    model: &ModelInfo,
) -> Result<Estimate, EvalError> {
    let _timed = crate::rules::deadline::evaluation();
    let t = ctx
        .get(rs.context.known.trainset_size)
        .as_f64()
        .unwrap_or(0.0);
    let (raw_cost, raw_minutes) = match &rs.cost.script {
        None => (
            // The original's order, operation for operation (another order can differ in the
            // last bit and round to the other cent): cost is `base × multiplier × (T / 100)`,
            // the quotient first; time is `trunc(base) × T / 100`, left to right. The model's
            // multiplier comes last (1 for the default model, so the value is the original's).
            choice.cost_factor * (t / 100.0) * model.cost_multiplier,
            choice.time_base * t / 100.0 * model.time_multiplier,
        ),
        Some((name, origin)) => scripted(rs, name, origin, choice, ctx, model)?,
    };
    let raw_cost = if raw_cost.is_finite() {
        raw_cost.max(0.0)
    } else {
        0.0
    };
    let minutes = if raw_minutes.is_finite() && raw_minutes > 0.0 {
        raw_minutes.trunc().min(u64::MAX as f64) as u64
    } else {
        0
    };
    Ok(Estimate {
        raw_cost,
        cost: round_py(raw_cost, rs.cost.decimals),
        minutes: minutes.max(rs.cost.min_minutes),
    })
}

fn scripted(
    rs: &RuleSet,
    name: &str,
    origin: &crate::rules::origin::Origin,
    choice: &Resolved,
    ctx: &Context,
    model: &ModelInfo,
) -> Result<(f64, f64), EvalError> {
    let mut input = rhai::Map::new();
    for (f, v) in rs.context.fields().iter().zip(ctx.values()) {
        input.insert(f.name.as_ref().into(), to_dynamic(v));
    }
    let mut opt = rhai::Map::new();
    opt.insert("name".into(), choice.optimizer.to_string().into());
    opt.insert(
        "variant".into(),
        choice
            .variant
            .as_ref()
            .map(|v| rhai::Dynamic::from(v.to_string()))
            .unwrap_or(rhai::Dynamic::UNIT),
    );
    opt.insert("usd_per_100".into(), choice.usd_per_100.into());
    opt.insert("minutes_per_100".into(), choice.minutes_per_100.into());
    opt.insert(
        "variant_multiplier".into(),
        choice.variant_multiplier.into(),
    );
    for (k, v) in &choice.params {
        opt.insert(k.as_str().into(), (*v).into());
    }
    let mut m = rhai::Map::new();
    m.insert("name".into(), model.name.to_string().into());
    m.insert("cost_multiplier".into(), model.cost_multiplier.into());
    m.insert("time_multiplier".into(), model.time_multiplier.into());
    let price = |p: Option<f64>| {
        p.map(rhai::Dynamic::from_float)
            .unwrap_or(rhai::Dynamic::UNIT)
    };
    m.insert("input_usd_per_mtok".into(), price(model.input_usd_per_mtok));
    m.insert(
        "output_usd_per_mtok".into(),
        price(model.output_usd_per_mtok),
    );
    let out = rs
        .scripts
        .call(name, (input, opt, m), origin)
        .map_err(|error| EvalError::Script {
            rule: format!("cost.script `{name}`"),
            error,
        })?;
    let bad = |what: &str| EvalError::Script {
        rule: format!("cost.script `{name}`"),
        error: crate::rules::script::ScriptError {
            message: format!(
                "cost script must return #{{cost_usd: number, minutes: number}}; {what}"
            ),
            help: None,
            file: origin.file.clone(),
            pos: origin.start,
        },
    };
    let map = out
        .try_cast::<rhai::Map>()
        .ok_or_else(|| bad("it returned something else"))?;
    let num = |k: &str| -> Result<f64, EvalError> {
        let v = map
            .get(k)
            .ok_or_else(|| bad(&format!("`{k}` is missing")))?;
        v.as_float()
            .ok()
            .or_else(|| v.as_int().ok().map(|i| i as f64))
            .ok_or_else(|| bad(&format!("`{k}` is not a number")))
    };
    Ok((num("cost_usd")?, num("minutes")?))
}

/// Describes the built-in formula with its numbers, for traces.
pub fn trace(
    rs: &RuleSet,
    choice: &Resolved,
    ctx: &Context,
    model: &ModelInfo,
    e: &Estimate,
) -> EstimateTrace {
    let t = ctx.get(rs.context.known.trainset_size);
    let (cost_formula, time_formula) = match &rs.cost.script {
        Some((name, _)) => (
            format!("script `{name}` returned {}", e.raw_cost),
            format!("script `{name}`; at least {} min", rs.cost.min_minutes),
        ),
        None => (
            format!(
                "{} usd/100 × {} ({}) × ({t} / 100) × {} (model {}) = {}",
                choice.usd_per_100,
                choice.variant_multiplier,
                choice.variant.as_deref().unwrap_or("no variant"),
                model.cost_multiplier,
                model.name,
                e.raw_cost
            ),
            format!(
                "max({}, trunc(trunc({} min/100 × {}) × {t} / 100 × {}))",
                rs.cost.min_minutes,
                choice.minutes_per_100,
                choice.variant_multiplier,
                model.time_multiplier
            ),
        ),
    };
    EstimateTrace {
        cost_formula,
        raw_cost: e.raw_cost,
        cost: e.cost,
        time_formula,
        minutes: e.minutes,
        model: model.name.to_string(),
    }
}
