//! Store tests with a manual clock: every transition, fencing, attempts, idempotency,
//! pruning, migration, the cache bound.

use super::job::{NewJob, Progress, Status};
use super::*;
use std::sync::atomic::{AtomicI64, Ordering};

struct T {
    store: Store,
    clock: Arc<AtomicI64>,
    path: PathBuf,
}

impl Drop for T {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "skill-fleet-store-{name}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn setup_with(name: &str, opts: StoreOptions) -> T {
    let clock = Arc::new(AtomicI64::new(1_800_000_000_000));
    let c = Arc::clone(&clock);
    let path = tmp(name);
    let store = Store::open_with(
        &path,
        true,
        opts,
        Arc::new(move || c.load(Ordering::SeqCst)),
    )
    .unwrap();
    T { store, clock, path }
}

fn setup(name: &str) -> T {
    setup_with(name, StoreOptions::default())
}

impl T {
    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn new_job(&self) -> String {
        self.store
            .create(NewJob {
                job_type: "optimization".into(),
                task: "tune".into(),
                ..NewJob::default()
            })
            .unwrap()
            .0
            .id
    }

    fn claimed(&self) -> (String, String) {
        let id = self.new_job();
        let (job, token) = self.store.claim("w1", &[], 60_000).unwrap().unwrap();
        assert_eq!(job.id, id);
        (id, token)
    }
}

fn illegal(r: Result<job::Job, StoreError>, from: Status) {
    match r {
        Err(StoreError::IllegalTransition { from: f, .. }) => assert_eq!(f, from),
        other => panic!("expected an illegal transition from {from}, got {other:?}"),
    }
}

#[test]
fn create_starts_pending() {
    let t = setup("create");
    let id = t.new_job();
    let j = t.store.get(&id).unwrap().unwrap();
    assert_eq!(j.status, Status::Pending);
    assert_eq!(j.attempt, 0);
    assert_eq!(j.max_attempts, 3);
    assert_eq!(j.version, 1);
    assert!(t.store.get("nope").unwrap().is_none());
}

#[test]
fn pending_to_running_by_claim() {
    let t = setup("claim");
    let (id, token) = t.claimed();
    let j = t.store.get(&id).unwrap().unwrap();
    assert_eq!(j.status, Status::Running);
    assert_eq!(j.lease.as_ref().map(|l| l.owner.as_str()), Some("w1"));
    assert!(!token.is_empty());
    assert!(j.started_at.is_some());
    // nothing left to claim
    assert!(t.store.claim("w2", &[], 60_000).unwrap().is_none());
}

#[test]
fn claim_respects_types_and_order() {
    let t = setup("types");
    let a = t.new_job();
    t.advance(1);
    let b = t
        .store
        .create(NewJob {
            job_type: "skill_creation".into(),
            ..NewJob::default()
        })
        .unwrap()
        .0
        .id;
    let (j, _) = t
        .store
        .claim("w", &["skill_creation".into()], 60_000)
        .unwrap()
        .unwrap();
    assert_eq!(j.id, b);
    let (j, _) = t.store.claim("w", &[], 60_000).unwrap().unwrap();
    assert_eq!(j.id, a);
}

#[test]
fn claim_by_id_takes_that_job_or_nothing() {
    let t = setup("by-id");
    let first = t.new_job();
    t.advance(1);
    let second = t.new_job();
    let opt = ["optimization".to_string()];
    let (j, _) = t
        .store
        .claim_job("w", &opt, 60_000, Some(&second))
        .unwrap()
        .unwrap();
    assert_eq!(j.id, second, "not the older one");
    // Taken already, or unknown: nothing, and nothing else is claimed instead.
    assert!(t
        .store
        .claim_job("w", &opt, 60_000, Some(&second))
        .unwrap()
        .is_none());
    assert!(t
        .store
        .claim_job("w", &opt, 60_000, Some("nope"))
        .unwrap()
        .is_none());
    assert_eq!(
        t.store.get(&first).unwrap().unwrap().status,
        Status::Pending
    );
}

#[test]
fn running_to_completed() {
    let t = setup("complete");
    let (id, token) = t.claimed();
    let j = t
        .store
        .complete(&id, &token, serde_json::json!({"score": 0.9}))
        .unwrap();
    assert_eq!(j.status, Status::Completed);
    assert_eq!(j.result, Some(serde_json::json!({"score": 0.9})));
    assert!(j.lease.is_none());
    assert!(j.completed_at.is_some());
}

#[test]
fn running_to_failed_without_retry() {
    let t = setup("fail");
    let (id, token) = t.claimed();
    let j = t.store.fail(&id, &token, "boom", false).unwrap();
    assert_eq!(j.status, Status::Failed);
    assert_eq!(j.error.as_deref(), Some("boom"));
    assert_eq!(j.attempt, 1);
}

#[test]
fn running_to_pending_on_retry_with_backoff() {
    let t = setup("retry");
    let (id, token) = t.claimed();
    let j = t.store.fail(&id, &token, "flaky", true).unwrap();
    assert_eq!(j.status, Status::Pending);
    assert_eq!(j.attempt, 1);
    assert!(j.not_before.is_some());
    // backoff: not claimable yet
    assert!(t.store.claim("w", &[], 60_000).unwrap().is_none());
    t.advance(1_000);
    assert!(t.store.claim("w", &[], 60_000).unwrap().is_some());
}

#[test]
fn retries_stop_when_attempts_are_exhausted() {
    let t = setup("exhaust");
    let id = t
        .store
        .create(NewJob {
            job_type: "optimization".into(),
            max_attempts: Some(2),
            ..NewJob::default()
        })
        .unwrap()
        .0
        .id;
    let (_, tok) = t.store.claim("w", &[], 60_000).unwrap().unwrap();
    assert_eq!(
        t.store.fail(&id, &tok, "one", true).unwrap().status,
        Status::Pending
    );
    t.advance(10_000);
    let (_, tok) = t.store.claim("w", &[], 60_000).unwrap().unwrap();
    let j = t.store.fail(&id, &tok, "two", true).unwrap();
    assert_eq!(j.status, Status::Failed);
    assert_eq!(j.attempt, 2);
}

#[test]
fn running_to_pending_hitl_and_back_with_the_answer() {
    let t = setup("hitl");
    let (id, token) = t.claimed();
    let j = t
        .store
        .request_hitl(
            &id,
            &token,
            "approve_config",
            serde_json::json!({"q": "ok?"}),
        )
        .unwrap();
    assert_eq!(j.status, Status::PendingHitl);
    assert!(j.lease.is_none());
    // parked: not claimable, and the sweeper leaves it alone however long it waits
    assert!(t.store.claim("w", &[], 60_000).unwrap().is_none());
    t.advance(10 * 86_400_000);
    assert!(t.store.sweep().unwrap().is_empty());
    let j = t
        .store
        .respond_hitl(&id, serde_json::json!({"approved": true}))
        .unwrap();
    assert_eq!(j.status, Status::Pending);
    let (j, _) = t.store.claim("w2", &[], 60_000).unwrap().unwrap();
    let hitl = j.hitl.unwrap();
    assert_eq!(hitl.kind, "approve_config");
    assert_eq!(hitl.response, Some(serde_json::json!({"approved": true})));
}

#[test]
fn any_non_terminal_status_can_be_cancelled() {
    let t = setup("cancel");
    let pending = t.new_job();
    assert_eq!(t.store.cancel(&pending).unwrap().status, Status::Cancelled);
    let (running, _) = t.claimed();
    assert_eq!(t.store.cancel(&running).unwrap().status, Status::Cancelled);
    let (parked, tok) = t.claimed();
    t.store
        .request_hitl(&parked, &tok, "q", serde_json::json!(null))
        .unwrap();
    assert_eq!(t.store.cancel(&parked).unwrap().status, Status::Cancelled);
}

#[test]
fn terminal_statuses_never_change() {
    let t = setup("terminal");
    let (done, tok) = t.claimed();
    t.store.complete(&done, &tok, serde_json::json!(1)).unwrap();
    illegal(t.store.cancel(&done), Status::Completed);
    illegal(
        t.store.complete(&done, &tok, serde_json::json!(2)),
        Status::Completed,
    );
    illegal(t.store.fail(&done, &tok, "x", true), Status::Completed);
    illegal(
        t.store.respond_hitl(&done, serde_json::json!(1)),
        Status::Completed,
    );
    illegal(
        t.store.heartbeat(&done, &tok, 60_000, None),
        Status::Completed,
    );
    let cancelled = t.new_job();
    t.store.cancel(&cancelled).unwrap();
    illegal(t.store.cancel(&cancelled), Status::Cancelled);
    assert!(t.store.claim("w", &[], 60_000).unwrap().is_none());
    let j = t.store.get(&done).unwrap().unwrap();
    assert_eq!(j.result, Some(serde_json::json!(1)));
}

#[test]
fn illegal_transitions_from_live_statuses_are_refused() {
    let t = setup("illegal");
    let (running, _) = t.claimed();
    let pending = t.new_job();
    illegal(
        t.store.complete(&pending, "t", serde_json::json!(1)),
        Status::Pending,
    );
    illegal(t.store.fail(&pending, "t", "x", false), Status::Pending);
    illegal(
        t.store
            .request_hitl(&pending, "t", "q", serde_json::json!(1)),
        Status::Pending,
    );
    illegal(
        t.store.respond_hitl(&pending, serde_json::json!(1)),
        Status::Pending,
    );
    illegal(
        t.store.respond_hitl(&running, serde_json::json!(1)),
        Status::Running,
    );
    assert!(matches!(
        t.store.cancel("nope"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn heartbeat_extends_the_lease_and_records_progress() {
    let t = setup("heartbeat");
    let (id, token) = t.claimed();
    t.advance(50_000);
    let j = t
        .store
        .heartbeat(
            &id,
            &token,
            60_000,
            Some(Progress {
                percent: 40.0,
                message: Some("bootstrapping".into()),
                phase: Some("demos".into()),
            }),
        )
        .unwrap();
    assert_eq!(j.progress.percent, 40.0);
    t.advance(50_000); // 100 s after the claim, 50 s after the heartbeat
    assert!(t.store.sweep().unwrap().is_empty());
    assert_eq!(
        t.store
            .complete(&id, &token, serde_json::json!(1))
            .unwrap()
            .status,
        Status::Completed
    );
}

#[test]
fn a_stale_token_is_fenced_off() {
    let t = setup("fencing");
    let (id, old) = t.claimed();
    // wrong token
    assert!(matches!(
        t.store.complete(&id, "not-the-token", serde_json::json!(1)),
        Err(StoreError::StaleLease { .. })
    ));
    // the lease expires: even the right token is refused, before and after the sweep
    t.advance(60_001);
    assert!(matches!(
        t.store.heartbeat(&id, &old, 60_000, None),
        Err(StoreError::StaleLease { .. })
    ));
    let swept = t.store.sweep().unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].status, Status::Pending);
    assert_eq!(swept[0].attempt, 1);
    t.advance(10_000);
    let (_, new) = t.store.claim("w2", &[], 60_000).unwrap().unwrap();
    // the first worker comes back: fenced
    assert!(t
        .store
        .complete(&id, &old, serde_json::json!("late"))
        .is_err());
    let j = t
        .store
        .complete(&id, &new, serde_json::json!("ok"))
        .unwrap();
    assert_eq!(j.result, Some(serde_json::json!("ok")));
}

#[test]
fn the_sweeper_fails_jobs_out_of_attempts_and_never_touches_terminal_ones() {
    let t = setup("sweep");
    let id = t
        .store
        .create(NewJob {
            job_type: "optimization".into(),
            max_attempts: Some(1),
            ..NewJob::default()
        })
        .unwrap()
        .0
        .id;
    t.store.claim("w", &[], 1_000).unwrap().unwrap();
    let (done, tok) = t.claimed();
    t.store.complete(&done, &tok, serde_json::json!(1)).unwrap();
    t.advance(120_000);
    let swept = t.store.sweep().unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].id, id);
    assert_eq!(swept[0].status, Status::Failed);
    assert!(swept[0].error.as_deref().unwrap_or("").contains("expired"));
    assert_eq!(
        t.store.get(&done).unwrap().unwrap().status,
        Status::Completed
    );
    assert!(t.store.sweep().unwrap().is_empty());
}

#[test]
fn fifty_concurrent_creates_with_one_key_make_one_job() {
    let path = tmp("idem");
    let store = Arc::new(Store::open(&path, true).unwrap());
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let s = Arc::clone(&store);
            std::thread::spawn(move || {
                s.create(NewJob {
                    job_type: "optimization".into(),
                    idempotency_key: Some("same-key".into()),
                    ..NewJob::default()
                })
                .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ids: std::collections::HashSet<_> = results.iter().map(|(j, _)| j.id.clone()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let page = store
        .list(&Filter {
            limit: 100,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(page.jobs.len(), 1);
    Arc::try_unwrap(store).unwrap().close().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn closing_through_a_shared_handle_keeps_what_was_queued_and_refuses_what_comes_after() {
    let path = tmp("close-shared");
    let store = Arc::new(Store::open(&path, true).unwrap());
    let other = Arc::clone(&store);
    let job = |task: String| NewJob {
        job_type: "optimization".into(),
        task,
        ..NewJob::default()
    };
    // Sent to the writer when called, answered after their commit: still queued at the close.
    let queued: Vec<_> = (0..50)
        .map(|i| store.create_async(job(format!("t{i}"))))
        .collect();
    store.close().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ids: Vec<String> = runtime.block_on(async {
        let mut ids = Vec::new();
        for q in queued {
            ids.push(q.await.unwrap().0.id);
        }
        ids
    });
    // Another handle is still alive: its calls get the error, never a panic.
    assert!(matches!(
        other.create(job("late".into())),
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        runtime.block_on(other.create_async(job("late".into()))),
        Err(StoreError::Closed)
    ));
    assert!(matches!(other.get(&ids[0]), Err(StoreError::Closed)));
    assert_eq!(
        other.create(job("late".into())).unwrap_err().to_string(),
        "the store is closed"
    );
    // Closing again does nothing.
    other.close().unwrap();
    // The WAL was checkpointed into the file, and the writer lock released.
    let wal = std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len());
    assert_eq!(wal, 0);
    let reopened = Store::open(&path, false).unwrap();
    for id in &ids {
        assert!(reopened.get(id).unwrap().is_some(), "job {id} was lost");
    }
    reopened.close().unwrap();
    drop(other);
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn a_missing_database_is_not_created_without_init() {
    let path = tmp("missing");
    assert!(matches!(
        Store::open(&path, false),
        Err(StoreError::Missing(_))
    ));
    assert!(!path.exists());
}

#[test]
fn pruning_removes_only_old_terminal_jobs() {
    let t = setup("prune");
    let (done, tok) = t.claimed();
    t.store.complete(&done, &tok, serde_json::json!(1)).unwrap();
    let cancelled = t.new_job();
    t.store.cancel(&cancelled).unwrap();
    let (running, _) = t.claimed();
    let (parked, tok2) = t.claimed();
    t.store
        .request_hitl(&parked, &tok2, "q", serde_json::json!(1))
        .unwrap();
    let pending = t.new_job();
    t.advance(40 * 86_400_000);
    let recent = t.new_job();
    let recent_done = {
        let (j, tk) = t.store.claim("w", &[], 60_000).unwrap().unwrap();
        // the oldest pending job is claimed first
        assert_eq!(j.id, pending);
        t.store.complete(&j.id, &tk, serde_json::json!(1)).unwrap();
        j.id
    };
    let removed = t.store.prune(30 * 86_400_000).unwrap();
    assert_eq!(removed, 2);
    assert!(t.store.get(&done).unwrap().is_none());
    assert!(t.store.get(&cancelled).unwrap().is_none());
    for id in [&running, &parked, &recent, &recent_done] {
        assert!(t.store.get(id).unwrap().is_some(), "{id} must survive");
    }
}

#[test]
fn pagination_is_newest_first_with_a_cursor() {
    let t = setup("page");
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(t.new_job());
        t.advance(1);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = t
            .store
            .list(&Filter {
                limit: 3,
                cursor: cursor.clone(),
                ..Filter::default()
            })
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let only = t
        .store
        .list(&Filter {
            status: Some(Status::Running),
            limit: 10,
            ..Filter::default()
        })
        .unwrap();
    assert!(only.jobs.is_empty());
}

#[test]
fn the_cache_never_grows_past_its_capacity_and_stays_current() {
    let t = setup_with(
        "cache",
        StoreOptions {
            cache_capacity: 5,
            ..StoreOptions::default()
        },
    );
    let ids: Vec<String> = (0..20).map(|_| t.new_job()).collect();
    for id in &ids {
        assert!(t.store.get(id).unwrap().is_some());
        assert!(t.store.cached() <= 5);
    }
    let first = &ids[0];
    let cached = t.store.get(first).unwrap().unwrap();
    t.store.cancel(first).unwrap();
    let after = t.store.get(first).unwrap().unwrap();
    assert_eq!(after.status, Status::Cancelled);
    assert!(after.version > cached.version);
}

#[test]
fn an_older_database_is_upgraded_and_a_newer_one_refused() {
    let path = tmp("migrate");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0].1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    assert_eq!(
        pending_migrations(&path).unwrap(),
        vec![
            (2, "create jobs"),
            (3, "create examples"),
            (4, "create decisions and outcomes"),
            (5, "index pending jobs in claim order")
        ]
    );
    // without init the old schema is refused with advice
    let err = Store::open(&path, false).unwrap_err().to_string();
    assert!(err.contains("skill-fleet db migrate"), "{err}");
    let s = Store::open(&path, true).unwrap();
    assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
    s.create(NewJob {
        job_type: "optimization".into(),
        ..NewJob::default()
    })
    .unwrap();
    s.close().unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    assert!(matches!(
        Store::open(&path, true),
        Err(StoreError::TooNew { found: 99, .. })
    ));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn invalid_input_is_refused_naming_the_field() {
    let t = setup("invalid");
    let field = |r: Result<_, StoreError>| match r {
        Err(StoreError::Field { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(t.store.create(NewJob::default()).map(|_| ())),
        "job_type"
    );
    assert_eq!(
        field(
            t.store
                .create(NewJob {
                    job_type: "x".into(),
                    max_attempts: Some(0),
                    ..NewJob::default()
                })
                .map(|_| ())
        ),
        "max_attempts"
    );
    assert_eq!(field(t.store.claim("", &[], 60_000).map(|_| ())), "worker");
    assert!(matches!(
        t.store.claim("w", &[], 10),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn training_examples_are_merged_listed_and_updated_with_the_store_clock() {
    use crate::engine::training::{parse_records, RunResult, SHIPPED_EXAMPLES};
    let t = setup("examples");
    assert_eq!(t.store.example_count().unwrap(), 0);
    let mut records = parse_records(SHIPPED_EXAMPLES).unwrap();
    let c = t.store.import_examples(records.clone()).unwrap();
    assert_eq!((c.inserted, c.updated), (50, 0));
    records[0].quality_score = 0.1;
    let c = t.store.import_examples(records[..2].to_vec()).unwrap();
    assert_eq!((c.inserted, c.updated), (0, 2));
    let all = t.store.examples().unwrap();
    assert_eq!(all.len(), 50);
    let first = all
        .iter()
        .find(|e| e.example_id == records[0].example_id)
        .unwrap();
    assert_eq!(first.quality_score, 0.1);
    let rules = include_str!("../../rules/training.yaml");
    let v: serde_yaml::Value = serde_yaml::from_str(rules).unwrap();
    let spec: crate::rules::spec::TrainingSpec =
        serde_yaml::from_value(v["training"].clone()).unwrap();
    let out = t
        .store
        .apply_example_results(
            &spec,
            vec![RunResult {
                example_id: records[0].example_id.clone(),
                score: 1.0,
                passed: true,
            }],
        )
        .unwrap();
    assert_eq!(out.updated.len(), 1);
    assert_eq!(
        out.updated[0].last_used.as_deref(),
        Some(sql::ms_to_rfc3339(1_800_000_000_000).as_str())
    );
    let again = t.store.examples().unwrap();
    let first = again
        .iter()
        .find(|e| e.example_id == records[0].example_id)
        .unwrap();
    assert_eq!(first.usage_count, records[0].usage_count + 1);
    assert!((first.quality_score - (0.8 * 0.1 + 0.2)).abs() < 1e-9);
}
