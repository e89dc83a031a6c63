//! Job store benchmarks, all on the same disk in the same run.
//!
//! `cargo run --release --example store_bench -- [SECONDS] [DIR]` measures:
//! 1. naive: one transaction per insert, `synchronous=FULL`, WAL, one connection (the rate a
//!    store without group commit gets);
//! 2. durable job creation over HTTP (`POST /api/v1/jobs`) with 64 concurrent keep-alive
//!    clients against a real server (group commit);
//! 3. the same 64 clients calling the store directly (no HTTP), for reference.
//!
//! `cargo run --release --example store_bench -- startup [JOBS] [DIR]` fills a database with
//! JOBS jobs (default 1,000,000) and prints how long `skill-fleet serve` takes to answer
//! `/ready` and its resident memory, beside the database size.

#[path = "support/client.rs"]
mod client;

use skill_fleet::config::Config;
use skill_fleet::http::{serve, AppState};
use skill_fleet::loader::live::LiveRules;
use skill_fleet::store::job::NewJob;
use skill_fleet::store::Store;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;
const BODY: &str = r#"{"job_type": "optimization", "task": "tune the summarizer", "payload": {"optimizer": "miprov2", "config": {"auto": "light", "max_bootstrapped_demos": 2}, "trainset_size": 200}}"#;

fn remove_db(p: &Path) {
    for s in ["", "-wal", "-shm"] {
        let mut q = p.as_os_str().to_owned();
        q.push(s);
        let _ = std::fs::remove_file(PathBuf::from(q));
    }
}

fn naive(dir: &Path, secs: f64) -> f64 {
    let p = dir.join("naive.db");
    remove_db(&p);
    let conn = rusqlite::Connection::open(&p).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, job_type TEXT, payload TEXT, created_at INTEGER)",
    )
    .expect("table");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let tx = conn.unchecked_transaction().expect("begin");
        tx.execute(
            "INSERT INTO jobs VALUES (?1, 'optimization', ?2, ?3)",
            rusqlite::params![uuid::Uuid::new_v4().to_string(), BODY, n as i64],
        )
        .expect("insert");
        tx.commit().expect("commit");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    remove_db(&p);
    rate
}

fn over_http(dir: &Path, secs: f64) -> (f64, u64) {
    let db = dir.join("http.db");
    remove_db(&db);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let live = Arc::new(
        LiveRules::load(&rules, false)
            .map_err(|_| "rules")
            .expect("rules"),
    );
    let store = Arc::new(Store::open(&db, true).expect("store"));
    let mut cfg = Config::default();
    cfg.rules.watch = false;
    let state = Arc::new(AppState::new(cfg, live, Some(Arc::clone(&store))).expect("state"));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, ok, bad) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&bad));
            std::thread::spawn(move || {
                let mut c = client::Conn::new(addr);
                while !stop.load(Ordering::Relaxed) {
                    match c.post("/api/v1/jobs", BODY) {
                        Ok((201, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => bad.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = tx.send(());
    let _ = rt.block_on(server);
    let created = store
        .status()
        .map(|s| s.jobs.values().sum::<i64>())
        .unwrap_or(0);
    let (commits, ops) = store.write_stats();
    println!(
        "  over HTTP: {ops} changes in {commits} commits, {:.1} per fsync",
        ops as f64 / commits.max(1) as f64
    );
    assert_eq!(
        created as u64,
        ok.load(Ordering::Relaxed),
        "every acknowledged job is in the database"
    );
    drop(store);
    remove_db(&db);
    (
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        bad.load(Ordering::Relaxed),
    )
}

fn direct(dir: &Path, secs: f64) -> f64 {
    let db = dir.join("direct.db");
    remove_db(&db);
    let store = Arc::new(Store::open(&db, true).expect("store"));
    let stop = Arc::new(AtomicBool::new(false));
    let n = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let ts: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (s, stop, n) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&n));
            std::thread::spawn(move || {
                let payload: serde_json::Value = serde_json::from_str(BODY).expect("json");
                while !stop.load(Ordering::Relaxed) {
                    s.create(NewJob {
                        job_type: "optimization".into(),
                        payload: payload.get("payload").cloned(),
                        ..NewJob::default()
                    })
                    .expect("create");
                    n.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in ts {
        let _ = t.join();
    }
    let rate = n.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    let (commits, ops) = store.write_stats();
    println!(
        "  in-process: {ops} changes in {commits} commits, {:.1} per fsync",
        ops as f64 / commits.max(1) as f64
    );
    drop(store);
    remove_db(&db);
    rate
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn startup(jobs: u64, dir: &Path) {
    let db = dir.join("million.db");
    remove_db(&db);
    {
        let s = Store::open(&db, true).expect("create schema");
        s.close().expect("close");
    }
    // Recent times, so the start-up sweep has nothing to prune: the figure is about opening.
    let base: i64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        - jobs as i64;
    let t = Instant::now();
    {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.pragma_update(None, "synchronous", "OFF")
            .expect("pragma");
        let tx = conn.unchecked_transaction().expect("tx");
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO jobs (id, job_type, status, task, payload, created_at, updated_at, completed_at) \
                     VALUES (?1, 'optimization', ?2, 'bulk', '{\"optimizer\":\"gepa\"}', ?3, ?3, ?4)",
                )
                .expect("prepare");
            for i in 0..jobs {
                let status = match i % 10 {
                    0 => "pending",
                    1 => "pending_hitl",
                    2 => "failed",
                    _ => "completed",
                };
                let done =
                    (status != "pending" && status != "pending_hitl").then_some(base + i as i64);
                stmt.execute(rusqlite::params![
                    uuid::Uuid::new_v4().to_string(),
                    status,
                    base + i as i64,
                    done
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "filled {jobs} jobs in {:.1} s; database {:.0} MiB",
        t.elapsed().as_secs_f64(),
        size as f64 / 1048576.0
    );
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/skill-fleet");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let t = Instant::now();
    let mut child = std::process::Command::new(&bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .args(["--no-watch"])
        .env("SKILL_FLEET_LOG", "warn")
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (build it: cargo build --release)",
                bin.display()
            )
        });
    let ready = loop {
        if t.elapsed() > Duration::from_secs(30) {
            break None;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                break Some(t.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let rss = rss_kib(child.id());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    match ready {
        Some(d) => println!(
            "serve with {jobs} jobs: ready in {:.0} ms (target < 1000 ms); resident memory {:.1} MiB",
            d.as_secs_f64() * 1000.0,
            rss as f64 / 1024.0
        ),
        None => println!("serve with {jobs} jobs: not ready within 30 s"),
    }
    remove_db(&db);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tmp = |i: usize| {
        args.get(i)
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-db"))
    };
    if args.first().map(String::as_str) == Some("startup") {
        let jobs = args
            .get(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        let dir = tmp(2);
        std::fs::create_dir_all(&dir).expect("dir");
        startup(jobs, &dir);
        return;
    }
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let dir = tmp(1);
    std::fs::create_dir_all(&dir).expect("dir");
    println!(
        "database directory: {} (same disk for every run)",
        dir.display()
    );
    let naive_rate = naive(&dir, secs);
    println!("naive, one transaction per insert (synchronous=FULL): {naive_rate:>9.0} inserts/s");
    let (http_rate, errors) = over_http(&dir, secs);
    println!("group commit over HTTP, {CLIENTS} clients:           {http_rate:>9.0} jobs/s ({errors} errors)");
    let direct_rate = direct(&dir, secs);
    println!("group commit in-process, {CLIENTS} threads:          {direct_rate:>9.0} jobs/s");
    println!(
        "ratio over HTTP / naive: {:.1}x (target 20x); in-process / naive: {:.1}x",
        http_rate / naive_rate,
        direct_rate / naive_rate
    );
}
