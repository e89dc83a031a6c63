//! Impact of a rules change: replays inputs through two rule sets and groups the decisions that
//! change by old → new optimizer, with the cost delta and a few example inputs. Pure: the
//! inputs (logged decisions, fixtures) come in as arguments.

use crate::engine::{evaluate, Options};
use crate::rules::RuleSet;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Examples kept per group.
pub const EXAMPLES_PER_GROUP: usize = 3;

/// What a rule set made of one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Made {
    /// Optimizer and variant, e.g. `miprov2 (light)`; `rejected` or `error` when there is none.
    pub optimizer: String,
    /// Rule that fired.
    pub rule: Option<String>,
    /// Estimated cost.
    pub estimated_cost: Option<f64>,
    /// Estimated minutes.
    pub estimated_time_minutes: Option<u64>,
    /// Config.
    #[serde(skip)]
    config: Option<Value>,
}

/// One input that changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// Where the input came from: `decision 42` or `fixture name`.
    pub source: String,
    /// The input.
    pub input: Value,
    /// Before.
    pub before: Made,
    /// After.
    pub after: Made,
}

/// Decisions that moved from one optimizer to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Optimizer before.
    pub from: String,
    /// Optimizer after.
    pub to: String,
    /// Inputs that moved.
    pub count: u64,
    /// Sum of (new − old) estimated cost over the inputs both sides estimated.
    #[serde(serialize_with = "crate::util::round::four")]
    pub cost_delta: f64,
    /// Mean of the same.
    #[serde(serialize_with = "crate::util::round::four")]
    pub cost_delta_mean: f64,
    /// A few of the inputs.
    pub examples: Vec<Example>,
}

/// The whole replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Impact {
    /// Revision before.
    pub from_revision: String,
    /// Revision after.
    pub to_revision: String,
    /// Logged decisions replayed.
    pub decisions: u64,
    /// Fixture inputs replayed.
    pub fixtures: u64,
    /// Inputs whose decision changed.
    pub changed: u64,
    /// Of those, logged decisions.
    pub changed_decisions: u64,
    /// Of those, fixture inputs.
    pub changed_fixtures: u64,
    /// Changes by old → new optimizer, largest first.
    pub groups: Vec<Group>,
}

/// Where an input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A logged decision and its id.
    Decision(i64),
    /// A fixture and its name.
    Fixture(String),
}

fn made(rs: &RuleSet, input: &Map<String, Value>) -> Made {
    let none = |what: &str| Made {
        optimizer: what.to_string(),
        rule: None,
        estimated_cost: None,
        estimated_time_minutes: None,
        config: None,
    };
    let Ok(ctx) = rs.check_input(input) else {
        return none("rejected");
    };
    match evaluate(rs, &ctx, &[], Options::default()) {
        Ok(o) => Made {
            optimizer: o.choice.label.to_string(),
            rule: Some(o.rule.id.to_string()),
            estimated_cost: Some(o.estimate.cost),
            estimated_time_minutes: Some(o.estimate.minutes),
            config: serde_json::to_value(&*o.choice.config).ok(),
        },
        Err(_) => none("error"),
    }
}

/// Accumulates the replay of inputs through `before` and `after`.
pub struct Replay<'a> {
    before: &'a RuleSet,
    after: &'a RuleSet,
    impact: Impact,
    groups: BTreeMap<(String, String), Group>,
}

impl<'a> Replay<'a> {
    /// Starts a replay.
    pub fn new(before: &'a RuleSet, after: &'a RuleSet) -> Self {
        Replay {
            before,
            after,
            impact: Impact {
                from_revision: before.revision.to_string(),
                to_revision: after.revision.to_string(),
                ..Impact::default()
            },
            groups: BTreeMap::new(),
        }
    }

    /// Replays one input; a logged input that is not a JSON object is skipped.
    pub fn add(&mut self, source: Source, input: &Value) {
        let Some(map) = input.as_object() else {
            return;
        };
        match source {
            Source::Decision(_) => self.impact.decisions += 1,
            Source::Fixture(_) => self.impact.fixtures += 1,
        }
        let (a, b) = (made(self.before, map), made(self.after, map));
        if a == b && a.config == b.config {
            return;
        }
        self.impact.changed += 1;
        match source {
            Source::Decision(_) => self.impact.changed_decisions += 1,
            Source::Fixture(_) => self.impact.changed_fixtures += 1,
        }
        let g = self
            .groups
            .entry((a.optimizer.clone(), b.optimizer.clone()))
            .or_insert_with(|| Group {
                from: a.optimizer.clone(),
                to: b.optimizer.clone(),
                count: 0,
                cost_delta: 0.0,
                cost_delta_mean: 0.0,
                examples: Vec::new(),
            });
        g.count += 1;
        if let (Some(x), Some(y)) = (a.estimated_cost, b.estimated_cost) {
            g.cost_delta += y - x;
        }
        if g.examples.len() < EXAMPLES_PER_GROUP {
            g.examples.push(Example {
                source: match source {
                    Source::Decision(id) => format!("decision {id}"),
                    Source::Fixture(name) => format!("fixture {name}"),
                },
                input: input.clone(),
                before: a,
                after: b,
            });
        }
    }

    /// The result, groups largest first.
    pub fn finish(mut self) -> Impact {
        let mut groups: Vec<Group> = self.groups.into_values().collect();
        for g in &mut groups {
            g.cost_delta = crate::util::round::round_py(g.cost_delta, 2);
            g.cost_delta_mean =
                crate::util::round::round_py(g.cost_delta / g.count.max(1) as f64, 2);
        }
        groups.sort_by(|x, y| y.count.cmp(&x.count).then_with(|| x.from.cmp(&y.from)));
        self.impact.groups = groups;
        self.impact
    }
}
