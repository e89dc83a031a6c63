//! What the HTTP benchmarks share (`write_bench`, `cluster_bench`): `serve` as a child process,
//! keep-alive clients spread over one node or several, and what they measured (rate, p50, p99).
//! A benchmark includes it beside the client: `#[path = "support/client.rs"] mod client;` and
//! `#[path = "support/bench.rs"] mod bench;`.

// Each benchmark uses part of it.
#![allow(dead_code)]

use super::client::Conn;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The body of every create.
pub const CREATE_BODY: &str = r#"{"job_type": "optimization", "task": "tune the summarizer", "payload": {"optimizer": "miprov2", "config": {"auto": "light", "max_bootstrapped_demos": 2}, "trainset_size": 200}}"#;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback address (bound, read, released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A server child process, stopped with SIGTERM (and waited for) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Waits (up to 30 s) until `addr` accepts connections.
pub fn wait_up(addr: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < end, "server at {addr} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `serve` of the release build (`SERVE_BIN` picks another binary) on `db` (a SQLite file or a
/// PostgreSQL URL), the decision log off, on a free address; returns once it accepts
/// connections.
pub fn start_serve(db: &Path) -> Server {
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
pub struct Measured {
    pub rate: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

/// Runs `clients` threads doing `unit` for `secs`, client `i` on `addrs[i % addrs.len()]`;
/// `unit` returns the request latencies it saw, or `None` on an error.
pub fn measure<F>(addrs: &[SocketAddr], clients: usize, secs: f64, unit: F) -> Measured
where
    F: Fn(&mut Conn) -> Option<Vec<u64>> + Send + Sync + 'static,
{
    let unit = Arc::new(unit);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, unit) = (Arc::clone(&stop), Arc::clone(&unit));
            let addr = addrs[i % addrs.len()];
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

/// A POST answered `ok`: its latency (µs) and body.
pub fn timed(c: &mut Conn, path: &str, body: &str, ok: u16) -> Option<(u64, Vec<u8>)> {
    let t = Instant::now();
    let (status, bytes) = c.post(path, body).ok()?;
    (status == ok).then(|| (t.elapsed().as_micros() as u64, bytes))
}

/// `clients` keep-alive clients creating jobs for `secs` (a create answered `ok` counts).
pub fn creates(addrs: &[SocketAddr], clients: usize, ok: u16, secs: f64) -> Measured {
    measure(addrs, clients, secs, move |c| {
        timed(c, "/api/v1/jobs", CREATE_BODY, ok).map(|(l, _)| vec![l])
    })
}

/// `clients` workers each claiming a job and completing it, for `secs` (pairs per second; both
/// requests' latencies). `bare`: bare hyper, whose answers carry no job.
pub fn claim_complete(addrs: &[SocketAddr], clients: usize, bare: bool, secs: f64) -> Measured {
    measure(addrs, clients, secs, move |c| {
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

/// Creates `n` jobs (16 clients, spread over `addrs`): a queue for the workers.
pub fn fill(addrs: &[SocketAddr], n: u64) {
    let per = n / 16;
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let addr = addrs[i % addrs.len()];
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

/// The median (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One result line.
pub fn line(what: &str, m: &Measured, unit: &str) {
    println!(
        "  {what:<28} {:>9.0} {unit}/s   p50 {:>6} µs   p99 {:>6} µs   errors {}",
        m.rate, m.p50_us, m.p99_us, m.errors
    );
}
