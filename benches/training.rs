//! Analytics and trainset selection over 100,000 examples (target: under 100 ms each).
//!
//! Run: `cargo bench --bench training`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use skill_fleet::engine::training::{analytics, select, synthetic, SelectRequest, Style};
use std::path::Path;

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let files = skill_fleet::loader::read_dir(&dir).expect("read rules");
    let rs = skill_fleet::rules::build(&files).expect("valid rules");
    let data = synthetic(100_000, 0x9E37_79B9_7F4A_7C15);
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
