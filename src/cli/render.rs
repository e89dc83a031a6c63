//! Human renderings: decisions, traces, fixture reports, input errors, JUnit XML.

use crate::check::fixtures::FixtureResult;
use crate::decision::{Decision, Trace};
use crate::diagnostic::SourceFile;
use crate::rules::context::InputError;
use crate::rules::spec::Scalar;
use std::fmt::Write as _;

fn scalar(s: &Scalar) -> String {
    match s {
        Scalar::Str(s) => s.clone(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Num(n) => n.to_string(),
    }
}

/// A decision for a terminal.
pub fn decision(d: &Decision) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "recommended   {}", d.recommended);
    let config: Vec<String> = d
        .config
        .iter()
        .map(|(k, v)| format!("{k}={}", scalar(v)))
        .collect();
    let _ = writeln!(o, "config        {}", config.join(" "));
    let _ = writeln!(o, "cost          ${} (estimated)", d.estimated_cost);
    let _ = writeln!(
        o,
        "time          {} min (estimated)",
        d.estimated_time_minutes
    );
    let _ = writeln!(o, "confidence    {}", d.confidence);
    let _ = writeln!(o, "rule          {}", d.rule);
    let _ = writeln!(o, "reasoning     {}", d.reasoning);
    if !d.alternatives.is_empty() {
        let _ = writeln!(o, "alternatives");
        for a in &d.alternatives {
            let _ = writeln!(
                o,
                "  {:<20} ${}  {} min  quality risk {}  {}",
                a.optimizer, a.estimated_cost, a.estimated_time_minutes, a.quality_risk, a.note
            );
        }
    }
    let _ = writeln!(o, "revision      {}", d.rules_revision);
    if let Some(t) = &d.trace {
        o.push_str(&trace(t));
    }
    o
}

fn json_short(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A trace for a terminal.
pub fn trace(t: &Trace) -> String {
    let mut o = String::from("trace\n  input");
    for (k, v) in &t.input {
        let _ = write!(o, " {k}={}", json_short(v));
    }
    o.push('\n');
    for r in &t.rules {
        let _ = writeln!(
            o,
            "  {} {} ({})",
            if r.matched { "matched" } else { "skipped" },
            r.id,
            r.at
        );
        for c in &r.conditions {
            let subject = c.field.clone().unwrap_or_else(|| "expr".into());
            if c.op == "expr" {
                let _ = writeln!(
                    o,
                    "      {} `{}` → {}",
                    subject,
                    json_short(&c.expected),
                    c.result
                );
            } else {
                let _ = writeln!(
                    o,
                    "      {} {} {}: actual {} → {}",
                    subject,
                    c.op,
                    json_short(&c.expected),
                    json_short(&c.actual),
                    c.result
                );
            }
        }
    }
    if let Some(g) = &t.guard {
        let _ = writeln!(
            o,
            "  guard: estimate ${} vs budget ${}: {}",
            g.original_cost, g.budget_usd, g.outcome
        );
        for s in &g.steps {
            let _ = writeln!(
                o,
                "      step {}{}: ${} {}",
                s.optimizer,
                s.variant
                    .as_ref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default(),
                s.estimated_cost,
                if s.fits { "fits" } else { "over budget" }
            );
        }
    }
    let e = &t.estimate;
    let _ = writeln!(o, "  cost: {} → ${}", e.cost_formula, e.cost);
    let _ = writeln!(o, "  time: {} = {} min", e.time_formula, e.minutes);
    let c = &t.confidence;
    let _ = writeln!(
        o,
        "  confidence: base {}, history {}/{} successes → {}, small-trainset factor {} → {}",
        c.base,
        c.history_successes,
        c.history_matches,
        c.after_history,
        c.small_trainset_factor,
        c.value
    );
    o
}

/// Fixture results for a terminal: one line each, failures with details.
pub fn fixture_report(results: &[FixtureResult], files: &[SourceFile]) -> String {
    let mut o = String::new();
    for r in results {
        if r.passed() {
            let _ = writeln!(o, "ok     {}", r.name);
            continue;
        }
        let _ = writeln!(o, "FAILED {} ({})", r.name, r.at);
        if let Some(rule) = &r.rule {
            let _ = writeln!(o, "  rule that fired: `{rule}`");
        }
        for f in &r.failures {
            let _ = writeln!(o, "  {f}");
        }
        if let Some(e) = &r.error {
            for line in e.render(files).lines() {
                let _ = writeln!(o, "  {line}");
            }
        }
    }
    o
}

/// Input errors for a terminal.
pub fn input_errors(errors: &[InputError], index: Option<usize>) -> String {
    let mut o = String::new();
    match index {
        Some(i) => {
            let _ = writeln!(o, "error: invalid input (item {i})");
        }
        None => {
            let _ = writeln!(o, "error: invalid input");
        }
    }
    for e in errors {
        let _ = writeln!(o, "  {}: {}", e.field, e.message);
        if let Some(h) = &e.help {
            let _ = writeln!(o, "    = help: {h}");
        }
    }
    o
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

/// Fixture results as JUnit XML.
pub fn junit(results: &[FixtureResult], revision: &str) -> String {
    let failed = results.iter().filter(|r| !r.passed()).count();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites name=\"skill-fleet rules\" tests=\"{}\" failures=\"{failed}\">",
        results.len()
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"rules@{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\">",
        xml_escape(revision),
        results.len()
    );
    for r in results {
        let file = r.at.split(':').next().unwrap_or("");
        let _ = write!(
            o,
            "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\"",
            xml_escape(&r.name),
            xml_escape(file),
            xml_escape(file)
        );
        if r.passed() {
            o.push_str("/>\n");
            continue;
        }
        o.push_str(">\n");
        let mut details: Vec<String> = r.failures.clone();
        if let Some(e) = &r.error {
            details.push(format!(
                "{} at {}",
                e.message,
                e.location().unwrap_or_default()
            ));
        }
        let first = details.first().cloned().unwrap_or_default();
        let _ = writeln!(
            o,
            "      <failure message=\"{}\">{} ({})\n{}</failure>",
            xml_escape(&first),
            xml_escape(&r.name),
            xml_escape(&r.at),
            xml_escape(&details.join("\n"))
        );
        o.push_str("    </testcase>\n");
    }
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}
