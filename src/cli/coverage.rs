//! `rules test --coverage`: the coverage report for a terminal and as JSON.

use crate::check::coverage::{Item, Kind, Report, GROUPS};
use std::fmt::Write as _;

/// Parses `--threshold`: a percentage from 0 to 100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a percentage from 0 to 100, found `{s}`")),
    }
}

/// A number in its shortest form (`90`, `92.5`).
pub fn num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Whether the coverage reaches the threshold.
pub fn meets(report: &Report, threshold: f64) -> bool {
    // Compare in exact counts where we can: 100 × covered ≥ threshold × total.
    100.0 * report.covered() as f64 >= threshold * report.total() as f64
}

/// A percentage with one decimal, without rounding up to a threshold it does not reach.
pub fn percent(report: &Report) -> String {
    let p = (report.percent() * 10.0).floor() / 10.0;
    format!("{p:.1}%")
}

fn describe(i: &Item) -> String {
    match i.kind {
        Kind::Rule | Kind::Fallback | Kind::RhaiFunction => {
            format!("{} `{}` ({})", i.kind.label(), i.name, i.at)
        }
        Kind::GuardStep => format!("guard step to {} ({})", i.name, i.at),
        Kind::GuardNoFit => format!("guard: {} ({})", i.name, i.at),
        Kind::Alternative => format!("alternative {} ({})", i.name, i.at),
        Kind::RhaiExpr => {
            let code: String = i.name.chars().take(60).collect();
            let more = if i.name.chars().count() > 60 {
                "…"
            } else {
                ""
            };
            format!("rhai expr `{code}{more}` ({})", i.at)
        }
    }
}

/// The report for a terminal: the total, one line per group, and what was never reached.
pub fn human(report: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "coverage: {} of {} reached ({}) by {} {}",
        report.covered(),
        report.total(),
        percent(report),
        report.fixtures,
        if report.fixtures == 1 {
            "fixture"
        } else {
            "fixtures"
        }
    );
    for g in GROUPS {
        let (c, t) = report.group(g);
        let _ = writeln!(o, "  {g:<13}{c} of {t}");
    }
    let missed: Vec<&Item> = report
        .items
        .iter()
        .filter(|i| i.measured && !i.hit)
        .collect();
    if !missed.is_empty() {
        let _ = writeln!(o, "never reached:");
        for i in missed {
            let _ = writeln!(o, "  {}", describe(i));
        }
    }
    let unmeasured: Vec<&Item> = report.items.iter().filter(|i| !i.measured).collect();
    if !unmeasured.is_empty() {
        let _ = writeln!(o, "not measured (the file could not be instrumented):");
        for i in unmeasured {
            let _ = writeln!(o, "  {}", describe(i));
        }
    }
    o
}

/// The report as JSON.
pub fn json(report: &Report, threshold: f64) -> serde_json::Value {
    let groups: serde_json::Map<String, serde_json::Value> = GROUPS
        .iter()
        .map(|g| {
            let (c, t) = report.group(g);
            (g.to_string(), serde_json::json!({"covered": c, "total": t}))
        })
        .collect();
    serde_json::json!({
        "percent": report.percent(),
        "covered": report.covered(),
        "total": report.total(),
        "threshold": threshold,
        "meets_threshold": meets(report, threshold),
        "fixtures": report.fixtures,
        "groups": groups,
        "items": report.items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(hits: &[bool]) -> Report {
        Report {
            fixtures: 2,
            items: hits
                .iter()
                .enumerate()
                .map(|(k, &hit)| Item {
                    kind: Kind::Rule,
                    name: format!("r{k}"),
                    at: format!("rules/selection.yaml:{k}"),
                    hit,
                    measured: true,
                })
                .collect(),
        }
    }

    #[test]
    fn threshold_compares_exact_counts() {
        let r = report(&[true, true, false]);
        assert!(meets(&r, 66.0));
        assert!(!meets(&r, 66.7));
        assert_eq!(percent(&r), "66.6%");
        assert!(meets(&report(&[]), 100.0));
    }

    #[test]
    fn percentages_are_parsed_in_range() {
        assert_eq!(parse_percent("80"), Ok(80.0));
        assert_eq!(parse_percent("92.5%"), Ok(92.5));
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("lots").is_err());
    }

    #[test]
    fn human_lists_what_was_never_reached() {
        let text = human(&report(&[true, false]));
        assert!(text.starts_with("coverage: 1 of 2 reached (50.0%) by 2 fixtures\n"));
        assert!(text.contains("  rules        1 of 2\n"));
        assert!(text.ends_with("never reached:\n  rule `r1` (rules/selection.yaml:1)\n"));
    }
}
