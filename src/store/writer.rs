//! The single writer: every change goes through one thread that owns the write connection and
//! batches whatever requests are waiting into one transaction (group commit), so many clients
//! share one fsync. Replies are sent only after the commit, so an acknowledged change is
//! durable.
//!
//! Every operation checks everything it can refuse (unknown job, illegal transition, stale
//! lease, bad input) *before* it writes, so a refused request leaves no trace and needs no
//! savepoint; the others in the batch go on. A database error in the middle of an operation
//! aborts the whole batch: every request in it gets the error, and none was acknowledged.

use super::apply::{Ctx, Done, Op};
use super::cache::Cache;
use super::{Clock, StoreError, StoreOptions};
use rusqlite::{Connection, TransactionBehavior};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// Counters of the writer: how many changes shared how many commits.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Changes committed (acknowledged or refused) in them.
    pub ops: AtomicU64,
}

/// A request to the writer.
pub struct Request {
    /// The change.
    pub op: Op,
    /// Where the outcome goes, after the commit.
    pub reply: Reply,
}

/// Where the writer sends the outcome of a change.
#[derive(Debug)]
pub enum Reply {
    /// A thread that blocks until the answer is in (the CLI, the decision log's thread).
    Blocking(std::sync::mpsc::Sender<Result<Done, StoreError>>),
    /// A future that awaits it: no thread waits (the HTTP handlers).
    Async(tokio::sync::oneshot::Sender<Result<Done, StoreError>>),
}

impl Reply {
    /// Delivers the outcome; a caller that went away is ignored.
    pub fn send(self, r: Result<Done, StoreError>) {
        let _ = match self {
            Reply::Blocking(tx) => tx.send(r).map_err(|_| ()),
            Reply::Async(tx) => tx.send(r).map_err(|_| ()),
        };
    }
}

/// What the writer thread receives.
pub enum Message {
    /// A change to commit.
    Write(Request),
    /// Commit what was sent before, checkpoint, close the database and stop; whatever is sent
    /// after is answered with [`StoreError::Closed`].
    Close,
}

/// Runs the writer until it is told to close or every sender is gone; then checkpoints and
/// closes the database.
pub fn run(
    mut conn: Connection,
    rx: Receiver<Message>,
    cache: Arc<Mutex<Cache>>,
    clock: Clock,
    opts: StoreOptions,
    stats: Arc<WriterStats>,
    watch: Arc<super::file::FileWatch>,
) {
    let path = watch.path().to_path_buf();
    loop {
        let first = match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(Message::Write(r)) => r,
            Ok(Message::Close) => break,
            // Idle: look at the file anyway, so a deleted database is logged at once.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = watch.check();
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        let mut closing = false;
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(Message::Write(r)) => batch.push(r),
                Ok(Message::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // A file that is no longer at its path would take the commits with it: refuse.
        let results = match watch.check() {
            Ok(()) => run_batch(&mut conn, &batch, &clock, &opts, &path, &stats),
            Err(e) => Err(e),
        };
        answer(batch, results, &cache);
        if closing {
            break;
        }
    }
    // Changes sent after the close go with the receiver: their callers get `Closed`.
    drop(rx);
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    let _ = conn.close();
}

/// After a batch: on its commit, the cache learns the new states, then the clients their
/// answers; on a failure, every request of the batch gets the error.
fn answer(
    batch: Vec<Request>,
    results: Result<Vec<Result<Done, StoreError>>, StoreError>,
    cache: &Mutex<Cache>,
) {
    match results {
        Ok(results) => {
            // Committed: now the cache may learn the new states, then the clients.
            {
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                for r in results.iter().flatten() {
                    match r {
                        Done::Job(j) | Done::Created(j, _) => c.put(j.clone()),
                        Done::Claimed(Some((j, _))) => c.put(j.clone()),
                        Done::Claimed(None) => {}
                        Done::Swept(js) => js.iter().for_each(|j| c.put(j.clone())),
                        Done::Pruned(ids) => ids.iter().for_each(|id| c.remove(id)),
                        Done::Imported(_)
                        | Done::ExamplesUpdated(_)
                        | Done::Logged(_)
                        | Done::Reserved(_)
                        | Done::Outcome(_) => {}
                    }
                }
            }
            for (req, r) in batch.into_iter().zip(results) {
                req.reply.send(r);
            }
        }
        Err(e) => {
            for req in batch {
                req.reply.send(Err(e.clone_shallow()));
            }
        }
    }
}

/// Applies a batch in one transaction and commits it: one result per request, or the error
/// that lost the whole batch.
fn run_batch(
    conn: &mut Connection,
    batch: &[Request],
    clock: &Clock,
    opts: &StoreOptions,
    path: &std::path::Path,
    stats: &WriterStats,
) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let wrap = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(wrap)?;
    let ctx = Ctx {
        conn: &tx,
        now: clock(),
        opts,
    };
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        match ctx.apply(&req.op) {
            // A database error may have left a half-done change: drop the whole batch.
            Err(StoreError::Db(e)) => return Err(wrap(e)),
            r => results.push(r),
        }
    }
    tx.commit().map_err(wrap)?;
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
    Ok(results)
}
