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

use client::Conn;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CREATE_BODY: &str = r#"{"job_type": "optimization", "task": "tune the summarizer", "payload": {"optimizer": "miprov2", "config": {"auto": "light", "max_bootstrapped_demos": 2}, "trainset_size": 200}}"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn wait_up(addr: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < end, "server at {addr} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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

fn start_serve(db: &Path) -> Server {
    let bin = std::env::var_os("SERVE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/skill-fleet"));
    assert!(
        bin.exists(),
        "build it: cargo build --release --bin skill-fleet"
    );
    let addr = free_addr();
    let child = Command::new(bin)
        .args(["serve", "--rules"])
        .arg(root().join("rules"))
        .arg("--db")
        .arg(db)
        .args(["--addr", &addr.to_string(), "--no-watch"])
        .env("SKILL_FLEET_DECISIONS_LOG", "false")
        .env("SKILL_FLEET_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn skill-fleet serve");
    wait_up(addr);
    Server { child, addr }
}

/// What a run measured: units done (requests or pairs) per second, and request latencies.
struct Measured {
    rate: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// Runs `clients` threads doing `unit` for `secs`; `unit` returns the request latencies it
/// saw, or `None` on an error.
fn measure<F>(addr: SocketAddr, clients: usize, secs: f64, unit: F) -> Measured
where
    F: Fn(&mut Conn) -> Option<Vec<u64>> + Send + Sync + 'static,
{
    let unit = Arc::new(unit);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, unit) = (Arc::clone(&stop), Arc::clone(&unit));
            std::thread::spawn(move || {
                let mut c = Conn::new(addr);
                let (mut done, mut errors, mut lat) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match unit(&mut c) {
                        Some(l) => {
                            done += 1;
                            lat.extend(l);
                        }
                        None => {
                            errors += 1;
                            c = Conn::new(addr);
                        }
                    }
                }
                (done, errors, lat)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let (mut done, mut errors, mut lat) = (0, 0, Vec::new());
    for t in threads {
        let (d, e, l) = t.join().expect("client");
        done += d;
        errors += e;
        lat.extend(l);
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Measured {
        rate: done as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors,
    }
}

fn timed(c: &mut Conn, path: &str, body: &str, ok: u16) -> Option<(u64, Vec<u8>)> {
    let t = Instant::now();
    let (status, bytes) = c.post(path, body).ok()?;
    (status == ok).then(|| (t.elapsed().as_micros() as u64, bytes))
}

fn creates(addr: SocketAddr, ok: u16, secs: f64) -> Measured {
    measure(addr, 64, secs, move |c| {
        timed(c, "/api/v1/jobs", CREATE_BODY, ok).map(|(l, _)| vec![l])
    })
}

fn claim_complete(addr: SocketAddr, bare: bool, secs: f64) -> Measured {
    measure(addr, 32, secs, move |c| {
        let claim = r#"{"worker": "bench", "types": ["optimization"]}"#;
        let (l1, body) = timed(c, "/api/v1/jobs/claim", claim, 200)?;
        let (id, token) = if bare {
            ("0".to_string(), "t".to_string())
        } else {
            let v: Value = serde_json::from_slice(&body).ok()?;
            (
                v["job"]["id"].as_str()?.to_string(),
                v["lease_token"].as_str()?.to_string(),
            )
        };
        let done = format!(r#"{{"lease_token": "{token}", "result": {{"ok": true}}}}"#);
        let (l2, _) = timed(c, &format!("/api/v1/jobs/{id}/complete"), &done, 200)?;
        Some(vec![l1, l2])
    })
}

fn fill(addr: SocketAddr, n: u64) {
    let per = n / 16;
    let threads: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Conn::new(addr);
                for _ in 0..per {
                    let (s, _) = c.post("/api/v1/jobs", CREATE_BODY).expect("create");
                    assert_eq!(s, 201);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().expect("fill"));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn line(what: &str, m: &Measured, unit: &str) {
    println!(
        "  {what:<28} {:>9.0} {unit}/s   p50 {:>6} µs   p99 {:>6} µs   errors {}",
        m.rate, m.p50_us, m.p99_us, m.errors
    );
}

fn main() {
    // `write_bench load ADDR SECONDS`: only the create load against a running server (to
    // profile it).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("load") {
        let addr: SocketAddr = args[2].parse().expect("ADDR");
        let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10.0);
        line("creates", &creates(addr, 201, secs), "req");
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
        let bc = creates(bare.addr, 200, secs);
        let bp = claim_complete(bare.addr, true, secs);
        drop(bare);
        line("bare hyper: creates", &bc, "req");
        line("bare hyper: claim+complete", &bp, "pairs");

        let db = dir.join(format!("r{round}.db"));
        let serve = start_serve(&db);
        let sc = creates(serve.addr, 201, secs);
        line("serve: durable creates", &sc, "req");
        // The queue for the workers: more than they can take in `secs`.
        fill(serve.addr, ((sc.rate * secs * 0.8) as u64).max(16_000));
        let sp = claim_complete(serve.addr, false, secs);
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
