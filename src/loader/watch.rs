//! Hot reload: notify events on the rules directory, debounced, then a rebuild and swap.
//!
//! Editors that save by rename, bursts of writes, files deleted and re-created: every event
//! only (re)starts the debounce timer; the rebuild reads the whole directory once things are
//! quiet. A poll compares the files' content hash now and then, so a missed event (or a
//! directory that was deleted and re-created, which loses the watch) is caught too.

use super::live::{LiveRules, Reload};
use notify::{RecursiveMode, Watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Watch settings.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Quiet time after the last event before rebuilding.
    pub debounce: Duration,
    /// How often to compare content hashes without events (`None`: never).
    pub poll: Option<Duration>,
}

fn make_watcher(
    live: &LiveRules,
    tx: &mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let tx = tx.clone();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| tracing::warn!("cannot watch rules: {e}"))
    .ok()?;
    match w.watch(live.dir(), RecursiveMode::Recursive) {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %live.dir().display(), "cannot watch rules directory: {e}");
            None
        }
    }
}

/// Logs the outcome of a reload.
pub fn log_reload(outcome: &Reload, cause: &str) {
    match outcome {
        Reload::Swapped { from, to, millis } => {
            tracing::info!(%from, %to, millis = format!("{millis:.1}"), cause, "rules reloaded");
        }
        Reload::Unchanged(rev) => tracing::debug!(%rev, cause, "rules unchanged"),
        Reload::Failed(diags, files) => {
            tracing::error!(
                cause,
                "rules reload refused, previous revision keeps serving:\n{}",
                LiveRules::render_failure(diags, files)
            );
        }
    }
}

async fn reload(live: &Arc<LiveRules>, cause: &str) {
    let l = Arc::clone(live);
    match tokio::task::spawn_blocking(move || l.reload_changed()).await {
        Ok(outcome) => log_reload(&outcome, cause),
        Err(e) => tracing::error!("rules reload task failed: {e}"),
    }
}

/// Watches the rules directory until `shutdown` turns true.
pub async fn run(live: Arc<LiveRules>, cfg: WatchConfig, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = make_watcher(&live, &tx);
    // The disk revision the poll last acted on, so a broken file is not rebuilt every tick.
    let mut last_polled: Option<String> = None;
    let mut poll = cfg.poll.map(|p| {
        let mut i = tokio::time::interval(p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        i
    });
    loop {
        let poll_tick = async {
            match poll.as_mut() {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            ev = rx.recv() => {
                if ev.is_none() {
                    break;
                }
                // Debounce: wait until no event arrived for `debounce`.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(cfg.debounce) => break,
                        more = rx.recv() => if more.is_none() { break },
                    }
                }
                reload(&live, "file change").await;
            }
            _ = poll_tick => {
                if watcher.is_none() {
                    watcher = make_watcher(&live, &tx);
                }
                let l = Arc::clone(&live);
                let disk = tokio::task::spawn_blocking(move || l.disk_revision()).await.ok();
                if let Some(rev) = disk {
                    // Against the files last read, not the served revision: a rollback
                    // serves an older revision until the files change again.
                    if Some(&rev) != live.disk_seen().as_ref() && last_polled.as_deref() != Some(rev.as_str()) {
                        reload(&live, "poll").await;
                    }
                    last_polled = Some(rev);
                }
            }
        }
    }
    drop(watcher);
}
