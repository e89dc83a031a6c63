//! The input space cut into cells on which every field comparison of every rule is constant.
//!
//! Each field a condition compares is an axis. Its values are cut at every constant a
//! condition compares it with and at its declared bounds: each constant is a piece, and so is
//! each open interval between two of them (below the first and above the last when unbounded,
//! whole numbers only for integer fields). Strings are cut into the values the conditions
//! mention plus one other value (or the `enum`); optional fields without a default get an
//! "absent" piece. A comparison with a constant gives the same answer for every value of a
//! piece, so evaluating one value per cell decides the structured conditions exactly.

use crate::rules::context::{Field, Value};
use crate::rules::spec::FieldType;
use crate::rules::RuleSet;
use std::collections::{BTreeMap, BTreeSet};

/// Part of one field's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// The field has no value.
    Absent,
    /// Exactly this number.
    Point(f64),
    /// The numbers strictly between two bounds (`None`: unbounded).
    Between(Option<f64>, Option<f64>),
    /// Exactly this text or boolean.
    Exact(Value),
    /// Any text no condition mentions.
    Other,
}

/// One field whose pieces the grid distinguishes.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Index of the field in the context.
    pub field: usize,
    /// Field name.
    pub name: String,
    /// The pieces: numbers in ascending order, then `Absent` when the field is optional.
    pub pieces: Vec<Piece>,
    /// One value per piece; the piece holding the field's default is represented by the
    /// default itself.
    pub reps: Vec<Value>,
    /// The piece of the default (or of absence); examples leave fields there out.
    pub default_piece: usize,
    /// More values tried by the budget analysis (large trainsets, large budgets, the ends of
    /// integer intervals).
    pub extra: Vec<Value>,
}

impl Axis {
    /// Whether piece `i` is a number piece (not absent).
    pub fn is_numeric(&self, i: usize) -> bool {
        matches!(self.pieces[i], Piece::Point(_) | Piece::Between(..))
    }
}

/// The grid: the axes, and one fixed value for every other field.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Varied fields.
    pub axes: Vec<Axis>,
    /// One value per context field; axes override theirs.
    pub base: Vec<Value>,
}

impl Grid {
    /// Number of cells (saturating).
    pub fn cells(&self) -> usize {
        self.axes
            .iter()
            .fold(1usize, |n, a| n.saturating_mul(a.reps.len().max(1)))
    }

    /// The context values of a cell given by one piece index per axis.
    pub fn values(&self, cell: &[usize]) -> Vec<Value> {
        let mut v = self.base.clone();
        for (a, &i) in self.axes.iter().zip(cell) {
            v[a.field] = a.reps[i].clone();
        }
        v
    }

    /// The axis of a field.
    pub fn axis_of(&self, field: usize) -> Option<usize> {
        self.axes.iter().position(|a| a.field == field)
    }

    /// Every cell, as piece indices, in odometer order (last axis fastest), which is the
    /// order of [`Grid::linear`].
    pub fn all_cells(&self) -> Odometer {
        Odometer::new(self.axes.iter().map(|a| a.reps.len()).collect())
    }

    /// Linear number of a cell (mixed radix, last axis fastest).
    pub fn linear(&self, cell: &[usize]) -> usize {
        self.axes
            .iter()
            .zip(cell)
            .fold(0, |n, (a, &i)| n * a.reps.len() + i)
    }
}

/// Every combination of `0..radix[k]`, last position fastest.
#[derive(Debug, Clone)]
pub struct Odometer {
    radix: Vec<usize>,
    cur: Option<Vec<usize>>,
}

impl Odometer {
    /// Counts through `radix`.
    pub fn new(radix: Vec<usize>) -> Self {
        let cur = (!radix.contains(&0)).then(|| vec![0; radix.len()]);
        Self { radix, cur }
    }
}

impl Iterator for Odometer {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let out = self.cur.clone()?;
        let cur = self.cur.as_mut()?;
        let mut k = cur.len();
        loop {
            if k == 0 {
                self.cur = None;
                break;
            }
            k -= 1;
            cur[k] += 1;
            if cur[k] < self.radix[k] {
                break;
            }
            cur[k] = 0;
        }
        Some(out)
    }
}

/// Builds the grid of a rule set: an axis for every field a structured condition compares,
/// for the `monotone_in` fields, and for `trainset_size`, `budget_usd` and `model` (which
/// drive the cost).
pub fn build(rs: &RuleSet) -> Grid {
    let fields = rs.context.fields();
    let mut consts: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    let mut mentioned: BTreeSet<usize> = BTreeSet::new();
    for rule in &rs.rules {
        if let Some(p) = &rule.pred {
            p.fields(&mut |i| {
                mentioned.insert(i);
            });
            p.constants(&mut |i, v| consts.entry(i).or_default().push(v.clone()));
        }
    }
    let known = rs.context.known;
    mentioned.extend(rs.monotone_in.iter().copied());
    mentioned.extend([known.trainset_size, known.budget_usd, known.model]);
    let mut models: Vec<String> = rs.cost.models.keys().cloned().collect();
    models.sort();
    let axes = mentioned
        .into_iter()
        .filter_map(|i| {
            let c = consts.remove(&i).unwrap_or_default();
            let model = (i == known.model).then_some(models.as_slice());
            let mut axis = axis(i, &fields[i], &c, model)?;
            if i == known.trainset_size {
                axis.extra = trainset_extra(&axis, &fields[i]);
            } else if i == known.budget_usd {
                axis.extra = budget_extra(&axis);
            }
            Some(axis)
        })
        .collect();
    Grid {
        axes,
        base: fields.iter().map(fixed_value).collect(),
    }
}

/// The value of a field the grid does not vary: its default, absence, or any valid value.
fn fixed_value(f: &Field) -> Value {
    if f.default != Value::Null || !f.spec.required {
        return f.default.clone();
    }
    match f.spec.kind {
        FieldType::Integer => Value::Int(f.spec.min.map_or(0, |m| m.ceil() as i64)),
        FieldType::Number => Value::Num(f.spec.min.unwrap_or(0.0)),
        FieldType::Boolean => Value::Bool(false),
        FieldType::String => Value::Str(
            f.spec
                .one_of
                .as_ref()
                .and_then(|e| e.first())
                .map_or("other", String::as_str)
                .into(),
        ),
    }
}

fn optional(f: &Field) -> bool {
    !f.spec.required && f.default == Value::Null
}

fn axis(index: usize, f: &Field, consts: &[Value], models: Option<&[String]>) -> Option<Axis> {
    let (mut pieces, mut reps) = match f.spec.kind {
        FieldType::Integer | FieldType::Number => numeric_pieces(f, consts),
        FieldType::Boolean => {
            let v = [Value::Bool(false), Value::Bool(true)];
            (v.iter().cloned().map(Piece::Exact).collect(), v.to_vec())
        }
        FieldType::String => string_pieces(f, consts, models),
    };
    if optional(f) {
        pieces.push(Piece::Absent);
        reps.push(Value::Null);
    }
    if pieces.is_empty() {
        return None;
    }
    let default_piece = pieces
        .iter()
        .position(|p| contains(p, &f.default))
        .unwrap_or(0);
    if f.default != Value::Null {
        reps[default_piece] = f.default.clone();
    }
    Some(Axis {
        field: index,
        name: f.name.to_string(),
        pieces,
        reps,
        default_piece,
        extra: Vec::new(),
    })
}

/// Whether a piece holds a value.
pub fn contains(p: &Piece, v: &Value) -> bool {
    match (p, v) {
        (Piece::Absent, Value::Null) => true,
        (Piece::Point(c), v) => v.as_f64() == Some(*c),
        (Piece::Between(a, b), v) => v
            .as_f64()
            .is_some_and(|x| a.is_none_or(|a| x > a) && b.is_none_or(|b| x < b)),
        (Piece::Exact(e), v) => e == v,
        (Piece::Other, Value::Str(_)) => true,
        _ => false,
    }
}

fn numeric_pieces(f: &Field, consts: &[Value]) -> (Vec<Piece>, Vec<Value>) {
    let (lo, hi) = (f.spec.min, f.spec.max);
    let integer = f.spec.kind == FieldType::Integer;
    let mut cuts: Vec<f64> = consts
        .iter()
        .filter_map(Value::as_f64)
        .chain(lo)
        .chain(hi)
        .filter(|c| c.is_finite() && lo.is_none_or(|l| *c >= l) && hi.is_none_or(|h| *c <= h))
        .collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut raw = Vec::new();
    if lo.is_none() {
        raw.push(Piece::Between(None, cuts.first().copied()));
    }
    for (k, c) in cuts.iter().enumerate() {
        if k > 0 {
            raw.push(Piece::Between(Some(cuts[k - 1]), Some(*c)));
        }
        raw.push(Piece::Point(*c));
    }
    if hi.is_none() && !cuts.is_empty() {
        raw.push(Piece::Between(cuts.last().copied(), None));
    }
    let mut pieces = Vec::new();
    let mut reps = Vec::new();
    for p in raw {
        let rep = if integer {
            int_rep(&p).map(Value::Int)
        } else {
            num_rep(&p).map(Value::Num)
        };
        if let Some(r) = rep {
            pieces.push(p);
            reps.push(r);
        }
    }
    (pieces, reps)
}

/// A number inside the piece (`None` never happens for numbers: pieces are non-empty).
fn num_rep(p: &Piece) -> Option<f64> {
    Some(match *p {
        Piece::Point(c) => c,
        Piece::Between(Some(a), Some(b)) => a + (b - a) / 2.0,
        Piece::Between(Some(a), None) => {
            if a > 0.0 {
                2.0 * a
            } else {
                a + 1.0
            }
        }
        Piece::Between(None, Some(b)) => {
            if b > 0.0 {
                b / 2.0
            } else {
                b - 1.0
            }
        }
        Piece::Between(None, None) => 0.0,
        _ => return None,
    })
}

/// The smallest and largest whole numbers strictly inside an interval piece.
fn int_range(a: Option<f64>, b: Option<f64>) -> (Option<f64>, Option<f64>) {
    (a.map(|a| a.floor() + 1.0), b.map(|b| b.ceil() - 1.0))
}

/// A whole number inside the piece, `None` when it holds none.
fn int_rep(p: &Piece) -> Option<i64> {
    let r = match *p {
        Piece::Point(c) => (c.fract() == 0.0).then_some(c)?,
        Piece::Between(a, b) => match int_range(a, b) {
            (Some(l), Some(h)) if l > h => return None,
            (Some(l), Some(h)) => l + ((h - l) / 2.0).floor(),
            (Some(l), None) => l.max((2.0 * a.unwrap_or(0.0)).ceil()),
            (None, Some(h)) => h,
            (None, None) => 0.0,
        },
        _ => return None,
    };
    Some(r as i64)
}

fn string_pieces(
    f: &Field,
    consts: &[Value],
    models: Option<&[String]>,
) -> (Vec<Piece>, Vec<Value>) {
    // Only the values a request may hold: the price table for `model`, the `enum` when there
    // is one; otherwise the values mentioned plus one more.
    let closed: Option<Vec<String>> = models
        .map(<[String]>::to_vec)
        .or_else(|| f.spec.one_of.clone());
    let values: Vec<String> = match &closed {
        Some(all) => all.clone(),
        None => {
            let set: BTreeSet<String> = consts
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            set.into_iter().collect()
        }
    };
    let mut pieces: Vec<Piece> = values
        .iter()
        .map(|s| Piece::Exact(Value::Str(s.as_str().into())))
        .collect();
    let mut reps: Vec<Value> = values
        .iter()
        .map(|s| Value::Str(s.as_str().into()))
        .collect();
    if closed.is_none() {
        let mut other = "other".to_string();
        while values.contains(&other) {
            other.push('_');
        }
        pieces.push(Piece::Other);
        reps.push(Value::Str(other.as_str().into()));
    }
    (pieces, reps)
}

/// Trainset sizes tried by the budget analysis beside the representatives: the ends of every
/// interval and powers of ten up to 100 000 (the trainset size has no upper bound).
fn trainset_extra(a: &Axis, f: &Field) -> Vec<Value> {
    let mut out: Vec<i64> = Vec::new();
    for p in &a.pieces {
        if let Piece::Between(x, y) = p {
            let (l, h) = int_range(*x, *y);
            out.extend(l.into_iter().chain(h).map(|v| v as i64));
        }
    }
    out.extend([10, 100, 1_000, 10_000, 100_000]);
    let ok = |v: &i64| {
        let x = *v as f64;
        f.spec.min.is_none_or(|m| x >= m) && f.spec.max.is_none_or(|m| x <= m)
    };
    let mut out: Vec<i64> = out.into_iter().filter(ok).collect();
    out.sort_unstable();
    out.dedup();
    out.into_iter().map(Value::Int).collect()
}

/// Budgets tried beside the representatives: five times the largest threshold.
fn budget_extra(a: &Axis) -> Vec<Value> {
    a.pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Between(Some(x), None) if *x > 0.0 => Some(Value::Num(5.0 * x)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::spec::FieldSpec;

    fn field(kind: FieldType, min: Option<f64>, default: Value) -> Field {
        Field {
            name: "x".into(),
            spec: FieldSpec {
                kind,
                required: false,
                default: None,
                min,
                max: None,
                aliases: Vec::new(),
                labels: Default::default(),
                one_of: None,
                description: None,
            },
            default,
        }
    }

    #[test]
    fn integer_pieces_skip_empty_intervals_and_fractional_points() {
        let f = field(FieldType::Integer, Some(1.0), Value::Int(1));
        let consts = [Value::Num(100.0), Value::Num(100.5), Value::Num(500.0)];
        let (pieces, reps) = numeric_pieces(&f, &consts);
        assert_eq!(
            pieces,
            [
                Piece::Point(1.0),
                Piece::Between(Some(1.0), Some(100.0)),
                Piece::Point(100.0),
                // (100, 100.5) holds no whole number and 100.5 is not one
                Piece::Between(Some(100.5), Some(500.0)),
                Piece::Point(500.0),
                Piece::Between(Some(500.0), None),
            ]
        );
        assert_eq!(
            reps,
            [
                Value::Int(1),
                Value::Int(50),
                Value::Int(100),
                Value::Int(300),
                Value::Int(500),
                Value::Int(1000)
            ]
        );
    }

    #[test]
    fn number_pieces_are_cut_at_every_constant() {
        let f = field(FieldType::Number, None, Value::Null);
        let (pieces, reps) = numeric_pieces(&f, &[Value::Num(2.0), Value::Num(0.0)]);
        assert_eq!(pieces.len(), 5);
        assert_eq!(
            reps,
            [
                Value::Num(-1.0),
                Value::Num(0.0),
                Value::Num(1.0),
                Value::Num(2.0),
                Value::Num(4.0)
            ]
        );
        for (p, r) in pieces.iter().zip(&reps) {
            assert!(contains(p, r), "{p:?} {r:?}");
        }
    }

    #[test]
    fn odometer_counts_in_mixed_radix() {
        assert_eq!(
            Odometer::new(vec![2, 3]).collect::<Vec<_>>(),
            [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
        );
        assert_eq!(Odometer::new(vec![2, 0]).count(), 0);
        assert_eq!(Odometer::new(Vec::new()).count(), 1);
    }
}
