//! Regions where more resources get a weaker optimizer.
//!
//! For each `monotone_in` field, every line of cells that differ only in that field is walked
//! upwards with the guard off: a cell whose optimizer is weaker than one a smaller value of
//! the field gets is an offence, compared with the nearest such smaller value. Strength is the
//! order of `guard.downgrade` (strongest first); a choice the list does not name is compared
//! by its estimated cost on the larger input. The offences are grouped by the two rules
//! involved, projected onto the `monotone_in` fields (other fields do not cut the regions),
//! merged into boxes, and each box is reported once with one example input.

use super::boxes::{self, Bounds};
use super::grid::{Grid, Piece};
use super::{at_rule, rule, select, show, who, Failures};
use crate::diagnostic::Diagnostic;
use crate::engine::estimate::estimate;
use crate::rules::context::{Context, Value};
use crate::rules::{Resolved, Rule, RuleSet};
use std::collections::{BTreeMap, BTreeSet};

/// A cell that gets a weaker optimizer than `witness`, a cell with a smaller value.
struct Offence {
    cell: Vec<usize>,
    witness: Vec<usize>,
}

/// One warning per region (box) where a larger value gets a weaker optimizer.
pub fn check(rs: &RuleSet, grid: &Grid, failures: &mut Failures) -> Vec<Diagnostic> {
    let dims: Vec<usize> = rs
        .monotone_in
        .iter()
        .filter_map(|&f| grid.axis_of(f))
        .collect();
    if dims.is_empty() {
        return Vec::new();
    }
    let winners: Vec<Option<usize>> = grid
        .all_cells()
        .map(|cell| select(rs, &grid.values(&cell), failures))
        .collect();
    let ranks: Vec<Option<usize>> = (0..=rs.rules.len())
        .map(|i| {
            let c = &rule(rs, i).choice;
            rs.guard
                .steps
                .iter()
                .position(|s| s.optimizer == c.optimizer && s.variant == c.variant)
        })
        .collect();
    let mut out = Vec::new();
    for (dpos, &ad) in dims.iter().enumerate() {
        let axis = &grid.axes[ad];
        let order: Vec<usize> = (0..axis.pieces.len())
            .filter(|&i| axis.is_numeric(i))
            .collect();
        let Some(&start) = order.first() else {
            continue;
        };
        // (weak rule, strong rule) → offences
        let mut groups: BTreeMap<(usize, usize), Vec<Offence>> = BTreeMap::new();
        for line in grid.all_cells().filter(|c| c[ad] == start) {
            let at = |k: usize| {
                let mut c = line.clone();
                c[ad] = k;
                c
            };
            for (n, &hi) in order.iter().enumerate() {
                let cell = at(hi);
                let Some(weak) = winners[grid.linear(&cell)] else {
                    continue;
                };
                let found = order[..n].iter().rev().find_map(|&lo| {
                    let strong = winners[grid.linear(&at(lo))]?;
                    stronger(rs, &ranks, strong, weak, grid, &cell).then_some((lo, strong))
                });
                if let Some((lo, strong)) = found {
                    groups.entry((weak, strong)).or_default().push(Offence {
                        witness: at(lo),
                        cell,
                    });
                }
            }
        }
        for ((weak, strong), offences) in groups {
            let projected: BTreeSet<Vec<usize>> = offences
                .iter()
                .map(|o| dims.iter().map(|&a| o.cell[a]).collect())
                .collect();
            for b in boxes::merge(&projected) {
                out.push(region(rs, grid, &dims, dpos, (weak, strong), &offences, &b));
            }
        }
    }
    out
}

/// Whether rule `a`'s result is stronger than rule `b`'s, on the input of `cell`.
fn stronger(
    rs: &RuleSet,
    ranks: &[Option<usize>],
    a: usize,
    b: usize,
    grid: &Grid,
    cell: &[usize],
) -> bool {
    let (ca, cb) = (&rule(rs, a).choice, &rule(rs, b).choice);
    if ca.optimizer == cb.optimizer && ca.variant == cb.variant {
        return false;
    }
    if let (Some(ra), Some(rb)) = (ranks[a], ranks[b]) {
        return ra < rb;
    }
    let ctx = Context::from_values(grid.values(cell));
    let cost = |c: &Resolved| {
        estimate(rs, c, &ctx, rs.model_for(&ctx))
            .ok()
            .map(|e| e.raw_cost)
    };
    matches!((cost(ca), cost(cb)), (Some(x), Some(y)) if x > y)
}

/// The warning for one box of offences.
fn region(
    rs: &RuleSet,
    grid: &Grid,
    dims: &[usize],
    dpos: usize,
    (weak, strong): (usize, usize),
    offences: &[Offence],
    b: &Bounds,
) -> Diagnostic {
    let ad = dims[dpos];
    let name = &grid.axes[ad].name;
    // The checked field last: "trainset_size < 500 and 20 ≤ budget_usd < 100".
    let shown: Vec<usize> = (0..dims.len())
        .filter(|&k| k != dpos)
        .chain([dpos])
        .collect();
    let parts: Vec<String> = shown
        .iter()
        .filter_map(|&k| boxes::describe(&grid.axes[dims[k]], b[k].0, b[k].1))
        .collect();
    let place = if parts.is_empty() {
        "everywhere".to_string()
    } else {
        format!("where {}", parts.join(" and "))
    };
    let (w, s) = (rule(rs, weak), rule(rs, strong));
    let mut d = at_rule(
        w,
        format!(
            "a larger `{name}` gets a weaker optimizer {place}: {} from {}, while a smaller `{name}` gets {} from {}",
            w.choice.label,
            who(w),
            s.choice.label,
            who(s)
        ),
    );
    let inside = |o: &&Offence| {
        dims.iter()
            .enumerate()
            .all(|(k, &a)| (b[k].0..=b[k].1).contains(&o.cell[a]))
    };
    if let Some(o) = offences
        .iter()
        .filter(inside)
        .min_by_key(|o| preference(grid, dims, dpos, o))
    {
        let values = grid.values(&o.cell);
        let mut fields: Vec<String> = Vec::new();
        for &k in &shown {
            if k != dpos {
                fields.push(assign(grid, dims[k], &values));
            }
        }
        for (a, axis) in grid.axes.iter().enumerate() {
            if !dims.contains(&a) && o.cell[a] != axis.default_piece {
                fields.push(assign(grid, a, &values));
            }
        }
        let smaller = grid.values(&o.witness);
        let by = if ranks_known(rs, w, s) {
            "the order of `guard.downgrade`"
        } else {
            "the estimated cost"
        };
        let mut help = format!(
            "e.g. {}{} gets {}, {} gets {}; strength is {by}",
            fields.iter().map(|f| format!("{f} ")).collect::<String>(),
            assign(grid, ad, &values),
            w.choice.label,
            assign(grid, ad, &smaller),
            s.choice.label
        );
        if rs
            .rules
            .iter()
            .any(|r| r.pred.as_ref().is_some_and(|p| p.has_expr()))
        {
            help.push_str("; `expr:` conditions are only sampled, so the bounds may be rough");
        }
        d = d.with_help(help);
    }
    d
}

/// Whether both results are steps of the guard (strength by their order).
fn ranks_known(rs: &RuleSet, a: &Rule, b: &Rule) -> bool {
    let listed = |c: &Resolved| {
        rs.guard
            .steps
            .iter()
            .any(|s| s.optimizer == c.optimizer && s.variant == c.variant)
    };
    listed(&a.choice) && listed(&b.choice)
}

/// Which offence makes the best example: fields other than the `monotone_in` ones at their
/// defaults, the first offending value along the checked field, and inside intervals rather
/// than on thresholds along the others.
fn preference(
    grid: &Grid,
    dims: &[usize],
    dpos: usize,
    o: &Offence,
) -> (usize, usize, Vec<(bool, usize)>) {
    let off_default = grid
        .axes
        .iter()
        .enumerate()
        .filter(|(a, axis)| !dims.contains(a) && o.cell[*a] != axis.default_piece)
        .count();
    let others = dims
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != dpos)
        .map(|(_, &a)| {
            (
                matches!(grid.axes[a].pieces[o.cell[a]], Piece::Point(_)),
                o.cell[a],
            )
        })
        .collect();
    (off_default, o.cell[dims[dpos]], others)
}

fn assign(grid: &Grid, axis: usize, values: &[Value]) -> String {
    let a = &grid.axes[axis];
    format!("{}={}", a.name, show(&values[a.field]))
}
