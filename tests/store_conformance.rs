//! The job store's conformance suite: every test runs its body through the public [`Store`] API
//! against both backends, a fresh SQLite file in a temporary directory and a fresh PostgreSQL
//! database on the shared throwaway cluster (`tests/pg_cluster.rs`; its texts sort by language
//! rules, as in many production databases), each with a manual clock.
//! A failure says on which backend it happened. What only SQLite has (the job cache, the
//! writer lock, WAL, the file watch) is tested in `src/store/tests.rs`; PostgreSQL's own parts
//! (URLs, several nodes on separate connections) in `tests/postgres.rs`.

use super::support::{concurrently, shipped_training, Backend, TempDir};
use serde_json::{json, Value};
use skill_fleet::engine::training::{
    apply_results, parse_records, Example, RunResult, SHIPPED_EXAMPLES,
};
use skill_fleet::outcome::{NewOutcome, OutcomeRecord, RunContext, RunReport};
use skill_fleet::store::decisions::{DecisionRecord, DecisionTexts, NewDecision};
use skill_fleet::store::job::{Job, NewJob, Progress, Status};
use skill_fleet::store::{self, pending_migrations, Filter, Store, StoreError, StoreOptions};
use skill_fleet::store::{Clock, MIGRATIONS};
use skill_fleet::util::time::rfc3339_ms;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where every manual clock starts (2027-01-15).
const T0: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 86_400_000;
/// The lease of most claims.
const LEASE: i64 = 60_000;

// ---- the backends ---------------------------------------------------------------------------

/// Runs `body` once per available backend; a failure names the backend it happened on.
fn on_each_backend(body: impl Fn(Backend)) {
    for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(backend))) {
            let text = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("on {backend}: {text}");
        }
    }
}

/// The store's view of a manual clock.
fn clock_of(now: &Arc<AtomicI64>) -> Clock {
    let now = Arc::clone(now);
    Arc::new(move || now.load(Ordering::SeqCst))
}

fn open_at(
    location: &Path,
    init: bool,
    opts: StoreOptions,
    now: &Arc<AtomicI64>,
) -> Result<Store, StoreError> {
    Store::open_with(location, init, opts, clock_of(now))
}

/// A fresh, open store of one backend with a manual clock that starts at [`T0`].
struct Subject {
    backend: Backend,
    location: PathBuf,
    store: Store,
    clock: Arc<AtomicI64>,
    _dir: TempDir,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.backend.fmt(f)
    }
}

/// Runs `body` against a fresh store of each backend, with default options.
fn each(tag: &str, body: impl Fn(&Subject)) {
    each_with(tag, StoreOptions::default(), body);
}

/// Runs `body` against a fresh store of each backend opened with `opts`; closes it after.
fn each_with(tag: &str, opts: StoreOptions, body: impl Fn(&Subject)) {
    on_each_backend(|backend| {
        let (location, dir) = backend.fresh(tag);
        let clock = Arc::new(AtomicI64::new(T0));
        let store = open_at(&location, true, opts.clone(), &clock)
            .unwrap_or_else(|e| panic!("open a fresh {backend} store: {e}"));
        let s = Subject {
            backend,
            location,
            store,
            clock,
            _dir: dir,
        };
        body(&s);
        s.store.close().expect("close the store");
    });
}

fn new_job(job_type: &str) -> NewJob {
    NewJob {
        job_type: job_type.into(),
        task: "tune".into(),
        ..NewJob::default()
    }
}

impl Subject {
    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// The store's timestamp `ms` from now.
    fn at(&self, ms: i64) -> String {
        rfc3339_ms(self.now() + ms)
    }

    fn create(&self, new: NewJob) -> Job {
        self.store.create(new).expect("create").0
    }

    /// A new pending `optimization` job.
    fn job(&self) -> String {
        self.create(new_job("optimization")).id
    }

    fn get(&self, id: &str) -> Job {
        self.store
            .get(id)
            .expect("get")
            .unwrap_or_else(|| panic!("{self}: job {id} is gone"))
    }

    /// Claims job `id` (whatever else waits) for `lease_ms`: its lease token.
    fn claim_id(&self, id: &str, lease_ms: i64) -> String {
        let (job, token) = self
            .store
            .claim_job("w1", &[], lease_ms, Some(id))
            .expect("claim")
            .unwrap_or_else(|| panic!("{self}: job {id} is not claimable"));
        assert_eq!(job.id, id);
        token
    }

    /// A new running job: its id and lease token.
    fn running(&self) -> (String, String) {
        let id = self.job();
        let token = self.claim_id(&id, LEASE);
        (id, token)
    }

    /// A new job in `status`, with the token of its last lease when it had one.
    fn in_status(&self, status: Status) -> (String, Option<String>) {
        if status == Status::Pending {
            return (self.job(), None);
        }
        let (id, token) = self.running();
        let st = &self.store;
        match status {
            Status::Running => {}
            Status::PendingHitl => {
                st.request_hitl(&id, &token, "q", json!(1)).expect("hitl");
            }
            Status::Completed => {
                st.complete(&id, &token, json!(1)).expect("complete");
            }
            Status::Failed => {
                st.fail(&id, &token, "boom", false).expect("fail");
            }
            Status::Cancelled => {
                st.cancel(&id).expect("cancel");
            }
            Status::Pending => unreachable!("made above"),
        }
        assert_eq!(self.get(&id).status, status, "{self}");
        (id, Some(token))
    }

    /// Sweeps: the ids of the jobs it changed, in its order.
    fn swept_ids(&self) -> Vec<String> {
        let swept = self.store.sweep().expect("sweep");
        swept.into_iter().map(|j| j.id).collect()
    }

    /// Imports the shipped training examples: the records, as imported.
    fn import_shipped_examples(&self) -> Vec<Example> {
        let records = parse_records(SHIPPED_EXAMPLES).expect("shipped examples");
        self.store.import_examples(records.clone()).expect("import");
        records
    }

    /// Another store on the same database (SQLite's must be closed first: one writer).
    fn reopen(&self, init: bool) -> Result<Store, StoreError> {
        open_at(&self.location, init, StoreOptions::default(), &self.clock)
    }
}

// ---- the calls that change a job ------------------------------------------------------------

/// Every call that changes one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Claim,
    Heartbeat,
    Complete,
    Fail,
    Retry,
    AskHuman,
    Answer,
    Cancel,
}

impl Call {
    const ALL: [Call; 8] = [
        Call::Claim,
        Call::Heartbeat,
        Call::Complete,
        Call::Fail,
        Call::Retry,
        Call::AskHuman,
        Call::Answer,
        Call::Cancel,
    ];

    /// The calls that need the lease.
    const LEASED: [Call; 5] = [
        Call::Heartbeat,
        Call::Complete,
        Call::Fail,
        Call::Retry,
        Call::AskHuman,
    ];

    /// Makes the call on job `id` with `token` (where it takes one): the job after it, or
    /// `None` for a claim that claimed nothing.
    fn run(self, s: &Subject, id: &str, token: &str) -> Result<Option<Job>, StoreError> {
        let st = &s.store;
        match self {
            Call::Claim => Ok(st.claim_job("w2", &[], LEASE, Some(id))?.map(|(j, _)| j)),
            Call::Heartbeat => st.heartbeat(id, token, LEASE, None).map(Some),
            Call::Complete => st.complete(id, token, json!({"score": 0.9})).map(Some),
            Call::Fail => st.fail(id, token, "boom", false).map(Some),
            Call::Retry => st.fail(id, token, "flaky", true).map(Some),
            Call::AskHuman => st
                .request_hitl(id, token, "approve", json!({"q": 1}))
                .map(Some),
            Call::Answer => st.respond_hitl(id, json!({"yes": true})).map(Some),
            Call::Cancel => st.cancel(id).map(Some),
        }
    }

    /// The status the call leaves a job in `from` in; `None` when it is refused (for a claim:
    /// nothing claimed).
    fn result(self, from: Status) -> Option<Status> {
        use Status::*;
        match (self, from) {
            (Call::Claim, Pending) => Some(Running),
            (Call::Heartbeat, Running) => Some(Running),
            (Call::Complete, Running) => Some(Completed),
            (Call::Fail, Running) => Some(Failed),
            (Call::Retry, Running) => Some(Pending),
            (Call::AskHuman, Running) => Some(PendingHitl),
            (Call::Answer, PendingHitl) => Some(Pending),
            (Call::Cancel, f) if !f.is_terminal() => Some(Cancelled),
            _ => None,
        }
    }

    /// The status a refusal names as asked for.
    fn asks_for(self) -> Status {
        match self {
            Call::Claim | Call::Heartbeat => Status::Running,
            Call::Complete => Status::Completed,
            Call::Fail | Call::Retry => Status::Failed,
            Call::AskHuman => Status::PendingHitl,
            Call::Answer => Status::Pending,
            Call::Cancel => Status::Cancelled,
        }
    }
}

fn assert_stale(r: Result<Option<Job>, StoreError>, id: &str, what: &str) {
    match r {
        Err(StoreError::StaleLease { id: i, status }) => {
            assert_eq!((i.as_str(), status), (id, Status::Running), "{what}");
        }
        other => panic!("{what}: expected a stale lease, got {other:?}"),
    }
}

// ---- jobs: the lifecycle --------------------------------------------------------------------

#[test]
fn a_new_job_is_pending_with_its_defaults_as_stored() {
    each("conf_create", |s| {
        let job = s.create(NewJob {
            job_type: "  optimization ".into(),
            user_id: Some("ada".into()),
            task: "tune the summarizer".into(),
            payload: Some(json!({"optimizer": "gepa", "budget": 2.5, "tags": ["a", "b"]})),
            ..NewJob::default()
        });
        assert_eq!(job.job_type, "optimization", "trimmed");
        assert_eq!(
            (job.status, job.attempt, job.max_attempts, job.version),
            (Status::Pending, 0, 3, 1)
        );
        assert_eq!(
            job.payload,
            json!({"optimizer": "gepa", "budget": 2.5, "tags": ["a", "b"]})
        );
        let t = s.at(0);
        assert_eq!(
            (job.created_at.as_str(), job.updated_at.as_str()),
            (&*t, &*t)
        );
        assert_eq!(job.progress, Progress::default());
        assert!(job.lease.is_none() && job.hitl.is_none() && job.result.is_none());
        assert!(job.started_at.is_none() && job.completed_at.is_none());
        // The answer is what is stored.
        assert_eq!(s.get(&job.id), job, "{s}");
        let bare = s.create(NewJob {
            job_type: "t".into(),
            max_attempts: Some(7),
            ..NewJob::default()
        });
        assert_eq!((bare.payload, bare.max_attempts), (json!({}), 7));
        assert!(s.store.get("no-such-job").expect("get").is_none());
    });
}

#[test]
fn every_legal_transition_is_made_and_every_illegal_one_refused_with_the_current_status() {
    // The calls make exactly the transitions `Status::can_become` allows.
    let mut made = HashSet::new();
    for from in Status::ALL {
        for call in Call::ALL {
            if let Some(to) = call.result(from).filter(|&to| to != from) {
                assert!(from.can_become(to), "{call:?}: {from} -> {to}");
                made.insert((from, to));
            }
        }
    }
    for from in Status::ALL {
        for to in Status::ALL {
            assert_eq!(
                made.contains(&(from, to)),
                from.can_become(to),
                "{from} -> {to}"
            );
        }
    }
    each("conf_transitions", |s| {
        for from in Status::ALL {
            for call in Call::ALL {
                let (id, token) = s.in_status(from);
                let before = s.get(&id);
                let got = call.run(s, &id, token.as_deref().unwrap_or("no-token"));
                let what = format!("{s}: {call:?} of a {from} job");
                match (call.result(from), got) {
                    (Some(to), Ok(Some(job))) => {
                        assert_eq!(job.status, to, "{what}");
                        assert_eq!(job.version, before.version + 1, "{what}");
                        assert_eq!(s.get(&id), job, "{what}: the answer is what is stored");
                    }
                    (None, Ok(None)) if call == Call::Claim => {
                        assert_eq!(s.get(&id), before, "{what}");
                    }
                    (None, Err(StoreError::IllegalTransition { id: i, from: f, to })) => {
                        assert_eq!((i.as_str(), f, to), (id.as_str(), from, call.asks_for()));
                        assert_eq!(s.get(&id), before, "{what}: a refusal changes nothing");
                    }
                    (want, got) => panic!("{what}: expected {want:?}, got {got:?}"),
                }
            }
        }
        for call in Call::ALL {
            match call.run(s, "no-such-job", "t") {
                Ok(None) if call == Call::Claim => {}
                Err(StoreError::NotFound(id)) if id == "no-such-job" => {}
                other => panic!("{s}: {call:?} of an unknown job: {other:?}"),
            }
        }
        let (done, _) = s.in_status(Status::Completed);
        let e = s.store.cancel(&done).expect_err("terminal");
        assert_eq!(
            e.to_string(),
            format!("job `{done}` is completed; it cannot become cancelled")
        );
    });
}

#[test]
fn claiming_completing_and_failing_fill_the_job_as_they_should() {
    each("conf_fields", |s| {
        let (id, token) = s.running();
        let j = s.get(&id);
        assert_eq!(j.lease.as_ref().map(|l| l.owner.as_str()), Some("w1"));
        assert_eq!(
            j.lease.as_ref().map(|l| l.expires_at.clone()),
            Some(s.at(LEASE))
        );
        assert_eq!(
            (j.started_at.clone(), j.updated_at.clone()),
            (Some(s.at(0)), s.at(0))
        );
        assert!(!token.is_empty());
        assert!(s.store.claim("w2", &[], LEASE).expect("claim").is_none());
        s.advance(5);
        let done = s
            .store
            .complete(&id, &token, json!({"score": 0.9}))
            .expect("complete");
        assert_eq!(done.result, Some(json!({"score": 0.9})));
        assert_eq!(done.progress.percent, 100.0);
        assert!(done.lease.is_none());
        assert_eq!(done.completed_at, Some(s.at(0)));
        assert_eq!(done.started_at, j.started_at, "{s}");

        let (id, token) = s.running();
        let failed = s.store.fail(&id, &token, "boom", false).expect("fail");
        assert_eq!(failed.status, Status::Failed);
        assert_eq!((failed.error.as_deref(), failed.attempt), (Some("boom"), 1));
        assert_eq!(failed.completed_at, Some(s.at(0)));
        assert!(failed.lease.is_none() && failed.not_before.is_none());
    });
}

#[test]
fn retries_wait_for_a_doubling_capped_backoff_until_attempts_run_out() {
    let opts = StoreOptions {
        backoff_base_ms: 1_000,
        backoff_max_ms: 3_000,
        default_max_attempts: 5,
        ..StoreOptions::default()
    };
    each_with("conf_backoff", opts, |s| {
        let id = s.job();
        let mut token = s.claim_id(&id, LEASE);
        for (attempt, delay) in [(1, 1_000), (2, 2_000), (3, 3_000), (4, 3_000)] {
            let j = s.store.fail(&id, &token, "flaky", true).expect("fail");
            assert_eq!((j.status, j.attempt), (Status::Pending, attempt), "{s}");
            assert_eq!(j.not_before, Some(s.at(delay)), "{s}: attempt {attempt}");
            assert_eq!(j.error.as_deref(), Some("flaky"));
            assert!(j.lease.is_none() && j.completed_at.is_none());
            // Not claimable before its time, claimable at it.
            s.advance(delay - 1);
            assert!(s.store.claim("w", &[], LEASE).expect("claim").is_none());
            s.advance(1);
            let (next, t) = s.store.claim("w", &[], LEASE).expect("claim").expect("due");
            assert_eq!(next.id, id, "{s}");
            assert!(next.not_before.is_none(), "{s}: a claim clears the backoff");
            token = t;
        }
        let j = s.store.fail(&id, &token, "still", true).expect("fail");
        assert_eq!((j.status, j.attempt), (Status::Failed, 5), "{s}");
        assert!(j.not_before.is_none(), "{s}");
    });
}

#[test]
fn a_question_parks_a_job_until_a_human_answers() {
    each("conf_hitl", |s| {
        let (id, token) = s.running();
        let j = s
            .store
            .request_hitl(&id, &token, "approve_config", json!({"q": "ok?"}))
            .expect("ask");
        assert_eq!(j.status, Status::PendingHitl);
        assert!(j.lease.is_none());
        // Parked: not claimable, not even by id, and the sweeper leaves it alone however long.
        assert!(s.store.claim("w", &[], LEASE).expect("claim").is_none());
        assert!(s
            .store
            .claim_job("w", &[], LEASE, Some(&id))
            .expect("claim")
            .is_none());
        s.advance(10 * DAY_MS);
        assert!(s.store.sweep().expect("sweep").is_empty(), "{s}");
        let j = s
            .store
            .respond_hitl(&id, json!({"approved": true}))
            .expect("answer");
        assert_eq!(j.status, Status::Pending);
        let (j, token) = s
            .store
            .claim("w2", &[], LEASE)
            .expect("claim")
            .expect("job");
        let hitl = j.hitl.expect("the question and its answer");
        assert_eq!(
            (hitl.kind.as_str(), hitl.data, hitl.response),
            (
                "approve_config",
                json!({"q": "ok?"}),
                Some(json!({"approved": true}))
            )
        );
        // A new question forgets the old answer.
        let j = s
            .store
            .request_hitl(&id, &token, "second", json!(2))
            .expect("ask again");
        let hitl = j.hitl.expect("question");
        assert_eq!((hitl.kind.as_str(), hitl.response), ("second", None), "{s}");
    });
}

#[test]
fn cancelling_ends_a_live_job_and_its_lease() {
    each("conf_cancel", |s| {
        for from in [Status::Pending, Status::Running, Status::PendingHitl] {
            let (id, token) = s.in_status(from);
            s.advance(3);
            let j = s.store.cancel(&id).expect("cancel");
            assert_eq!(j.status, Status::Cancelled, "{s}: from {from}");
            assert!(j.lease.is_none());
            assert_eq!(j.completed_at, Some(s.at(0)), "{s}: from {from}");
            if let Some(token) = token {
                // The worker learns it at its next call.
                match s.store.heartbeat(&id, &token, LEASE, None) {
                    Err(StoreError::IllegalTransition { from, .. }) => {
                        assert_eq!(from, Status::Cancelled)
                    }
                    other => panic!("{s}: {other:?}"),
                }
            }
        }
    });
}

// ---- fencing ----------------------------------------------------------------------------------

#[test]
fn a_wrong_or_expired_token_is_fenced_off_on_every_leased_call() {
    each("conf_fencing", |s| {
        for call in Call::LEASED {
            let what = format!("{s}: {call:?}");
            let (id, token) = s.running();
            let before = s.get(&id);
            assert_stale(call.run(s, &id, "not-the-token"), &id, &what);
            assert_stale(call.run(s, &id, &format!("{token}x")), &id, &what);
            assert_stale(call.run(s, &id, ""), &id, &what);
            // The lease ends at its expiry time: from then on even the right token is stale,
            // before any sweep.
            s.advance(LEASE);
            assert_stale(call.run(s, &id, &token), &id, &what);
            assert_eq!(s.get(&id), before, "{what}: a refusal changes nothing");
            // A millisecond earlier it still holds.
            let (id, token) = s.running();
            s.advance(LEASE - 1);
            let after = call.run(s, &id, &token).expect("within the lease");
            assert_eq!(
                after.map(|j| j.status),
                call.result(Status::Running),
                "{what}"
            );
        }
    });
}

#[test]
fn a_worker_whose_lease_was_swept_and_reclaimed_is_fenced_off() {
    each("conf_reclaim", |s| {
        let (id, old) = s.running();
        s.advance(LEASE + 1);
        let swept = s.store.sweep().expect("sweep");
        assert_eq!(swept.len(), 1, "{s}");
        assert_eq!((swept[0].status, swept[0].attempt), (Status::Pending, 1));
        s.advance(10_000);
        let (j, new) = s
            .store
            .claim("w2", &[], LEASE)
            .expect("claim")
            .expect("job");
        assert_eq!(j.id, id);
        for call in Call::LEASED {
            assert_stale(call.run(s, &id, &old), &id, &format!("{s}: late {call:?}"));
        }
        let j = s.store.complete(&id, &new, json!("ok")).expect("complete");
        assert_eq!(j.result, Some(json!("ok")), "{s}");
    });
}

#[test]
fn heartbeats_extend_the_lease_and_record_progress() {
    each("conf_heartbeat", |s| {
        let (id, token) = s.running();
        s.advance(50_000);
        let progress = Progress {
            percent: 40.0,
            message: Some("bootstrapping".into()),
            phase: Some("demos".into()),
        };
        let j = s
            .store
            .heartbeat(&id, &token, LEASE, Some(progress.clone()))
            .expect("heartbeat");
        assert_eq!(j.progress, progress);
        assert_eq!(j.lease.map(|l| l.expires_at), Some(s.at(LEASE)), "{s}");
        // Without progress the last report stays; out-of-range percentages are clamped.
        let j = s.store.heartbeat(&id, &token, LEASE, None).expect("hb");
        assert_eq!(j.progress, progress, "{s}");
        for (given, kept) in [(150.0, 100.0), (-3.0, 0.0)] {
            let p = Progress {
                percent: given,
                ..Progress::default()
            };
            let j = s.store.heartbeat(&id, &token, LEASE, Some(p)).expect("hb");
            assert_eq!(j.progress.percent, kept, "{s}: {given}");
        }
        s.advance(50_000); // 100 s after the claim, 50 s after the heartbeat
        assert!(s.store.sweep().expect("sweep").is_empty(), "{s}");
        let j = s.store.complete(&id, &token, json!(1)).expect("complete");
        assert_eq!(j.status, Status::Completed);
    });
}

// ---- claims -----------------------------------------------------------------------------------

#[test]
fn claims_take_the_oldest_job_of_the_asked_types() {
    each("conf_claims", |s| {
        let a = s.job();
        s.advance(1);
        let b = s.create(new_job("skill_creation")).id;
        s.advance(1);
        let c = s.create(new_job("evaluation")).id;
        let claim = |types: &[&str]| {
            let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
            s.store
                .claim("w", &types, LEASE)
                .expect("claim")
                .map(|(j, _)| j.id)
        };
        assert_eq!(claim(&["skill_creation"]), Some(b), "{s}");
        assert_eq!(claim(&["no_such_type"]), None, "{s}");
        assert_eq!(claim(&["evaluation", "optimization"]), Some(a), "{s}");
        assert_eq!(claim(&[]), Some(c), "{s}");
        assert_eq!(claim(&[]), None, "{s}");
        // Created in the same millisecond: by id.
        let mut same: Vec<String> = (0..5).map(|_| s.job()).collect();
        same.sort();
        let order: Vec<String> = (0..5).filter_map(|_| claim(&[])).collect();
        assert_eq!(order, same, "{s}");
    });
}

#[test]
fn a_claim_by_id_takes_that_job_or_nothing() {
    each("conf_claim_id", |s| {
        let first = s.job();
        s.advance(1);
        let second = s.job();
        let opt = ["optimization".to_string()];
        let by_id = |id: &str, types: &[String]| {
            s.store
                .claim_job("w", types, LEASE, Some(id))
                .expect("claim")
                .map(|(j, _)| j.id)
        };
        assert_eq!(
            by_id(&second, &["evaluation".into()]),
            None,
            "{s}: another type"
        );
        assert_eq!(by_id(&second, &opt).as_deref(), Some(second.as_str()));
        // Taken already, or unknown: nothing, and nothing else is claimed instead.
        assert_eq!(by_id(&second, &opt), None, "{s}");
        assert_eq!(by_id("no-such-job", &opt), None, "{s}");
        assert_eq!(s.get(&first).status, Status::Pending, "{s}");
    });
}

// ---- the sweeper ------------------------------------------------------------------------------

#[test]
fn the_sweeper_returns_expired_leases_and_fails_jobs_out_of_attempts() {
    each("conf_sweep", |s| {
        let mk = |max: i64| {
            s.create(NewJob {
                max_attempts: Some(max),
                ..new_job("optimization")
            })
            .id
        };
        let (returned, exhausted, live) = (mk(3), mk(1), mk(3));
        let first = s.claim_id(&returned, 1_000);
        s.claim_id(&exhausted, 1_000);
        s.claim_id(&live, 5_000);
        let parked = s.in_status(Status::PendingHitl).0;
        let done = s.in_status(Status::Completed).0;
        let pending = s.job();
        let untouched: Vec<Job> = [&live, &parked, &done, &pending]
            .iter()
            .map(|id| s.get(id))
            .collect();
        s.advance(999);
        assert!(s.store.sweep().expect("sweep").is_empty(), "{s}: not yet");
        s.advance(1); // the leases end now
        let swept = s.store.sweep().expect("sweep");
        // Both leases ended now: by id.
        let mut want = vec![s.get(&returned), s.get(&exhausted)];
        want.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(swept, want, "{s}: the answer is what is stored, in order");
        let r = s.get(&returned);
        assert_eq!((r.status, r.attempt, r.version), (Status::Pending, 1, 3));
        assert_eq!(r.not_before, Some(s.at(1_000)), "{s}: the first backoff");
        assert_eq!(
            r.error.as_deref(),
            Some("lease of worker `w1` expired; retrying (1 of 3 attempts used)")
        );
        assert!(r.lease.is_none() && r.completed_at.is_none());
        let x = s.get(&exhausted);
        assert_eq!((x.status, x.attempt), (Status::Failed, 1));
        assert_eq!(
            x.error.as_deref(),
            Some("lease of worker `w1` expired; 1 of 1 attempts used")
        );
        assert_eq!(x.completed_at, Some(s.at(0)));
        for j in &untouched {
            assert_eq!(
                &s.get(&j.id),
                j,
                "{s}: the sweep touched a {} job",
                j.status
            );
        }
        assert!(s.store.sweep().expect("sweep").is_empty(), "{s}: once");
        // Claimed again after its backoff: the first start stays.
        s.advance(1_000);
        let again = s.claim_id(&returned, LEASE);
        assert_ne!(again, first);
        assert_eq!(s.get(&returned).started_at, Some(rfc3339_ms(T0)), "{s}");
        // Swept in the order the leases ended, then by id.
        s.advance(5_000);
        let late = s.swept_ids();
        assert_eq!(late, vec![live.clone()], "{s}");
        let leases = [5_000, 2_000, 4_000, 2_000, 3_000];
        let mut ended: Vec<(i64, String)> = leases
            .iter()
            .map(|&lease| {
                let id = s.job();
                s.claim_id(&id, lease);
                (lease, id)
            })
            .collect();
        ended.sort();
        s.advance(5_000);
        let order = s.swept_ids();
        let want: Vec<String> = ended.into_iter().map(|(_, id)| id).collect();
        assert_eq!(order, want, "{s}");
    });
}

#[test]
fn concurrent_sweeps_add_exactly_one_attempt() {
    each("conf_sweeps", |s| {
        let ids: Vec<String> = (0..20).map(|_| s.job()).collect();
        for id in &ids {
            s.claim_id(id, 1_000);
        }
        s.advance(1_000);
        let swept = concurrently(4, |_| s.store.sweep().expect("sweep").len());
        let total: usize = swept.iter().sum();
        assert_eq!(total, ids.len(), "{s}: each expired lease swept once");
        for id in &ids {
            let j = s.get(id);
            assert_eq!(
                (j.status, j.attempt, j.version),
                (Status::Pending, 1, 3),
                "{s}"
            );
        }
    });
}

// ---- retention --------------------------------------------------------------------------------

#[test]
fn pruning_removes_only_terminal_jobs_older_than_the_retention() {
    each("conf_prune", |s| {
        let done = s.in_status(Status::Completed).0;
        let failed = s.in_status(Status::Failed).0;
        let cancelled = s.in_status(Status::Cancelled).0;
        let running = s.in_status(Status::Running).0;
        let parked = s.in_status(Status::PendingHitl).0;
        let pending = s.job();
        s.advance(DAY_MS);
        let at_the_line = s.in_status(Status::Completed).0;
        s.advance(30 * DAY_MS);
        let recent = s.in_status(Status::Completed).0;
        // 30 days: older than that goes; ended exactly 30 days ago stays.
        assert_eq!(s.store.prune(30 * DAY_MS).expect("prune"), 3, "{s}");
        for id in [&done, &failed, &cancelled] {
            assert!(s.store.get(id).expect("get").is_none(), "{s}: {id} kept");
        }
        for id in [&running, &parked, &pending, &at_the_line, &recent] {
            assert!(s.store.get(id).expect("get").is_some(), "{s}: {id} pruned");
        }
        assert_eq!(s.store.prune(30 * DAY_MS).expect("prune"), 0, "{s}");
        s.advance(1);
        assert_eq!(s.store.prune(30 * DAY_MS).expect("prune"), 1, "{s}");
        s.advance(100 * DAY_MS);
        assert_eq!(s.store.prune(DAY_MS).expect("prune"), 1, "{s}");
        let left = s
            .store
            .list(&Filter {
                limit: 100,
                ..Filter::default()
            })
            .expect("list");
        assert_eq!(left.jobs.len(), 3, "{s}: the live jobs are never pruned");
    });
}

// ---- idempotency ------------------------------------------------------------------------------

#[test]
fn fifty_concurrent_creates_with_one_key_make_one_job() {
    each("conf_idem", |s| {
        let keyed = |key: &str, job_type: &str, task: String| {
            let new = NewJob {
                idempotency_key: Some(key.into()),
                task,
                ..new_job(job_type)
            };
            s.store.create(new).expect("create")
        };
        let results = concurrently(50, |i| {
            keyed("same-key", "optimization", format!("try {i}"))
        });
        let created: Vec<&Job> = results.iter().filter(|(_, c)| *c).map(|(j, _)| j).collect();
        assert_eq!(created.len(), 1, "{s}: one create made the job");
        assert_eq!(results.len() - created.len(), 49, "{s}");
        for (job, _) in &results {
            assert_eq!(job, created[0], "{s}: every caller gets the same job");
        }
        let all = Filter {
            limit: 100,
            ..Filter::default()
        };
        assert_eq!(s.store.list(&all).expect("list").jobs.len(), 1, "{s}");
        // The key returns the job as it is now, whatever the new body says.
        let token = s.claim_id(&created[0].id, LEASE);
        assert!(!token.is_empty());
        let (again, fresh) = keyed("same-key", "evaluation", "other".into());
        assert!(!fresh);
        assert_eq!(again, s.get(&created[0].id), "{s}");
        let (other, fresh) = keyed("other-key", "optimization", "tune".into());
        assert!(fresh && other.id != again.id, "{s}");
    });
}

// ---- migrations -------------------------------------------------------------------------------

/// A raw PostgreSQL connection to the database at `location`.
fn pg_client(location: &Path) -> postgres::Client {
    let url = location.to_str().expect("a URL");
    skill_fleet::store::pg::PgUrl::parse(url)
        .expect("url")
        .connect(Duration::from_secs(10))
        .expect("connect")
}

/// Runs `sql` on the database at `location` (closed), in the backend's own dialect.
fn raw_sql(backend: Backend, location: &Path, sqlite: &str, pg: &str) {
    match backend {
        Backend::Sqlite => rusqlite::Connection::open(location)
            .and_then(|c| c.execute_batch(sqlite))
            .expect("sqlite"),
        Backend::Postgres => pg_client(location).batch_execute(pg).expect("postgres"),
    }
}

#[test]
fn a_fresh_database_gets_every_migration_once() {
    on_each_backend(|backend| {
        let (loc, _dir) = backend.fresh("conf_migrate");
        assert!(!store::exists(&loc).expect("exists"));
        assert_eq!(
            pending_migrations(&loc).expect("pending").len(),
            MIGRATIONS.len()
        );
        // Without init nothing is created, whether to write or to read.
        let clock = Arc::new(AtomicI64::new(T0));
        let missing = |r: Result<Store, StoreError>| match r {
            Err(StoreError::Missing(p)) => assert!(!p.display().to_string().contains("hunter2")),
            other => panic!("expected a missing database, got {other:?}"),
        };
        missing(open_at(&loc, false, StoreOptions::default(), &clock));
        missing(Store::open_read_only(&loc));
        assert!(!store::exists(&loc).expect("exists"));

        let st = open_at(&loc, true, StoreOptions::default(), &clock).expect("init");
        let latest = MIGRATIONS.len() as i64;
        assert_eq!(st.schema_version().expect("version"), latest);
        assert!(pending_migrations(&loc).expect("pending").is_empty());
        assert!(store::exists(&loc).expect("exists"));
        let id = st.create(new_job("t")).expect("create").0.id;
        st.close().expect("close");
        // Reopening, with init or without, applies nothing and keeps everything.
        clock.store(T0 + DAY_MS, Ordering::SeqCst);
        for init in [true, false] {
            let again = open_at(&loc, init, StoreOptions::default(), &clock).expect("reopen");
            assert_eq!(again.schema_version().expect("version"), latest);
            assert!(again.get(&id).expect("get").is_some());
            assert_eq!(again.status().expect("status").schema_version, latest);
            again.close().expect("close");
        }
        if backend == Backend::Postgres {
            let rows: Vec<(i32, i64)> = pg_client(&loc)
                .query(
                    "SELECT version, applied_at FROM skill_fleet_migrations ORDER BY version",
                    &[],
                )
                .expect("migrations")
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let want: Vec<(i32, i64)> = (1..=MIGRATIONS.len() as i32).map(|v| (v, T0)).collect();
            assert_eq!(rows, want, "each migration applied once, at the first open");
        }
    });
}

#[test]
fn an_older_schema_is_upgraded_only_with_init_and_a_newer_one_is_refused() {
    on_each_backend(|backend| {
        let (loc, _dir) = backend.fresh("conf_versions");
        let clock = Arc::new(AtomicI64::new(T0));
        let open = |init| open_at(&loc, init, StoreOptions::default(), &clock);
        open(true).expect("init").close().expect("close");
        // Back to schema version 1, as an old build left it.
        raw_sql(
            backend,
            &loc,
            "DROP TABLE jobs; DROP TABLE examples; DROP TABLE decisions; DROP TABLE outcomes; \
             PRAGMA user_version = 1;",
            "DROP TABLE jobs, examples, decisions, outcomes; \
             DELETE FROM skill_fleet_migrations WHERE version > 1",
        );
        assert_eq!(
            pending_migrations(&loc).expect("pending"),
            vec![
                (2, "create jobs"),
                (3, "create examples"),
                (4, "create decisions and outcomes"),
                (5, "index pending jobs in claim order")
            ]
        );
        let e = open(false).expect_err("an old schema without init");
        let text = e.to_string();
        assert!(text.contains("schema version 1"), "{text}");
        assert!(text.contains("skill-fleet db migrate"), "{text}");
        let st = open(true).expect("upgrade");
        assert_eq!(
            st.schema_version().expect("version"),
            MIGRATIONS.len() as i64
        );
        st.create(new_job("t")).expect("create");
        st.close().expect("close");
        // Written by a newer build: refused, left as it is.
        raw_sql(
            backend,
            &loc,
            "PRAGMA user_version = 99;",
            "INSERT INTO skill_fleet_migrations (version, name, applied_at) \
             VALUES (99, 'from the future', 0)",
        );
        for r in [open(true), open(false), Store::open_read_only(&loc)] {
            match r {
                Err(StoreError::TooNew {
                    found, supported, ..
                }) => assert_eq!((found, supported), (99, MIGRATIONS.len() as i64)),
                other => panic!("expected a newer schema refused, got {other:?}"),
            }
        }
        assert!(pending_migrations(&loc).expect("pending").is_empty());
    });
}

// ---- training examples ------------------------------------------------------------------------

#[test]
fn training_examples_are_imported_by_id_and_updated_with_moving_averages() {
    let spec = shipped_training();
    each("conf_examples", |s| {
        assert_eq!(s.store.example_count().expect("count"), 0);
        let mut records = parse_records(SHIPPED_EXAMPLES).expect("shipped examples");
        let c = s.store.import_examples(records.clone()).expect("import");
        assert_eq!((c.inserted, c.updated), (50, 0), "{s}");
        records[0].quality_score = 0.1;
        let c = s
            .store
            .import_examples(records[..2].to_vec())
            .expect("import");
        assert_eq!((c.inserted, c.updated), (0, 2), "{s}");
        // The same id twice in one import: the second replaces the first.
        let mut twice = vec![records[5].clone(), records[5].clone()];
        twice[1].category = "second".into();
        let c = s.store.import_examples(twice.clone()).expect("import");
        assert_eq!((c.inserted, c.updated), (0, 2), "{s}");
        records[5] = twice[1].clone();
        let all = s.store.examples().expect("examples");
        assert_eq!(s.store.example_count().expect("count"), 50);
        let mut by_id = records.clone();
        by_id.sort_by(|a, b| a.example_id.cmp(&b.example_id));
        assert_eq!(all, by_id, "{s}: every record as imported, by id");

        s.advance(7);
        let results = vec![
            RunResult {
                example_id: records[0].example_id.clone(),
                score: 1.0,
                passed: true,
            },
            RunResult {
                example_id: "no-such-example".into(),
                score: 0.5,
                passed: false,
            },
            RunResult {
                example_id: records[0].example_id.clone(),
                score: 0.4,
                passed: false,
            },
        ];
        let out = s
            .store
            .apply_example_results(&spec, results.clone())
            .expect("update");
        let want = apply_results(&spec, &records[..1], &results, &s.at(0));
        assert_eq!(
            out.updated, want.updated,
            "{s}: the engine's moving averages, the store's clock"
        );
        assert_eq!(out.unknown, vec!["no-such-example".to_string()]);
        let stored = s.store.examples().expect("examples");
        let first = stored
            .iter()
            .find(|e| e.example_id == records[0].example_id)
            .expect("first");
        assert_eq!(first, &want.updated[0], "{s}");
        assert_eq!(first.usage_count, records[0].usage_count + 2);
        assert_eq!(stored.len(), 50, "{s}: unknown ids create nothing");
    });
}

#[test]
fn training_examples_are_listed_in_the_byte_order_of_their_ids() {
    each("conf_example_order", |s| {
        let mut records = parse_records(SHIPPED_EXAMPLES).expect("shipped examples");
        let ids = ["b", "B", "a-2", "a1", "_z", "A", "a 1", "Ä"];
        records.truncate(ids.len());
        for (r, id) in records.iter_mut().zip(ids) {
            r.example_id = id.into();
        }
        s.store.import_examples(records).expect("import");
        let listed: Vec<String> = s
            .store
            .examples()
            .expect("examples")
            .into_iter()
            .map(|e| e.example_id)
            .collect();
        let mut bytewise: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        bytewise.sort();
        assert_eq!(listed, bytewise, "{s}");
    });
}

#[test]
fn concurrent_updates_of_one_example_lose_none() {
    let spec = shipped_training();
    each("conf_example_race", |s| {
        let records = s.import_shipped_examples();
        let target = records[3].clone();
        let result = RunResult {
            example_id: target.example_id.clone(),
            score: 0.9,
            passed: true,
        };
        concurrently(4, |_| {
            for _ in 0..10 {
                let out = s
                    .store
                    .apply_example_results(&spec, vec![result.clone()])
                    .expect("update");
                assert_eq!(out.updated.len(), 1);
            }
        });
        let mut expect = vec![target.clone()];
        for _ in 0..40 {
            expect = apply_results(&spec, &expect, std::slice::from_ref(&result), "t").updated;
        }
        let stored = s.store.examples().expect("examples");
        let got = stored
            .iter()
            .find(|e| e.example_id == target.example_id)
            .expect("target");
        assert_eq!(got.usage_count, target.usage_count + 40, "{s}");
        assert!(
            (got.quality_score - expect[0].quality_score).abs() < 1e-12,
            "{s}: {} vs {}",
            got.quality_score,
            expect[0].quality_score
        );
        assert_eq!(got.success_rate, expect[0].success_rate, "{s}");
    });
}

// ---- the decision log -------------------------------------------------------------------------

/// A decision to log: `optimizer` recommended by `rule` of `revision` at `at_ms`, for a math
/// task of 200 examples and $10, with `gepa` as the alternative.
fn decision(id: i64, at_ms: i64, (optimizer, rule, revision): (&str, &str, &str)) -> NewDecision {
    let output = format!(
        r#"{{"recommended":"{optimizer}","alternatives":[{{"optimizer":"gepa","estimated_cost":0.5,"estimated_time_minutes":3}}]}}"#
    );
    NewDecision::new(
        id,
        at_ms,
        "http",
        (2.5, 14.0),
        DecisionTexts {
            request_id: Some("rid"),
            revision,
            rule,
            optimizer,
            variant: Some("light"),
            input: br#"{"trainset_size":200,"budget_usd":10,"domain":"math"}"#,
        },
        |out| out.extend_from_slice(output.as_bytes()),
    )
}

#[test]
fn concurrent_reservations_get_disjoint_blocks_of_decision_ids() {
    each("conf_reserve", |s| {
        let reserve = |_| -> Vec<i64> {
            (0..5)
                .map(|_| s.store.reserve_decision_ids(10).expect("reserve"))
                .collect()
        };
        let mut starts = concurrently(8, reserve).concat();
        starts.sort_unstable();
        // Disjoint, and none lost: back to back from 1.
        let back_to_back: Vec<i64> = (0..40).map(|k| 1 + 10 * k).collect();
        assert_eq!(starts, back_to_back, "{s}");
        for n in [0, -5] {
            assert!(
                matches!(s.store.reserve_decision_ids(n), Err(StoreError::Invalid(_))),
                "{s}: {n}"
            );
        }
        // An id in the log is never handed out again, even one nobody reserved.
        let beyond = starts[39] + 500;
        let logged = s
            .store
            .log_decisions(vec![decision(beyond, T0, ("gepa", "r", "v"))])
            .expect("log");
        assert_eq!(logged, 1);
        assert_eq!(
            s.store.reserve_decision_ids(1).expect("reserve"),
            beyond + 1,
            "{s}"
        );
    });
}

#[test]
fn decisions_are_logged_read_back_counted_and_bucketed() {
    each("conf_decisions", |s| {
        let first = s.store.reserve_decision_ids(10).expect("reserve");
        let bare = NewDecision::new(
            first + 4,
            T0 + 25,
            "cli",
            (1.0, 2.0),
            DecisionTexts {
                request_id: None,
                revision: "r2",
                rule: "tiny",
                optimizer: "bootstrap",
                variant: None,
                input: b"not json",
            },
            |out| out.extend_from_slice(b"{}"),
        );
        let rows = vec![
            decision(first, T0, ("miprov2", "moderate", "r1")),
            decision(first + 1, T0 + 10, ("gepa", "budget", "r1")),
            decision(first + 2, T0 + 20, ("miprov2", "moderate", "r2")),
            decision(first + 3, T0 + 1_000, ("bootstrap", "tiny", "r2")),
            bare,
        ];
        assert_eq!(s.store.log_decisions(rows).expect("log"), 5, "{s}");
        assert_eq!(s.store.log_decisions(Vec::new()).expect("log"), 0, "{s}");
        assert_eq!(
            s.store.decision(first).expect("decision"),
            Some(DecisionRecord {
                id: first,
                at_ms: T0,
                request_id: Some("rid".into()),
                source: "http".into(),
                revision: "r1".into(),
                rule: "moderate".into(),
                optimizer: "miprov2".into(),
                variant: Some("light".into()),
                estimated_cost: 2.5,
                estimated_time: 14.0,
                input: json!({"trainset_size": 200, "budget_usd": 10, "domain": "math"}),
                output: json!({"recommended": "miprov2", "alternatives": [
                    {"optimizer": "gepa", "estimated_cost": 0.5, "estimated_time_minutes": 3}]}),
            }),
            "{s}"
        );
        let b = s
            .store
            .decision(first + 4)
            .expect("decision")
            .expect("bare");
        assert_eq!(
            (b.request_id, b.variant, b.input, b.source.as_str()),
            (None, None, Value::String("not json".into()), "cli"),
            "{s}"
        );
        assert_eq!(s.store.decision(first + 9).expect("decision"), None, "{s}");
        let mut seen = Vec::new();
        let n = s
            .store
            .each_decision_since(T0 + 10, |d| seen.push(d.id))
            .expect("each");
        assert_eq!(n, 4);
        assert_eq!(
            seen,
            vec![first + 1, first + 2, first + 3, first + 4],
            "{s}"
        );
        let counts = s.store.decision_counts(T0).expect("counts");
        let map = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        assert_eq!(counts.total, 5, "{s}");
        assert_eq!(
            counts.by_optimizer,
            map(&[("bootstrap", 2), ("gepa", 1), ("miprov2", 2)])
        );
        assert_eq!(
            counts.by_rule,
            map(&[("budget", 1), ("moderate", 2), ("tiny", 2)])
        );
        assert_eq!(counts.by_revision, map(&[("r1", 2), ("r2", 3)]), "{s}");
        assert_eq!(s.store.decision_counts(T0 + 21).expect("counts").total, 2);
        // Buckets of 10 ms from T0: the one at T0 + 1000 is after the last.
        let timeline = s.store.decision_timeline(T0, 10, 3).expect("timeline");
        assert_eq!(
            timeline,
            vec![
                map(&[("miprov2", 1)]),
                map(&[("gepa", 1)]),
                map(&[("bootstrap", 1), ("miprov2", 1)])
            ],
            "{s}"
        );
    });
}

// ---- outcomes ---------------------------------------------------------------------------------

fn outcome(used: &str, job: Option<&str>, decision: Option<i64>, quality: f64) -> NewOutcome {
    NewOutcome {
        report: RunReport {
            optimizer_used: used.into(),
            quality,
            actual_cost: Some(2.0),
            actual_time_minutes: Some(12.0),
        },
        decision_id: decision,
        job_id: job.map(str::to_string),
        context: RunContext::default(),
    }
}

#[test]
fn outcomes_are_filled_from_their_decision_and_one_per_job() {
    each("conf_outcomes", |s| {
        let d = s.store.reserve_decision_ids(1).expect("reserve");
        s.store
            .log_decisions(vec![decision(d, T0, ("miprov2", "moderate", "r1"))])
            .expect("log");
        s.advance(5);
        let primary = s
            .store
            .record_outcome(outcome("miprov2", None, Some(d), 0.9))
            .expect("record");
        let want = OutcomeRecord {
            id: primary.id,
            at_ms: s.now(),
            decision_id: Some(d),
            job_id: None,
            domain: "math".into(),
            optimizer_used: "miprov2".into(),
            recommended: Some("miprov2".into()),
            rule: Some("moderate".into()),
            revision: Some("r1".into()),
            trainset_size: Some(200),
            budget: Some(10.0),
            quality_target: None,
            model: None,
            variant: Some("light".into()),
            estimated_cost: Some(2.5),
            estimated_time: Some(14.0),
            actual_cost: Some(2.0),
            actual_time: Some(12.0),
            quality: 0.9,
            auto_selected: true,
        };
        assert_eq!(primary, want, "{s}: filled from the decision");
        // An alternative was run: its own estimate.
        let alt = s
            .store
            .record_outcome(outcome("gepa", None, Some(d), 0.8))
            .expect("record");
        assert_eq!(
            (alt.estimated_cost, alt.estimated_time),
            (Some(0.5), Some(3.0)),
            "{s}"
        );
        // An unknown decision is refused by field, and nothing is written.
        match s
            .store
            .record_outcome(outcome("gepa", None, Some(9_999), 0.8))
        {
            Err(StoreError::Field { field, message }) => {
                assert_eq!(field, "decision_id");
                assert_eq!(message, "no decision `9999` in the decision log");
            }
            other => panic!("{s}: {other:?}"),
        }
        assert_eq!(s.store.outcomes_since(0).expect("since").len(), 2, "{s}");
        // Without a decision: what the report says, by hand.
        s.advance(5);
        let manual = s
            .store
            .record_outcome(outcome("gepa", None, None, 0.5))
            .expect("record");
        assert_eq!(
            (
                manual.domain.as_str(),
                manual.recommended,
                manual.auto_selected
            ),
            ("general", None, false),
            "{s}"
        );
        // One outcome per job, whoever records it first, even at once.
        let ids = concurrently(3, |i| {
            let new = outcome("miprov2", Some("job-1"), None, 0.1 * i as f64);
            s.store.record_outcome(new).expect("record").id
        });
        assert!(ids.iter().all(|&i| i == ids[0]), "{s}: {ids:?}");
        let later = s
            .store
            .record_outcome(outcome("gepa", Some("job-1"), None, 0.99))
            .expect("record");
        assert_eq!(later.id, ids[0], "{s}: the first one stands");
        let all = s.store.outcomes_since(0).expect("since");
        assert_eq!(all.len(), 4, "{s}");
        assert!(all.windows(2).all(|w| w[0].id < w[1].id), "{s}: in order");
        assert_eq!(all[0], primary, "{s}: read back as recorded");
        let recent: Vec<i64> = s
            .store
            .outcomes_since(T0 + 10)
            .expect("since")
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(recent, vec![manual.id, ids[0]], "{s}");
    });
}

#[test]
fn completing_an_optimization_job_records_its_outcome_and_applies_its_results() {
    let spec = shipped_training();
    each("conf_job_outcome", |s| {
        let examples = s.import_shipped_examples();
        let d = s.store.reserve_decision_ids(1).expect("reserve");
        s.store
            .log_decisions(vec![decision(d, T0, ("miprov2", "moderate", "r1"))])
            .expect("log");
        let results = vec![RunResult {
            example_id: examples[0].example_id.clone(),
            score: 1.0,
            passed: true,
        }];
        let report = json!({"optimizer_used": "miprov2", "quality": 0.91,
                            "actual_cost": 2.2, "actual_time_minutes": 13.0});
        let complete = |job_type: &str, payload: Value, result: &Value| -> String {
            let id = s
                .create(NewJob {
                    payload: Some(payload),
                    ..new_job(job_type)
                })
                .id;
            let token = s.claim_id(&id, LEASE);
            let training = Some((&spec, results.clone()));
            let j = s
                .store
                .complete_with(&id, &token, result.clone(), training)
                .expect("complete");
            assert_eq!(j.status, Status::Completed);
            id
        };
        let linked = complete(
            "optimization",
            json!({"optimizer": "miprov2", "decision": {"decision_id": d}}),
            &report,
        );
        let outcomes = s.store.outcomes_since(0).expect("outcomes");
        assert_eq!(outcomes.len(), 1, "{s}");
        let o = &outcomes[0];
        assert_eq!(
            (o.job_id.as_deref(), o.decision_id),
            (Some(linked.as_str()), Some(d))
        );
        assert_eq!(
            (
                o.domain.as_str(),
                o.quality,
                o.estimated_cost,
                o.actual_cost
            ),
            ("math", 0.91, Some(2.5), Some(2.2)),
            "{s}"
        );
        let usage = |st: &Store| {
            st.examples()
                .expect("examples")
                .into_iter()
                .find(|e| e.example_id == examples[0].example_id)
                .expect("example")
                .usage_count
        };
        assert_eq!(usage(&s.store), examples[0].usage_count + 1, "{s}");
        // A decision the log does not have: recorded, unlinked.
        let unlinked = complete("optimization", json!({"decision_id": 9_999}), &report);
        let outcomes = s.store.outcomes_since(0).expect("outcomes");
        assert_eq!(outcomes.len(), 2, "{s}");
        assert_eq!(
            (outcomes[1].job_id.as_deref(), outcomes[1].decision_id),
            (Some(unlinked.as_str()), None),
            "{s}"
        );
        // No outcome without outcome fields or with bad ones, none for another type; the
        // other type's results are not applied either.
        complete("optimization", json!({}), &json!({"score": 0.9}));
        complete(
            "optimization",
            json!({}),
            &json!({"optimizer_used": "gepa", "quality": 2.0}),
        );
        let before = usage(&s.store);
        complete("skill_creation", json!({"decision_id": d}), &report);
        assert_eq!(s.store.outcomes_since(0).expect("outcomes").len(), 2, "{s}");
        assert_eq!(usage(&s.store), before, "{s}");
    });
}

// ---- listing and status -----------------------------------------------------------------------

#[test]
fn jobs_are_listed_newest_first_in_pages_with_filters() {
    each("conf_list", |s| {
        let mut ids = Vec::new();
        for i in 0..10 {
            let user = if i % 2 == 0 { "ada" } else { "bob" };
            let kind = if i < 7 { "optimization" } else { "evaluation" };
            ids.push(
                s.create(NewJob {
                    user_id: Some(user.into()),
                    ..new_job(kind)
                })
                .id,
            );
            // The last four in the same millisecond: ordered by id.
            if i < 6 {
                s.advance(1);
            }
        }
        let mut newest_first = ids.clone();
        newest_first[6..].sort();
        newest_first.reverse();
        let list = |f: Filter| s.store.list(&f).expect("list");
        let mut seen = Vec::new();
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let page = list(Filter {
                limit: 3,
                cursor: cursor.clone(),
                ..Filter::default()
            });
            pages.push(page.jobs.len());
            seen.extend(page.jobs.iter().map(|j| j.id.clone()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(pages.len() < 10, "{s}: pages do not end");
        }
        assert_eq!(pages, vec![3, 3, 3, 1], "{s}");
        assert_eq!(seen, newest_first, "{s}");
        let ids_of = |f: Filter| -> Vec<String> {
            list(Filter { limit: 100, ..f })
                .jobs
                .into_iter()
                .map(|j| j.id)
                .collect()
        };
        // The jobs `keep` takes by their index in `ids`, newest first.
        let only = |keep: &dyn Fn(usize) -> bool| -> Vec<String> {
            newest_first
                .iter()
                .filter(|id| keep(ids.iter().position(|x| x == *id).expect("created")))
                .cloned()
                .collect()
        };
        assert_eq!(
            ids_of(Filter {
                job_type: Some("evaluation".into()),
                ..Filter::default()
            }),
            only(&|i| i >= 7),
            "{s}"
        );
        assert_eq!(
            ids_of(Filter {
                user_id: Some("ada".into()),
                job_type: Some("optimization".into()),
                ..Filter::default()
            }),
            only(&|i| i < 7 && i % 2 == 0),
            "{s}"
        );
        let claimed = s.claim_id(&ids[3], LEASE);
        assert!(!claimed.is_empty());
        let running = Filter {
            status: Some(Status::Running),
            ..Filter::default()
        };
        assert_eq!(ids_of(running), vec![ids[3].clone()], "{s}");
        assert!(ids_of(Filter {
            user_id: Some("nobody".into()),
            ..Filter::default()
        })
        .is_empty());
        // A limit below 1 is 1; a cursor that is not one is refused by name.
        assert_eq!(list(Filter::default()).jobs.len(), 1, "{s}");
        match s.store.list(&Filter {
            cursor: Some("garbage".into()),
            ..Filter::default()
        }) {
            Err(StoreError::Field { field, .. }) => assert_eq!(field, "cursor"),
            other => panic!("{s}: {other:?}"),
        }
        let status = s.store.status().expect("status");
        assert_eq!(status.backend, s.backend.to_string());
        assert_eq!(status.schema_version, status.latest_version);
        let counts: Vec<(&str, i64)> = status.jobs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            counts,
            vec![
                ("cancelled", 0),
                ("completed", 0),
                ("failed", 0),
                ("pending", 9),
                ("pending_hitl", 0),
                ("running", 1)
            ],
            "{s}"
        );
    });
}

// ---- input, closing, reading only -------------------------------------------------------------

#[test]
fn invalid_input_is_refused_naming_the_field() {
    each("conf_invalid", |s| {
        let field = |r: Result<(), StoreError>| match r {
            Err(StoreError::Field { field, .. }) => field,
            other => panic!("{s}: {other:?}"),
        };
        let create = |new: NewJob| s.store.create(new).map(|_| ());
        assert_eq!(field(create(NewJob::default())), "job_type");
        let zero = NewJob {
            max_attempts: Some(0),
            ..new_job("x")
        };
        assert_eq!(field(create(zero)), "max_attempts");
        let many = NewJob {
            max_attempts: Some(101),
            ..new_job("x")
        };
        assert_eq!(field(create(many)), "max_attempts");
        let key = NewJob {
            idempotency_key: Some(String::new()),
            ..new_job("x")
        };
        assert_eq!(field(create(key)), "idempotency_key");
        assert_eq!(field(s.store.claim("", &[], LEASE).map(|_| ())), "worker");
        assert!(matches!(
            s.store.claim("w", &[], 10),
            Err(StoreError::Invalid(_))
        ));
        let (id, token) = s.running();
        assert!(matches!(
            s.store.heartbeat(&id, &token, 86_400_001, None),
            Err(StoreError::Invalid(_))
        ));
        let long = "e".repeat(10_001);
        assert_eq!(
            field(s.store.fail(&id, &token, &long, false).map(|_| ())),
            "error"
        );
        assert_eq!(s.get(&id).version, 2, "{s}: nothing was written");
        let all = Filter {
            limit: 100,
            ..Filter::default()
        };
        assert_eq!(s.store.list(&all).expect("list").jobs.len(), 1, "{s}");
    });
}

#[test]
fn a_closed_store_keeps_what_was_queued_and_refuses_what_comes_after() {
    each("conf_close", |s| {
        let job = |task: String| NewJob {
            task,
            ..new_job("optimization")
        };
        // Sent when called, answered after their commit: still queued at the close.
        let queued: Vec<_> = (0..50)
            .map(|i| s.store.create_async(job(format!("t{i}"))))
            .collect();
        s.store.close().expect("close");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let ids: Vec<String> = runtime.block_on(async {
            let mut ids = Vec::new();
            for q in queued {
                ids.push(q.await.expect("queued before the close").0.id);
            }
            ids
        });
        let closed = |r: Result<(), StoreError>| match r {
            Err(e @ StoreError::Closed) => assert_eq!(e.to_string(), "the store is closed"),
            other => panic!("{s}: expected closed, got {other:?}"),
        };
        closed(s.store.create(job("late".into())).map(|_| ()));
        closed(
            runtime
                .block_on(s.store.create_async(job("late".into())))
                .map(|_| ()),
        );
        closed(s.store.get(&ids[0]).map(|_| ()));
        closed(s.store.list(&Filter::default()).map(|_| ()));
        closed(s.store.claim("w", &[], LEASE).map(|_| ()));
        closed(s.store.decision(1).map(|_| ()));
        closed(s.store.examples().map(|_| ()));
        // Closing again does nothing.
        s.store.close().expect("close again");
        let reopened = s.reopen(false).expect("reopen");
        for id in &ids {
            assert!(reopened.get(id).expect("get").is_some(), "{s}: {id} lost");
        }
        reopened.close().expect("close");
    });
}

#[test]
fn a_read_only_store_reads_beside_the_writer_and_refuses_changes() {
    each("conf_read_only", |s| {
        let (id, token) = s.running();
        let reader = Store::open_read_only(&s.location).expect("read only");
        assert_eq!(reader.get(&id).expect("get"), Some(s.get(&id)), "{s}");
        assert_eq!(reader.list(&Filter::default()).expect("list").jobs.len(), 1);
        let read_only = |r: Result<(), StoreError>| {
            assert!(matches!(r, Err(StoreError::ReadOnly)), "{s}: {r:?}");
        };
        read_only(reader.create(new_job("t")).map(|_| ()));
        read_only(reader.claim("w", &[], LEASE).map(|_| ()));
        read_only(reader.heartbeat(&id, &token, LEASE, None).map(|_| ()));
        read_only(reader.cancel(&id).map(|_| ()));
        read_only(reader.sweep().map(|_| ()));
        read_only(reader.reserve_decision_ids(1).map(|_| ()));
        // It sees what the writer does next.
        s.store.cancel(&id).expect("cancel");
        assert_eq!(
            reader.get(&id).expect("get").map(|j| j.status),
            Some(Status::Cancelled),
            "{s}"
        );
        reader.close().expect("close");
    });
}

// ---- what one backend could store and the other not -------------------------------------------

/// A field and a change that puts a bad value in it.
type BadField<T> = (&'static str, fn(&mut T));

/// The field a refusal names.
fn refused_field<T: fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Field { field, .. }) => field,
        other => panic!("expected a refusal naming a field, got {other:?}"),
    }
}

#[test]
fn texts_with_a_nul_character_are_refused_and_name_nothing_as_keys() {
    // PostgreSQL cannot store a NUL character in a text; SQLite can. Both refuse it alike, and
    // a key holding one finds nothing.
    let spec = shipped_training();
    each("conf_nul", |s| {
        let nul = "a\0b";
        let create = |new: NewJob| refused_field(s.store.create(new));
        assert_eq!(create(new_job(nul)), "job_type");
        let fields: [BadField<NewJob>; 3] = [
            ("user_id", |j| j.user_id = Some("a\0b".into())),
            ("task", |j| j.task = "a\0b".into()),
            ("idempotency_key", |j| {
                j.idempotency_key = Some("a\0b".into())
            }),
        ];
        for (field, set) in fields {
            let mut new = new_job("t");
            set(&mut new);
            assert_eq!(create(new), field, "{s}");
        }
        assert_eq!(refused_field(s.store.claim(nul, &[], LEASE)), "worker");
        let (id, token) = s.running();
        let pending = s.job();
        let st = &s.store;
        assert_eq!(refused_field(st.fail(&id, &token, nul, true)), "error");
        assert_eq!(
            refused_field(st.request_hitl(&id, &token, nul, json!(1))),
            "type"
        );
        let texts: [BadField<Progress>; 2] = [
            ("progress.message", |p| p.message = Some("a\0b".into())),
            ("progress.phase", |p| p.phase = Some("a\0b".into())),
        ];
        for (field, set) in texts {
            let mut p = Progress::default();
            set(&mut p);
            assert_eq!(
                refused_field(st.heartbeat(&id, &token, LEASE, Some(p))),
                field
            );
        }
        // Keys: no job, nothing claimed, no example, an empty page.
        assert_eq!(st.get(nul).expect("get"), None, "{s}");
        for call in Call::ALL {
            match call.run(s, nul, &token) {
                Ok(None) if call == Call::Claim => {}
                Err(StoreError::NotFound(i)) if i == nul => {}
                other => panic!("{s}: {call:?} of a NUL id: {other:?}"),
            }
        }
        assert_stale(Call::Heartbeat.run(s, &id, nul), &id, "a NUL token");
        assert!(st
            .claim("w", &[nul.into()], LEASE)
            .expect("claim")
            .is_none());
        let listed = |f: Filter| st.list(&f).expect("list").jobs.len();
        let by_type = Filter {
            job_type: Some(nul.into()),
            ..Filter::default()
        };
        let by_user = Filter {
            user_id: Some(nul.into()),
            ..Filter::default()
        };
        assert_eq!((listed(by_type), listed(by_user)), (0, 0), "{s}");
        let cursor = Filter {
            cursor: Some(format!("{T0}_{nul}")),
            ..Filter::default()
        };
        assert_eq!(refused_field(st.list(&cursor)), "cursor");
        let result = RunResult {
            example_id: nul.into(),
            score: 1.0,
            passed: true,
        };
        let out = st
            .apply_example_results(&spec, vec![result])
            .expect("update");
        assert_eq!(out.unknown, vec![nul.to_string()], "{s}");
        // Examples, outcomes, decisions.
        let mut records = parse_records(SHIPPED_EXAMPLES).expect("shipped examples");
        records[1].category = nul.into();
        assert_eq!(refused_field(st.import_examples(records)), "category");
        let mut o = outcome("gepa", Some("job-9"), None, 0.5);
        o.context.domain = Some(nul.into());
        assert_eq!(refused_field(st.record_outcome(o)), "domain");
        let o = outcome(nul, None, None, 0.5);
        assert_eq!(refused_field(st.record_outcome(o)), "optimizer_used");
        let d = st.reserve_decision_ids(2).expect("reserve");
        let bad = decision(d + 1, T0, ("miprov2", nul, "r1"));
        let good = decision(d, T0, ("miprov2", "moderate", "r1"));
        let e = st.log_decisions(vec![good, bad]).expect_err("refused");
        assert!(matches!(e, StoreError::Invalid(_)), "{s}: {e:?}");
        // Nothing of it was written.
        assert_eq!(st.decision(d).expect("decision"), None, "{s}");
        assert_eq!(st.example_count().expect("count"), 0, "{s}");
        assert!(st.outcomes_since(0).expect("outcomes").is_empty(), "{s}");
        assert_eq!(s.get(&id).version, 2, "{s}");
        assert_eq!(s.get(&pending).version, 1, "{s}");
        let all = Filter {
            limit: 100,
            ..Filter::default()
        };
        assert_eq!(listed(all), 2, "{s}");
    });
}

#[test]
fn numbers_that_are_not_finite_are_refused() {
    // SQLite stores NaN as NULL (refused by a NOT NULL column, which lost the writer's whole
    // batch, or read back as nothing); PostgreSQL keeps it. Both refuse it alike.
    each("conf_nan", |s| {
        let st = &s.store;
        let (id, token) = s.running();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let p = Progress {
                percent: bad,
                ..Progress::default()
            };
            assert_eq!(
                refused_field(st.heartbeat(&id, &token, LEASE, Some(p))),
                "progress.percent"
            );
        }
        let reports: [BadField<NewOutcome>; 4] = [
            ("quality", |o| o.report.quality = f64::NAN),
            ("actual_cost", |o| o.report.actual_cost = Some(f64::NAN)),
            ("actual_time_minutes", |o| {
                o.report.actual_time_minutes = Some(f64::INFINITY)
            }),
            ("budget", |o| o.context.budget = Some(f64::NAN)),
        ];
        for (field, set) in reports {
            let mut o = outcome("gepa", None, None, 0.5);
            set(&mut o);
            assert_eq!(refused_field(st.record_outcome(o)), field, "{s}");
        }
        let mut records = parse_records(SHIPPED_EXAMPLES).expect("shipped examples");
        records[2].quality_score = f64::NAN;
        assert_eq!(refused_field(st.import_examples(records)), "quality_score");
        let d = st.reserve_decision_ids(1).expect("reserve");
        let mut bad = decision(d, T0, ("miprov2", "moderate", "r1"));
        bad.estimated_cost = f64::NAN;
        let e = st.log_decisions(vec![bad]).expect_err("refused");
        assert!(matches!(e, StoreError::Invalid(_)), "{s}: {e:?}");
        assert_eq!(st.decision(d).expect("decision"), None, "{s}");
        assert_eq!(st.example_count().expect("count"), 0, "{s}");
        assert!(st.outcomes_since(0).expect("outcomes").is_empty(), "{s}");
        // A completed job whose result reports a bad number records no outcome.
        let j = st
            .complete(
                &id,
                &token,
                json!({"optimizer_used": "gepa", "quality": 0.5}),
            )
            .expect("complete");
        assert_eq!(j.status, Status::Completed);
        assert_eq!(st.outcomes_since(0).expect("outcomes").len(), 1, "{s}");
    });
}
