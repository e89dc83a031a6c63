//! The decision log behind `recommend`: each served decision is queued here and written by a
//! background thread in batches (one transaction for whatever queued up while the previous one
//! committed), so the endpoint never waits for the disk. The queue is bounded: when it is full,
//! requests wait for room instead of entries being dropped.
//!
//! Ids are handed out before the entry is written, from blocks the server reserves in the
//! database (so several processes never hand out the same id). They follow the order requests
//! were decided in, so the log is appended to, not inserted into. The next block is reserved
//! by the log's own thread once half of the current one is used, so a request never waits for
//! the database to get its id.

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
    /// Reserve the next block of ids (half of the current one is used).
    Reserve,
}

/// The ids being handed out, and the block reserved to follow them.
#[derive(Debug)]
struct Ids {
    next: i64,
    end: i64,
    /// The first id of the next block, once the log's thread reserved it.
    spare: Option<i64>,
    /// The next block was asked for and has not arrived.
    asked: bool,
    /// Ids per block.
    block: i64,
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
    /// Times a request found its block used up before the next one arrived and reserved one
    /// itself (waiting for the database): 0 unless a million decisions come faster than one
    /// transaction.
    pub id_waits: AtomicU64,
}

/// The queue and id allocator of the decision log.
pub struct DecisionLog {
    tx: mpsc::Sender<Entry>,
    ids: Arc<Mutex<Ids>>,
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
        Self::start_with_block(store, capacity, linger, DB_BLOCK)
    }

    /// [`DecisionLog::start`] with `block` ids reserved at a time.
    fn start_with_block(
        store: Arc<Store>,
        capacity: usize,
        linger: std::time::Duration,
        block: i64,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(LogStats::default());
        let first = store.reserve_decision_ids(block)?;
        let ids = Arc::new(Mutex::new(Ids {
            next: first,
            end: first + block,
            spare: None,
            asked: false,
            block,
        }));
        {
            let store = Arc::clone(&store);
            let stats = Arc::clone(&stats);
            let ids = Arc::clone(&ids);
            std::thread::Builder::new()
                .name("skill-fleet-decision-log".into())
                .spawn(move || {
                    let stopped = run(rx, &store, &stats, &ids, linger);
                    // The store handle goes before the stop is answered: whoever closed the log
                    // may then own the store alone (and close the database).
                    drop(store);
                    for (w, outcome) in stopped {
                        let _ = w.send(outcome);
                    }
                })
                .map_err(|e| StoreError::Internal(format!("cannot start the decision log: {e}")))?;
        }
        Ok(Self {
            tx,
            ids,
            store,
            stats,
        })
    }

    /// The next decision id. Never waits for the database unless a whole block was used
    /// before the log's thread reserved the next one (counted in `id_waits`).
    pub(super) fn next_id(&self) -> Result<i64, StoreError> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.next >= ids.end {
            let first = match ids.spare.take() {
                Some(first) => first,
                None => {
                    self.stats.id_waits.fetch_add(1, Ordering::Relaxed);
                    self.store.reserve_decision_ids(ids.block)?
                }
            };
            ids.next = first;
            ids.end = first + ids.block;
        }
        let id = ids.next;
        ids.next += 1;
        if !ids.asked && ids.spare.is_none() && ids.end - ids.next <= ids.block / 2 {
            // A full queue asks again with the next id.
            ids.asked = self.tx.try_send(Entry::Reserve).is_ok();
        }
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
    ids: &Mutex<Ids>,
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
                Entry::Reserve => reserve(store, ids),
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

/// Reserves the block that follows the one in use (on the log's thread).
fn reserve(store: &Store, ids: &Mutex<Ids>) {
    let block = ids.lock().unwrap_or_else(|p| p.into_inner()).block;
    let reserved = store.reserve_decision_ids(block);
    let mut ids = ids.lock().unwrap_or_else(|p| p.into_inner());
    ids.asked = false;
    match reserved {
        Ok(first) => ids.spare = Some(first),
        // The request that finds the block used up reserves one itself.
        Err(e) => tracing::error!("decision log: the next block of ids could not be reserved: {e}"),
    }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_block_is_reserved_before_it_is_needed() {
        let path = temp_db("blocks");
        let store = Arc::new(Store::open(&path, true).unwrap());
        let log =
            DecisionLog::start_with_block(Arc::clone(&store), 16, std::time::Duration::ZERO, 10)
                .unwrap();
        let mut seen = Vec::new();
        for _ in 0..45 {
            seen.push(log.next_id().unwrap());
            // The log's thread reserves in the background: give it the time a request would.
            for _ in 0..200 {
                let ids = log.ids.lock().unwrap();
                if !ids.asked {
                    break;
                }
                drop(ids);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 45, "{seen:?}");
        assert_eq!(log.stats.id_waits.load(Ordering::Relaxed), 0);
        // A second log (another process) never hands out the same ids.
        let other =
            DecisionLog::start_with_block(Arc::clone(&store), 16, std::time::Duration::ZERO, 10)
                .unwrap();
        for _ in 0..25 {
            assert!(!seen.contains(&other.next_id().unwrap()));
        }
        // Used up faster than the thread reserves: the request reserves itself, counted.
        let hurried =
            DecisionLog::start_with_block(Arc::clone(&store), 1, std::time::Duration::ZERO, 2)
                .unwrap();
        hurried.close().await.unwrap();
        for _ in 0..6 {
            hurried.next_id().unwrap();
        }
        assert!(hurried.stats.id_waits.load(Ordering::Relaxed) >= 1);
        for l in [log, other] {
            l.close().await.unwrap();
        }
    }

    /// Whatever stops lets go of its store handle before it says it stopped: the log's writer
    /// thread has dropped its handle by the time `close` returns.
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
