//! Rule analysis, reported as warnings by `rules check`:
//!
//! - `shadow`: selection rules that can never fire, because their condition holds for no
//!   input or because earlier rules take every input it matches;
//! - `monotone`: regions where a larger value of a `monotone_in` field (budget, trainset
//!   size), everything else equal, gets a weaker optimizer;
//! - `overrun`: rules whose estimate can exceed the budget when the guard is off.
//!
//! All three evaluate the rule set on the cells of a grid (`grid`) built from the constants the
//! conditions compare with, which is exact for structured conditions. Rhai `expr:`
//! conditions are opaque: a rule with one is never reported as unreachable, and the other two
//! analyses only see what the expressions return on the grid's sample values. Pure: no I/O.

mod boxes;
mod grid;
mod monotone;
mod overrun;
mod shadow;

use crate::diagnostic::Diagnostic;
use crate::engine::EvalError;
use crate::rules::context::{Context, Value};
use crate::rules::{Rule, RuleSet};
use grid::Grid;

/// Most cells the analysis evaluates; a rule set cut finer is not analysed (with a warning).
pub const MAX_CELLS: usize = 200_000;

/// Analyses a valid rule set; every finding is a warning, sorted by file and position.
pub fn analyze(rs: &RuleSet) -> Vec<Diagnostic> {
    let a = analyze_for_check(rs);
    let mut out = a.shown;
    out.extend(a.moot);
    sort(&mut out);
    out
}

/// The findings of `rules check`: those that matter for the rule set as configured, and those
/// its configuration makes moot (estimates above the budget with the guard off, while the
/// guard is on), which `rules check --all` shows too.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Shown by default.
    pub shown: Vec<Diagnostic>,
    /// Made moot by the configuration.
    pub moot: Vec<Diagnostic>,
}

/// Analyses a valid rule set, setting apart what its configuration makes moot.
pub fn analyze_for_check(rs: &RuleSet) -> Analysis {
    let grid = grid::build(rs);
    let cells = grid.cells();
    if cells > MAX_CELLS {
        return Analysis {
            shown: vec![skipped(cells)],
            moot: Vec::new(),
        };
    }
    let mut failures = Failures::default();
    let mut shown = shadow::check(rs, &grid);
    shown.extend(monotone::check(rs, &grid, &mut failures));
    let overruns = overrun::check(rs, &grid, &mut failures);
    let moot = if rs.guard.enabled {
        overruns
    } else {
        shown.extend(overruns);
        Vec::new()
    };
    shown.extend(failures.into_diagnostic(&grid));
    if crate::rules::deadline::overall_expired() {
        shown.push(
            Diagnostic::warning(
                "rule analysis stopped at its time budget: Rhai scripts were cut short, so the findings cover only the inputs evaluated before".to_string(),
            )
            .with_help("a script is slow on some inputs (see the warning above); make it cheaper, or give `rules check --analysis-timeout SECONDS` more time"),
        );
    }
    sort(&mut shown);
    Analysis { shown, moot }
}

fn sort(out: &mut [Diagnostic]) {
    out.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            (
                d.file.is_none(),
                d.file.clone(),
                d.pos.map(|p| (p.line, p.col)),
            )
        };
        key(a).cmp(&key(b))
    });
}

fn skipped(n: usize) -> Diagnostic {
    Diagnostic::warning(format!(
        "rule analysis skipped: the conditions cut the inputs into {n} cells, more than {MAX_CELLS}"
    ))
    .with_help(
        "fewer distinct thresholds, or fewer fields in `analysis.monotone_in`, bring it back",
    )
}

/// Evaluation failures (scripts only) met while analysing: the inputs are skipped, and the
/// first failure is reported once.
#[derive(Default)]
pub(crate) struct Failures {
    first: Option<(EvalError, Vec<Value>)>,
    count: usize,
}

impl Failures {
    fn record(&mut self, e: EvalError, values: &[Value]) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((e, values.to_vec()));
        }
    }

    fn into_diagnostic(self, grid: &Grid) -> Option<Diagnostic> {
        let (e, values) = self.first?;
        let d = e.to_diagnostic();
        let set: Vec<String> = grid
            .axes
            .iter()
            .filter(|a| values[a.field] != Value::Null)
            .map(|a| format!("--set {}={}", a.name, show(&values[a.field])))
            .collect();
        let mut w = Diagnostic::warning(format!(
            "rule analysis skipped {} {} on which a script failed: {}",
            self.count,
            if self.count == 1 { "input" } else { "inputs" },
            d.message
        ))
        .with_help(format!(
            "see it with `skill-fleet rules test {}`",
            set.join(" ")
        ));
        w.file = d.file;
        w.pos = d.pos;
        Some(w)
    }
}

/// The rule that decides for `values` with the guard off: its index in `rs.rules`, or
/// `rs.rules.len()` for the fallback.
fn select(rs: &RuleSet, values: &[Value], failures: &mut Failures) -> Option<usize> {
    let ctx = Context::from_values(values.to_vec());
    match crate::engine::recommend::select_rule(rs, &ctx) {
        Ok(r) => Some(index_of(rs, r)),
        Err(e) => {
            failures.record(e, values);
            None
        }
    }
}

fn index_of(rs: &RuleSet, r: &Rule) -> usize {
    rs.rules
        .iter()
        .position(|x| std::ptr::eq(x, r))
        .unwrap_or(rs.rules.len())
}

/// Rule number `i`, the fallback for `rules.len()`.
fn rule(rs: &RuleSet, i: usize) -> &Rule {
    rs.rules.get(i).unwrap_or(&rs.fallback)
}

/// `` `id` (file:line) ``.
fn who(r: &Rule) -> String {
    format!("`{}` ({})", r.id, r.at)
}

/// A warning placed at a rule.
fn at_rule(r: &Rule, message: String) -> Diagnostic {
    Diagnostic::warning(message).at(&r.file, r.pos)
}

/// A value as `--set` would take it.
fn show(v: &Value) -> String {
    match v {
        Value::Num(x) => boxes::num(*x),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
