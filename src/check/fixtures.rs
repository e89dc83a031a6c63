//! Runs the fixtures that live with the rules (input → expected decision).

use crate::decision::Decision;
use crate::diagnostic::Diagnostic;
use crate::engine::{recommend, Options};
use crate::rules::spec::{Expect, Scalar};
use crate::rules::{FixtureDef, RuleSet};

/// The result of one fixture.
#[derive(Debug, Clone)]
pub struct FixtureResult {
    /// Fixture name.
    pub name: String,
    /// `file:line:col` of the fixture.
    pub at: String,
    /// Mismatches as `key: expected X, got Y` lines; empty when it passed.
    pub failures: Vec<String>,
    /// The rule that fired, when evaluation got that far.
    pub rule: Option<String>,
    /// A script error raised while evaluating, with its position.
    pub error: Option<Diagnostic>,
}

impl FixtureResult {
    /// True when every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.error.is_none()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn show(s: &Scalar) -> String {
    match s {
        Scalar::Str(s) => s.clone(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Num(n) => n.to_string(),
    }
}

fn same(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::Int(x), Scalar::Num(y)) | (Scalar::Num(y), Scalar::Int(x)) => close(*x as f64, *y),
        (Scalar::Num(x), Scalar::Num(y)) => close(*x, *y),
        _ => a == b,
    }
}

/// Compares a decision with what a fixture expects; one line per mismatch.
pub fn compare(e: &Expect, d: &Decision) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = &e.recommended {
        if r.as_str() != &*d.recommended {
            out.push(format!(
                "recommended: expected `{r}`, got `{}`",
                d.recommended
            ));
        }
    }
    if let Some(r) = &e.rule {
        if r.as_str() != &*d.rule {
            out.push(format!("rule: expected `{r}`, got `{}`", d.rule));
        }
    }
    for (k, want) in e.config.iter().flatten() {
        match d.config.get(k) {
            Some(got) if same(want, got) => {}
            Some(got) => out.push(format!(
                "config.{k}: expected `{}`, got `{}`",
                show(want),
                show(got)
            )),
            None => out.push(format!(
                "config.{k}: expected `{}`, got nothing",
                show(want)
            )),
        }
    }
    if let Some(c) = e.estimated_cost {
        if !close(c, d.estimated_cost) {
            out.push(format!(
                "estimated_cost: expected {c}, got {}",
                d.estimated_cost
            ));
        }
    }
    if let Some(m) = e.estimated_time_minutes {
        if m != d.estimated_time_minutes {
            out.push(format!(
                "estimated_time_minutes: expected {m}, got {}",
                d.estimated_time_minutes
            ));
        }
    }
    if let Some(c) = e.confidence {
        if !close(c, d.confidence) {
            out.push(format!("confidence: expected {c}, got {}", d.confidence));
        }
    }
    if let Some(alts) = &e.alternatives {
        let got: Vec<&str> = d.alternatives.iter().map(|a| &*a.optimizer).collect();
        if alts.iter().map(String::as_str).ne(got.iter().copied()) {
            out.push(format!(
                "alternatives: expected [{}], got [{}]",
                alts.join(", "),
                got.join(", ")
            ));
        }
    }
    if let Some(text) = &e.reasoning_contains {
        if !d.reasoning.contains(text.as_str()) {
            out.push(format!(
                "reasoning: expected to contain `{text}`, got `{}`",
                d.reasoning
            ));
        }
    }
    out
}

/// Runs one fixture.
pub fn run_one(rs: &RuleSet, f: &FixtureDef) -> FixtureResult {
    let spec = &f.spec;
    let mut out = FixtureResult {
        name: spec.name.clone(),
        at: f.at.clone(),
        failures: Vec::new(),
        rule: None,
        error: None,
    };
    let ctx = match rs.check_input(&spec.input) {
        Ok(ctx) => ctx,
        Err(errs) => {
            let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
            match &spec.expect.error {
                Some(want) if text.iter().any(|t| t.contains(want.as_str())) => {}
                Some(want) => out.failures.push(format!(
                    "error: expected a rejection containing `{want}`, got `{}`",
                    text.join("; ")
                )),
                None => out
                    .failures
                    .push(format!("input rejected: {}", text.join("; "))),
            }
            return out;
        }
    };
    if let Some(want) = &spec.expect.error {
        out.failures.push(format!(
            "error: expected a rejection containing `{want}`, but the input was accepted"
        ));
        return out;
    }
    let opts = Options {
        explain: false,
        guard: spec.guard,
    };
    match recommend(rs, &ctx, &spec.history, opts) {
        Ok(d) => {
            out.rule = Some(d.rule.to_string());
            out.failures = compare(&spec.expect, &d);
        }
        Err(e) => out.error = Some(e.to_diagnostic()),
    }
    out
}

/// Runs the fixtures whose name contains `filter` (all when `None`), in file order.
pub fn run(rs: &RuleSet, filter: Option<&str>) -> Vec<FixtureResult> {
    rs.fixtures
        .iter()
        .filter(|f| filter.is_none_or(|s| f.spec.name.contains(s)))
        .map(|f| run_one(rs, f))
        .collect()
}
