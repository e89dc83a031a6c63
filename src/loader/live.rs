//! The live rule set: built off to the side, validated whole (schema, Rhai compile, and
//! optionally its own fixtures), swapped in one step. A failed reload leaves the previous
//! rule set serving and records the error.

use super::read_dir;
use crate::check::fixtures;
use crate::diagnostic::{render_all, Diagnostic, SourceFile};
use crate::rules::{self, RuleSet};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// `loaded`, or `degraded` (serving the previous revision because the last reload failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The files on disk are what is served.
    Loaded,
    /// The last reload failed; the previous revision is served.
    Degraded,
}

/// Fixture results of the served rule set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FixtureSummary {
    /// Whether fixtures run on reload.
    pub checked: bool,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
}

/// The last failed reload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadError {
    /// When it failed.
    pub at: String,
    /// Every problem, with `file:line:col`.
    pub diagnostics: Vec<Diagnostic>,
}

/// What `GET /api/v1/rules/status` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Loaded or degraded.
    pub state: State,
    /// Revision served.
    pub revision: String,
    /// When the served revision was loaded.
    pub loaded_at: String,
    /// Rules directory.
    pub dir: String,
    /// Files of the served revision.
    pub files: Vec<String>,
    /// Fixture results of the served revision.
    pub fixtures: FixtureSummary,
    /// Successful reloads since start (including no-op ones).
    pub reloads_ok: u64,
    /// Failed reloads since start.
    pub reloads_failed: u64,
    /// The last failed reload, cleared by a successful one.
    pub last_error: Option<ReloadError>,
    /// Set while a rollback is active: the revision of the files on disk that it replaced.
    /// Cleared when the files change again or a reload is forced.
    pub rolled_back_from: Option<String>,
    /// Good revisions kept for rollback, newest first (the served one included).
    pub kept_revisions: Vec<KeptRevision>,
}

/// A good revision kept in memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeptRevision {
    /// Revision.
    pub revision: String,
    /// When it was first loaded.
    pub loaded_at: String,
}

/// How a rollback went.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// The revision is served now.
    Activated {
        /// Revision served before.
        from: String,
    },
    /// The revision was already served.
    Unchanged,
    /// No kept revision matches; the kept ones are listed.
    Unknown(Vec<String>),
    /// More than one kept revision starts with the given prefix.
    Ambiguous(Vec<String>),
}

struct Kept {
    rs: Arc<RuleSet>,
    loaded_at: String,
    fixtures: FixtureSummary,
}

/// The kept revision that `revision` (full or a unique prefix) names.
fn find_kept<'a>(kept: &'a VecDeque<Kept>, revision: &str) -> Result<&'a Kept, Rollback> {
    let matches: Vec<&Kept> = kept
        .iter()
        .filter(|k| !revision.is_empty() && k.rs.revision.starts_with(revision))
        .collect();
    let names =
        |ks: &mut dyn Iterator<Item = &Kept>| ks.map(|k| k.rs.revision.to_string()).collect();
    match matches.as_slice() {
        [] => Err(Rollback::Unknown(names(&mut kept.iter()))),
        [k] => Ok(*k),
        more => Err(Rollback::Ambiguous(names(&mut more.iter().copied()))),
    }
}

/// How a reload went.
#[derive(Debug, Clone, PartialEq)]
pub enum Reload {
    /// A new revision is served.
    Swapped {
        /// Previous revision.
        from: String,
        /// New revision.
        to: String,
        /// Time to read, build, test and swap.
        millis: f64,
    },
    /// The files hash to the revision already served.
    Unchanged(String),
    /// The new files were refused; the previous revision keeps serving.
    Failed(Vec<Diagnostic>, Vec<SourceFile>),
}

/// The rule set a server serves, with its status.
pub struct LiveRules {
    dir: PathBuf,
    run_fixtures: bool,
    current: ArcSwap<RuleSet>,
    status: Mutex<Status>,
    reloading: Mutex<()>,
    kept: Mutex<VecDeque<Kept>>,
    keep: usize,
    /// Revision of the files last read from disk (built or refused).
    disk_seen: Mutex<Option<String>>,
}

impl std::fmt::Debug for LiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRules")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn fixture_diagnostics(rs: &RuleSet) -> (FixtureSummary, Vec<Diagnostic>) {
    let results = fixtures::run(rs, None);
    let mut diags = Vec::new();
    for r in results.iter().filter(|r| !r.passed()) {
        let mut parts = r.failures.clone();
        if let Some(e) = &r.error {
            parts.push(format!(
                "{} at {}",
                e.message,
                e.location().unwrap_or_default()
            ));
        }
        let (file, pos) = split_location(&r.at);
        diags.push(
            Diagnostic::error(format!("fixture `{}` failed: {}", r.name, parts.join("; ")))
                .at(file, pos)
                .with_help(
                    "fix the rules or the fixture; `skill-fleet rules test` shows the details",
                ),
        );
    }
    let failed = diags.len();
    (
        FixtureSummary {
            checked: true,
            passed: results.len() - failed,
            failed,
        },
        diags,
    )
}

fn split_location(at: &str) -> (String, Option<crate::diagnostic::Pos>) {
    let mut parts = at.rsplitn(3, ':');
    let col = parts.next().and_then(|c| c.parse().ok());
    let line = parts.next().and_then(|l| l.parse().ok());
    match (parts.next(), line, col) {
        (Some(file), Some(line), Some(col)) => (
            file.to_string(),
            Some(crate::diagnostic::Pos::new(line, col, 1)),
        ),
        _ => (at.to_string(), None),
    }
}

/// Reads, builds and (optionally) tests a rule set; every problem is returned.
pub fn build_dir(
    dir: &Path,
    run_fixtures: bool,
) -> Result<(RuleSet, FixtureSummary), (Vec<Diagnostic>, Vec<SourceFile>)> {
    let files = read_dir(dir).map_err(|e| (vec![e.into_diagnostic()], Vec::new()))?;
    let rs = rules::build(&files).map_err(|d| (d, files.clone()))?;
    if !run_fixtures {
        return Ok((rs, FixtureSummary::default()));
    }
    let (summary, diags) = fixture_diagnostics(&rs);
    if diags.is_empty() {
        Ok((rs, summary))
    } else {
        Err((diags, files))
    }
}

impl LiveRules {
    /// Loads the initial rule set; it must be valid (and pass its fixtures when asked).
    pub fn load(
        dir: &Path,
        run_fixtures: bool,
    ) -> Result<Self, (Vec<Diagnostic>, Vec<SourceFile>)> {
        crate::timefmt::install_deadline_clock();
        let (rs, fixtures) = build_dir(dir, run_fixtures)?;
        let status = Status {
            state: State::Loaded,
            revision: rs.revision.to_string(),
            loaded_at: crate::timefmt::now(),
            dir: dir.display().to_string(),
            files: rs.files.clone(),
            fixtures,
            reloads_ok: 0,
            reloads_failed: 0,
            last_error: None,
            rolled_back_from: None,
            kept_revisions: Vec::new(),
        };
        let rs = Arc::new(rs);
        let kept = Kept {
            rs: Arc::clone(&rs),
            loaded_at: status.loaded_at.clone(),
            fixtures,
        };
        let disk = rs.revision.to_string();
        let live = Self {
            dir: dir.to_path_buf(),
            run_fixtures,
            current: ArcSwap::new(rs),
            status: Mutex::new(status),
            reloading: Mutex::new(()),
            kept: Mutex::new(VecDeque::from([kept])),
            keep: 5,
            disk_seen: Mutex::new(Some(disk)),
        };
        Ok(live)
    }

    /// Keeps this many good revisions (at least 1, the served one) for rollback.
    pub fn keep_revisions(mut self, n: usize) -> Self {
        self.keep = n.max(1);
        self
    }

    /// The revision of the files last read from disk, built or refused (the watcher's poll
    /// compares the disk with it, not with the served revision, which a rollback may change).
    pub fn disk_seen(&self) -> Option<String> {
        self.disk_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn kept_list(&self) -> Vec<KeptRevision> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|k| KeptRevision {
                revision: k.rs.revision.to_string(),
                loaded_at: k.loaded_at.clone(),
            })
            .collect()
    }

    fn remember(&self, rs: &Arc<RuleSet>, loaded_at: &str, fixtures: FixtureSummary) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|k| k.rs.revision != rs.revision);
        kept.push_front(Kept {
            rs: Arc::clone(rs),
            loaded_at: loaded_at.to_string(),
            fixtures,
        });
        kept.truncate(self.keep);
    }

    /// Serves a kept revision again (a full revision or a unique prefix of one). It stays
    /// served until the files change again or a reload is forced.
    pub fn rollback(&self, revision: &str) -> Rollback {
        let _guard = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let k = match find_kept(&kept, revision) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if *k.rs.revision == *st.revision {
            return Rollback::Unchanged;
        }
        let from = std::mem::replace(&mut st.revision, k.rs.revision.to_string());
        st.loaded_at = k.loaded_at.clone();
        st.files = k.rs.files.clone();
        st.fixtures = k.fixtures;
        st.state = State::Loaded;
        st.rolled_back_from = self.disk_seen();
        self.current.store(Arc::clone(&k.rs));
        Rollback::Activated { from }
    }

    /// A kept revision's rule set (a full revision or a unique prefix of one), without serving
    /// it; the error is [`Rollback::Unknown`] or [`Rollback::Ambiguous`].
    pub fn kept(&self, revision: &str) -> Result<Arc<RuleSet>, Rollback> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        find_kept(&kept, revision).map(|k| Arc::clone(&k.rs))
    }

    /// The rule set to use for one request, from start to end.
    pub fn snapshot(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// A cheaper snapshot for one synchronous stretch of work (no reference count touched in
    /// the common case); do not hold it across an `.await`.
    pub fn guard(&self) -> arc_swap::Guard<Arc<RuleSet>> {
        self.current.load()
    }

    /// The rules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of the status.
    pub fn status(&self) -> Status {
        let mut st = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        st.kept_revisions = self.kept_list();
        st
    }

    /// The revision of the files on disk now; for a directory that cannot be read,
    /// `unreadable: ` and the problem, a state of its own, so the poll that finds it reloads
    /// once and reports it even when no file event came (the watcher could not start).
    pub fn disk_revision(&self) -> String {
        match read_dir(&self.dir) {
            Ok(f) => rules::compile::revision(&f),
            Err(e) => format!("unreadable: {e}"),
        }
    }

    /// Rebuilds from disk and swaps when valid (forced: also when a rollback is active and
    /// the files did not change). Reloads never run concurrently.
    pub fn reload(&self) -> Reload {
        self.reload_from_disk(true)
    }

    /// Rebuilds after a file event or poll: while a rollback is active, files that still hash
    /// to the revision it replaced are left alone.
    pub fn reload_changed(&self) -> Reload {
        self.reload_from_disk(false)
    }

    fn reload_from_disk(&self, force: bool) -> Reload {
        let _guard = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let disk = Some(self.disk_revision());
        {
            let st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            if !force && st.rolled_back_from.is_some() && disk == st.rolled_back_from {
                return Reload::Unchanged(st.revision.clone());
            }
        }
        *self.disk_seen.lock().unwrap_or_else(|p| p.into_inner()) = disk;
        let result = build_dir(&self.dir, self.run_fixtures);
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok((rs, fixtures)) => {
                st.reloads_ok += 1;
                st.state = State::Loaded;
                st.last_error = None;
                st.rolled_back_from = None;
                let from = st.revision.clone();
                if *rs.revision == *from {
                    return Reload::Unchanged(from);
                }
                st.revision = rs.revision.to_string();
                st.loaded_at = crate::timefmt::now();
                st.files = rs.files.clone();
                st.fixtures = fixtures;
                let to = st.revision.clone();
                let rs = Arc::new(rs);
                self.remember(&rs, &st.loaded_at, fixtures);
                self.current.store(rs);
                Reload::Swapped {
                    from,
                    to,
                    millis: started.elapsed().as_secs_f64() * 1000.0,
                }
            }
            Err((diags, files)) => {
                st.reloads_failed += 1;
                st.state = State::Degraded;
                st.last_error = Some(ReloadError {
                    at: crate::timefmt::now(),
                    diagnostics: diags.clone(),
                });
                Reload::Failed(diags, files)
            }
        }
    }

    /// Renders a failed reload for the log.
    pub fn render_failure(diags: &[Diagnostic], files: &[SourceFile]) -> String {
        render_all(diags, files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the shipped rules (YAML files only) in a fresh directory.
    fn rules_copy(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("skill-fleet-live-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        for e in std::fs::read_dir(shipped).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
            }
        }
        dir
    }

    #[test]
    fn an_unreadable_directory_is_a_disk_state_the_poll_acts_on_once() {
        let dir = rules_copy("unreadable");
        let live = LiveRules::load(&dir, false).unwrap();
        let good = live.disk_revision();
        assert_eq!(good, live.status().revision);
        let link = dir.join("passwd.yaml");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let bad = live.disk_revision();
        assert!(bad.starts_with("unreadable: "), "{bad}");
        assert!(bad.contains("outside the rules directory"), "{bad}");
        // The watch loop's poll reloads when the disk state differs from the one last read.
        assert_ne!(Some(&bad), live.disk_seen().as_ref());
        assert!(matches!(live.reload_changed(), Reload::Failed(..)));
        assert_eq!(live.status().state, State::Degraded);
        assert_eq!(
            live.disk_seen(),
            Some(bad),
            "seen: the poll does not repeat it"
        );
        std::fs::remove_file(&link).unwrap();
        assert_eq!(live.disk_revision(), good);
        assert!(matches!(live.reload_changed(), Reload::Unchanged(_)));
        assert_eq!(live.status().state, State::Loaded);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
