//! Several nodes on one PostgreSQL database (issue 17): three real `serve` processes share a
//! throwaway database. 8 clients create jobs on random nodes (some send one idempotency key to
//! every node at the same moment); 24 workers claim on random nodes, heartbeat, complete, fail
//! and abandon jobs (abandoned leases expire and the nodes' sweepers return them), and now and
//! then send a stale lease token on purpose. Meanwhile one node is killed with SIGKILL and
//! restarted, then another. Clients and workers retry on another node when a connection is
//! refused or cut off or a node answers 503 (a create with its idempotency key).
//!
//! Every acknowledged answer carries the job's `version`, which every change increments; the
//! test keeps them all and checks afterwards, per job in version order:
//!
//! - no two acknowledged changes share a version, and answers with one version agree;
//! - no job was held by two workers at once: the lease tokens form contiguous runs (an
//!   operation of token A never comes after the claim of token B), and unless the previous
//!   holder released the job, the next claim came only once its lease had run out and the
//!   retry's backoff had passed;
//! - no node showed a job older than an answer already acknowledged (read back at random);
//! - a finished job never changed again; every completion carried the last claim's token;
//!
//! and of the run as a whole: every acknowledged create is in the database, the creates of one
//! key made exactly one job, nothing appears that no client sent; once the workers stopped,
//! the leases expired (the sweepers returned them in time) and a final pass drained the queue,
//! nothing is left running or pending; every token sent stale on purpose got 409, and no token
//! whose lease was certainly live ever did.
//!
//! Every random choice comes from one seed, printed at the start and in every assertion
//! message; `MULTI_NODE_SEED=<n>` replays it (the thread interleaving is the machine's).
//! `cargo test --test main multi_node -- --nocapture` shows the counts.

use super::pg_cluster::Cluster;
use super::support::{
    list_all, now_ms, parse_rfc3339_ms, seed, try_request, Failure, Resp, Rng, ServeProc,
    StopOnDrop,
};
use serde_json::{json, Value};
use skill_fleet::store::StoreOptions;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `serve` processes sharing the database.
const NODES: usize = 3;
/// Threads creating jobs.
const CLIENTS: usize = 8;
/// Threads claiming and working on jobs.
const WORKERS: usize = 24;
/// Threads of the final pass that drains the queue.
const DRAINERS: usize = 6;
/// How long clients and workers run.
const LOAD: Duration = Duration::from_secs(15);
/// `jobs.sweep_interval_ms` of every node.
const SWEEP_MS: i64 = 200;
/// Lease of a job a worker means to finish.
const WORK_LEASE_S: i64 = 2;
/// Lease of a job a worker means to abandon (the API's minimum).
const ABANDON_LEASE_S: i64 = 1;
/// Lease of the final pass (nothing expires there).
const DRAIN_LEASE_S: i64 = 30;
/// Attempts of every job (each expiry or failed retry uses one).
const MAX_ATTEMPTS: i64 = 4;
const JOB_TYPE: &str = "multi";
/// How long a request is tried again (refused, cut off, 503) before it counts as unanswered.
const RETRY_FOR: Duration = Duration::from_secs(20);
/// Longest wait of a step of the drain.
const STEP: Duration = Duration::from_secs(30);
/// How long a running job may outlive its lease once the load stopped: the sweep interval
/// plus slack for a loaded machine.
const OVERSHOOT_MS: i64 = 10_000;

// ---- the nodes ----------------------------------------------------------------------------------

/// The nodes' addresses. A killed node keeps its old address until it is back, so requests sent
/// to it meanwhile are refused, as a client of a real fleet would see.
struct Nodes(RwLock<Vec<SocketAddr>>);

impl Nodes {
    fn addr(&self, i: usize) -> SocketAddr {
        self.0.read().unwrap_or_else(|p| p.into_inner())[i]
    }

    fn set(&self, i: usize, addr: SocketAddr) {
        self.0.write().unwrap_or_else(|p| p.into_inner())[i] = addr;
    }
}

/// A node's settings: sweeps every [`SWEEP_MS`], warnings and the start and sweep lines.
fn start_node(url: &str) -> (ServeProc, SocketAddr) {
    let sweep = SWEEP_MS.to_string();
    ServeProc::ready(
        Path::new(url),
        &[
            ("SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS", sweep.as_str()),
            ("SKILL_FLEET_LOG", "warn,skill_fleet::cli::serve=info"),
        ],
    )
}

/// What came of a request tried until a node answered.
struct Sent {
    /// The answer and the node that gave it; `None` when none came within [`RETRY_FOR`] (or,
    /// for a request that must not be repeated, when the one try was cut off).
    answer: Option<(Resp, usize)>,
    /// A try before the answer may have been applied: cut off after it was sent, or 503.
    uncertain: bool,
    /// When the answer came (ms since the epoch).
    at_ms: i64,
}

/// POSTs `body` to `path` (GETs it without one) on node `first`, and on another node after a
/// refused connection; after a cut-off connection or a 503 too when `again` (the request is
/// safe to repeat).
fn send(
    nodes: &Nodes,
    rng: &mut Rng,
    first: usize,
    path: &str,
    body: Option<&Value>,
    again: bool,
) -> Sent {
    let end = Instant::now() + RETRY_FOR;
    let (mut node, mut uncertain) = (first, false);
    loop {
        let method = if body.is_some() { "POST" } else { "GET" };
        match try_request(nodes.addr(node), method, path, body) {
            Ok(r) if r.status != 503 => {
                return Sent {
                    answer: Some((r, node)),
                    uncertain,
                    at_ms: now_ms(),
                }
            }
            Ok(_) | Err(Failure::Broken(_)) => uncertain = true,
            Err(Failure::Refused) => {}
        }
        if (uncertain && !again) || Instant::now() > end {
            return Sent {
                answer: None,
                uncertain,
                at_ms: now_ms(),
            };
        }
        rng.pause(5, 30);
        node = (node + 1 + rng.below(NODES - 1)) % NODES;
    }
}

// ---- the history ----------------------------------------------------------------------------

/// What an acknowledged answer was to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A create answered 201.
    Created,
    /// A create answered 200: the job its key made before (a read, not a change).
    Existing,
    /// A `GET` of the job on a random node after an acknowledged answer.
    Read,
    Claim,
    Heartbeat,
    Complete,
    Fail {
        retry: bool,
    },
}

/// One acknowledged answer about a job: the state it reports.
#[derive(Debug, Clone)]
struct Event {
    job: String,
    version: i64,
    op: Op,
    /// The lease token the request carried, or the claim returned.
    token: Option<String>,
    status: String,
    /// The answer's `updated_at` (ms): when the node made the change.
    at_ms: i64,
    /// The lease's end the answer reports (ms).
    expires_ms: Option<i64>,
    node: usize,
    by: String,
}

impl Event {
    /// The event of an answer carrying `job`; `None` when a field is missing.
    fn of(job: &Value, op: Op, token: Option<&str>, node: usize, by: &str) -> Option<Event> {
        Some(Event {
            job: job["id"].as_str()?.to_string(),
            version: job["version"].as_i64()?,
            op,
            token: token.map(str::to_string),
            status: job["status"].as_str()?.to_string(),
            at_ms: parse_rfc3339_ms(job["updated_at"].as_str()?),
            expires_ms: job["lease"]["expires_at"].as_str().map(parse_rfc3339_ms),
            node,
            by: by.to_string(),
        })
    }

    /// A change (every answer but a create's 200 and a read).
    fn changes(&self) -> bool {
        !matches!(self.op, Op::Existing | Op::Read)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} v{} {} by {} on node {} at {} (token {}, lease to {:?})",
            self.op,
            self.version,
            self.status,
            self.by,
            self.node,
            self.at_ms,
            self.token.as_deref().unwrap_or("-"),
            self.expires_ms
        )
    }
}

/// An acknowledged create.
#[derive(Debug, Clone)]
struct Create {
    key: String,
    id: String,
    /// 201 (made the job), not 200 (found it).
    made: bool,
}

/// A stale token sent on purpose, and the status it got (`None`: no node answered).
#[derive(Debug, Clone)]
struct Probe {
    what: &'static str,
    op: &'static str,
    job: String,
    token: String,
    answer: Option<u16>,
    body: String,
}

/// What a client or worker thread saw.
#[derive(Default)]
struct Tally {
    events: Vec<Event>,
    creates: Vec<Create>,
    /// Every idempotency key sent.
    keys: Vec<String>,
    /// Keys of the creates of one key sent to every node at once.
    shared_keys: Vec<String>,
    /// Creates no node answered.
    unanswered_creates: u64,
    /// Tokens whose complete or fail may have been applied without an answer saying so.
    uncertain: HashSet<String>,
    probes: Vec<Probe>,
    /// Claims whose answer was lost (the job waits for its lease to expire).
    lost_claims: u64,
    /// Jobs left on purpose to expire.
    abandoned: u64,
    /// Leases lost to expiry (a 409 to a token that might have expired).
    lost_leases: u64,
    /// Problems seen on the way: a live lease refused, an answer no request should get.
    problems: Problems,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.events.extend(o.events);
        self.creates.extend(o.creates);
        self.keys.extend(o.keys);
        self.shared_keys.extend(o.shared_keys);
        self.unanswered_creates += o.unanswered_creates;
        self.uncertain.extend(o.uncertain);
        self.probes.extend(o.probes);
        self.lost_claims += o.lost_claims;
        self.abandoned += o.abandoned;
        self.lost_leases += o.lost_leases;
        self.problems.0.extend(o.problems.0);
    }
}

/// Now and then (one answer in four), reads the job of an acknowledged answer back from a
/// random node: no node may show it older than acknowledged (there is no cache to go stale).
fn read_back(nodes: &Nodes, rng: &mut Rng, acked: &Event, by: &str, t: &mut Tally) {
    if rng.below(4) != 0 {
        return;
    }
    let node = rng.below(NODES);
    let path = format!("/api/v1/jobs/{}", acked.job);
    let Some((r, node)) = send(nodes, rng, node, &path, None, true).answer else {
        return;
    };
    match Event::of(&r.json(), Op::Read, None, node, by) {
        Some(e) if r.status == 200 => {
            if e.version < acked.version {
                t.problems.add(
                    "stale read",
                    format!(
                        "job {}: node {node} showed version {} after {acked} was acknowledged",
                        acked.job, e.version
                    ),
                );
            }
            t.events.push(e);
        }
        _ => t.problems.add(
            "unexpected answer",
            format!("GET {path} answered {}: {}", r.status, r.body),
        ),
    }
}

/// Problems found, each with its kind (the check it failed).
#[derive(Default, Clone)]
struct Problems(Vec<(&'static str, String)>);

impl Problems {
    fn add(&mut self, kind: &'static str, text: String) {
        self.0.push((kind, text));
    }

    /// How many of each kind, and the first few of each.
    fn report(&self) -> String {
        let mut by_kind: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (kind, text) in &self.0 {
            by_kind.entry(kind).or_default().push(text);
        }
        let mut out = String::new();
        for (kind, texts) in by_kind {
            out.push_str(&format!("{kind}: {}, e.g.\n", texts.len()));
            for t in texts.iter().take(3) {
                out.push_str(&format!("  {t}\n"));
            }
        }
        out
    }
}

// ---- clients ----------------------------------------------------------------------------------

/// Creates one job with idempotency key `key` on node `node` (then any node), retried until a
/// node answers.
fn create(nodes: &Nodes, rng: &mut Rng, node: usize, key: &str, by: &str) -> Tally {
    let mut t = Tally::default();
    let body = json!({
        "job_type": JOB_TYPE, "task": key, "idempotency_key": key,
        "max_attempts": MAX_ATTEMPTS, "payload": {"client": by},
    });
    t.keys.push(key.to_string());
    let sent = send(nodes, rng, node, "/api/v1/jobs", Some(&body), true);
    let Some((r, node)) = sent.answer else {
        t.unanswered_creates += 1;
        return t;
    };
    let op = match r.status {
        201 => Op::Created,
        200 => Op::Existing,
        s => {
            t.problems.add(
                "unexpected answer",
                format!("create {key} answered {s}: {}", r.body),
            );
            return t;
        }
    };
    let job = r.json();
    match Event::of(&job, op, None, node, by) {
        Some(e) if job["task"] == key && job["idempotency_key"] == key => {
            t.creates.push(Create {
                key: key.to_string(),
                id: e.job.clone(),
                made: op == Op::Created,
            });
            read_back(nodes, rng, &e, by, &mut t);
            t.events.push(e);
        }
        _ => t.problems.add(
            "unexpected answer",
            format!("create {key} answered {}: {}", r.status, r.body),
        ),
    }
    t
}

/// A client: a create every 60–140 ms on a random node; one in six sends its key to every
/// node at the same moment.
fn client(c: usize, seed: u64, nodes: Arc<Nodes>, stop: Arc<AtomicBool>) -> Tally {
    let mut rng = Rng(seed);
    let mut t = Tally::default();
    let by = format!("client {c}");
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        if rng.below(6) == 0 {
            let key = format!("shared-c{c}-{n}");
            let first = rng.below(NODES);
            let seeds: Vec<u64> = (0..NODES).map(|_| rng.next()).collect();
            let barrier = Barrier::new(NODES);
            let (nodes, key, by, barrier) = (&*nodes, &key, &by, &barrier);
            let tallies: Vec<Tally> = std::thread::scope(|s| {
                let handles: Vec<_> = seeds
                    .iter()
                    .enumerate()
                    .map(|(i, &seed)| {
                        s.spawn(move || {
                            barrier.wait();
                            create(nodes, &mut Rng(seed), (first + i) % NODES, key, by)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a same-key create panicked"))
                    .collect()
            });
            t.shared_keys.push(key.clone());
            tallies.into_iter().for_each(|x| t.merge(x));
        } else {
            let node = rng.below(NODES);
            t.merge(create(&nodes, &mut rng, node, &format!("c{c}-{n}"), &by));
        }
        rng.pause(60, 140);
    }
    t
}

// ---- workers ----------------------------------------------------------------------------------

/// What a worker means to do with the job it claims.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Heartbeat this many times, then complete.
    Complete(u64),
    Fail {
        retry: bool,
    },
    /// Let the lease expire.
    Abandon,
}

/// A job a worker holds: its token and the lease's end as last acknowledged.
struct Held {
    job: String,
    token: String,
    expires_ms: i64,
}

/// A token that can no longer be valid, usable as a stale one from `from_ms` on.
struct Dead {
    job: String,
    token: String,
    what: &'static str,
    from_ms: i64,
}

struct Worker {
    name: String,
    rng: Rng,
    nodes: Arc<Nodes>,
    t: Tally,
    dead: Vec<Dead>,
}

impl Worker {
    fn new(name: String, seed: u64, nodes: Arc<Nodes>) -> Worker {
        Worker {
            name,
            rng: Rng(seed),
            nodes,
            t: Tally::default(),
            dead: Vec::new(),
        }
    }

    fn send(&mut self, path: &str, body: &Value, again: bool) -> Sent {
        let node = self.rng.below(NODES);
        send(&self.nodes, &mut self.rng, node, path, Some(body), again)
    }

    /// Keeps an acknowledged answer (and reads its job back now and then).
    fn acked(&mut self, e: Event) {
        read_back(&self.nodes, &mut self.rng, &e, &self.name, &mut self.t);
        self.t.events.push(e);
    }

    /// Claims a job with a lease of `lease_s`: `None` when nothing is claimable or the answer
    /// was lost.
    fn claim(&mut self, lease_s: i64) -> Option<Held> {
        let body = json!({"worker": self.name, "types": [JOB_TYPE], "lease_seconds": lease_s});
        let Some((r, node)) = self.send("/api/v1/jobs/claim", &body, false).answer else {
            self.t.lost_claims += 1;
            return None;
        };
        match r.status {
            200 => {
                let v = r.json();
                let token = v["lease_token"].as_str().unwrap_or_default();
                match Event::of(&v["job"], Op::Claim, Some(token), node, &self.name) {
                    Some(e) if !token.is_empty() && e.expires_ms.is_some() => {
                        let held = Held {
                            job: e.job.clone(),
                            token: token.to_string(),
                            expires_ms: e.expires_ms.unwrap_or_default(),
                        };
                        self.acked(e);
                        Some(held)
                    }
                    _ => {
                        self.t.problems.add(
                            "unexpected answer",
                            format!("claim answered 200: {}", r.body),
                        );
                        None
                    }
                }
            }
            204 => None,
            s => {
                self.t.problems.add(
                    "unexpected answer",
                    format!("claim answered {s}: {}", r.body),
                );
                None
            }
        }
    }

    /// A heartbeat, complete or fail with the held token: whether the job is still held.
    fn leased(&mut self, held: &mut Held, op: Op) -> bool {
        let (path, body) = self.lease_body(&held.job, &held.token, op, false);
        let sent = self.send(&path, &body, true);
        let ends = matches!(op, Op::Complete | Op::Fail { .. });
        if sent.uncertain && ends {
            self.t.uncertain.insert(held.token.clone());
        }
        let Some((r, node)) = sent.answer else {
            // No node answered in time: give the job up (its lease expires).
            self.t.uncertain.insert(held.token.clone());
            return false;
        };
        match r.status {
            200 => {
                match Event::of(&r.json(), op, Some(&held.token), node, &self.name) {
                    Some(e) => {
                        if let Some(x) = e.expires_ms {
                            held.expires_ms = held.expires_ms.max(x);
                        }
                        self.acked(e);
                    }
                    None => self.t.problems.add(
                        "unexpected answer",
                        format!("{op:?} answered 200: {}", r.body),
                    ),
                }
                if ends {
                    self.bury(
                        held,
                        if op == Op::Complete {
                            "completed"
                        } else {
                            "failed"
                        },
                    );
                }
                !ends
            }
            409 => {
                // The lease is gone: fine when it may have expired (or an earlier try of this
                // very request was applied), a bug when it certainly still ran.
                if held.expires_ms > sent.at_ms && !self.t.uncertain.contains(&held.token) {
                    self.t.problems.add("live lease refused", format!(
                        "{op:?} of job {} with its live token {} (lease to {}, answered at {}) got 409: {}",
                        held.job, held.token, held.expires_ms, sent.at_ms, r.body
                    ));
                }
                self.t.lost_leases += 1;
                self.bury(held, "refused once");
                false
            }
            s => {
                self.t.problems.add(
                    "unexpected answer",
                    format!("{op:?} of job {} answered {s}: {}", held.job, r.body),
                );
                false
            }
        }
    }

    /// The path and body of a heartbeat, complete or fail (a stale probe's result says so).
    fn lease_body(&self, job: &str, token: &str, op: Op, stale: bool) -> (String, Value) {
        match op {
            Op::Heartbeat => (
                format!("/api/v1/jobs/{job}/heartbeat"),
                json!({"lease_token": token, "lease_seconds": WORK_LEASE_S,
                       "progress": {"percent": 50, "phase": "work"}}),
            ),
            Op::Complete => (
                format!("/api/v1/jobs/{job}/complete"),
                json!({"lease_token": token,
                       "result": {"token": token, "by": self.name, "stale": stale}}),
            ),
            Op::Fail { retry } => (
                format!("/api/v1/jobs/{job}/fail"),
                json!({"lease_token": token, "error": format!("{} gave up", self.name),
                       "retry": retry}),
            ),
            _ => (String::new(), Value::Null),
        }
    }

    /// The held token can no longer be valid: keep it for stale probes.
    fn bury(&mut self, held: &Held, what: &'static str) {
        self.dead.push(Dead {
            job: held.job.clone(),
            token: held.token.clone(),
            what,
            from_ms: 0,
        });
    }

    /// Sends `token` for `job` on purpose, as a heartbeat, complete or fail: it must get 409.
    fn probe(&mut self, job: &str, token: &str, what: &'static str) {
        let op = match self.rng.below(3) {
            0 => Op::Heartbeat,
            1 => Op::Complete,
            _ => Op::Fail {
                retry: self.rng.below(2) == 0,
            },
        };
        let (path, body) = self.lease_body(job, token, op, true);
        let sent = self.send(&path, &body, true);
        self.t.probes.push(Probe {
            what,
            op: match op {
                Op::Heartbeat => "heartbeat",
                Op::Complete => "complete",
                _ => "fail",
            },
            job: job.to_string(),
            token: token.to_string(),
            answer: sent.answer.as_ref().map(|(r, _)| r.status),
            body: sent.answer.map(|(r, _)| r.body).unwrap_or_default(),
        });
    }

    /// A stale probe with a dead token whose time has come, if there is one.
    fn probe_dead(&mut self) {
        let now = now_ms();
        let ready: Vec<usize> = (0..self.dead.len())
            .filter(|&i| self.dead[i].from_ms < now)
            .collect();
        if ready.is_empty() {
            return;
        }
        let d = &self.dead[ready[self.rng.below(ready.len())]];
        let (job, token, what) = (d.job.clone(), d.token.clone(), d.what);
        self.probe(&job, &token, what);
    }

    /// Works on one claimed job as planned.
    fn work(&mut self, mut held: Held, plan: Plan) {
        if self.rng.below(4) == 0 {
            self.probe_dead();
        }
        if self.rng.below(4) == 0 {
            let made_up = format!("{:016x}-{:016x}", self.rng.next(), self.rng.next());
            let job = held.job.clone();
            self.probe(&job, &made_up, "made up");
        }
        match plan {
            Plan::Complete(beats) => {
                for _ in 0..beats {
                    // Up to most of the lease: a late heartbeat may find it expired.
                    self.rng.pause(50, 1_500);
                    if !self.leased(&mut held, Op::Heartbeat) {
                        return;
                    }
                }
                self.rng.pause(0, 100);
                self.leased(&mut held, Op::Complete);
            }
            Plan::Fail { retry } => {
                self.rng.pause(0, 100);
                self.leased(&mut held, Op::Fail { retry });
            }
            Plan::Abandon => {
                // Certainly stale once the lease is over (no heartbeat extended it). Half the
                // time the worker comes back just after that, likely before any sweep: a
                // worker too slow for its lease.
                self.t.abandoned += 1;
                if self.rng.below(2) == 0 {
                    let back_ms = held.expires_ms + self.rng.range(1, 40) as i64;
                    let wait = u64::try_from(back_ms - now_ms()).unwrap_or(0);
                    std::thread::sleep(Duration::from_millis(wait));
                    self.probe(&held.job, &held.token, "just expired");
                }
                self.dead.push(Dead {
                    job: held.job,
                    token: held.token,
                    what: "expired",
                    from_ms: held.expires_ms + 50,
                });
            }
        }
    }

    /// Until `stop`: claim, then complete (some after heartbeats), fail or abandon; a stale
    /// token now and then.
    fn run(mut self, stop: &AtomicBool) -> Tally {
        while !stop.load(Ordering::SeqCst) {
            let plan = match self.rng.below(100) {
                0..40 => Plan::Complete(0),
                40..60 => Plan::Complete(1 + self.rng.range(0, 2)),
                60..70 => Plan::Fail { retry: true },
                70..75 => Plan::Fail { retry: false },
                _ => Plan::Abandon,
            };
            let lease = match plan {
                Plan::Abandon => ABANDON_LEASE_S,
                _ => WORK_LEASE_S,
            };
            match self.claim(lease) {
                Some(held) => self.work(held, plan),
                None => {
                    if self.rng.below(3) == 0 {
                        self.probe_dead();
                    }
                    self.rng.pause(50, 150);
                }
            }
        }
        self.t
    }

    /// The final pass: claims and completes until no job is pending (those waiting out a
    /// backoff included) or `STEP` is over.
    fn drain(mut self) -> Tally {
        let end = Instant::now() + STEP;
        while Instant::now() < end {
            match self.claim(DRAIN_LEASE_S) {
                Some(mut held) => {
                    self.leased(&mut held, Op::Complete);
                }
                None => {
                    let node = self.rng.below(NODES);
                    if list_all(self.nodes.addr(node), "status=pending").is_empty() {
                        break;
                    }
                    self.rng.pause(100, 300);
                }
            }
        }
        self.t
    }
}

// ---- the checks -------------------------------------------------------------------------------

/// The lease of the last acknowledged claim of a job, as the history shows it.
struct Holder<'a> {
    claim: &'a Event,
    /// The lease's end, as last acknowledged.
    expires_ms: i64,
    /// The holder completed or failed the job (acknowledged).
    released: bool,
}

/// The history of one job against the rules of leases and versions, and its final state.
fn check_job(
    id: &str,
    events: &mut [&Event],
    uncertain: &HashSet<String>,
    last: Option<&Value>,
    problems: &mut Problems,
) {
    events.sort_by_key(|e| (e.version, !e.changes()));
    let mut at_version: HashMap<i64, &Event> = HashMap::new();
    for e in events.iter() {
        match at_version.get(&e.version) {
            Some(p) if p.changes() && e.changes() => problems.add(
                "two changes, one version",
                format!(
                    "job {id}: two acknowledged changes made version {}: {p} and {e}",
                    e.version
                ),
            ),
            Some(p) if p.status != e.status => problems.add(
                "answers disagree",
                format!(
                    "job {id}: answers of version {} disagree: {p} and {e}",
                    e.version
                ),
            ),
            Some(_) => {}
            None => {
                at_version.insert(e.version, e);
            }
        }
    }
    let mut holder: Option<Holder> = None;
    let mut ended: Option<&Event> = None;
    for e in events.iter().copied().filter(|e| e.changes()) {
        if let Some(t) = ended {
            problems.add(
                "changed after it ended",
                format!("job {id} changed after it ended: {e} after {t}"),
            );
        }
        match e.op {
            Op::Created => {
                if e.version != 1 || e.status != "pending" {
                    problems.add("wrong status", format!("job {id}: a create answered {e}"));
                }
            }
            Op::Claim => {
                if e.status != "running" {
                    problems.add("wrong status", format!("job {id}: a claim answered {e}"));
                }
                if let Some(h) = &holder {
                    let a = h.claim.token.as_deref().unwrap_or_default();
                    // Unless released, the lease ran out, was swept, and the retry's backoff
                    // passed before the next claim.
                    // (The shortest backoff is the store's first retry delay, which `serve` keeps.)
                    let free_ms = h.expires_ms + StoreOptions::default().backoff_base_ms;
                    if !h.released && !uncertain.contains(a) && e.at_ms < free_ms {
                        problems.add(
                            "held by two",
                            format!(
                                "job {id} was claimed before the previous lease ran out (at {}) \
                             and its backoff passed (at {free_ms}): {} then {e}",
                                h.expires_ms, h.claim
                            ),
                        );
                    }
                }
                holder = Some(Holder {
                    claim: e,
                    expires_ms: e.expires_ms.unwrap_or_default(),
                    released: false,
                });
            }
            Op::Heartbeat | Op::Complete | Op::Fail { .. } => {
                let Some(h) = holder.as_mut().filter(|h| h.claim.token == e.token) else {
                    let after = holder.as_ref().map(|h| h.claim.to_string());
                    problems.add(
                        "held by two",
                        format!("job {id}: {e} came after the claim of another token: {after:?}"),
                    );
                    continue;
                };
                if h.released {
                    problems.add(
                        "held by two",
                        format!("job {id}: {e} came after its holder released it"),
                    );
                }
                let ok = match e.op {
                    Op::Heartbeat => e.status == "running",
                    Op::Complete => e.status == "completed",
                    Op::Fail { retry } => e.status == "failed" || (retry && e.status == "pending"),
                    _ => true,
                };
                if !ok {
                    problems.add(
                        "wrong status",
                        format!("job {id}: an answer with the wrong status: {e}"),
                    );
                }
                h.expires_ms = h.expires_ms.max(e.expires_ms.unwrap_or_default());
                if e.op != Op::Heartbeat {
                    h.released = true;
                }
                if e.status == "completed" || e.status == "failed" {
                    ended = Some(e);
                }
            }
            Op::Existing | Op::Read => {}
        }
    }
    let Some(j) = last else {
        problems.add(
            "lost change",
            format!("job {id} is acknowledged but not in the database"),
        );
        return;
    };
    let (version, status) = (j["version"].as_i64().unwrap_or(0), j["status"].as_str());
    if let Some(newest) = events.last() {
        if version < newest.version {
            problems.add(
                "lost change",
                format!(
                "job {id} is at version {version} in the database, older than the answer {newest}"
            ),
            );
        }
    }
    if let Some(t) = ended {
        if version != t.version || status != Some(t.status.as_str()) {
            problems.add("lost change", format!(
                "job {id} ended with {t}, but the database has it {status:?} at version {version}: {j}"
            ));
        }
    }
    if status == Some("completed") {
        let last_claim = events.iter().rev().find(|e| e.op == Op::Claim);
        let token = j["result"]["token"].as_str();
        if token.is_none() || last_claim.and_then(|c| c.token.as_deref()) != token {
            let shown = last_claim.map(ToString::to_string);
            problems.add(
                "wrong completion token",
                format!(
                "job {id} was completed with token {token:?}, not the last claim's ({shown:?}): {j}"
            ),
            );
        }
    }
}

/// Every check of the run: the problems found (empty when all hold).
fn check_run(all: &Tally, jobs: &HashMap<String, Value>) -> Problems {
    let mut problems = all.problems.clone();
    // The history of every job, in version order.
    let mut by_job: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &all.events {
        by_job.entry(e.job.as_str()).or_default().push(e);
    }
    for (id, events) in by_job.iter_mut() {
        check_job(id, events, &all.uncertain, jobs.get(*id), &mut problems);
    }
    // Completed jobs nobody acknowledged a claim of still carry a worker's token.
    for (id, j) in jobs {
        if j["status"] == "completed" && !by_job.contains_key(id.as_str()) {
            problems.add(
                "wrong completion token",
                format!("job {id} was completed but never claimed: {j}"),
            );
        }
    }
    // Creates: each key made one job, whichever nodes it reached; nothing appeared unasked.
    let mut acks: HashMap<&str, Vec<&Create>> = HashMap::new();
    for c in &all.creates {
        acks.entry(c.key.as_str()).or_default().push(c);
    }
    for (key, list) in &acks {
        let ids: HashSet<&str> = list.iter().map(|c| c.id.as_str()).collect();
        let made = list.iter().filter(|c| c.made).count();
        if ids.len() != 1 || made > 1 {
            problems.add(
                "one key, several jobs",
                format!(
                    "key {key} was answered with {} jobs, {made} of them made (201): {list:?}",
                    ids.len()
                ),
            );
        }
        for id in ids {
            if jobs.get(id).is_none_or(|j| j["idempotency_key"] != *key) {
                problems.add(
                    "lost create",
                    format!("the acknowledged job {id} of key {key} is missing"),
                );
            }
        }
    }
    let sent: HashSet<&str> = all.keys.iter().map(String::as_str).collect();
    let mut in_db: HashMap<&str, usize> = HashMap::new();
    for j in jobs.values() {
        let key = j["idempotency_key"].as_str().unwrap_or_default();
        *in_db.entry(key).or_default() += 1;
        if !sent.contains(key) {
            problems.add("job nobody sent", format!("a job no client sent: {j}"));
        }
    }
    for (key, n) in in_db {
        if n != 1 {
            problems.add(
                "one key, several jobs",
                format!("key {key:?} has {n} jobs in the database"),
            );
        }
    }
    // The end: nothing running or pending, after the sweepers and the final pass.
    for j in jobs.values() {
        if !matches!(j["status"].as_str(), Some("completed" | "failed")) {
            problems.add("left unfinished", format!("a job was left unfinished: {j}"));
        }
    }
    // Stale tokens on purpose: every one answered got 409, and none a 200.
    for p in &all.probes {
        if p.answer.is_some_and(|s| s != 409) {
            problems.add(
                "stale token accepted",
                format!(
                    "a stale token ({}: {}) sent as the {} of job {} got {:?}: {}",
                    p.what, p.token, p.op, p.job, p.answer, p.body
                ),
            );
        }
    }
    problems
}

/// Waits until no job runs: the sweepers end every lease, none much later than it expired.
fn wait_for_leases_to_end(nodes: &Nodes, seed: u64) {
    let end = Instant::now() + STEP;
    loop {
        let t = now_ms();
        let running = list_all(nodes.addr(0), "status=running");
        if running.is_empty() {
            return;
        }
        for j in &running {
            let e = j["lease"]["expires_at"].as_str().map(parse_rfc3339_ms);
            let overdue = e.map_or(i64::MAX, |e| t - e);
            assert!(
                overdue <= OVERSHOOT_MS,
                "seed {seed}: job {} still runs {overdue} ms after its lease expired \
                 (sweeps every {SWEEP_MS} ms on every node): {j}",
                j["id"]
            );
        }
        assert!(
            Instant::now() < end,
            "seed {seed}: {} jobs still running {STEP:?} after the load stopped",
            running.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node's log: no panic and no error line; the 503s it gave (warnings).
fn read_log(log: &str, seed: u64) -> usize {
    assert!(
        !log.contains("panicked"),
        "seed {seed}: a node panicked:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains(" ERROR ") && !line.contains("sweep failed"),
            "seed {seed}: a node reported an error: {line}\n{log}"
        );
    }
    log.matches("job store unavailable").count()
}

// ---- the test ---------------------------------------------------------------------------------

#[test]
fn three_nodes_on_one_database_never_give_a_job_to_two_workers() {
    let began = Instant::now();
    let seed = seed("MULTI_NODE_SEED");
    eprintln!("multi-node test: seed {seed} (replay with MULTI_NODE_SEED={seed})");
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database_url("multi_node");
    let mut rng = Rng(seed);

    // Three nodes start together (they migrate the empty database under the advisory lock).
    let started: Vec<(ServeProc, SocketAddr)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..NODES).map(|_| s.spawn(|| start_node(&url))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a node did not start"))
            .collect()
    });
    let (mut procs, addrs): (Vec<ServeProc>, Vec<SocketAddr>) = started.into_iter().unzip();
    let nodes = Arc::new(Nodes(RwLock::new(addrs)));

    let stop = Arc::new(AtomicBool::new(false));
    let guard = StopOnDrop(Arc::clone(&stop));
    let mut threads: Vec<JoinHandle<Tally>> = Vec::new();
    for c in 0..CLIENTS {
        let (seed, nodes, stop) = (rng.next(), Arc::clone(&nodes), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || client(c, seed, nodes, stop)));
    }
    for w in 0..WORKERS {
        let worker = Worker::new(format!("worker {w}"), rng.next(), Arc::clone(&nodes));
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || worker.run(&stop)));
    }

    // One node killed and restarted, then another.
    let load_began = Instant::now();
    let first = rng.below(NODES);
    let kills = [
        (first, rng.range(20, 35), rng.range(100, 800)),
        (
            (first + 1 + rng.below(NODES - 1)) % NODES,
            rng.range(55, 70),
            rng.range(100, 800),
        ),
    ];
    let mut unavailable = 0;
    let mut kill_lines = Vec::new();
    for (victim, percent, down_ms) in kills {
        let at = LOAD * percent as u32 / 100;
        std::thread::sleep(at.saturating_sub(load_began.elapsed()));
        let log = procs[victim].kill();
        unavailable += read_log(&log, seed);
        std::thread::sleep(Duration::from_millis(down_ms));
        let (proc, addr) = start_node(&url);
        procs[victim] = proc;
        nodes.set(victim, addr);
        kill_lines.push(format!(
            "node {victim} killed at {:.1} s, down {down_ms} ms, back at {:.1} s",
            at.as_secs_f64(),
            load_began.elapsed().as_secs_f64()
        ));
    }
    std::thread::sleep(LOAD.saturating_sub(load_began.elapsed()));
    stop.store(true, Ordering::SeqCst);
    let mut all = Tally::default();
    for h in threads {
        all.merge(h.join().expect("a client or worker panicked"));
    }
    drop(guard);
    let load_s = load_began.elapsed().as_secs_f64();

    // The end: every lease runs out and is swept, then a final pass drains the queue.
    wait_for_leases_to_end(&nodes, seed);
    let drainers: Vec<JoinHandle<Tally>> = (0..DRAINERS)
        .map(|d| {
            let worker = Worker::new(format!("drainer {d}"), rng.next(), Arc::clone(&nodes));
            std::thread::spawn(move || worker.drain())
        })
        .collect();
    for h in drainers {
        all.merge(h.join().expect("a drainer panicked"));
    }
    let jobs: HashMap<String, Value> = list_all(nodes.addr(0), "")
        .into_iter()
        .filter_map(|j| Some((j["id"].as_str()?.to_string(), j)))
        .collect();
    for p in procs.iter_mut() {
        p.terminate();
    }
    for mut p in procs {
        let (code, log) = p.wait(STEP);
        unavailable += read_log(&log, seed);
        assert_eq!(code, 0, "seed {seed}: a node did not stop cleanly:\n{log}");
    }

    // The counts, then the checks.
    let count = |op: fn(&Op) -> bool| all.events.iter().filter(|e| op(&e.op)).count();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for j in jobs.values() {
        *by_status
            .entry(j["status"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    let swept = jobs
        .values()
        .filter(|j| j["error"].as_str().is_some_and(|e| e.contains("expired")))
        .count();
    let answered: Vec<&Probe> = all.probes.iter().filter(|p| p.answer.is_some()).collect();
    let mut probe_kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &answered {
        *probe_kinds.entry(p.what).or_default() += 1;
    }
    let shared_made = all
        .creates
        .iter()
        .filter(|c| c.key.starts_with("shared-"))
        .count();
    eprintln!(
        "multi-node test (seed {seed}): {NODES} nodes, {CLIENTS} clients, {WORKERS} workers for \
         {load_s:.1} s; {}\n  creates acknowledged {} ({} made, {} answers to {} same-key \
         creates sent to every node), unanswered {}\n  claims {} (answers lost {}), heartbeats \
         {}, completions {}, failures {}, abandoned {}, leases lost {}, uncertain ends {}\n  \
         reads from another node {}\n  stale tokens sent {} (answered {}: {probe_kinds:?})\n  jobs {} {by_status:?}, swept \
         at least once {swept}; 503 warnings {unavailable}; {:.1} s in all",
        kill_lines.join("; "),
        all.creates.len(),
        count(|o| *o == Op::Created),
        shared_made,
        all.shared_keys.len(),
        all.unanswered_creates,
        count(|o| *o == Op::Claim),
        all.lost_claims,
        count(|o| *o == Op::Heartbeat),
        count(|o| *o == Op::Complete),
        count(|o| matches!(o, Op::Fail { .. })),
        all.abandoned,
        all.lost_leases,
        all.uncertain.len(),
        count(|o| *o == Op::Read),
        all.probes.len(),
        answered.len(),
        jobs.len(),
        began.elapsed().as_secs_f64()
    );
    let problems = check_run(&all, &jobs);
    assert!(
        problems.0.is_empty(),
        "seed {seed} (replay with MULTI_NODE_SEED={seed}): {} problems\n{}",
        problems.0.len(),
        problems.report()
    );
    // The run exercised what it checks.
    let exercised = [
        ("acknowledged creates", all.creates.len()),
        ("answers to same-key creates", shared_made),
        ("claims", count(|o| *o == Op::Claim)),
        ("heartbeats", count(|o| *o == Op::Heartbeat)),
        ("reads", count(|o| *o == Op::Read)),
        ("completions", count(|o| *o == Op::Complete)),
        ("failures", count(|o| matches!(o, Op::Fail { .. }))),
        ("jobs swept after an expired lease", swept),
        ("stale tokens answered", answered.len()),
    ];
    for (what, n) in exercised {
        assert!(n > 0, "seed {seed}: the run had no {what}");
    }
}
