//! Selection rules that can never fire.
//!
//! On every cell of the grid each structured condition is true or false throughout, so a rule
//! whose condition holds on no cell holds for no input, and a rule whose cells are all taken
//! by earlier rules never decides. A Rhai expression may be true or false anywhere in a cell:
//! a rule containing one is never reported, and an earlier rule takes a cell only when its
//! condition holds there whatever its expressions return.

use super::grid::Grid;
use super::{at_rule, who};
use crate::diagnostic::Diagnostic;
use crate::rules::RuleSet;
use std::collections::BTreeSet;

/// One warning per rule that can never fire.
pub fn check(rs: &RuleSet, grid: &Grid) -> Vec<Diagnostic> {
    // truth[cell][rule]: Some(b) when structured parts decide, None when an expression does.
    let truth: Vec<Vec<Option<bool>>> = grid
        .all_cells()
        .map(|cell| {
            let values = grid.values(&cell);
            rs.rules
                .iter()
                .map(|r| r.pred.as_ref().and_then(|p| p.eval3(&values)))
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for (i, rule) in rs.rules.iter().enumerate() {
        let Some(pred) = &rule.pred else { continue };
        if pred.has_expr() {
            continue;
        }
        let mut matched = false;
        let mut reachable = false;
        let mut takers = BTreeSet::new();
        for t in truth.iter().filter(|t| t[i] == Some(true)) {
            matched = true;
            match (0..i).find(|&j| t[j] == Some(true)) {
                Some(j) => {
                    takers.insert(j);
                }
                None => {
                    reachable = true;
                    break;
                }
            }
        }
        if !matched {
            out.push(
                at_rule(
                    rule,
                    format!(
                        "rule `{}` can never fire: its condition holds for no input",
                        rule.id
                    ),
                )
                .with_help("its comparisons contradict each other or the fields' bounds"),
            );
        } else if !reachable {
            let names: Vec<String> = takers.iter().map(|&j| who(&rs.rules[j])).collect();
            out.push(
                at_rule(
                    rule,
                    format!(
                        "rule `{}` can never fire: every input it matches is taken first by {}",
                        rule.id,
                        names.join(", ")
                    ),
                )
                .with_help("move it above them, narrow them, or delete it"),
            );
        }
    }
    out
}
