//! Durable writes over HTTP against bare hyper, in the same run, with the same clients.
//!
//! ```sh
//! cargo build --release --bin skill-fleet --example bare_hyper --example write_bench
//! target/release/examples/write_bench [SECONDS] [ROUNDS]
//! ```
//!
//! Both servers run as child processes on loopback (`SERVE_BIN` picks another `skill-fleet`
//! binary, e.g. an older build, to compare). Each round runs bare hyper, then `serve`:
//!
//! 1. creates: 64 keep-alive clients `POST /api/v1/jobs` (durable: acknowledged after the
//!    commit, `synchronous=FULL`); bare hyper gets the same requests and answers a fixed body;
//! 2. claim + complete: 32 workers, each `POST /api/v1/jobs/claim` then
//!    `POST /api/v1/jobs/{id}/complete` on a queue filled beforehand.
//!
//! It prints requests (or pairs) per second, p50 and p99 latency per request, and the ratio to
//! bare hyper per round and its median. `write_bench load ADDR SECONDS` only drives the create
//! load against a running server, to profile it.

#[path = "support/client.rs"]
mod client;

#[path = "support/bench.rs"]
mod bench;

use bench::{claim_complete, creates, fill, free_addr, line, median, root, start_serve};
use bench::{wait_up, Server};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// Creating clients, and claim + complete workers.
const CLIENTS: usize = 64;
const WORKERS: usize = 32;

fn start_bare() -> Server {
    let bin = root().join("target/release/examples/bare_hyper");
    assert!(
        bin.exists(),
        "build it: cargo build --release --example bare_hyper"
    );
    let addr = free_addr();
    let child = Command::new(bin)
        .arg(addr.to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bare_hyper");
    wait_up(addr);
    Server { child, addr }
}

fn main() {
    // `write_bench load ADDR SECONDS`: only the create load against a running server (to
    // profile it).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("load") {
        let addr: SocketAddr = args[2].parse().expect("ADDR");
        let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10.0);
        line("creates", &creates(&[addr], CLIENTS, 201, secs), "req");
        return;
    }
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("write-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (mut create_ratios, mut pair_ratios) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        println!("round {round} ({secs} s each)");
        let bare = start_bare();
        let bc = creates(&[bare.addr], CLIENTS, 200, secs);
        let bp = claim_complete(&[bare.addr], WORKERS, true, secs);
        drop(bare);
        line("bare hyper: creates", &bc, "req");
        line("bare hyper: claim+complete", &bp, "pairs");

        let db = dir.join(format!("r{round}.db"));
        let serve = start_serve(&db);
        let sc = creates(&[serve.addr], CLIENTS, 201, secs);
        line("serve: durable creates", &sc, "req");
        // The queue for the workers: more than they can take in `secs`.
        fill(&[serve.addr], ((sc.rate * secs * 0.8) as u64).max(16_000));
        let sp = claim_complete(&[serve.addr], WORKERS, false, secs);
        line("serve: claim+complete", &sp, "pairs");
        drop(serve);
        create_ratios.push(sc.rate / bc.rate);
        pair_ratios.push(sp.rate / bp.rate);
        println!(
            "  ratio to bare hyper: creates {:.2}, claim+complete {:.2}",
            sc.rate / bc.rate,
            sp.rate / bp.rate
        );
    }
    println!(
        "median ratio over {rounds} rounds: creates {:.2}, claim+complete {:.2}",
        median(create_ratios),
        median(pair_ratios)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
