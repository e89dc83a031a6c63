//! The full default recommendation (rules + cost + time + confidence + alternatives) against a
//! hand-written Rust function of the same tree, in the same run.
//!
//! Run: `cargo bench --bench recommend`. Compare `rules/<case>` with `hand_written/<case>`.
//! `rhai_token_cost/rules` goes through the interpreter (the shipped rules never do): the
//! `examples/token-cost` rule set, whose `expr:` rule and cost script are Rhai.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use skill_fleet::engine::{recommend, reference, Options};
use std::path::Path;

const CASES: [(&str, i64, f64); 3] = [
    // first rules to match: time limit and budget checks fail, rule 4 fires
    ("moderate_light", 200, 10.0),
    // every rule is tried, the fallback fires
    ("fallback", 1000, 10.0),
    // heavy over budget: the guard steps down
    ("guard_downgrade", 10_000, 500.0),
];

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let files = skill_fleet::loader::read_dir(&dir).expect("read rules");
    let rs = skill_fleet::rules::build(&files).expect("valid rules");
    for (name, t, b) in CASES {
        let mut input = serde_json::Map::new();
        input.insert("trainset_size".into(), t.into());
        input.insert("budget_usd".into(), b.into());
        let ctx = rs.check_input(&input).expect("valid input");
        let mut g = c.benchmark_group(name);
        g.bench_function("rules", |bch| {
            bch.iter(|| recommend(&rs, black_box(&ctx), &[], Options::default()))
        });
        let r_input = reference::Input {
            trainset_size: t,
            budget_usd: b,
            quality_target: 0.85,
            time_constraint_minutes: None,
            domain: "general",
        };
        g.bench_function("hand_written", |bch| {
            bch.iter(|| reference::recommend(black_box(&r_input), &[]))
        });
        g.finish();
    }
    // Rhai: an `expr:` condition calling a script function, then the scripted cost model for
    // the choice and each alternative.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/token-cost");
    let files = skill_fleet::loader::read_dir(&dir).expect("read token-cost");
    let rs = skill_fleet::rules::build(&files).expect("valid rules");
    let mut input = serde_json::Map::new();
    input.insert("trainset_size".into(), 800.into());
    input.insert("budget_usd".into(), 100.into());
    input.insert("domain".into(), "code".into());
    input.insert("model".into(), "gemini-3-pro-preview".into());
    let ctx = rs.check_input(&input).expect("valid input");
    let mut g = c.benchmark_group("rhai_token_cost");
    g.bench_function("rules", |bch| {
        bch.iter(|| recommend(&rs, black_box(&ctx), &[], Options::default()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
