//! The decision log behind `recommend`: each served decision is queued here and written by a
//! background thread in batches (one transaction for whatever queued up while the previous one
//! committed), so the endpoint never waits for the disk. The queue is bounded: when it is full,
//! requests wait for room instead of entries being dropped.
//!
//! Ids are handed out before the entry is written, from blocks the server reserves in the
//! database (so several processes never hand out the same id). They follow the order requests
//! were decided in, so the log is appended to, not inserted into.

use crate::store::decisions::NewDecision;
use crate::store::{Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Ids reserved in the database at a time.
const DB_BLOCK: i64 = 1_000_000;
/// Most entries in one write.
const MAX_BATCH: usize = 8_192;

// Decisions are nearly every entry: boxing them would add an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Entry {
    Decision(NewDecision),
    /// Answered once everything queued before it is committed.
    Sync(oneshot::Sender<Result<(), String>>),
    /// Write everything queued, refuse new entries, answer, and end the thread.
    Stop(oneshot::Sender<Result<(), String>>),
}

/// Counters of the log.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Entries committed.
    pub written: AtomicU64,
    /// Entries lost to a failed write.
    pub failed: AtomicU64,
    /// Transactions.
    pub batches: AtomicU64,
}

/// The queue and id allocator of the decision log.
pub struct DecisionLog {
    tx: mpsc::Sender<Entry>,
    ids: Mutex<(i64, i64)>,
    store: Arc<Store>,
    /// Counters.
    pub stats: Arc<LogStats>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog").finish_non_exhaustive()
    }
}

impl DecisionLog {
    /// Starts the writer thread; `capacity` entries may wait in the queue, and a batch gathers
    /// for `linger` after its first entry before it is written.
    pub fn start(
        store: Arc<Store>,
        capacity: usize,
        linger: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(LogStats::default());
        let first = store.reserve_decision_ids(DB_BLOCK)?;
        {
            let store = Arc::clone(&store);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("skill-fleet-decision-log".into())
                .spawn(move || {
                    let stopped = run(rx, &store, &stats, linger);
                    // The store handle goes before the stop is answered: whoever closed the log
                    // may then own the store alone (and close the database).
                    drop(store);
                    for (w, outcome) in stopped {
                        let _ = w.send(outcome);
                    }
                })
                .map_err(|e| StoreError::Invalid(format!("cannot start the decision log: {e}")))?;
        }
        Ok(Self {
            tx,
            ids: Mutex::new((first, first + DB_BLOCK)),
            store,
            stats,
        })
    }

    /// The next decision id.
    pub(super) fn next_id(&self) -> Result<i64, StoreError> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            // Once per million ids: a blocking round trip to the writer.
            let first = self.store.reserve_decision_ids(DB_BLOCK)?;
            *ids = (first, first + DB_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Queues an entry; waits for room when the queue is full.
    pub(super) async fn push(&self, d: NewDecision) -> Result<(), StoreError> {
        match self.tx.try_send(Entry::Decision(d)) {
            Ok(()) => Ok(()),
            // Waiting for room is rare: its future lives on the heap, so the request's
            // future stays small.
            Err(mpsc::error::TrySendError::Full(e)) => Box::pin(self.tx.send(e))
                .await
                .map_err(|_| StoreError::Closed),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::Closed),
        }
    }

    /// Waits until every entry queued so far is committed.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.ask(Entry::Sync).await
    }

    /// Writes what is queued and stops the writer thread (at shutdown, after the last
    /// request); entries pushed afterwards are refused. Once this returns, the thread has let
    /// go of its handle on the store.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.ask(Entry::Stop).await
    }

    async fn ask(
        &self,
        entry: fn(oneshot::Sender<Result<(), String>>) -> Entry,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(entry(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Batch(e)),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

/// A waiter and what to tell it.
type Answer = (oneshot::Sender<Result<(), String>>, Result<(), String>);

/// Writes batches until the queue is closed and empty; returns the answers owed to the `Stop`
/// entries, which are sent once the thread no longer holds the store.
fn run(
    mut rx: mpsc::Receiver<Entry>,
    store: &Store,
    stats: &LogStats,
    linger: std::time::Duration,
) -> Vec<Answer> {
    let mut batch: Vec<NewDecision> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
    let mut stopping: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
    // The first failed write after a stop was asked for: what the stop is answered with.
    let mut after_stop = Ok(());
    while let Some(first) = rx.blocking_recv() {
        // Let a batch gather: one transaction per interval instead of one per entry keeps the
        // write-ahead log and checkpoint traffic close to the data itself.
        if matches!(first, Entry::Decision(_)) && !linger.is_zero() {
            std::thread::sleep(linger);
        }
        let mut next = Some(first);
        while let Some(e) = next.take() {
            match e {
                Entry::Decision(d) => batch.push(d),
                Entry::Sync(s) => waiting.push(s),
                Entry::Stop(s) => {
                    // Nothing new gets in; what is already queued is still written.
                    rx.close();
                    stopping.push(s);
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        let mut outcome = Ok(());
        if !batch.is_empty() {
            let n = batch.len() as u64;
            // Requests finish out of order; in id order the rows append to the table.
            batch.sort_unstable_by_key(|d| d.id);
            match store.log_decisions(std::mem::take(&mut batch)) {
                Ok(_) => {
                    stats.written.fetch_add(n, Ordering::Relaxed);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.failed.fetch_add(n, Ordering::Relaxed);
                    tracing::error!("decision log: {n} entries could not be written: {e}");
                    outcome = Err(e.to_string());
                }
            }
        }
        if !stopping.is_empty() && after_stop.is_ok() {
            after_stop = outcome.clone();
        }
        for w in waiting.drain(..) {
            let _ = w.send(outcome.clone());
        }
    }
    stopping
        .into_iter()
        .map(|w| (w, after_stop.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::decisions::DecisionTexts;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "skill-fleet-decision-log-{name}-{}.db",
            std::process::id()
        ));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
        p
    }

    fn decision(log: &DecisionLog) -> NewDecision {
        let texts = DecisionTexts {
            request_id: None,
            revision: "r1",
            rule: "small",
            optimizer: "BootstrapFewShot",
            variant: None,
            input: b"{}",
        };
        NewDecision::new(log.next_id().unwrap(), 0, "http", (0.1, 1.0), texts, |b| {
            b.extend_from_slice(b"{}")
        })
    }

    /// `serve` closes the database only when it owns the store alone once the log is closed:
    /// the writer thread must have let go of its handle by the time `close` returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_writes_what_is_queued_and_leaves_the_store_to_the_caller() {
        let path = temp_db("close");
        let mut store = Arc::new(Store::open(&path, true).unwrap());
        // Many rounds: the writer thread used to drop its handle just after answering.
        for round in 0..200 {
            let log =
                DecisionLog::start(Arc::clone(&store), 16, std::time::Duration::ZERO).unwrap();
            for _ in 0..3 {
                log.push(decision(&log)).await.unwrap();
            }
            log.close().await.unwrap();
            assert!(matches!(
                log.push(decision(&log)).await,
                Err(StoreError::Closed)
            ));
            drop(log);
            let owned = Arc::try_unwrap(store).unwrap_or_else(|_| {
                panic!("round {round}: the writer thread still holds the store")
            });
            assert_eq!(owned.decision_counts(0).unwrap().total, 3 * (round + 1));
            store = Arc::new(owned);
        }
        let owned = Arc::try_unwrap(store).unwrap_or_else(|_| panic!("store shared"));
        owned.close().unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
