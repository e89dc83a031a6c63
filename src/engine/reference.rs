//! A hand-written Rust port of the original Python selector (DESIGN §3), with no rule files.
//!
//! It is the oracle of the property tests (the shipped rules with the guard off must agree with
//! it on every input) and the baseline of the `recommend` benchmark.

use crate::rules::spec::HistoryRecord;
use crate::util::round::round_py;

/// The inputs the original selector reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Input<'a> {
    /// Number of training examples.
    pub trainset_size: i64,
    /// Budget in USD.
    pub budget_usd: f64,
    /// Quality target.
    pub quality_target: f64,
    /// Time limit in minutes.
    pub time_constraint_minutes: Option<f64>,
    /// Domain.
    pub domain: &'a str,
}

/// The original's config dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// MIPROv2 `auto`.
    pub auto: &'static str,
    /// `max_bootstrapped_demos`.
    pub max_bootstrapped_demos: i64,
    /// `max_labeled_demos`.
    pub max_labeled_demos: i64,
    /// `num_threads`.
    pub num_threads: i64,
    /// `num_candidates`.
    pub num_candidates: i64,
    /// `num_iters`.
    pub num_iters: i64,
}

const DEFAULT: Config = Config {
    auto: "medium",
    max_bootstrapped_demos: 4,
    max_labeled_demos: 4,
    num_threads: 8,
    num_candidates: 10,
    num_iters: 3,
};

/// An alternative of the original.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    /// Optimizer.
    pub optimizer: &'static str,
    /// Cost.
    pub estimated_cost: f64,
    /// Minutes.
    pub estimated_time_minutes: u64,
    /// Quality risk.
    pub quality_risk: f64,
}

/// The original's recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Optimizer.
    pub optimizer: &'static str,
    /// Config.
    pub config: Config,
    /// Cost.
    pub estimated_cost: f64,
    /// Minutes.
    pub estimated_time_minutes: u64,
    /// Confidence.
    pub confidence: f64,
    /// Reasoning.
    pub reasoning: String,
    /// Alternatives.
    pub alternatives: Vec<Alternative>,
}

fn base_cost(optimizer: &str) -> (f64, i64) {
    match optimizer {
        "bootstrap_fewshot" => (0.10, 1),
        "reflection_metrics" => (0.05, 1),
        "gepa" => (0.50, 5),
        "miprov2" => (2.50, 15),
        "bootstrap_finetune" => (20.00, 60),
        _ => (1.0, 5),
    }
}

/// Cost and minutes of `optimizer` with `config` for `t` examples.
pub fn estimate(optimizer: &str, config: &Config, t: i64) -> (f64, u64) {
    let (base, base_time) = base_cost(optimizer);
    let mult = if optimizer == "miprov2" {
        match config.auto {
            "light" => 0.5,
            "heavy" => 2.5,
            _ => 1.0,
        }
    } else {
        1.0
    };
    let cost = round_py(base * mult * (t as f64 / 100.0), 2);
    let time_base = (base_time as f64 * mult) as i64;
    let minutes = ((time_base * t) as f64 / 100.0) as i64;
    (cost, minutes.max(1) as u64)
}

/// The original decision tree, cost model, confidence and alternatives.
pub fn recommend(i: &Input<'_>, history: &[HistoryRecord]) -> Decision {
    let t = i.trainset_size;
    let b = i.budget_usd;
    let (optimizer, config, reasoning) = match i.time_constraint_minutes {
        Some(l) if l != 0.0 && l < 2.0 => (
            "reflection_metrics",
            DEFAULT,
            format!("time limit of {l} min is under 2 minutes: reflection metrics is the only optimizer fast enough"),
        ),
        _ if b < 1.0 => (
            "reflection_metrics",
            DEFAULT,
            format!("budget of ${b} is under $1: reflection metrics is the only optimizer that fits"),
        ),
        _ if t < 100 && b < 5.0 => (
            "gepa",
            Config { num_candidates: 5, num_iters: 2, ..DEFAULT },
            format!("small trainset ({t} examples) and low budget (${b}): GEPA's reflective search is fast and cheap"),
        ),
        _ if t < 500 && b < 20.0 => (
            "miprov2",
            Config { auto: "light", max_bootstrapped_demos: 2, ..DEFAULT },
            format!("moderate trainset ({t} examples) and budget (${b}): MIPROv2 light tunes instructions and few-shot demos"),
        ),
        _ if t >= 500 && (20.0..100.0).contains(&b) => (
            "miprov2",
            Config { auto: "medium", max_bootstrapped_demos: 4, ..DEFAULT },
            format!("large trainset ({t} examples) with a ${b} budget: MIPROv2 medium balances quality and cost"),
        ),
        _ if b >= 100.0 && i.quality_target >= 0.95 => (
            "bootstrap_finetune",
            DEFAULT,
            format!("budget of ${b} and quality target {}: fine-tuning reaches the highest quality", i.quality_target),
        ),
        _ if b >= 100.0 => (
            "miprov2",
            Config { auto: "heavy", max_bootstrapped_demos: 6, max_labeled_demos: 6, ..DEFAULT },
            format!("budget of ${b}: MIPROv2 heavy searches the most thoroughly"),
        ),
        _ => (
            "bootstrap_fewshot",
            Config { max_bootstrapped_demos: 3, ..DEFAULT },
            format!("no specific rule matched ({t} examples, ${b}): bootstrap few-shot is a solid baseline"),
        ),
    };
    let (estimated_cost, estimated_time_minutes) = estimate(optimizer, &config, t);

    let similar: Vec<&HistoryRecord> = history
        .iter()
        .filter(|r| r.domain == i.domain && r.optimizer == optimizer)
        .collect();
    let mut confidence = 0.75;
    if !similar.is_empty() {
        let success =
            similar.iter().filter(|r| r.quality >= 0.8).count() as f64 / similar.len() as f64;
        confidence = f64::min(0.95, 0.75 + success * 0.1);
    }
    if t < 20 {
        confidence *= 0.8;
    }
    let confidence = round_py(confidence, 2);

    let mut alternatives = Vec::with_capacity(2);
    for (alt, risk) in [("reflection_metrics", 0.15), ("bootstrap_fewshot", 0.10)] {
        if alt != optimizer {
            let (c, m) = estimate(alt, &DEFAULT, t);
            alternatives.push(Alternative {
                optimizer: alt,
                estimated_cost: c,
                estimated_time_minutes: m,
                quality_risk: risk,
            });
        }
    }
    Decision {
        optimizer,
        config,
        estimated_cost,
        estimated_time_minutes,
        confidence,
        reasoning,
        alternatives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(t: i64, b: f64) -> Input<'static> {
        Input {
            trainset_size: t,
            budget_usd: b,
            quality_target: 0.85,
            time_constraint_minutes: None,
            domain: "general",
        }
    }

    #[test]
    fn rounding_edge_cases_of_the_design() {
        assert_eq!(recommend(&input(10, 10.0), &[]).estimated_cost, 0.12);
        assert_eq!(recommend(&input(50, 10.0), &[]).estimated_cost, 0.62);
    }

    #[test]
    fn known_overrun_of_the_original() {
        let d = recommend(&input(10_000, 500.0), &[]);
        assert_eq!(d.optimizer, "miprov2");
        assert_eq!(d.config.auto, "heavy");
        assert_eq!(d.estimated_cost, 625.0);
        assert_eq!(d.estimated_time_minutes, 3700);
    }
}
