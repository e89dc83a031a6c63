//! The database file as a whole: one writer per file (an exclusive lock on `<db>.lock`), and
//! noticing when the path no longer names the file the store opened (deleted or replaced while
//! serving), after which nothing more is acknowledged.

use super::StoreError;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The lock file of a database: `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// An exclusive lock on a database, held while this lives (released by the OS when the process
/// ends, however it ends). The lock file says who holds it.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the lock or says who holds it. `who` is written into the lock file for the
    /// message another process gets (e.g. `serve on http://127.0.0.1:8000`).
    pub fn acquire(db: &Path, who: &str) -> Result<WriterLock, StoreError> {
        let path = lock_path(db);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Invalid(format!("cannot open `{}`: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = writeln!(file, "pid {} ({who})", std::process::id());
                Ok(WriterLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "another process".into());
                Err(StoreError::Locked {
                    path: db.to_path_buf(),
                    holder,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Invalid(format!(
                "cannot lock `{}`: {e}",
                path.display()
            ))),
        }
    }
}

/// Device and inode of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

#[cfg(unix)]
fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| FileId(m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|_| FileId(0, 0))
}

/// Watches that the path still names the file the store opened.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    id: Option<FileId>,
    lost: AtomicBool,
}

impl FileWatch {
    /// Remembers which file `path` names now.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            id: file_id(path),
            lost: AtomicBool::new(false),
        }
    }

    /// The watched path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Err(Lost)` once the path no longer names the opened file (then for good: a store
    /// that lost its file acknowledges nothing more). The first time, it is logged.
    pub fn check(&self) -> Result<(), StoreError> {
        if !self.lost.load(Ordering::Relaxed) && file_id(&self.path) == self.id {
            return Ok(());
        }
        if !self.lost.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "the database file `{}` was deleted or replaced while in use; refusing every write from now on (restart to open the file at that path)",
                self.path.display()
            );
        }
        Err(StoreError::Lost(self.path.clone()))
    }
}

/// Removes the database file and its WAL and shared-memory files (missing ones are fine).
pub fn remove_all(db: &Path) -> Result<(), StoreError> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Invalid(format!(
                    "cannot remove `{}`: {e}",
                    db.display()
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sf-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_released_on_drop() {
        let d = temp("lock");
        let db = d.join("x.db");
        let first = WriterLock::acquire(&db, "serve on http://127.0.0.1:1").unwrap();
        match WriterLock::acquire(&db, "db init") {
            Err(StoreError::Locked { holder, .. }) => {
                assert_eq!(
                    holder,
                    format!("pid {} (serve on http://127.0.0.1:1)", std::process::id())
                );
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(WriterLock::acquire(&db, "db init").is_ok());
    }

    #[test]
    fn a_deleted_or_replaced_file_is_lost_for_good() {
        let d = temp("watch");
        let db = d.join("x.db");
        std::fs::write(&db, b"a").unwrap();
        let w = FileWatch::new(&db);
        assert!(w.check().is_ok());
        std::fs::remove_file(&db).unwrap();
        assert!(matches!(w.check(), Err(StoreError::Lost(_))));
        std::fs::write(&db, b"b").unwrap();
        assert!(
            matches!(w.check(), Err(StoreError::Lost(_))),
            "a new file at the path is not the one opened"
        );
    }
}
