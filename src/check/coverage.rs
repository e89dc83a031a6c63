//! Fixture coverage for `rules test --coverage`: which selection rules, guard steps,
//! alternatives and Rhai code the fixtures exercise, and which they never reach.
//!
//! The fixtures run a second time on a coverage build of the rule set
//! ([`crate::rules::build_instrumented`]), whose Rhai functions and `expr:` conditions record that
//! they ran; the rule that fired, the guard's step and the alternatives come from each
//! decision and its trace. The rule set that serves and the normal fixture run are not
//! instrumented.

use crate::diagnostic::{Diagnostic, SourceFile};
use crate::engine::{recommend, Options};
use crate::rules::instrument::{Recorder, SiteKind};
use crate::rules::{build_instrumented, RuleSet};
use serde::Serialize;
use std::sync::Arc;

/// What a coverage item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A selection rule.
    Rule,
    /// The fallback.
    Fallback,
    /// A step of `guard.downgrade` the guard stepped down to.
    GuardStep,
    /// The guard found no step that fits.
    GuardNoFit,
    /// An alternative offered beside the primary.
    Alternative,
    /// A function of a `.rhai` file.
    RhaiFunction,
    /// An `expr:` condition.
    RhaiExpr,
}

impl Kind {
    /// The group the item is counted in.
    pub fn group(self) -> &'static str {
        match self {
            Kind::Rule | Kind::Fallback => "rules",
            Kind::GuardStep | Kind::GuardNoFit => "guard",
            Kind::Alternative => "alternatives",
            Kind::RhaiFunction | Kind::RhaiExpr => "rhai",
        }
    }

    /// How the item is named in reports.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Rule => "rule",
            Kind::Fallback => "fallback",
            Kind::GuardStep => "guard step",
            Kind::GuardNoFit => "guard",
            Kind::Alternative => "alternative",
            Kind::RhaiFunction => "rhai function",
            Kind::RhaiExpr => "rhai expr",
        }
    }
}

/// The groups, in report order.
pub const GROUPS: [&str; 4] = ["rules", "guard", "alternatives", "rhai"];

/// One thing the fixtures may or may not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// Rule id, step, optimizer, `name/arity` or expression.
    pub name: String,
    /// `file:line`.
    pub at: String,
    /// Reached by at least one fixture.
    pub hit: bool,
    /// False for Rhai functions of a file that could not be instrumented: not counted.
    pub measured: bool,
}

/// Coverage of a fixture run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Fixtures run.
    pub fixtures: usize,
    /// Every item, in rule-set order.
    pub items: Vec<Item>,
}

impl Report {
    /// Items counted (measured).
    pub fn total(&self) -> usize {
        self.items.iter().filter(|i| i.measured).count()
    }

    /// Items reached.
    pub fn covered(&self) -> usize {
        self.items.iter().filter(|i| i.measured && i.hit).count()
    }

    /// `covered / total` in percent; 100 when there is nothing to cover.
    pub fn percent(&self) -> f64 {
        match self.total() {
            0 => 100.0,
            t => 100.0 * self.covered() as f64 / t as f64,
        }
    }

    /// `(covered, total)` of one group.
    pub fn group(&self, name: &str) -> (usize, usize) {
        let items = self
            .items
            .iter()
            .filter(|i| i.measured && i.kind.group() == name);
        let (mut covered, mut total) = (0, 0);
        for i in items {
            total += 1;
            covered += usize::from(i.hit);
        }
        (covered, total)
    }
}

/// Builds a coverage copy of the rule set in `files` and runs the fixtures whose name contains
/// `filter` (all when `None`) on it.
pub fn run(files: &[SourceFile], filter: Option<&str>) -> Result<Report, Vec<Diagnostic>> {
    let rec = Arc::new(Recorder::new());
    let rs = build_instrumented(files, Arc::clone(&rec))?;
    let reachable = steps_reachable(&rs);
    let mut items = static_items(&rs, &reachable);
    let mut fixtures = 0;
    for f in rs
        .fixtures
        .iter()
        .filter(|f| filter.is_none_or(|s| f.spec.name.contains(s)))
    {
        fixtures += 1;
        let Ok(ctx) = rs.check_input(&f.spec.input) else {
            continue;
        };
        let opts = Options {
            explain: true,
            guard: f.spec.guard,
        };
        let Ok(d) = recommend(&rs, &ctx, &f.spec.history, opts) else {
            continue;
        };
        let mut reached = |kind: Kind, idx: usize| {
            if let Some(item) = items.iter_mut().filter(|i| i.kind == kind).nth(idx) {
                item.hit = true;
            }
        };
        match rs.rules.iter().position(|r| r.id == d.rule) {
            Some(i) => reached(Kind::Rule, i),
            None => reached(Kind::Fallback, 0),
        }
        let outcome = d.trace.as_ref().and_then(|t| t.guard.as_ref());
        match outcome.map(|g| g.outcome.as_str()) {
            Some("downgraded") => {
                // The step taken is the one whose config the decision carries (same `Arc`).
                let step = reachable
                    .iter()
                    .position(|&k| Arc::ptr_eq(&rs.guard.steps[k].config, &d.config));
                if let Some(n) = step {
                    reached(Kind::GuardStep, n);
                }
            }
            Some("no_fit") => reached(Kind::GuardNoFit, 0),
            _ => {}
        }
        for (i, alt) in rs.confidence.alternatives.iter().enumerate() {
            if d.alternatives
                .iter()
                .any(|a| a.optimizer == alt.choice.optimizer)
            {
                reached(Kind::Alternative, i);
            }
        }
    }
    for site in rec.sites() {
        let kind = match site.kind {
            SiteKind::Function => Kind::RhaiFunction,
            SiteKind::Expr => Kind::RhaiExpr,
        };
        items.push(Item {
            kind,
            name: site.name,
            at: format!("{}:{}", site.file, site.line),
            hit: site.hit,
            measured: site.measured,
        });
    }
    Ok(Report { fixtures, items })
}

/// Indices of the guard steps some result can step down to: those after a step equal to a
/// rule's result, or all of them when a result is not in the list (the guard then starts at
/// the top). With the shipped list the first step is never a target.
fn steps_reachable(rs: &RuleSet) -> Vec<usize> {
    let steps = &rs.guard.steps;
    let start = rs
        .rules
        .iter()
        .chain([&rs.fallback])
        .map(|r| {
            steps
                .iter()
                .position(|s| s.optimizer == r.choice.optimizer && s.variant == r.choice.variant)
                .map_or(0, |i| i + 1)
        })
        .min()
        .unwrap_or(steps.len());
    (start..steps.len()).collect()
}

/// Rules, fallback, guard steps, the no-fit case and alternatives, none reached yet.
fn static_items(rs: &RuleSet, reachable: &[usize]) -> Vec<Item> {
    let item = |kind, name: &str, at: &str| Item {
        kind,
        name: name.to_string(),
        at: at.to_string(),
        hit: false,
        measured: true,
    };
    let mut items: Vec<Item> = rs
        .rules
        .iter()
        .map(|r| item(Kind::Rule, &r.id, &r.at))
        .collect();
    items.push(item(Kind::Fallback, &rs.fallback.id, &rs.fallback.at));
    for &k in reachable {
        let at = rs.guard.steps_at.get(k).map_or("", String::as_str);
        items.push(item(Kind::GuardStep, &rs.guard.steps[k].label, at));
    }
    if !rs.guard.steps.is_empty() {
        items.push(item(Kind::GuardNoFit, "no step fits", &rs.guard.no_fit_at));
    }
    for a in &rs.confidence.alternatives {
        items.push(item(Kind::Alternative, &a.choice.optimizer, &a.at));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELECTION: &str = include_str!("../../rules/selection.yaml");

    fn files(extra: &[(&str, &str)]) -> Vec<SourceFile> {
        let mut files = vec![
            SourceFile::new("r/context.yaml", include_str!("../../rules/context.yaml")),
            SourceFile::new(
                "r/optimizers.yaml",
                include_str!("../../rules/optimizers.yaml"),
            ),
            SourceFile::new("r/cost.yaml", include_str!("../../rules/cost.yaml")),
            SourceFile::new(
                "r/confidence.yaml",
                include_str!("../../rules/confidence.yaml"),
            ),
            SourceFile::new("r/guard.yaml", include_str!("../../rules/guard.yaml")),
            SourceFile::new("r/training.yaml", include_str!("../../rules/training.yaml")),
        ];
        if !extra.iter().any(|(p, _)| *p == "r/selection.yaml") {
            files.push(SourceFile::new("r/selection.yaml", SELECTION));
        }
        files.extend(extra.iter().map(|(p, t)| SourceFile::new(*p, *t)));
        files
    }

    fn hit(r: &Report, kind: Kind) -> Vec<(&str, bool)> {
        r.items
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| (i.name.as_str(), i.hit))
            .collect()
    }

    const FIXTURES: &str = "tests:\n  - {name: gepa, input: {trainset_size: 50, budget_usd: 4}, expect: {}}\n  - {name: heavy_to_medium, input: {trainset_size: 10000, budget_usd: 500}, expect: {}}\n  - {name: nothing_fits, input: {trainset_size: 1000, budget_usd: 0}, expect: {}}\n  - {name: rejected, input: {trainset_size: 0}, expect: {error: minimum}}\n";

    #[test]
    fn rules_guard_steps_and_alternatives_reached_by_the_fixtures() {
        let r = run(&files(&[("r/tests.yaml", FIXTURES)]), None).expect("valid");
        assert_eq!(r.fixtures, 4);
        let rules = hit(&r, Kind::Rule);
        assert_eq!(rules.len(), 7);
        let reached: Vec<&str> = rules.iter().filter(|x| x.1).map(|x| x.0).collect();
        assert_eq!(
            reached,
            ["tiny_budget", "small_trainset_low_budget", "high_budget"]
        );
        assert_eq!(hit(&r, Kind::Fallback), [("fallback", false)]);
        // Every result of the shipped rules is a step, so the first step is never a target.
        let steps = hit(&r, Kind::GuardStep);
        assert_eq!(
            steps,
            [
                ("miprov2 (heavy)", false),
                ("miprov2 (medium)", true),
                ("miprov2 (light)", false),
                ("gepa", false),
                ("bootstrap_fewshot", false),
                ("reflection_metrics", false)
            ]
        );
        assert_eq!(hit(&r, Kind::GuardNoFit), [("no step fits", true)]);
        // reflection_metrics is the primary of `nothing_fits`, so only the others offer it.
        assert_eq!(
            hit(&r, Kind::Alternative),
            [("reflection_metrics", true), ("bootstrap_fewshot", true)]
        );
        assert_eq!(r.total(), 17);
        assert_eq!(r.covered(), 7);
        assert!(
            r.items.iter().all(|i| i.at.starts_with("r/")),
            "{:?}",
            r.items
        );
        let filtered = run(&files(&[("r/tests.yaml", FIXTURES)]), Some("gepa")).expect("valid");
        assert_eq!(filtered.fixtures, 1);
        assert_eq!(filtered.covered(), 3); // the rule and both alternatives
    }

    #[test]
    fn rhai_functions_and_expressions_record_whether_they_ran() {
        let helpers =
            "// helpers\nfn per_example(budget, n) {\n    budget / n\n}\n\nfn unused(x) { x }\n";
        let selection = SELECTION.replace(
            "    - id: tiny_budget\n",
            "    - id: thin\n      when: {expr: \"trainset_size >= 1000 && per_example(budget_usd, trainset_size) < 0.002\"}\n      then: {optimizer: reflection_metrics}\n      reasoning: r\n    - id: never_evaluated\n      when: {all: [{field: budget_usd, lt: 0.5}, {expr: \"unused(1) == 1\"}]}\n      then: {optimizer: gepa}\n      reasoning: r\n    - id: tiny_budget\n",
        );
        let fixtures = "tests:\n  - {name: thin, input: {trainset_size: 5000, budget_usd: 5}, expect: {rule: thin}}\n";
        let r = run(
            &files(&[
                ("r/selection.yaml", &selection),
                ("r/helpers.rhai", helpers),
                ("r/tests.yaml", fixtures),
            ]),
            None,
        )
        .expect("valid");
        assert_eq!(
            hit(&r, Kind::RhaiFunction),
            [("per_example/2", true), ("unused/1", false)]
        );
        let fns: Vec<&str> = r
            .items
            .iter()
            .filter(|i| i.kind == Kind::RhaiFunction)
            .map(|i| i.at.as_str())
            .collect();
        assert_eq!(fns, ["r/helpers.rhai:2", "r/helpers.rhai:6"]);
        let exprs = hit(&r, Kind::RhaiExpr);
        assert_eq!(exprs.len(), 2);
        assert!(exprs[0].1, "the first expression ran");
        assert!(!exprs[1].1, "`all` stopped at the budget comparison");
        assert_eq!(r.group("rhai"), (2, 4));
    }

    #[test]
    fn the_cost_script_counts_as_reached() {
        let lib = "fn flat(input, optimizer, model) {\n    #{cost_usd: 1.0, minutes: 2}\n}\n";
        let cost =
            include_str!("../../rules/cost.yaml").replace("cost:\n", "cost:\n  script: flat\n");
        let fixtures =
            "tests:\n  - {name: any, input: {trainset_size: 50}, expect: {estimated_cost: 1.0}}\n";
        let mut f = files(&[("r/lib.rhai", lib), ("r/tests.yaml", fixtures)]);
        f.retain(|x| x.path != "r/cost.yaml");
        f.push(SourceFile::new("r/cost.yaml", cost));
        let r = run(&f, None).expect("valid");
        assert_eq!(hit(&r, Kind::RhaiFunction), [("flat/3", true)]);
    }

    #[test]
    fn normal_builds_are_not_instrumented() {
        let rs = crate::rules::build(&files(&[])).expect("valid");
        assert!(rs.scripts.coverage().is_none());
    }
}
