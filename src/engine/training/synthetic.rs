//! A deterministic generator of examples, for tests and benchmarks.

use super::*;

/// `n` pseudo-random examples (deterministic for a `seed`), with scores rounded to hundredths
/// so ties happen: for tests and benchmarks.
pub fn synthetic(n: usize, seed: u64) -> Vec<Example> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let cats = [
        "python", "web", "cli", "database", "devops", "testing", "api", "dspy", "ml", "docs",
    ];
    let styles = [
        Style::Technical,
        Style::Beginner,
        Style::Comprehensive,
        Style::NavigationHub,
        Style::Minimal,
    ];
    (0..n)
        .map(|i| {
            let q = (next() % 101) as f64 / 100.0;
            let s = match next() % 4 {
                0 => None,
                _ => Some((next() % 101) as f64 / 100.0),
            };
            let cat = cats[(next() % cats.len() as u64) as usize];
            let style = styles[(next() % styles.len() as u64) as usize];
            Example {
                example_id: format!("ex-{i:06}"),
                task_description: format!("task {i}"),
                category: cat.into(),
                style,
                created_at: "2026-01-01T00:00:00Z".into(),
                quality_score: q,
                structure_completeness: q,
                pattern_clarity: q,
                practical_value: q,
                human_rating: None,
                success_rate: s,
                usage_count: 0,
                last_used: None,
                tags: vec![],
            }
        })
        .collect()
}
