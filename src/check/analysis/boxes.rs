//! Sets of grid cells merged into boxes, and boxes described in terms of the fields.

use super::grid::{Axis, Piece};
use std::collections::{BTreeMap, BTreeSet};

/// A box: an inclusive range of piece indices per dimension.
pub type Bounds = Vec<(usize, usize)>;

/// Merges cells (one piece index per dimension) into boxes: neighbours along one dimension
/// with the same ranges in every other dimension are joined, until nothing changes.
pub fn merge(cells: &BTreeSet<Vec<usize>>) -> Vec<Bounds> {
    let mut boxes: Vec<Bounds> = cells
        .iter()
        .map(|c| c.iter().map(|&i| (i, i)).collect())
        .collect();
    let dims = boxes.first().map_or(0, Vec::len);
    loop {
        let before = boxes.len();
        for d in (0..dims).rev() {
            boxes = merge_along(boxes, d);
        }
        if boxes.len() == before {
            break;
        }
    }
    boxes.sort();
    boxes
}

fn merge_along(boxes: Vec<Bounds>, d: usize) -> Vec<Bounds> {
    let mut groups: BTreeMap<Bounds, Vec<(usize, usize)>> = BTreeMap::new();
    for b in boxes {
        let mut key = b.clone();
        key[d] = (0, 0);
        groups.entry(key).or_default().push(b[d]);
    }
    let mut out = Vec::new();
    for (key, mut ranges) in groups {
        ranges.sort_unstable();
        let mut cur: Option<(usize, usize)> = None;
        for r in ranges {
            cur = match cur {
                Some((lo, hi)) if r.0 == hi + 1 => Some((lo, r.1)),
                Some(c) => {
                    let mut b = key.clone();
                    b[d] = c;
                    out.push(b);
                    Some(r)
                }
                None => Some(r),
            };
        }
        if let Some(c) = cur {
            let mut b = key;
            b[d] = c;
            out.push(b);
        }
    }
    out
}

/// A number in its shortest form: `20` for 20.0, `12.5`.
pub fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The pieces `lo..=hi` of a number axis as a condition on the field, e.g.
/// `20 ≤ budget_usd < 100`; `None` when they cover every value.
pub fn describe(axis: &Axis, lo: usize, hi: usize) -> Option<String> {
    let name = &axis.name;
    let numeric: Vec<usize> = (0..axis.pieces.len())
        .filter(|&i| axis.is_numeric(i))
        .collect();
    let (first, last) = (numeric.first().copied()?, numeric.last().copied()?);
    if !axis.is_numeric(lo) || !axis.is_numeric(hi) {
        return Some(format!("`{name}` absent"));
    }
    if let (Piece::Point(c), true) = (&axis.pieces[lo], lo == hi) {
        return Some(format!("{name} = {}", num(*c)));
    }
    let lower = (lo != first)
        .then(|| match axis.pieces[lo] {
            Piece::Point(c) => Some(format!("{} ≤ ", num(c))),
            Piece::Between(Some(a), _) => Some(format!("{} < ", num(a))),
            _ => None,
        })
        .flatten();
    let upper = (hi != last)
        .then(|| match axis.pieces[hi] {
            Piece::Point(c) => Some(format!(" ≤ {}", num(c))),
            Piece::Between(_, Some(b)) => Some(format!(" < {}", num(b))),
            _ => None,
        })
        .flatten();
    match (lower, upper) {
        (None, None) => None,
        (None, Some(u)) => Some(format!("{name}{u}")),
        (Some(l), None) => Some(format!(
            "{name} {}",
            match axis.pieces[lo] {
                Piece::Point(c) => format!("≥ {}", num(c)),
                Piece::Between(Some(a), _) => format!("> {}", num(a)),
                _ => l,
            }
        )),
        (Some(l), Some(u)) => Some(format!("{l}{name}{u}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::context::Value;

    fn cells(list: &[[usize; 2]]) -> BTreeSet<Vec<usize>> {
        list.iter().map(|c| c.to_vec()).collect()
    }

    #[test]
    fn a_rectangle_becomes_one_box() {
        let mut all = Vec::new();
        for t in 0..4 {
            for b in 6..8 {
                all.push([t, b]);
            }
        }
        assert_eq!(merge(&cells(&all)), [vec![(0, 3), (6, 7)]]);
    }

    #[test]
    fn separate_regions_stay_apart() {
        let got = merge(&cells(&[[0, 0], [0, 1], [3, 0], [4, 0]]));
        assert_eq!(got, [vec![(0, 0), (0, 1)], vec![(3, 4), (0, 0)]]);
    }

    fn budget() -> Axis {
        let pieces = vec![
            Piece::Point(0.0),
            Piece::Between(Some(0.0), Some(20.0)),
            Piece::Point(20.0),
            Piece::Between(Some(20.0), Some(100.0)),
            Piece::Point(100.0),
            Piece::Between(Some(100.0), None),
        ];
        let reps = vec![Value::Null; pieces.len()];
        Axis {
            field: 0,
            name: "budget_usd".into(),
            pieces,
            reps,
            default_piece: 1,
            extra: Vec::new(),
        }
    }

    #[test]
    fn describes_ranges_with_their_bounds() {
        let a = budget();
        assert_eq!(describe(&a, 2, 3).as_deref(), Some("20 ≤ budget_usd < 100"));
        assert_eq!(describe(&a, 0, 1).as_deref(), Some("budget_usd < 20"));
        assert_eq!(describe(&a, 3, 5).as_deref(), Some("budget_usd > 20"));
        assert_eq!(describe(&a, 4, 5).as_deref(), Some("budget_usd ≥ 100"));
        assert_eq!(describe(&a, 4, 4).as_deref(), Some("budget_usd = 100"));
        assert_eq!(describe(&a, 1, 4).as_deref(), Some("0 < budget_usd ≤ 100"));
        assert_eq!(describe(&a, 0, 5), None);
    }
}
