//! The job store: the only module that knows rusqlite and the PostgreSQL crates. One API over
//! two backends, chosen by the location it is opened with: a SQLite file (the default, bundled
//! SQLite) or a `postgres://` URL (`pg`: a database several nodes share).
//!
//! On SQLite, migrations are append-only and tracked with `PRAGMA user_version`: a database
//! written by an older version is upgraded on open; a newer one is refused. Writes go through
//! one writer thread that batches concurrent requests into shared transactions (group commit,
//! `synchronous=FULL` in WAL mode, so an acknowledged change survives a crash or power loss).
//! Reads use a small pool of read connections behind a bounded, write-through cache of jobs.
//!
//! On PostgreSQL the same messages go to a few worker threads with a connection each, reads to
//! a pool of connections, with no job cache (see `pg::PgBackend`).

mod apply;
pub mod cache;
mod change;
pub mod decisions;
mod error;
pub mod examples;
pub mod file;
pub mod job;
mod lifecycle;
mod migrations;
mod open;
pub mod outcomes;
pub mod pg;
mod reads;
mod sql;
pub mod writer;

use apply::{Done, Op};
use cache::Cache;
use job::{Job, NewJob, Progress};
use open::open_conn;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use writer::{Message, Request, WriterStats};

pub use change::JobChange;
use change::{
    claim_op, claimed, create_op, created, job_of, outcome_of, record_op, update_op, updated,
};
pub use error::StoreError;
pub use migrations::MIGRATIONS;

pub use open::{destroy, display_location, exists, pending_migrations, StoreOptions};
pub use reads::{DbStatus, Filter, Page};

/// Milliseconds since the epoch, as the store's clock gives them.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock in milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// The writer's answer to one submitted change, after its commit, awaited.
struct Answer(tokio::sync::oneshot::Receiver<Result<Done, StoreError>>);

impl Answer {
    /// Awaits the answer.
    async fn done(self) -> Result<Done, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

/// The job store: a SQLite file (the default) or a PostgreSQL database that several nodes
/// share, chosen by the location it is opened with (a `postgres://` URL or a path).
pub struct Store {
    /// The file, or for PostgreSQL the URL with its password redacted.
    path: PathBuf,
    tx: mpsc::Sender<Message>,
    /// The threads that take the messages until the store is closed: SQLite's one writer, or
    /// PostgreSQL's workers; none for a read-only store.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// PostgreSQL, when the location is a URL; SQLite otherwise.
    pg: Option<Arc<pg::PgBackend>>,
    /// Held while the store may write, until it is closed; `None` for a read-only store.
    lock: Mutex<Option<file::WriterLock>>,
    /// Opened read-only: every change is refused.
    read_only: bool,
    /// Set by [`Store::close`]: every later call is refused.
    closed: AtomicBool,
    watch: Arc<file::FileWatch>,
    readers: Mutex<Vec<Connection>>,
    cache: Arc<Mutex<Cache>>,
    clock: Clock,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// `Err(Lost)` when the path no longer names the file this store opened (never for
    /// PostgreSQL).
    pub fn check_file(&self) -> Result<(), StoreError> {
        if self.pg.is_some() {
            return Ok(());
        }
        self.watch.check()
    }

    /// The file path; for PostgreSQL, the URL with its password redacted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// The store's clock, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Hands a change to the writer without waiting: the answer comes after its commit.
    fn submit(&self, op: Op, reply: writer::Reply) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.check_open()?;
        self.tx
            .send(Message::Write(Request { op, reply }))
            .map_err(|_| StoreError::Closed)
    }

    /// `Err(Closed)` once [`Store::close`] was called.
    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// Submits a change and blocks the calling thread until it is committed (the CLI, the
    /// decision log's thread, tests). Async callers use the `*_async` methods instead.
    fn write(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, rx) = mpsc::channel();
        self.submit(op, writer::Reply::Blocking(reply))?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Submits a change; the future resolves after its commit, holding no thread meanwhile.
    fn write_async(
        &self,
        op: Result<Op, StoreError>,
    ) -> impl std::future::Future<Output = Result<Done, StoreError>> + Send + 'static {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = op.and_then(|op| self.submit(op, writer::Reply::Async(reply)));
        async move {
            sent?;
            Answer(rx).done().await
        }
    }

    /// A read on either backend: `lite` on a SQLite read connection, `pg` on a PostgreSQL one.
    fn read_either<T>(
        &self,
        lite: impl FnOnce(&Connection) -> Result<T, StoreError>,
        pg: impl FnOnce(&mut postgres::Client, &pg::PgUrl) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.pg {
            Some(backend) => {
                self.check_open()?;
                backend.read(pg)
            }
            None => self.read(lite),
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_open()?;
        let conn = {
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 && !self.closed.load(Ordering::Acquire) {
            pool.push(conn);
        }
        out
    }

    /// Checks that the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.read_either(
            |c| {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
                Ok(())
            },
            |c, url| {
                c.simple_query("SELECT 1")
                    .map(drop)
                    .map_err(|e| url.error(e))
            },
        )
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read_either(
            |c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?),
            pg::schema_version,
        )
    }

    /// Creates a job; with an idempotency key that exists, returns that job and `false`.
    pub fn create(&self, new: NewJob) -> Result<(Job, bool), StoreError> {
        created(self.write(create_op(new)?)?)
    }

    /// [`Store::create`] for async callers: no thread waits for the commit.
    pub fn create_async(
        &self,
        new: NewJob,
    ) -> impl std::future::Future<Output = Result<(Job, bool), StoreError>> + Send + 'static {
        let answer = self.write_async(create_op(new));
        async move { created(answer.await?) }
    }

    /// One job, from the cache or the database.
    pub fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        // The cache lock is held across the database read, and the writer updates the cache
        // under the same lock after each commit: the cache never holds a state older than
        // the database's.
        self.check_open()?;
        if let Some(backend) = &self.pg {
            // No cache: another node may have changed the job.
            return backend.read(|c, _| backend.jobs().get(c, id));
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = cache.get(id) {
            return Ok(Some(j));
        }
        let job = self.read(|c| Ok(sql::get(c, id)?))?;
        if let Some(j) = &job {
            cache.put(j.clone());
        }
        Ok(job)
    }

    /// Commits and changes so far: `ops / commits` is how many changes share one fsync.
    pub fn write_stats(&self) -> (u64, u64) {
        (
            self.stats
                .commits
                .load(std::sync::atomic::Ordering::Relaxed),
            self.stats.ops.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Jobs in the cache now (for tests and status).
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Claims the oldest claimable job of the given types (any type when empty).
    pub fn claim(
        &self,
        worker: &str,
        types: &[String],
        lease_ms: i64,
    ) -> Result<Option<(Job, String)>, StoreError> {
        self.claim_job(worker, types, lease_ms, None)
    }

    /// [`Self::claim`], limited to the job `id` when given: that job if it is claimable
    /// (pending, of one of `types`), else nothing.
    pub fn claim_job(
        &self,
        worker: &str,
        types: &[String],
        lease_ms: i64,
        id: Option<&str>,
    ) -> Result<Option<(Job, String)>, StoreError> {
        claimed(self.write(claim_op(worker, types, lease_ms, id)?)?)
    }

    /// [`Store::claim_job`] for async callers: no thread waits for the commit.
    pub fn claim_job_async(
        &self,
        worker: &str,
        types: &[String],
        lease_ms: i64,
        id: Option<&str>,
    ) -> impl std::future::Future<Output = Result<Option<(Job, String)>, StoreError>> + Send + 'static
    {
        let answer = self.write_async(claim_op(worker, types, lease_ms, id));
        async move { claimed(answer.await?) }
    }

    /// Extends a lease and records progress.
    pub fn heartbeat(
        &self,
        id: &str,
        token: &str,
        lease_ms: i64,
        progress: Option<Progress>,
    ) -> Result<Job, StoreError> {
        self.change(JobChange::Heartbeat {
            id,
            token,
            lease_ms,
            progress,
        })
    }

    /// Completes a running job.
    pub fn complete(
        &self,
        id: &str,
        token: &str,
        result: serde_json::Value,
    ) -> Result<Job, StoreError> {
        self.complete_with(id, token, result, None)
    }

    /// Completes a running job; for an `optimization` job, `training` (the rules and the
    /// per-example results of the run) updates the training examples in the same transaction.
    pub fn complete_with(
        &self,
        id: &str,
        token: &str,
        result: serde_json::Value,
        training: Option<(
            &crate::rules::spec::TrainingSpec,
            Vec<crate::engine::training::RunResult>,
        )>,
    ) -> Result<Job, StoreError> {
        self.change(JobChange::Complete {
            id,
            token,
            result,
            training,
        })
    }

    /// Fails a running job; with `retry`, it goes back to pending while attempts remain.
    pub fn fail(&self, id: &str, token: &str, error: &str, retry: bool) -> Result<Job, StoreError> {
        self.change(JobChange::Fail {
            id,
            token,
            error,
            retry,
        })
    }

    /// Parks a running job in `pending_hitl` with a question.
    pub fn request_hitl(
        &self,
        id: &str,
        token: &str,
        kind: &str,
        data: serde_json::Value,
    ) -> Result<Job, StoreError> {
        self.change(JobChange::RequestHitl {
            id,
            token,
            kind,
            data,
        })
    }

    /// Records a human's answer; the job goes back to pending.
    pub fn respond_hitl(&self, id: &str, response: serde_json::Value) -> Result<Job, StoreError> {
        self.change(JobChange::RespondHitl { id, response })
    }

    /// Cancels a job that is not terminal.
    pub fn cancel(&self, id: &str) -> Result<Job, StoreError> {
        self.change(JobChange::Cancel { id })
    }

    /// Applies a change to one job, blocking until it is committed.
    pub fn change(&self, c: JobChange<'_>) -> Result<Job, StoreError> {
        job_of(self.write(c.into_op()?)?)
    }

    /// [`Store::change`] for async callers: no thread waits for the commit.
    pub fn change_async(
        &self,
        c: JobChange<'_>,
    ) -> impl std::future::Future<Output = Result<Job, StoreError>> + Send + 'static {
        let answer = self.write_async(c.into_op());
        async move { job_of(answer.await?) }
    }

    /// Returns expired leases to pending (attempt + 1, with backoff) or fails them when
    /// attempts are exhausted; the changed jobs in the order their leases ended (then by id).
    /// `pending_hitl` and terminal jobs are never touched.
    pub fn sweep(&self) -> Result<Vec<Job>, StoreError> {
        match self.write(Op::Sweep)? {
            Done::Swept(j) => Ok(j),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }

    /// Deletes terminal jobs that reached their status more than `age_ms` ago, in chunks of
    /// `apply::PRUNE_CHUNK` so other writes go on in between.
    pub fn prune(&self, age_ms: i64) -> Result<usize, StoreError> {
        let before_ms = self.now_ms() - age_ms;
        let mut total = 0;
        loop {
            match self.write(Op::Prune { before_ms })? {
                Done::Pruned(ids) => {
                    total += ids.len();
                    if (ids.len() as i64) < apply::PRUNE_CHUNK {
                        return Ok(total);
                    }
                }
                _ => return Err(StoreError::Internal("unexpected writer answer".into())),
            }
        }
    }

    /// Imports training-example records in one transaction, merging by `example_id`.
    pub fn import_examples(
        &self,
        records: Vec<crate::engine::training::Example>,
    ) -> Result<examples::ImportCount, StoreError> {
        match self.write(Op::ImportExamples(records))? {
            Done::Imported(c) => Ok(c),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }

    /// Applies optimization results to the training examples in one transaction (read, update
    /// with the rules' moving averages, write), with the store's clock as `last_used`.
    pub fn apply_example_results(
        &self,
        spec: &crate::rules::spec::TrainingSpec,
        results: Vec<crate::engine::training::RunResult>,
    ) -> Result<crate::engine::training::UpdateOutcome, StoreError> {
        updated(self.write(update_op(spec, results))?)
    }

    /// [`Store::apply_example_results`] for async callers: no thread waits for the commit.
    pub fn apply_example_results_async(
        &self,
        spec: &crate::rules::spec::TrainingSpec,
        results: Vec<crate::engine::training::RunResult>,
    ) -> impl std::future::Future<Output = Result<crate::engine::training::UpdateOutcome, StoreError>>
           + Send
           + 'static {
        let answer = self.write_async(Ok(update_op(spec, results)));
        async move { updated(answer.await?) }
    }

    /// Appends entries to the decision log in one transaction (ids from
    /// [`Store::reserve_decision_ids`]).
    pub fn log_decisions(&self, rows: Vec<decisions::NewDecision>) -> Result<usize, StoreError> {
        match self.write(Op::LogDecisions(rows))? {
            Done::Logged(n) => Ok(n),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }

    /// Reserves `n` consecutive decision ids no other process will hand out; returns the first.
    pub fn reserve_decision_ids(&self, n: i64) -> Result<i64, StoreError> {
        match self.write(Op::ReserveDecisionIds(n))? {
            Done::Reserved(first) => Ok(first),
            _ => Err(StoreError::Internal("unexpected writer answer".into())),
        }
    }

    /// Records the outcome of a run; an unknown `decision_id` is refused, and so are texts
    /// with a NUL character and numbers that are not finite ([`outcomes::check`]).
    pub fn record_outcome(
        &self,
        new: outcomes::NewOutcome,
    ) -> Result<outcomes::OutcomeRecord, StoreError> {
        outcome_of(self.write(record_op(new)?)?)
    }

    /// [`Store::record_outcome`] for async callers: no thread waits for the commit.
    pub fn record_outcome_async(
        &self,
        new: outcomes::NewOutcome,
    ) -> impl std::future::Future<Output = Result<outcomes::OutcomeRecord, StoreError>> + Send + 'static
    {
        let answer = self.write_async(record_op(new));
        async move { outcome_of(answer.await?) }
    }

    /// One logged decision.
    pub fn decision(&self, id: i64) -> Result<Option<decisions::DecisionRecord>, StoreError> {
        self.read_either(
            |c| decisions::get(c, id),
            |c, url| pg::decisions::get(c, url, id),
        )
    }

    /// Calls `f` with every decision logged at or after `since_ms`, oldest first; returns the
    /// count.
    pub fn each_decision_since(
        &self,
        since_ms: i64,
        f: impl FnMut(decisions::DecisionRecord),
    ) -> Result<u64, StoreError> {
        match &self.pg {
            Some(backend) => {
                self.check_open()?;
                backend.read(|c, url| pg::decisions::each_since(c, url, since_ms, f))
            }
            None => self.read(|c| decisions::each_since(c, since_ms, f)),
        }
    }

    /// Decisions per optimizer, rule and revision since `since_ms`.
    pub fn decision_counts(&self, since_ms: i64) -> Result<decisions::DecisionCounts, StoreError> {
        self.read_either(
            |c| decisions::counts(c, since_ms),
            |c, url| pg::decisions::counts(c, url, since_ms),
        )
    }

    /// Decisions per optimizer over time: see [`decisions::timeline`].
    pub fn decision_timeline(
        &self,
        since_ms: i64,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<Vec<std::collections::BTreeMap<String, u64>>, StoreError> {
        self.read_either(
            |c| decisions::timeline(c, since_ms, bucket_ms, buckets),
            |c, url| pg::decisions::timeline(c, url, since_ms, bucket_ms, buckets),
        )
    }

    /// Selector metrics of the decisions and outcomes since `since_ms`.
    pub fn selector_metrics(
        &self,
        since_ms: i64,
    ) -> Result<crate::engine::metrics::SelectorMetrics, StoreError> {
        let counts = self.decision_counts(since_ms)?;
        let outcomes = self.outcomes_since(since_ms)?;
        Ok(crate::engine::metrics::compute(counts, &outcomes))
    }

    /// Outcomes recorded since `since_ms`, oldest first.
    pub fn outcomes_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<outcomes::OutcomeRecord>, StoreError> {
        self.read_either(
            |c| outcomes::since(c, since_ms),
            |c, url| pg::outcomes::since(c, url, since_ms),
        )
    }

    /// Every training example, by id.
    pub fn examples(&self) -> Result<Vec<crate::engine::training::Example>, StoreError> {
        self.read_either(examples::all, pg::examples::all)
    }

    /// Number of training examples.
    pub fn example_count(&self) -> Result<u64, StoreError> {
        self.read_either(examples::count, pg::examples::count)
    }

    /// On PostgreSQL, waits up to `timeout` for an outcome recorded by any node (see
    /// [`pg::PgBackend::wait_for_outcomes`]); on SQLite, where this process records them all,
    /// sleeps `timeout` and says `false`.
    pub fn wait_for_outcomes(&self, timeout: std::time::Duration) -> Result<bool, StoreError> {
        self.check_open()?;
        match &self.pg {
            Some(backend) => backend.wait_for_outcomes(timeout),
            None => {
                std::thread::sleep(timeout);
                Ok(false)
            }
        }
    }

    /// Stops the writer after the changes already sent (they are committed and answered as
    /// usual), checkpoints the WAL, closes the database and releases the writer lock. Works
    /// through a shared handle, whoever else holds one: every later call on this store gets
    /// [`StoreError::Closed`]; closing again does nothing.
    pub fn close(&self) -> Result<(), StoreError> {
        // Held throughout, so a second `close` returns only once the first is done.
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::Release);
        // One close message per thread; each stops at its own, after what was sent before.
        for _ in threads.iter() {
            let _ = self.tx.send(Message::Close);
        }
        let mut joined = Ok(());
        for t in threads.drain(..) {
            // A thread that is gone already (it panicked) leaves the join to say so.
            if t.join().is_err() {
                joined = Err(StoreError::Internal("a writer thread panicked".into()));
            }
        }
        if let Some(backend) = &self.pg {
            backend.close_readers();
            backend.close_follower();
        }
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        joined
    }
}

#[cfg(test)]
mod tests;
