//! Analytics and trainset selection over 100,000 examples (target: under 100 ms each).
//!
//! Run: `cargo bench --bench training`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use skill_fleet::engine::training::{analytics, select, Example, SelectRequest, Style};
use std::path::Path;

fn examples(n: usize) -> Vec<Example> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
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
            let q = (next() % 1001) as f64 / 1000.0;
            Example {
                example_id: format!("ex-{i:06}"),
                task_description: format!("task {i}"),
                category: cats[(next() % cats.len() as u64) as usize].to_string(),
                style: styles[(next() % styles.len() as u64) as usize],
                created_at: "2026-01-01T00:00:00Z".into(),
                quality_score: q,
                structure_completeness: q,
                pattern_clarity: q,
                practical_value: q,
                human_rating: None,
                success_rate: (next() % 4 != 0).then(|| (next() % 1001) as f64 / 1000.0),
                usage_count: next() % 50,
                last_used: None,
                tags: vec![],
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let files = skill_fleet::loader::read_dir(&dir).expect("read rules");
    let rs = skill_fleet::rules::build(&files).expect("valid rules");
    let data = examples(100_000);
    let mut g = c.benchmark_group("training_100k");
    g.sample_size(20);
    g.bench_function("analytics", |b| {
        b.iter(|| analytics(&rs.training, black_box(&data)))
    });
    g.bench_function("select_default", |b| {
        b.iter(|| select(&rs.training, black_box(&data), &SelectRequest::default()))
    });
    g.bench_function("select_explain", |b| {
        let req = SelectRequest {
            explain: true,
            ..SelectRequest::default()
        };
        b.iter(|| select(&rs.training, black_box(&data), &req))
    });
    g.bench_function("select_style_diverse", |b| {
        let req = SelectRequest {
            style: Some(Style::Beginner),
            diversity: true,
            ..SelectRequest::default()
        };
        b.iter(|| select(&rs.training, black_box(&data), &req))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
