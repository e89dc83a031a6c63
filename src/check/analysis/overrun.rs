//! Rules whose estimate can exceed the budget when the guard is off.
//!
//! The trainset size has no upper bound, so no rule is safe by construction: every input of
//! the grid is tried with more trainset sizes (the ends of each interval and powers of ten up
//! to 100 000), a larger budget and every model of the price table, with the guard off. One
//! warning per rule, with the example that says the most: the default values for the other
//! fields, the largest budget, then the smallest trainset.

use super::grid::{Grid, Odometer};
use super::{at_rule, boxes::num, select, show, Failures, MAX_CELLS};
use crate::diagnostic::Diagnostic;
use crate::engine::estimate::estimate;
use crate::rules::context::{Context, Value};
use crate::rules::RuleSet;
use std::cmp::Ordering;

/// An input on which a rule's estimate is above the budget.
struct Overrun {
    values: Vec<Value>,
    /// Fields away from their defaults (other than trainset size and budget).
    off_default: usize,
    budget: f64,
    trainset: f64,
    cost: f64,
}

impl Overrun {
    /// Better examples first: fewer unusual fields, larger budget, smaller trainset.
    fn order(&self, o: &Overrun) -> Ordering {
        self.off_default
            .cmp(&o.off_default)
            .then(o.budget.total_cmp(&self.budget))
            .then(self.trainset.total_cmp(&o.trainset))
    }
}

/// One warning per rule (and the fallback) that can cost more than the budget.
pub fn check(rs: &RuleSet, grid: &Grid, failures: &mut Failures) -> Vec<Diagnostic> {
    let known = rs.context.known;
    let lists: Vec<Vec<Value>> = grid
        .axes
        .iter()
        .map(|a| {
            let mut v = a.reps.clone();
            v.extend(a.extra.iter().filter(|e| !a.reps.contains(e)).cloned());
            v
        })
        .collect();
    let total = lists
        .iter()
        .fold(1usize, |n, l| n.saturating_mul(l.len().max(1)));
    if total > MAX_CELLS {
        return vec![Diagnostic::warning(format!(
            "budget analysis skipped: {total} inputs to try, more than {MAX_CELLS}"
        ))
        .with_help("fewer distinct thresholds or models bring it back")];
    }
    let mut best: Vec<Option<Overrun>> = (0..=rs.rules.len()).map(|_| None).collect();
    for combo in Odometer::new(lists.iter().map(Vec::len).collect()) {
        let mut values = grid.base.clone();
        let mut off_default = 0;
        for ((a, list), &j) in grid.axes.iter().zip(&lists).zip(&combo) {
            values[a.field] = list[j].clone();
            let cost_axis = a.field == known.trainset_size || a.field == known.budget_usd;
            if !cost_axis && j != a.default_piece {
                off_default += 1;
            }
        }
        let Some(i) = select(rs, &values, failures) else {
            continue;
        };
        let ctx = Context::from_values(values);
        let Some(budget) = ctx.get(known.budget_usd).as_f64() else {
            continue;
        };
        let choice = &super::rule(rs, i).choice;
        let est = match estimate(rs, choice, &ctx, rs.model_for(&ctx)) {
            Ok(e) => e,
            Err(e) => {
                failures.record(e, ctx.values());
                continue;
            }
        };
        if est.cost <= budget {
            continue;
        }
        let found = Overrun {
            off_default,
            budget,
            trainset: ctx.get(known.trainset_size).as_f64().unwrap_or(0.0),
            cost: est.cost,
            values: ctx.values().to_vec(),
        };
        if best[i]
            .as_ref()
            .is_none_or(|b| found.order(b) == Ordering::Less)
        {
            best[i] = Some(found);
        }
    }
    let help = if rs.guard.enabled {
        "the budget guard (`guard.enabled: true`) steps down to a cheaper optimizer there; with it off, this estimate stands"
    } else {
        "turn the budget guard on (`guard.enabled: true`), or add a budget condition to the rule"
    };
    best.into_iter()
        .enumerate()
        .filter_map(|(i, o)| Some((super::rule(rs, i), o?)))
        .map(|(r, o)| {
            let what = if i_is_fallback(rs, r) { "fallback" } else { "rule" };
            let others: Vec<String> = grid
                .axes
                .iter()
                .filter(|a| a.field != known.trainset_size && a.field != known.budget_usd)
                .filter(|a| o.values[a.field] != a.reps[a.default_piece])
                .map(|a| format!("{}={}", a.name, show(&o.values[a.field])))
                .collect();
            let with = if others.is_empty() {
                String::new()
            } else {
                format!(" ({})", others.join(", "))
            };
            at_rule(
                r,
                format!(
                    "{what} `{}` can cost more than the budget with the guard off: {} examples at ${}{with} → {} at ${}",
                    r.id,
                    num(o.trainset),
                    num(o.budget),
                    r.choice.label,
                    num(o.cost)
                ),
            )
            .with_help(help)
        })
        .collect()
}

fn i_is_fallback(rs: &RuleSet, r: &crate::rules::Rule) -> bool {
    std::ptr::eq(r, &rs.fallback)
}
