//! PostgreSQL behind [`crate::store::Store`]: the same messages as the SQLite writer gets, taken
//! by a few worker threads with a connection each (PostgreSQL does the concurrency: row locks,
//! `SKIP LOCKED`, the fencing checks in the updating statements), and a small pool of read
//! connections. There is no job cache: another node may change any job at any time, so every
//! read asks the database.
//!
//! A connection that breaks is dropped and made again for the next request, so the store
//! recovers by itself when the database comes back; meanwhile each request gets
//! [`StoreError::Postgres`] (503 over HTTP), and nothing is acknowledged that was not
//! committed.

use super::super::apply::{Done, Op};
use super::super::migrations::check_version;
use super::super::writer::{Message, WriterStats};
use super::super::{Clock, StoreError, StoreOptions};
use super::{decisions, examples, migrate, outcomes, schema_version, PgJobs, PgUrl};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a connection attempt may take before the request fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Worker threads (and so write connections) per store.
pub const WORKERS: usize = 8;

/// Idle read connections kept.
const READERS: usize = 8;

/// A connection, with the [`PgBackend::epoch`] at which it was last known to work.
struct Conn {
    client: Client,
    epoch: u64,
    /// When it last answered.
    used: Instant,
}

/// A connection idle for longer is checked before its next use: the synchronous client learns
/// that its server went away only when it next talks to it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long checking a connection may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection that listens for outcomes, and the outcomes' (count, highest id) last seen.
type Follower = (Option<Client>, Option<(i64, i64)>);

/// One PostgreSQL database as the store uses it.
pub struct PgBackend {
    url: PgUrl,
    jobs: PgJobs,
    readers: Mutex<Vec<Conn>>,
    /// Bumped whenever a connection is found broken: every other connection made before is
    /// checked before its next use (after a database restart they are all dead, and no request
    /// should be the one to find out).
    epoch: AtomicU64,
    /// The connection that listens on [`outcomes::CHANNEL`], and the outcomes' mark last seen.
    follower: Mutex<Follower>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects (within [`CONNECT_TIMEOUT`]) and checks the schema: with `init`, applies the
    /// missing migrations under the advisory lock; without, the schema must be this build's.
    pub fn open(
        url: PgUrl,
        init: bool,
        opts: StoreOptions,
        now_ms: i64,
    ) -> Result<Self, StoreError> {
        let mut client = url.connect(CONNECT_TIMEOUT)?;
        if init {
            migrate(&mut client, &url, now_ms)?;
        } else {
            let version = schema_version(&mut client, &url)?;
            if version == 0 {
                // No skill-fleet tables yet: missing, as a SQLite file that is not there (the
                // CLI then says to run `db init`).
                return Err(StoreError::Missing(url.redacted().into()));
            }
            check_version(Path::new(url.redacted()), version, false)?;
        }
        Ok(Self {
            jobs: PgJobs::new(url.clone(), opts),
            url,
            readers: Mutex::new(vec![Conn {
                client,
                epoch: 0,
                used: Instant::now(),
            }]),
            epoch: AtomicU64::new(0),
            follower: Mutex::new((None, None)),
        })
    }

    /// The database, with its password redacted.
    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    /// The job operations.
    pub fn jobs(&self) -> &PgJobs {
        &self.jobs
    }

    /// A working connection: `held` when it is still good (checked first when it was idle
    /// for [`IDLE_CHECK`] or another connection was found broken since), else a new one.
    fn checkout(&self, held: Option<Conn>) -> Result<Conn, StoreError> {
        let now = self.epoch.load(Ordering::Acquire);
        if let Some(mut c) = held {
            let trusted = c.epoch == now && c.used.elapsed() < IDLE_CHECK;
            if !c.client.is_closed() && (trusted || c.client.is_valid(CHECK_TIMEOUT).is_ok()) {
                c.epoch = now;
                return Ok(c);
            }
        }
        let client = self.url.connect(CONNECT_TIMEOUT)?;
        Ok(Conn {
            client,
            epoch: now,
            used: Instant::now(),
        })
    }

    /// After a use: the connection to keep, or none when it broke (then every other one is
    /// checked before its next use).
    fn checkin<T>(&self, mut c: Conn, result: &Result<T, StoreError>) -> Option<Conn> {
        let broken = c.client.is_closed()
            || (matches!(result, Err(StoreError::Postgres { .. }))
                && c.client.is_valid(CHECK_TIMEOUT).is_err());
        if broken {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        c.used = Instant::now();
        Some(c)
    }

    /// Runs `f` on a pooled read connection (made when none is idle); a connection that broke
    /// is not kept.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut Client, &PgUrl) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut c = self.checkout(idle)?;
        let out = f(&mut c.client, &self.url);
        if let Some(c) = self.checkin(c, &out) {
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READERS {
                pool.push(c);
            }
        }
        out
    }

    /// Waits up to `timeout` for an outcome to be recorded by any node: `true` when one was
    /// (announced on [`outcomes::CHANNEL`], or, should a notification have been missed while
    /// the listening connection was down, seen in the outcomes' count and highest id once the
    /// wait is over). The first call only sets the mark and says `true`.
    pub fn wait_for_outcomes(&self, timeout: Duration) -> Result<bool, StoreError> {
        let mut guard = self.follower.lock().unwrap_or_else(|p| p.into_inner());
        let (listener, seen) = &mut *guard;
        if listener.as_ref().is_none_or(Client::is_closed) {
            let mut c = self.url.connect(CONNECT_TIMEOUT)?;
            c.batch_execute(&format!("LISTEN {}", outcomes::CHANNEL))
                .map_err(|e| self.url.error(e))?;
            *listener = Some(c);
        }
        let Some(client) = listener.as_mut() else {
            return Ok(false);
        };
        let first = client.notifications().timeout_iter(timeout).next();
        let notified = match first {
            Ok(n) => n.is_some(),
            Err(e) => {
                *listener = None;
                return Err(self.url.error(e));
            }
        };
        let Some(client) = listener.as_mut() else {
            return Ok(false);
        };
        if notified {
            // Several may have come at once: one refresh covers them all.
            let mut n = client.notifications();
            let mut it = n.iter();
            while let Ok(Some(_)) = it.next() {}
        }
        let mark = outcomes::mark(client, &self.url)?;
        let changed = notified || *seen != Some(mark);
        *seen = Some(mark);
        Ok(changed)
    }

    /// Drops the listening connection.
    pub fn close_follower(&self) {
        self.follower.lock().unwrap_or_else(|p| p.into_inner()).0 = None;
    }

    /// Drops the idle read connections.
    pub fn close_readers(&self) {
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Starts [`WORKERS`] threads that take the store's messages; each stops on a
    /// [`Message::Close`] (send one per thread) or when every sender is gone.
    pub fn spawn_workers(
        self: &Arc<Self>,
        rx: Receiver<Message>,
        clock: Clock,
        stats: Arc<WriterStats>,
    ) -> Result<Vec<std::thread::JoinHandle<()>>, StoreError> {
        let rx = Arc::new(Mutex::new(rx));
        (0..WORKERS)
            .map(|i| {
                let (me, rx, clock, stats) = (
                    Arc::clone(self),
                    Arc::clone(&rx),
                    Arc::clone(&clock),
                    Arc::clone(&stats),
                );
                std::thread::Builder::new()
                    .name(format!("skill-fleet-pg-{i}"))
                    .spawn(move || me.work(&rx, &clock, &stats))
                    .map_err(|e| {
                        StoreError::Internal(format!("cannot start a database thread: {e}"))
                    })
            })
            .collect()
    }

    /// One worker: a message at a time, each change in its own transaction, answered after
    /// its commit.
    fn work(&self, rx: &Mutex<Receiver<Message>>, clock: &Clock, stats: &WriterStats) {
        let mut held: Option<Conn> = None;
        loop {
            let msg = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                Ok(m) => m,
                Err(_) => break,
            };
            let req = match msg {
                Message::Write(r) => r,
                Message::Close => break,
            };
            let result = match self.checkout(held.take()) {
                Ok(mut c) => {
                    let r = self.apply(&mut c.client, &req.op, clock());
                    // Broken in flight (whether it committed is unknown, and the error says
                    // so): the next request connects again.
                    held = self.checkin(c, &r);
                    r
                }
                Err(e) => Err(e),
            };
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.ops.fetch_add(1, Ordering::Relaxed);
            req.reply.send(result);
        }
    }

    /// What one change does, on PostgreSQL.
    fn apply(&self, c: &mut Client, op: &Op, now: i64) -> Result<Done, StoreError> {
        let (jobs, url) = (&self.jobs, &self.url);
        Ok(match op {
            Op::Create(new) => {
                let (job, created) = jobs.create(c, new, now)?;
                Done::Created(job, created)
            }
            Op::Claim {
                worker,
                types,
                lease_ms,
                job,
            } => Done::Claimed(jobs.claim(c, worker, types, *lease_ms, job.as_deref(), now)?),
            Op::Heartbeat {
                id,
                token,
                lease_ms,
                progress,
            } => Done::Job(jobs.heartbeat(c, id, token, *lease_ms, progress.as_ref(), now)?),
            Op::Complete {
                id,
                token,
                result,
                training,
            } => {
                let training = training
                    .as_ref()
                    .map(|(spec, results)| (spec.as_ref(), results.as_slice()));
                Done::Job(jobs.complete(c, id, token, result, training, now)?)
            }
            Op::Fail {
                id,
                token,
                error,
                retry,
            } => Done::Job(jobs.fail(c, id, token, error, *retry, now)?),
            Op::RequestHitl {
                id,
                token,
                kind,
                data,
            } => Done::Job(jobs.request_hitl(c, id, token, kind, data, now)?),
            Op::RespondHitl { id, response } => Done::Job(jobs.respond_hitl(c, id, response, now)?),
            Op::Cancel { id } => Done::Job(jobs.cancel(c, id, now)?),
            Op::Sweep => Done::Swept(jobs.sweep(c, now)?),
            Op::Prune { before_ms } => Done::Pruned(jobs.prune(c, *before_ms)?),
            Op::ImportExamples(records) => Done::Imported(examples::put(c, url, records, now)?),
            Op::LogDecisions(rows) => Done::Logged(decisions::insert(c, url, rows)?),
            Op::ReserveDecisionIds(n) => Done::Reserved(decisions::reserve(c, url, *n)?),
            Op::RecordOutcome(new) => Done::Outcome(Box::new(outcomes::record(c, url, new, now)?)),
            Op::UpdateExamples { spec, results } => {
                Done::ExamplesUpdated(examples::update(c, url, spec, results, now)?)
            }
        })
    }
}
