//! The decision map's cost: `check::map::draw` on the shipped rules for a 200 × 200 grid
//! (trainset_size × budget_usd, log scales), on one thread, beside the baseline of the same
//! 40,000 inputs as full single decisions (`engine::evaluate`, what 40,000 `evaluate` calls
//! would compute minus HTTP). Median of 15 rounds each, in the same run.
//!
//! `cargo run --release --example map_bench`

use skill_fleet::check::map::{self, AxisSpec};
use skill_fleet::engine;
use skill_fleet::rules::context::Context;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let files = skill_fleet::loader::read_dir(&dir)?;
    let rs = skill_fleet::rules::build(&files).map_err(|d| format!("{} diagnostics", d.len()))?;
    let spec = |field: &str| AxisSpec {
        field: field.into(),
        points: 200,
        ..AxisSpec::default()
    };
    let x = map::axis(&rs, "x", &spec("trainset_size"))?;
    let y = map::axis(&rs, "y", &spec("budget_usd"))?;
    let input = serde_json::json!({"trainset_size": 100});
    let base = rs
        .context
        .check(input.as_object().ok_or("an object")?)
        .map_err(|e| format!("{e:?}"))?;
    let inputs: Vec<Context> = y
        .values
        .iter()
        .flat_map(|&b| x.values.iter().map(move |&t| (t, b)))
        .map(|(t, b)| {
            rs.context
                .check(
                    serde_json::json!({"trainset_size": t as i64, "budget_usd": b})
                        .as_object()
                        .expect("object"),
                )
                .expect("valid")
        })
        .collect();
    let (mut maps, mut singles) = (Vec::new(), Vec::new());
    let mut monotone = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let m = map::draw(&rs, &base, &x, &y, None);
        maps.push(t.elapsed().as_secs_f64() * 1e3);
        monotone = m.monotone.len();
        let t = Instant::now();
        let mut n = 0usize;
        for ctx in &inputs {
            let d = engine::evaluate(&rs, ctx, &[], engine::Options::default())?;
            n += d.choice.label.len();
        }
        singles.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(n);
    }
    let (m, s) = (median(maps), median(singles));
    println!("200 x 200 map (with its {monotone} non-monotonic cells): {m:.1} ms");
    println!("40,000 single decisions (baseline):              {s:.1} ms");
    println!("map / baseline: {:.2}", m / s);
    Ok(())
}
