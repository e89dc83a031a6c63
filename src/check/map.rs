//! The decision map: the optimizer a rule set chooses on a grid of two numeric inputs, every
//! other input fixed, and the cells where a larger value of a `monotone_in` field gets a weaker
//! optimizer than a smaller one (the non-monotonic regions `rules check` reports, on this
//! grid). The console draws it; `GET /api/v1/rules/map` serves it. Pure: no I/O, no clock (a
//! Rhai rule set stops at the overall deadline its caller set, see `rules::deadline`).

use crate::engine::{self, estimate::estimate};
use crate::rules::context::{Context, Value};
use crate::rules::spec::FieldType;
use crate::rules::{Resolved, RuleSet};
use serde::Serialize;
use std::sync::Arc;

/// Most points on one side of the grid.
pub const MAX_SIDE: usize = 400;

/// How an axis spreads its points between its ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Evenly spaced.
    Linear,
    /// Evenly spaced on a log scale (both ends above zero).
    Log,
}

impl Scale {
    /// `linear` or `log`.
    pub fn parse(s: &str) -> Option<Scale> {
        match s {
            "linear" => Some(Scale::Linear),
            "log" => Some(Scale::Log),
            _ => None,
        }
    }
}

/// One axis as asked: a field (name or alias) and, optionally, its ends, scale and points.
#[derive(Debug, Clone, Default)]
pub struct AxisSpec {
    /// The field, by name or alias.
    pub field: String,
    /// Lower end (default: the field's `min`, at least 1 for whole numbers and 0.01 for
    /// others on a log scale).
    pub min: Option<f64>,
    /// Upper end (default: the field's `max`, else 10,000 for whole numbers, 1,000 for others).
    pub max: Option<f64>,
    /// Scale (default: linear for a field with both bounds declared, else log).
    pub scale: Option<Scale>,
    /// Points on the axis (at most [`MAX_SIDE`]).
    pub points: usize,
}

/// An axis as drawn.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Axis {
    /// The field's canonical name.
    pub field: String,
    /// Lower end.
    pub min: f64,
    /// Upper end.
    pub max: f64,
    /// Scale.
    pub scale: Scale,
    /// The values, from `min` to `max` (whole numbers for an integer field).
    pub values: Vec<f64>,
}

/// A parameter the map cannot be drawn with, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AxisError {
    /// The query parameter at fault (`x`, `x_min`, `ny`, …).
    pub param: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

fn bad(param: String, message: String, help: Option<&str>) -> AxisError {
    AxisError {
        param,
        message,
        help: help.map(str::to_string),
    }
}

/// Resolves one axis (`name` is `x` or `y`, for the parameters named in errors) against the
/// rule set's context model.
pub fn axis(rs: &RuleSet, name: &str, spec: &AxisSpec) -> Result<Axis, AxisError> {
    let p = |suffix: &str| format!("{name}{suffix}");
    let numeric: Vec<&str> = rs
        .context
        .fields()
        .iter()
        .filter(|f| matches!(f.spec.kind, FieldType::Integer | FieldType::Number))
        .map(|f| &*f.name)
        .collect();
    let Some(i) = rs.context.index_of(&spec.field) else {
        return Err(bad(
            p(""),
            format!("no field `{}` in the context model", spec.field),
            Some(&format!("numeric fields: {}", numeric.join(", "))),
        ));
    };
    let field = &rs.context.fields()[i];
    let integer = match field.spec.kind {
        FieldType::Integer => true,
        FieldType::Number => false,
        other => {
            return Err(bad(
                p(""),
                format!("field `{}` is a {}, not a number", field.name, other.name()),
                Some(&format!("numeric fields: {}", numeric.join(", "))),
            ))
        }
    };
    if spec.points < 2 || spec.points > MAX_SIDE {
        return Err(bad(
            format!("n{name}"),
            format!(
                "{} points on the {name} axis; between 2 and {MAX_SIDE} are drawn",
                spec.points
            ),
            None,
        ));
    }
    let bounded = field.spec.min.is_some() && field.spec.max.is_some();
    let scale = spec
        .scale
        .unwrap_or(if bounded { Scale::Linear } else { Scale::Log });
    let floor = match (scale, integer) {
        (Scale::Log, true) => 1.0,
        (Scale::Log, false) => 0.01,
        (Scale::Linear, _) => f64::NEG_INFINITY,
    };
    let lo = spec
        .min
        .unwrap_or_else(|| field.spec.min.unwrap_or(0.0).max(floor));
    let hi = spec.max.unwrap_or_else(|| {
        field
            .spec
            .max
            .unwrap_or(if integer { 10_000.0 } else { 1_000.0 })
    });
    for (which, v) in [("_min", lo), ("_max", hi)] {
        let out_below = field.spec.min.is_some_and(|m| v < m);
        let out_above = field.spec.max.is_some_and(|m| v > m);
        if !v.is_finite() || out_below || out_above {
            return Err(bad(
                p(which),
                format!("{v} is outside the bounds of `{}`", field.name),
                Some(&bounds_text(field.spec.min, field.spec.max)),
            ));
        }
    }
    if lo >= hi {
        return Err(bad(
            p("_max"),
            format!("the {name} axis ends at {hi}, not above its start {lo}"),
            None,
        ));
    }
    if scale == Scale::Log && lo <= 0.0 {
        return Err(bad(
            p("_min"),
            format!("a log scale needs a start above 0, found {lo}"),
            Some(&format!(
                "give `{name}_min` above 0 or `{name}_scale=linear`"
            )),
        ));
    }
    let n = spec.points;
    let values = (0..n)
        .map(|k| {
            let t = k as f64 / (n - 1) as f64;
            let v = match scale {
                Scale::Linear => lo + (hi - lo) * t,
                Scale::Log => (lo.ln() + (hi.ln() - lo.ln()) * t).exp(),
            };
            let v = match k {
                0 => lo,
                _ if k == n - 1 => hi,
                _ => significant(v.clamp(lo, hi), 6),
            };
            if integer {
                v.round()
            } else {
                v
            }
        })
        .collect();
    Ok(Axis {
        field: field.name.to_string(),
        min: lo,
        max: hi,
        scale,
        values,
    })
}

/// `v` to `digits` significant digits (axis values read as typed, not as `0.010000000000000004`).
fn significant(v: f64, digits: i32) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

fn bounds_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("between {a} and {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => "any number".into(),
    }
}

/// The map of one rule set.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Map {
    /// The optimizers that appear, as `optimizer (variant)`; cells index into this list.
    pub labels: Vec<String>,
    /// `y.values.len() × x.values.len()` label indices, row by row: cell `j * nx + i` is
    /// (`x.values[i]`, `y.values[j]`); -1 where an evaluation failed or was not reached in
    /// time.
    pub cells: Vec<i32>,
    /// Cells where a larger value of a `monotone_in` axis gets a weaker optimizer than a
    /// smaller value on the same line, with the guard off.
    pub monotone: Vec<u32>,
    /// False when the overall deadline stopped the drawing (the rest is -1).
    pub complete: bool,
}

/// Draws the map of `rs` on the axes, every other field as in `base` (a request checked
/// against `rs`). `guard: Some(false)` draws it with the budget guard off.
pub fn draw(rs: &RuleSet, base: &Context, x: &Axis, y: &Axis, guard: Option<bool>) -> Map {
    let (Some(xi), Some(yi)) = (rs.context.index_of(&x.field), rs.context.index_of(&y.field))
    else {
        return Map {
            labels: Vec::new(),
            cells: vec![-1; x.values.len() * y.values.len()],
            monotone: Vec::new(),
            complete: true,
        };
    };
    let grid = Grid {
        rs,
        base,
        x,
        y,
        xi,
        yi,
    };
    let mut labels = Labels::default();
    let mut complete = true;
    let mut cells = Vec::with_capacity(grid.len());
    for j in 0..y.values.len() {
        for i in 0..x.values.len() {
            if !complete || crate::rules::deadline::overall_expired() {
                complete = false;
                cells.push(-1);
                continue;
            }
            let idx = match engine::choose(rs, &grid.context(i, j), guard) {
                Ok((choice, _)) => labels.index(choice),
                Err(_) => -1,
            };
            cells.push(idx);
        }
    }
    let monotone = if complete {
        grid.weaker_cells()
    } else {
        Vec::new()
    };
    Map {
        labels: labels.names(),
        cells,
        monotone,
        complete,
    }
}

/// The labels met so far, in order of appearance.
#[derive(Default)]
struct Labels(Vec<Arc<str>>);

impl Labels {
    fn index(&mut self, choice: &Resolved) -> i32 {
        let pos = self.0.iter().position(|l| **l == *choice.label);
        let pos = pos.unwrap_or_else(|| {
            self.0.push(Arc::clone(&choice.label));
            self.0.len() - 1
        });
        i32::try_from(pos).unwrap_or(-1)
    }

    fn names(self) -> Vec<String> {
        self.0.iter().map(|l| l.to_string()).collect()
    }
}

/// The grid's inputs.
struct Grid<'a> {
    rs: &'a RuleSet,
    base: &'a Context,
    x: &'a Axis,
    y: &'a Axis,
    xi: usize,
    yi: usize,
}

impl Grid<'_> {
    fn len(&self) -> usize {
        self.x.values.len() * self.y.values.len()
    }

    fn value(&self, field: usize, v: f64) -> Value {
        match self.rs.context.fields()[field].spec.kind {
            FieldType::Integer => Value::Int(v as i64),
            _ => Value::Num(v),
        }
    }

    /// The request at (`x.values[i]`, `y.values[j]`).
    fn context(&self, i: usize, j: usize) -> Context {
        let mut values = self.base.values().to_vec();
        values[self.xi] = self.value(self.xi, self.x.values[i]);
        values[self.yi] = self.value(self.yi, self.y.values[j]);
        Context::from_values(values)
    }

    /// Cells weaker (guard off) than a cell with a smaller value of a `monotone_in` axis on
    /// the same line, sorted.
    fn weaker_cells(&self) -> Vec<u32> {
        let (nx, ny) = (self.x.values.len(), self.y.values.len());
        let watched = |f: usize| self.rs.monotone_in.contains(&f);
        if !watched(self.xi) && !watched(self.yi) {
            return Vec::new();
        }
        let choices: Vec<Option<&Arc<Resolved>>> = (0..ny)
            .flat_map(|j| (0..nx).map(move |i| (i, j)))
            .map(|(i, j)| {
                engine::recommend::select_rule(self.rs, &self.context(i, j))
                    .ok()
                    .map(|r| &r.choice)
            })
            .collect();
        let mut marked = vec![false; nx * ny];
        let mut walk = |line: &mut dyn Iterator<Item = (usize, usize)>| {
            let mut seen: Vec<&Arc<Resolved>> = Vec::new();
            for (i, j) in line {
                let Some(c) = choices[j * nx + i] else {
                    continue;
                };
                if seen.iter().any(|s| self.stronger(s, c, i, j)) {
                    marked[j * nx + i] = true;
                }
                if !seen.iter().any(|s| same(s, c)) {
                    seen.push(c);
                }
            }
        };
        if watched(self.xi) {
            for j in 0..ny {
                walk(&mut (0..nx).map(|i| (i, j)));
            }
        }
        if watched(self.yi) {
            for i in 0..nx {
                walk(&mut (0..ny).map(|j| (i, j)));
            }
        }
        (0..nx * ny)
            .filter(|&k| marked[k])
            .filter_map(|k| u32::try_from(k).ok())
            .collect()
    }

    /// As `rules check` compares: by the order of `guard.downgrade` (strongest first), else by
    /// the estimated cost at the cell.
    fn stronger(&self, a: &Resolved, b: &Resolved, i: usize, j: usize) -> bool {
        if same(a, b) {
            return false;
        }
        let rank = |c: &Resolved| self.rs.guard.steps.iter().position(|s| same(s, c));
        if let (Some(ra), Some(rb)) = (rank(a), rank(b)) {
            return ra < rb;
        }
        let ctx = self.context(i, j);
        let cost = |c: &Resolved| {
            estimate(self.rs, c, &ctx, self.rs.model_for(&ctx))
                .ok()
                .map(|e| e.raw_cost)
        };
        matches!((cost(a), cost(b)), (Some(x), Some(y)) if x > y)
    }
}

fn same(a: &Resolved, b: &Resolved) -> bool {
    a.optimizer == b.optimizer && a.variant == b.variant
}

/// Every label a rule set can give (its rules, the fallback, the guard's steps), in a stable
/// order: the console colours each optimizer the same on every map.
pub fn choices(rs: &RuleSet) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = rs
        .guard
        .steps
        .iter()
        .chain(rs.rules.iter().map(|r| &r.choice))
        .chain([&rs.fallback.choice]);
    for c in all {
        if !out.iter().any(|l| **l == *c.label) {
            out.push(c.label.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;

    fn shipped() -> RuleSet {
        macro_rules! file {
            ($name:literal) => {
                SourceFile::new(
                    concat!("rules/", $name),
                    include_str!(concat!("../../rules/", $name)),
                )
            };
        }
        let files = [
            file!("confidence.yaml"),
            file!("context.yaml"),
            file!("cost.yaml"),
            file!("guard.yaml"),
            file!("optimizers.yaml"),
            file!("selection.yaml"),
            file!("training.yaml"),
        ];
        crate::rules::build(&files).unwrap()
    }

    fn base(rs: &RuleSet) -> Context {
        let m = serde_json::json!({"trainset_size": 100});
        rs.context.check(m.as_object().unwrap()).unwrap()
    }

    fn spec(field: &str, n: usize) -> AxisSpec {
        AxisSpec {
            field: field.into(),
            points: n,
            ..AxisSpec::default()
        }
    }

    #[test]
    fn cells_agree_with_single_decisions() {
        let rs = shipped();
        let x = axis(&rs, "x", &spec("trainset_size", 23)).unwrap();
        let y = axis(&rs, "y", &spec("budget_usd", 17)).unwrap();
        assert_eq!((x.min, x.max, x.scale), (1.0, 10_000.0, Scale::Log));
        assert_eq!((y.min, y.max), (0.01, 1_000.0));
        let b = base(&rs);
        let map = draw(&rs, &b, &x, &y, None);
        assert!(map.complete);
        assert_eq!(map.cells.len(), 23 * 17);
        assert!(map.labels.len() > 1, "{:?}", map.labels);
        let g = Grid {
            rs: &rs,
            base: &b,
            x: &x,
            y: &y,
            xi: rs.context.index_of("trainset_size").unwrap(),
            yi: rs.context.index_of("budget_usd").unwrap(),
        };
        for j in 0..17 {
            for i in 0..23 {
                let ctx = g.context(i, j);
                let d = engine::evaluate(&rs, &ctx, &[], Default::default()).unwrap();
                let label = &map.labels[map.cells[j * 23 + i] as usize];
                let want = d.choice.label.to_string();
                let (c, est) = engine::choose(&rs, &ctx, None).unwrap();
                assert_eq!((&*c.label, est), (&*d.choice.label, d.estimate));
                assert_eq!(label, &want, "cell {i},{j}");
            }
        }
    }

    #[test]
    fn guard_off_differs_where_the_budget_is_small() {
        let rs = shipped();
        let x = axis(&rs, "x", &spec("trainset_size", 20)).unwrap();
        let y = axis(&rs, "y", &spec("budget_usd", 20)).unwrap();
        let b = base(&rs);
        let on = draw(&rs, &b, &x, &y, None);
        let off = draw(&rs, &b, &x, &y, Some(false));
        let name = |m: &Map, k: usize| m.labels[m.cells[k] as usize].clone();
        assert!((0..400).any(|k| name(&on, k) != name(&off, k)));
    }

    #[test]
    fn weaker_cells_are_found_on_a_grid_that_crosses_a_threshold() {
        let rs = shipped();
        // The shipped rules give a weaker optimizer past some trainset sizes (rules check
        // reports it); the map marks such cells.
        let x = axis(&rs, "x", &spec("trainset_size", 200)).unwrap();
        let y = axis(&rs, "y", &spec("budget_usd", 50)).unwrap();
        let map = draw(&rs, &base(&rs), &x, &y, None);
        let analysis = crate::check::analysis::analyze(&rs);
        let reported = analysis
            .iter()
            .any(|d| d.message.contains("gets a weaker optimizer"));
        assert_eq!(!map.monotone.is_empty(), reported, "{:?}", analysis);
    }

    #[test]
    fn bad_axes_name_their_parameter() {
        let rs = shipped();
        let err = |s: AxisSpec| axis(&rs, "x", &s).unwrap_err().param;
        assert_eq!(err(spec("nope", 10)), "x");
        assert_eq!(err(spec("domain", 10)), "x");
        assert_eq!(err(spec("trainset_size", 401)), "nx");
        assert_eq!(err(spec("trainset_size", 1)), "nx");
        let mut s = spec("trainset_size", 10);
        s.min = Some(0.0);
        assert_eq!(err(s.clone()), "x_min");
        s.min = Some(50.0);
        s.max = Some(50.0);
        assert_eq!(err(s), "x_max");
        let mut s = spec("budget_usd", 10);
        s.min = Some(0.0);
        s.scale = Some(Scale::Log);
        assert_eq!(err(s), "x_min");
    }

    #[test]
    fn every_label_of_a_map_is_a_choice() {
        let rs = shipped();
        let all = choices(&rs);
        let x = axis(&rs, "x", &spec("trainset_size", 30)).unwrap();
        let y = axis(&rs, "y", &spec("budget_usd", 30)).unwrap();
        for l in draw(&rs, &base(&rs), &x, &y, None).labels {
            assert!(all.contains(&l), "{l} not in {all:?}");
        }
    }
}
