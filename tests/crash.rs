//! Crash test of the real binary: clients create jobs over HTTP and workers claim (and sometimes
//! complete) them while `skill-fleet serve` is killed with SIGKILL at random moments and
//! restarted, several times on the same database: a SQLite file (`crash::sqlite::…`) or a
//! PostgreSQL database (`crash::postgres::…`). Afterwards every acknowledged create (a 201
//! received in full), claim and completion is in the database, nothing appears that no client
//! sent, and no `running` job outlives its lease by more than the sweep interval (plus slack).
//!
//! The kill delays come from a small PRNG whose seed is printed; `CRASH_SEED=<n>` replays a run.
//! The counts are printed (`cargo test --test main crash -- --nocapture`) and written to
//! `target/crash-test-report-<backend>.txt`.

use super::support::{
    list_all, must, now_ms, parse_rfc3339_ms, root, seed, try_request, Backend, Failure, Rng,
    ServeProc, StopOnDrop,
};
use serde_json::{json, Value};
use skill_fleet::store::Store;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Kill-and-restart rounds (one SIGKILL each).
const ROUNDS: usize = 6;
/// Threads creating jobs.
const CLIENTS: usize = 8;
/// Threads claiming jobs (and completing about half of them).
const WORKERS: usize = 2;
/// Lease of every claim: the API's minimum.
const LEASE_SECONDS: u64 = 1;
/// `jobs.sweep_interval_ms` of the server.
const SWEEP_MS: u64 = 200;
/// The server is killed this many milliseconds (drawn uniformly) after the clients start.
const KILL_AFTER_MS: (u64, u64) = (150, 900);
/// How long a running job may stay running after its lease expired: the sweep interval plus
/// slack for a loaded machine.
const LEASE_OVERSHOOT_LIMIT_MS: i64 = SWEEP_MS as i64 + 2_000;
/// Longest single wait (server start, shutdown, the final sweep).
const STEP: Duration = Duration::from_secs(20);
/// Client and worker threads stop by themselves this long after their round started.
const ROUND_LIMIT: Duration = Duration::from_secs(10);
const JOB_TYPE: &str = "crash";

// ---- the server process -----------------------------------------------------------------------

/// A `skill-fleet serve` child; killed (SIGKILL) on drop so a failing test leaves nothing behind.
struct Server {
    proc: ServeProc,
    addr: SocketAddr,
    /// Just before the spawn (ms since the epoch).
    spawned_ms: i64,
}

impl Server {
    /// Starts a server on `db` and waits until `/ready` answers 200.
    fn start(db: &Path) -> Server {
        let spawned_ms = now_ms();
        let sweep = SWEEP_MS.to_string();
        let (proc, addr) = ServeProc::ready(
            db,
            &[
                ("SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS", sweep.as_str()),
                // Warnings, plus the sweeper's reports (counted below).
                ("SKILL_FLEET_LOG", "warn,skill_fleet::cli::serve=info"),
            ],
        );
        Server {
            proc,
            addr,
            spawned_ms,
        }
    }

    /// SIGKILL, then reaps the process; returns its log.
    fn kill(mut self) -> String {
        self.proc.kill()
    }

    /// SIGTERM, then waits for the exit: (exit code, log).
    fn terminate(mut self) -> (i32, String) {
        self.proc.terminate();
        self.proc.wait(STEP)
    }
}

/// The two counts of a sweeper log line (`… N expired leases returned to pending, M jobs
/// failed …`) after `prefix`.
fn sweep_counts(line: &str, prefix: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let mut nums = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>().ok());
    Some((nums.next()??, nums.next()??))
}

#[derive(Debug, Default, Clone, Copy)]
struct Sweeps {
    startup_returned: u64,
    startup_failed: u64,
    periodic_returned: u64,
    periodic_failed: u64,
}

/// Adds up the sweeper's reports in a server log and checks it reports no error (and shows no
/// password of the database's URL).
fn read_log(log: &str, sweeps: &mut Sweeps) {
    assert!(!log.contains("panicked"), "serve panicked:\n{log}");
    assert!(
        !log.contains("hunter2secret"),
        "a password in the log:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains(" ERROR ") && !line.contains("sweep failed"),
            "serve reported an error: {line}\n{log}"
        );
        if let Some((r, f)) = sweep_counts(line, "start-up job sweep: ") {
            sweeps.startup_returned += r;
            sweeps.startup_failed += f;
        } else if let Some((r, f)) = sweep_counts(line, "job sweep: ") {
            sweeps.periodic_returned += r;
            sweeps.periodic_failed += f;
        }
    }
}

/// Right after a start: the start-up sweep ran after the spawn and returned every lease expired
/// by then, and no worker has claimed since, so every running job's lease ends after the spawn.
fn check_leases_after_start(srv: &Server) -> usize {
    let running = list_all(srv.addr, "status=running");
    for j in &running {
        let expires = j["lease"]["expires_at"]
            .as_str()
            .unwrap_or_else(|| panic!("running job without a lease: {j}"));
        assert!(
            parse_rfc3339_ms(expires) > srv.spawned_ms,
            "job {} is still running after a restart although its lease expired at {expires}, \
             before the server started: {j}",
            j["id"]
        );
    }
    running.len()
}

// ---- clients and workers ----------------------------------------------------------------------

/// What a client thread saw.
#[derive(Default)]
struct ClientTally {
    /// (task key, id) of every create answered 201 in full.
    acked: Vec<(String, String)>,
    /// Keys of creates sent on a connection that broke before a complete answer.
    unknown: Vec<String>,
    /// How the cut-off connections ended (e.g. `ConnectionReset before any answer`).
    cut_off: BTreeMap<String, u64>,
    /// Connections refused (the server was down): nothing was sent.
    refused: u64,
    /// Any other answer (none is expected).
    unexpected: Vec<String>,
}

fn client(addr: SocketAddr, round: usize, c: usize, stop: Arc<AtomicBool>) -> ClientTally {
    let mut t = ClientTally::default();
    let end = Instant::now() + ROUND_LIMIT;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        let key = format!("crash-r{round}-c{c}-{n}");
        n += 1;
        let body = json!({"job_type": JOB_TYPE, "task": key, "payload": {"round": round}});
        match try_request(addr, "POST", "/api/v1/jobs", Some(&body)) {
            Ok(r) if r.status == 201 => {
                match serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_string))
                {
                    Some(id) => t.acked.push((key, id)),
                    None => t.unexpected.push(format!("201 without an id: {}", r.body)),
                }
            }
            Ok(r) => t
                .unexpected
                .push(format!("create answered {}: {}", r.status, r.body)),
            Err(Failure::Refused) => {
                t.refused += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(Failure::Broken(why)) => {
                t.unknown.push(key);
                *t.cut_off.entry(why).or_default() += 1;
            }
        }
    }
    t
}

/// What a worker thread saw.
#[derive(Default)]
struct WorkerTally {
    /// Ids of claims answered 200 in full.
    claimed: Vec<String>,
    /// Ids of completions answered 200 in full.
    completed: Vec<String>,
    /// Completions refused with 409 (the lease had expired meanwhile).
    stale: u64,
    /// Requests whose connection broke (the kill).
    broken: u64,
    unexpected: Vec<String>,
}

fn worker(addr: SocketAddr, name: String, seed: u64, stop: Arc<AtomicBool>) -> WorkerTally {
    let mut t = WorkerTally::default();
    let mut rng = Rng(seed);
    let end = Instant::now() + ROUND_LIMIT;
    let claim = json!({"worker": name, "types": [JOB_TYPE], "lease_seconds": LEASE_SECONDS});
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        match try_request(addr, "POST", "/api/v1/jobs/claim", Some(&claim)) {
            Ok(r) if r.status == 200 => {
                let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                let (Some(id), Some(token)) = (v["job"]["id"].as_str(), v["lease_token"].as_str())
                else {
                    t.unexpected.push(format!("claim answered 200: {}", r.body));
                    continue;
                };
                t.claimed.push(id.to_string());
                // About half the jobs are completed; the others are abandoned, as by a worker
                // that died, and come back through the sweeper.
                if rng.next().is_multiple_of(2) {
                    continue;
                }
                let body = json!({"lease_token": token, "result": {"by": name}});
                let path = format!("/api/v1/jobs/{id}/complete");
                match try_request(addr, "POST", &path, Some(&body)) {
                    Ok(r) if r.status == 200 => t.completed.push(id.to_string()),
                    Ok(r) if r.status == 409 => t.stale += 1,
                    Ok(r) => t
                        .unexpected
                        .push(format!("complete answered {}: {}", r.status, r.body)),
                    Err(Failure::Refused) => {}
                    Err(Failure::Broken(_)) => t.broken += 1,
                }
            }
            Ok(r) if r.status == 204 => std::thread::sleep(Duration::from_millis(20)),
            Ok(r) => t
                .unexpected
                .push(format!("claim answered {}: {}", r.status, r.body)),
            Err(Failure::Refused) => std::thread::sleep(Duration::from_millis(5)),
            Err(Failure::Broken(_)) => t.broken += 1,
        }
    }
    t
}

// ---- the test ---------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct RoundLine {
    kill_after_ms: u64,
    running_at_start: usize,
    acked: usize,
    unknown: usize,
    refused: u64,
    claimed: usize,
    completed: usize,
}

crate::tests_on_both_backends!(acknowledged_jobs_survive_sigkill_and_no_lease_outlives_the_sweeper);

fn acknowledged_jobs_survive_sigkill_and_no_lease_outlives_the_sweeper(backend: Backend) {
    let began = Instant::now();
    let seed = seed("CRASH_SEED");
    println!("crash test on {backend}: seed {seed} (replay with CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let (db, _dir) = backend.fresh("crash");

    let mut acked: HashMap<String, String> = HashMap::new(); // id -> task key
    let mut unknown: HashSet<String> = HashSet::new(); // task keys
    let mut claimed: HashSet<String> = HashSet::new();
    let mut completed: HashSet<String> = HashSet::new();
    let (mut refused, mut stale, mut worker_broken) = (0u64, 0u64, 0u64);
    let mut claims_acked = 0usize;
    let mut unexpected: Vec<String> = Vec::new();
    let mut cut_off: BTreeMap<String, u64> = BTreeMap::new();
    let mut sweeps = Sweeps::default();
    let mut rounds: Vec<RoundLine> = Vec::new();

    for round in 0..ROUNDS {
        let srv = Server::start(&db);
        let running_at_start = check_leases_after_start(&srv);
        let stop = Arc::new(AtomicBool::new(false));
        let _guard = StopOnDrop(Arc::clone(&stop));
        let clients: Vec<JoinHandle<ClientTally>> = (0..CLIENTS)
            .map(|c| {
                let (addr, stop) = (srv.addr, Arc::clone(&stop));
                std::thread::spawn(move || client(addr, round, c, stop))
            })
            .collect();
        let workers: Vec<JoinHandle<WorkerTally>> = (0..WORKERS)
            .map(|w| {
                let (addr, stop) = (srv.addr, Arc::clone(&stop));
                let (name, seed) = (format!("crash-w{w}"), rng.next());
                std::thread::spawn(move || worker(addr, name, seed, stop))
            })
            .collect();
        let kill_after_ms = rng.range(KILL_AFTER_MS.0, KILL_AFTER_MS.1);
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        let log = srv.kill();
        stop.store(true, Ordering::SeqCst);
        read_log(&log, &mut sweeps);

        let mut line = RoundLine {
            kill_after_ms,
            running_at_start,
            ..RoundLine::default()
        };
        for h in clients {
            let t = h.join().expect("client thread panicked");
            line.acked += t.acked.len();
            line.unknown += t.unknown.len();
            line.refused += t.refused;
            acked.extend(t.acked.into_iter().map(|(key, id)| (id, key)));
            unknown.extend(t.unknown);
            for (why, n) in t.cut_off {
                *cut_off.entry(why).or_default() += n;
            }
            unexpected.extend(t.unexpected);
        }
        for h in workers {
            let t = h.join().expect("worker thread panicked");
            line.claimed += t.claimed.len();
            line.completed += t.completed.len();
            claims_acked += t.claimed.len();
            claimed.extend(t.claimed);
            completed.extend(t.completed);
            stale += t.stale;
            worker_broken += t.broken;
            unexpected.extend(t.unexpected);
        }
        refused += line.refused;
        println!(
            "round {round}: killed after {kill_after_ms} ms; {} creates acknowledged, {} cut off \
             in flight, {} refused; {} claims, {} completions; {} running at start",
            line.acked,
            line.unknown,
            line.refused,
            line.claimed,
            line.completed,
            line.running_at_start
        );
        rounds.push(line);
    }
    assert!(
        unexpected.is_empty(),
        "unexpected answers: {:#?}",
        &unexpected[..unexpected.len().min(20)]
    );
    assert!(
        !acked.is_empty(),
        "no create was acknowledged: the test did not exercise anything"
    );

    // ---- the last start: nobody kills it ----
    let srv = Server::start(&db);
    let running_at_final_start = check_leases_after_start(&srv);
    // The periodic sweeper (not only the start-up one) must end leases: claim a few fresh jobs
    // with the shortest lease and abandon them.
    for i in 0..3 {
        let key = format!("crash-final-{i}");
        let r = must(
            srv.addr,
            "POST",
            "/api/v1/jobs",
            Some(&json!({"job_type": JOB_TYPE, "task": key})),
            201,
        );
        acked.insert(r.json()["id"].as_str().unwrap().to_string(), key);
    }
    let claim =
        json!({"worker": "crash-final", "types": [JOB_TYPE], "lease_seconds": LEASE_SECONDS});
    let mut final_claims = 0;
    let end = Instant::now() + STEP;
    while final_claims < 3 {
        let r = try_request(srv.addr, "POST", "/api/v1/jobs/claim", Some(&claim))
            .unwrap_or_else(|e| panic!("claim: {e:?}"));
        match r.status {
            200 => {
                let id = r.json()["job"]["id"].as_str().unwrap().to_string();
                claimed.insert(id);
                claims_acked += 1;
                final_claims += 1;
            }
            204 => {
                assert!(Instant::now() < end, "nothing claimable for {STEP:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
            s => panic!("claim answered {s}: {}", r.body),
        }
    }
    // Watch the running jobs until none is left: every one must end within its lease plus the
    // sweep interval (and slack).
    let mut latest_expiry = 0i64;
    let mut overshoot_ms = 0i64;
    let end = Instant::now() + STEP;
    loop {
        assert!(
            Instant::now() < end,
            "jobs still running {STEP:?} after the last claim"
        );
        let t = now_ms();
        let running = list_all(srv.addr, "status=running");
        if running.is_empty() {
            // Upper bound of how long the last lease was outlived (the poll's granularity).
            overshoot_ms = overshoot_ms.max(t - latest_expiry);
            break;
        }
        for j in &running {
            let e = parse_rfc3339_ms(j["lease"]["expires_at"].as_str().unwrap_or_else(|| {
                panic!("running job without a lease: {j}");
            }));
            latest_expiry = latest_expiry.max(e);
            assert!(
                t - e <= LEASE_OVERSHOOT_LIMIT_MS,
                "job {} is still running {} ms after its lease expired (sweep interval {SWEEP_MS} ms): {j}",
                j["id"],
                t - e
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // ---- every acknowledged change is there, nothing else appeared ----
    let jobs: HashMap<String, Value> = list_all(srv.addr, "")
        .into_iter()
        .map(|j| (j["id"].as_str().unwrap().to_string(), j))
        .collect();
    let missing: Vec<(&String, &String)> = acked
        .iter()
        .filter(|(id, _)| !jobs.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged jobs are missing after the crashes (seed {seed}), e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    for (id, key) in &acked {
        assert_eq!(
            jobs[id]["task"],
            key.as_str(),
            "job {id} has the wrong task"
        );
    }
    let acked_keys: HashSet<&String> = acked.values().collect();
    let mut committed_unacked = 0usize;
    for (id, j) in &jobs {
        let task = j["task"].as_str().unwrap_or_default().to_string();
        if acked_keys.contains(&task) {
            continue;
        }
        assert!(
            unknown.contains(&task),
            "job {id} was never sent by a client (task {task:?}): {j}"
        );
        committed_unacked += 1;
    }
    let lost_completions: Vec<&String> = completed
        .iter()
        .filter(|id| jobs.get(*id).map(|j| &j["status"]) != Some(&json!("completed")))
        .collect();
    assert!(
        lost_completions.is_empty(),
        "acknowledged completions not in the database (seed {seed}): {lost_completions:?}"
    );
    let lost_claims: Vec<&String> = claimed
        .iter()
        .filter(|id| jobs.get(*id).is_none_or(|j| j["started_at"].is_null()))
        .collect();
    assert!(
        lost_claims.is_empty(),
        "acknowledged claims not in the database (seed {seed}): {lost_claims:?}"
    );
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let (mut attempts, mut failed) = (0i64, 0i64);
    for j in jobs.values() {
        let status = j["status"].as_str().unwrap_or("?").to_string();
        // Only an expired lease adds an attempt here (nobody calls `fail`).
        attempts += j["attempt"].as_i64().unwrap_or(0);
        if status == "failed" {
            failed += 1;
            let error = j["error"].as_str().unwrap_or_default();
            assert!(error.contains("expired"), "failed for another reason: {j}");
        }
        *by_status.entry(status).or_default() += 1;
    }
    assert_eq!(by_status.get("running"), None, "{by_status:?}");

    // ---- a clean stop, and the file agrees with the API ----
    let (code, log) = srv.terminate();
    read_log(&log, &mut sweeps);
    assert_eq!(code, 0, "serve did not stop cleanly on SIGTERM:\n{log}");
    let store = Store::open(&db, false).expect("open the database after the run");
    let status = store.status().expect("db status");
    let in_file: i64 = status.jobs.values().sum();
    assert_eq!(in_file as usize, jobs.len(), "{status:?}");
    store.close().expect("close the database");

    // ---- the counts ----
    let mut report = String::new();
    let _ = writeln!(
        report,
        "skill-fleet crash test (tests/crash.rs) on {backend}"
    );
    let _ = writeln!(
        report,
        "seed {seed}; {ROUNDS} rounds of {CLIENTS} creating clients and {WORKERS} workers \
         (lease {LEASE_SECONDS} s, sweep every {SWEEP_MS} ms), SIGKILL {}..{} ms after the start",
        KILL_AFTER_MS.0, KILL_AFTER_MS.1
    );
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            report,
            "  round {i}: SIGKILL after {:>3} ms; creates acknowledged {:>5}, cut off in flight {:>2}, \
             refused {:>3}; claims {:>4}, completions {:>4}; running at restart {:>3}",
            r.kill_after_ms,
            r.acked,
            r.unknown,
            r.refused,
            r.claimed,
            r.completed,
            r.running_at_start
        );
    }
    let lines = [
        ("rounds", ROUNDS.to_string()),
        ("SIGKILLs", rounds.len().to_string()),
        ("restarts after a kill", rounds.len().to_string()),
        (
            "acknowledged creates (201 received; 3 of them after the last restart)",
            acked.len().to_string(),
        ),
        ("jobs in the database", jobs.len().to_string()),
        ("acknowledged creates missing", missing.len().to_string()),
        (
            "creates cut off in flight by a kill",
            unknown.len().to_string(),
        ),
        (
            "  of which committed anyway (unacknowledged)",
            committed_unacked.to_string(),
        ),
        (
            "  of which not committed",
            (unknown.len() - committed_unacked).to_string(),
        ),
        ("  how they were cut off", format!("{cut_off:?}")),
        (
            "creates refused while the server was down",
            refused.to_string(),
        ),
        (
            "worker requests cut off by a kill",
            worker_broken.to_string(),
        ),
        ("acknowledged claims", claims_acked.to_string()),
        ("acknowledged completions", completed.len().to_string()),
        ("completions refused as stale (409)", stale.to_string()),
        (
            "running jobs found at a restart (lease still valid)",
            (rounds.iter().map(|r| r.running_at_start).sum::<usize>() + running_at_final_start)
                .to_string(),
        ),
        ("expired leases swept (attempts used)", attempts.to_string()),
        (
            "  returned to pending by the sweeper",
            (attempts - failed).to_string(),
        ),
        (
            "  failed by the sweeper (attempts used up)",
            failed.to_string(),
        ),
        (
            "sweeper log: start-up sweeps returned / failed",
            format!("{} / {}", sweeps.startup_returned, sweeps.startup_failed),
        ),
        (
            "sweeper log: periodic sweeps returned / failed",
            format!("{} / {}", sweeps.periodic_returned, sweeps.periodic_failed),
        ),
        (
            "  (the log misses a sweep committed just before a kill; the database is the count)",
            String::new(),
        ),
        (
            "longest a lease was outlived at the end (ms)",
            overshoot_ms.to_string(),
        ),
        ("jobs per status at the end", format!("{by_status:?}")),
        (
            "elapsed (s)",
            format!("{:.1}", began.elapsed().as_secs_f64()),
        ),
    ];
    for (k, v) in lines {
        if v.is_empty() {
            let _ = writeln!(report, "{k}");
        } else {
            let _ = writeln!(report, "{k}: {v}");
        }
    }
    println!("{report}");
    let out = root().join("target");
    let _ = std::fs::create_dir_all(&out);
    let file = out.join(format!("crash-test-report-{backend}.txt"));
    std::fs::write(file, &report).expect("write the report");
}
