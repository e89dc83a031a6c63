//! Selector metrics: how the decisions were spread, and how well they held up against what the
//! runs actually cost, took and reached. Pure: the counts and outcomes come in as arguments.

use crate::outcome::OutcomeRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// Decisions counted per optimizer, rule and revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DecisionCounts {
    /// All decisions in the window.
    pub total: u64,
    /// Per recommended optimizer.
    pub by_optimizer: BTreeMap<String, u64>,
    /// Per rule.
    pub by_rule: BTreeMap<String, u64>,
    /// Per rules revision.
    pub by_revision: BTreeMap<String, u64>,
}

/// A share: `count` of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// Cases that count.
    pub count: u64,
    /// Cases considered.
    pub of: u64,
    /// `count / of`.
    #[serde(serialize_with = "crate::util::round::four")]
    pub rate: f64,
}

impl Rate {
    fn new(count: u64, of: u64) -> Option<Rate> {
        (of > 0).then(|| Rate {
            count,
            of,
            rate: count as f64 / of as f64,
        })
    }
}

/// Estimate accuracy of one optimizer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Accuracy {
    /// Outcomes of runs with this optimizer.
    pub outcomes: u64,
    /// Mean quality reached.
    #[serde(serialize_with = "crate::util::round::four")]
    pub mean_quality: f64,
    /// Mean absolute percentage error of the cost estimate against the actual cost.
    #[serde(serialize_with = "crate::util::round::four_opt")]
    pub cost_mape: Option<f64>,
    /// Outcomes behind `cost_mape` (an estimate and an actual cost above zero).
    pub cost_samples: u64,
    /// Mean absolute percentage error of the time estimate against the actual time.
    #[serde(serialize_with = "crate::util::round::four_opt")]
    pub time_mape: Option<f64>,
    /// Outcomes behind `time_mape`.
    pub time_samples: u64,
}

/// Everything `GET /api/v1/optimization/metrics` and `skill-fleet metrics` report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SelectorMetrics {
    /// Decisions in the window.
    pub decisions: DecisionCounts,
    /// Outcomes in the window.
    pub outcomes: u64,
    /// Outcomes of runs whose optimizer the engine chose.
    pub auto_selected: u64,
    /// Outcomes of runs whose optimizer a person chose.
    pub manual: u64,
    /// Auto-selected runs that used the recommended optimizer.
    pub acceptance: Option<Rate>,
    /// Runs with a quality target that reached it.
    pub target_hit: Option<Rate>,
    /// Per optimizer used: outcomes, mean quality, cost and time accuracy.
    pub accuracy: BTreeMap<String, Accuracy>,
}

fn ape(estimate: Option<f64>, actual: Option<f64>) -> Option<f64> {
    match (estimate, actual) {
        (Some(e), Some(a)) if a > 0.0 && e.is_finite() => Some((e - a).abs() / a * 100.0),
        _ => None,
    }
}

/// Computes the metrics of a window from its decision counts and outcomes.
pub fn compute(decisions: DecisionCounts, outcomes: &[OutcomeRecord]) -> SelectorMetrics {
    let mut m = SelectorMetrics {
        decisions,
        outcomes: outcomes.len() as u64,
        ..SelectorMetrics::default()
    };
    let (mut accepted, mut judged, mut hit, mut targeted) = (0, 0, 0, 0);
    let mut sums: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for o in outcomes {
        if o.auto_selected {
            m.auto_selected += 1;
        } else {
            m.manual += 1;
        }
        if let (true, Some(rec)) = (o.auto_selected, &o.recommended) {
            judged += 1;
            if *rec == o.optimizer_used {
                accepted += 1;
            }
        }
        if let Some(t) = o.quality_target {
            targeted += 1;
            if o.quality >= t {
                hit += 1;
            }
        }
        let a = m.accuracy.entry(o.optimizer_used.clone()).or_default();
        let s = sums.entry(o.optimizer_used.as_str()).or_default();
        a.outcomes += 1;
        s.0 += o.quality;
        if let Some(e) = ape(o.estimated_cost, o.actual_cost) {
            a.cost_samples += 1;
            s.1 += e;
        }
        if let Some(e) = ape(o.estimated_time, o.actual_time) {
            a.time_samples += 1;
            s.2 += e;
        }
    }
    for (name, a) in m.accuracy.iter_mut() {
        let s = sums.get(name.as_str()).copied().unwrap_or_default();
        a.mean_quality = s.0 / a.outcomes.max(1) as f64;
        a.cost_mape = (a.cost_samples > 0).then(|| s.1 / a.cost_samples as f64);
        a.time_mape = (a.time_samples > 0).then(|| s.2 / a.time_samples as f64);
    }
    m.acceptance = Rate::new(accepted, judged);
    m.target_hit = Rate::new(hit, targeted);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(used: &str, rec: Option<&str>, q: f64, target: Option<f64>) -> OutcomeRecord {
        OutcomeRecord {
            id: 1,
            at_ms: 0,
            decision_id: rec.map(|_| 1),
            job_id: None,
            domain: "general".into(),
            optimizer_used: used.into(),
            recommended: rec.map(str::to_string),
            rule: None,
            revision: None,
            trainset_size: Some(100),
            budget: Some(10.0),
            quality_target: target,
            model: None,
            variant: None,
            estimated_cost: None,
            estimated_time: None,
            actual_cost: None,
            actual_time: None,
            quality: q,
            auto_selected: rec.is_some(),
        }
    }

    #[test]
    fn rates_and_errors_on_a_known_history() {
        let mut a = outcome("gepa", Some("gepa"), 0.9, Some(0.85));
        a.estimated_cost = Some(0.5);
        a.actual_cost = Some(0.4); // 25 %
        a.estimated_time = Some(5.0);
        a.actual_time = Some(5.0); // 0 %
        let mut b = outcome("gepa", Some("miprov2"), 0.7, Some(0.85));
        b.estimated_cost = Some(1.5);
        b.actual_cost = Some(1.0); // 50 %
        let c = outcome("bootstrap_fewshot", None, 0.8, None);
        let m = compute(DecisionCounts::default(), &[a, b, c]);
        assert_eq!((m.outcomes, m.auto_selected, m.manual), (3, 2, 1));
        assert_eq!(
            m.acceptance,
            Some(Rate {
                count: 1,
                of: 2,
                rate: 0.5
            })
        );
        assert_eq!(
            m.target_hit,
            Some(Rate {
                count: 1,
                of: 2,
                rate: 0.5
            })
        );
        let g = &m.accuracy["gepa"];
        assert_eq!(g.outcomes, 2);
        assert!((g.mean_quality - 0.8).abs() < 1e-12);
        assert_eq!(g.cost_samples, 2);
        assert!((g.cost_mape.unwrap() - 37.5).abs() < 1e-9);
        assert_eq!((g.time_samples, g.time_mape), (1, Some(0.0)));
        let f = &m.accuracy["bootstrap_fewshot"];
        assert_eq!((f.cost_mape, f.time_mape), (None, None));
    }

    #[test]
    fn no_outcomes_means_no_rates() {
        let m = compute(DecisionCounts::default(), &[]);
        assert_eq!((m.acceptance, m.target_hit), (None, None));
        assert!(m.accuracy.is_empty());
    }
}
