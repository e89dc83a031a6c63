//! What only the SQLite store has: the job cache, and what closing does to the file (WAL
//! checkpointed, writer lock released). Everything both backends do is tested once, against
//! both, by the conformance suite (`tests/store_conformance.rs`).

use super::job::{NewJob, Status};
use super::*;
use std::sync::atomic::Ordering;

/// A fresh database path in the temporary directory, and its files removed on drop.
struct TmpDb(PathBuf);

impl TmpDb {
    fn new(name: &str) -> Self {
        use std::sync::atomic::AtomicUsize;
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "skill-fleet-store-{name}-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let db = TmpDb(p);
        db.remove();
        db
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

impl Drop for TmpDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn job() -> NewJob {
    NewJob {
        job_type: "optimization".into(),
        task: "tune".into(),
        ..NewJob::default()
    }
}

#[test]
fn the_cache_never_grows_past_its_capacity_and_stays_current() {
    let db = TmpDb::new("cache");
    let opts = StoreOptions {
        cache_capacity: 5,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&db.0, true, opts, system_clock()).unwrap();
    let ids: Vec<String> = (0..20).map(|_| store.create(job()).unwrap().0.id).collect();
    for id in &ids {
        assert!(store.get(id).unwrap().is_some());
        assert!(store.cached() <= 5);
    }
    let first = &ids[0];
    let cached = store.get(first).unwrap().unwrap();
    store.cancel(first).unwrap();
    let after = store.get(first).unwrap().unwrap();
    assert_eq!(after.status, Status::Cancelled);
    assert!(after.version > cached.version);
    store.close().unwrap();
}

#[test]
fn closing_checkpoints_the_wal_and_releases_the_writer_lock() {
    let db = TmpDb::new("close");
    let store = Store::open(&db.0, true).unwrap();
    // A second writer is refused while the first holds the lock.
    assert!(matches!(
        Store::open(&db.0, true),
        Err(StoreError::Locked { .. })
    ));
    let id = store.create(job()).unwrap().0.id;
    store.close().unwrap();
    let wal = std::fs::metadata(format!("{}-wal", db.0.display())).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL was checkpointed into the file");
    let reopened = Store::open(&db.0, false).unwrap();
    assert!(reopened.get(&id).unwrap().is_some());
    reopened.close().unwrap();
}
