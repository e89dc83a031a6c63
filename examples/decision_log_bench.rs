//! Cost of writing the decision log: CPU time per logged decision, through the store's writer,
//! in batches the size the server writes under load (about 3,000 per 50 ms flush), with the
//! row the server writes for the load test's request. This is the floor the decision log adds
//! to every `recommend` on a machine whose cores the server shares with its load.
//!
//! ```sh
//! cargo run --release --example decision_log_bench -- [DECISIONS] [BATCH]
//! ```

use skill_fleet::store::decisions::{DecisionTexts, NewDecision};
use skill_fleet::store::Store;
use std::time::Instant;

const OUTPUT: &str = r#"{"recommended":"miprov2","config":{"auto":"light","max_bootstrapped_demos":2,"max_labeled_demos":4,"num_candidates":10,"num_iters":3,"num_threads":8},"estimated_cost":2.5,"estimated_time_minutes":14,"confidence":0.75,"alternatives":[{"optimizer":"reflection_metrics","estimated_cost":0.1,"estimated_time_minutes":2},{"optimizer":"bootstrap_fewshot","estimated_cost":0.2,"estimated_time_minutes":2}],"decision_id":1}"#;

/// Process CPU time (user + system) in seconds, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(300_000);
    let batch: usize = args.next().map(|v| v.parse()).transpose()?.unwrap_or(3_000);
    let dir = std::env::temp_dir().join(format!("skill-fleet-dlb-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.db");
    let store = Store::open(&path, true)?;
    let mut id = store.reserve_decision_ids(total as i64 + 1)?;
    let input = br#"{"trainset_size": 200, "budget_usd": 10}"#;
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let mut written = 0;
    while written < total {
        let n = batch.min(total - written);
        let rows: Vec<NewDecision> = (0..n)
            .map(|k| {
                id += 1;
                let request_id = format!("{:016x}", id as u64 * 2_654_435_761);
                NewDecision::new(
                    id,
                    1_795_506_473_122 + (written + k) as i64 / 50,
                    "http",
                    (2.5, 14.0),
                    DecisionTexts {
                        request_id: Some(&request_id),
                        revision: "693be400d2ad",
                        rule: "moderate_trainset_budget",
                        optimizer: "miprov2",
                        variant: Some("light"),
                        input,
                    },
                    |out| out.extend_from_slice(OUTPUT.as_bytes()),
                )
            })
            .collect();
        store.log_decisions(rows)?;
        written += n;
    }
    let (cpu, wall) = (cpu_seconds() - c0, t0.elapsed().as_secs_f64());
    let size = std::fs::metadata(&path)?.len();
    println!(
        "{total} decisions in batches of {batch}: {:.2} us CPU and {:.2} us wall per decision; {:.0} bytes of file per decision",
        cpu * 1e6 / total as f64,
        wall * 1e6 / total as f64,
        size as f64 / total as f64
    );
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
