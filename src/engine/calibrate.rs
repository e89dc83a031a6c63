//! Calibration: new cost and time constants per optimizer from recorded outcomes. Each outcome
//! implies a `usd_per_100` (its actual cost divided by the variant multiplier, the model's
//! cost multiplier and `trainset_size / 100`) and a `minutes_per_100` likewise; the proposal is
//! the median of what the outcomes imply, with the sample size behind it. Pure.

use crate::outcome::OutcomeRecord;
use crate::rules::spec::CostSpec;
use serde::Serialize;

/// A proposed constant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Constant {
    /// The value in the rules now.
    pub current: f64,
    /// The median of what the outcomes imply (rounded), when there are any.
    pub proposed: Option<f64>,
    /// Outcomes behind the proposal.
    pub samples: usize,
}

/// Proposals for one optimizer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// Optimizer.
    pub optimizer: String,
    /// `usd_per_100`.
    pub usd_per_100: Constant,
    /// `minutes_per_100`.
    pub minutes_per_100: Constant,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// Proposes constants for every optimizer of the cost table that has outcomes.
/// Outcomes of optimizers the table does not know, or without a trainset size, are skipped.
pub fn propose(cost: &CostSpec, outcomes: &[OutcomeRecord]) -> Vec<Proposal> {
    let mut out = Vec::new();
    for (name, oc) in &cost.optimizers {
        let (mut usd, mut min) = (Vec::new(), Vec::new());
        for o in outcomes.iter().filter(|o| o.optimizer_used == *name) {
            let Some(t) = o.trainset_size.filter(|t| *t > 0) else {
                continue;
            };
            let variant = o
                .variant
                .as_ref()
                .and_then(|v| oc.variant_multipliers.get(v))
                .copied()
                .unwrap_or(1.0);
            let model = o
                .model
                .as_ref()
                .and_then(|m| cost.models.get(m))
                .or_else(|| cost.models.get(&cost.default_model));
            let (cm, tm) = model.map_or((1.0, 1.0), |m| (m.cost_multiplier, m.time_multiplier));
            let scale = variant * t as f64 / 100.0;
            if let Some(c) = o.actual_cost {
                if scale * cm > 0.0 {
                    usd.push(c / (scale * cm));
                }
            }
            if let Some(m) = o.actual_time {
                if scale * tm > 0.0 {
                    min.push(m / (scale * tm));
                }
            }
        }
        if usd.is_empty() && min.is_empty() {
            continue;
        }
        out.push(Proposal {
            optimizer: name.clone(),
            usd_per_100: Constant {
                current: oc.usd_per_100,
                samples: usd.len(),
                proposed: median(usd).map(|x| round_to(x, 3)),
            },
            minutes_per_100: Constant {
                current: oc.minutes_per_100,
                samples: min.len(),
                proposed: median(min).map(|x| round_to(x, 1)),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost() -> CostSpec {
        serde_yaml::from_str(
            "default_model: m\nmodels:\n  m: {cost_multiplier: 1.0, time_multiplier: 1.0}\n  big: {cost_multiplier: 4.0, time_multiplier: 2.0}\noptimizers:\n  gepa: {usd_per_100: 0.5, minutes_per_100: 5}\n  miprov2: {usd_per_100: 2.5, minutes_per_100: 15, variant_multipliers: {light: 0.5}}\n",
        )
        .expect("cost spec")
    }

    fn run(opt: &str, t: i64, cost: f64, minutes: f64) -> OutcomeRecord {
        OutcomeRecord {
            id: 0,
            at_ms: 0,
            decision_id: None,
            job_id: None,
            domain: "general".into(),
            optimizer_used: opt.into(),
            recommended: None,
            rule: None,
            revision: None,
            trainset_size: Some(t),
            budget: None,
            quality_target: None,
            model: None,
            variant: None,
            estimated_cost: None,
            estimated_time: None,
            actual_cost: Some(cost),
            actual_time: Some(minutes),
            quality: 0.9,
            auto_selected: false,
        }
    }

    #[test]
    fn medians_of_implied_constants_with_variants_and_models() {
        let mut light = run("miprov2", 200, 3.0, 12.0); // 3 / (0.5*2) = 3.0 ; 12 / 1 = 12
        light.variant = Some("light".into());
        let mut big = run("gepa", 100, 4.0, 20.0); // 4 / 4 = 1.0 ; 20 / 2 = 10
        big.model = Some("big".into());
        let outcomes = vec![
            run("gepa", 200, 1.2, 12.0), // 0.6, 6
            run("gepa", 100, 0.7, 7.0),  // 0.7, 7
            big,
            light,
            run("unknown", 100, 1.0, 1.0),
        ];
        let p = propose(&cost(), &outcomes);
        assert_eq!(p.len(), 2);
        let g = p.iter().find(|p| p.optimizer == "gepa").unwrap();
        assert_eq!(g.usd_per_100.samples, 3);
        assert_eq!(g.usd_per_100.proposed, Some(0.7));
        assert_eq!(g.usd_per_100.current, 0.5);
        assert_eq!(g.minutes_per_100.proposed, Some(7.0));
        let m = p.iter().find(|p| p.optimizer == "miprov2").unwrap();
        assert_eq!(m.usd_per_100.proposed, Some(3.0));
        assert_eq!(m.minutes_per_100.proposed, Some(12.0));
        assert_eq!(m.minutes_per_100.samples, 1);
    }
}
