//! The HTTP API on hyper 1 and tokio. The only module that knows hyper.
//!
//! [`serve`] takes its listener, its state and a shutdown future, so tests start a real server
//! on port 0 in a few lines:
//!
//! ```no_run
//! # async fn demo(state: std::sync::Arc<skill_fleet::http::AppState>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (tx, rx) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(skill_fleet::http::serve(listener, state, async { let _ = rx.await; }));
//! // … send requests to `addr` …
//! let _ = tx.send(());
//! # let _ = (addr, server);
//! # Ok(()) }
//! ```

mod conn;
pub mod console;
mod decide;
pub mod decision_log;
mod extract;
mod jobs;
mod map;
pub mod openapi;
mod optimization;
mod probes;
pub mod prometheus;
pub mod reply;
pub mod route;
mod routes;
mod rules;
mod training;

use crate::config::Config;
use crate::engine::history::HistoryIndex;
use crate::loader::live::LiveRules;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use decision_log::DecisionLog;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::Metrics;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Everything a request handler needs.
pub struct AppState {
    /// The checked configuration.
    pub config: Config,
    /// The live rule set.
    pub rules: Arc<LiveRules>,
    /// The database (none when not opened).
    pub store: Option<Arc<Store>>,
    /// Request metrics.
    pub metrics: Metrics,
    /// The decision log (none without a database, or with `decisions.log: false`).
    pub decisions: Option<DecisionLog>,
    /// Recorded outcomes, the live confidence model's history.
    pub history: ArcSwap<HistoryIndex>,
    /// Serve the console's files from this directory instead of the embedded copy
    /// (`serve --console-dir`, for working on the console).
    pub console_dir: Option<std::path::PathBuf>,
    started: Instant,
    seed: u64,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state: with a database, loads the recorded outcomes as the confidence
    /// model's history and starts the decision log (unless `decisions.log` is off).
    pub fn new(
        config: Config,
        rules: Arc<LiveRules>,
        store: Option<Arc<Store>>,
    ) -> Result<Self, StoreError> {
        let (decisions, history) = match &store {
            Some(s) => {
                let history = load_history(s)?;
                let log = if config.decisions.log {
                    Some(DecisionLog::start(
                        Arc::clone(s),
                        config.decisions.queue_capacity,
                        Duration::from_millis(config.decisions.flush_interval_ms),
                    )?)
                } else {
                    None
                };
                (log, history)
            }
            None => (None, HistoryIndex::default()),
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
            ^ u64::from(std::process::id()).rotate_left(32);
        Ok(Self {
            config,
            rules,
            store,
            metrics: Metrics::default(),
            decisions,
            history: ArcSwap::from_pointee(history),
            console_dir: None,
            started: Instant::now(),
            seed,
        })
    }

    /// Re-reads the recorded outcomes into the live history (after an outcome was recorded).
    pub fn refresh_history(&self) -> Result<(), StoreError> {
        if let Some(s) = &self.store {
            self.history.store(Arc::new(load_history(s)?));
        }
        Ok(())
    }

    /// [`AppState::refresh_history`] on a blocking thread; a failure is logged (the outcome
    /// itself is stored, and the next refresh picks it up).
    pub(crate) async fn refresh_history_logged(self: &Arc<Self>) {
        let st = Arc::clone(self);
        match tokio::task::spawn_blocking(move || st.refresh_history()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("refreshing the outcome history failed: {e}"),
            Err(e) => tracing::warn!("refreshing the outcome history failed: {e}"),
        }
    }

    /// Writes the queued decisions and stops the decision log; call after [`serve`] returned.
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.decisions {
            Some(log) => log.close().await,
            None => Ok(()),
        }
    }

    /// A new request id: 16 hex digits, unique within the process, unpredictable across runs.
    fn request_id(&self) -> RequestId {
        // Counted per thread (no counter shared by the cores): each thread numbers its own
        // requests above a base of its own.
        static THREADS: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static NEXT: std::cell::Cell<u64> =
                std::cell::Cell::new(THREADS.fetch_add(1, Ordering::Relaxed) << 40);
        }
        let n = NEXT.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        // splitmix64 of seed + n
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        RequestId::hex(z ^ (z >> 31))
    }
}

/// A request id the server made: 16 lower-case hex digits, on the stack.
struct RequestId([u8; 16]);

impl RequestId {
    fn hex(v: u64) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 16];
        for (i, d) in id.iter_mut().enumerate() {
            *d = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        RequestId(id)
    }

    fn as_str(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn load_history(store: &Store) -> Result<HistoryIndex, StoreError> {
    let outcomes = store.outcomes_since(i64::MIN)?;
    let records: Vec<_> = outcomes.iter().map(|o| o.to_history()).collect();
    Ok(HistoryIndex::new(&records))
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes; then stops accepting, lets
/// in-flight requests finish (up to `server.shutdown_grace_ms`) and returns.
pub async fn serve<F>(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    crate::timefmt::install_deadline_clock();
    crate::rules::deadline::set_budget_ms(state.config.rules.eval_timeout_ms);
    let conns = Arc::new(conn::Connections::default());
    let header_read_timeout = Duration::from_millis(state.config.server.header_read_timeout_ms);
    let mut builder = http1::Builder::new();
    // The header-read timeout is kept per connection by `conn` (hyper's own arms a timer
    // for every request).
    builder.header_read_timeout(None).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // One handle per connection: the per-request clone below then touches a
                // reference count only this connection's task uses, not one shared by every
                // core.
                let st = Arc::new(routes::Conn::new(Arc::clone(&state)));
                let activity = st.activity();
                let svc = service_fn(move |req| routes::handle(Arc::clone(&st), req));
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                let driven = conns.drive(conn, activity, header_read_timeout);
                tokio::spawn(async move {
                    match driven.await {
                        conn::Ended::Closed => {}
                        conn::Ended::HeaderTimeout => {
                            tracing::debug!("connection closed: no request headers within {header_read_timeout:?}");
                        }
                        conn::Ended::Error(e) => {
                            tracing::debug!("connection ended with an error: {e}");
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    conns.shut_down();
    let grace = Duration::from_millis(state.config.server.shutdown_grace_ms);
    tokio::select! {
        () = conns.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            "grace period of {grace:?} over; closing {} remaining connections",
            conns.live()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RequestId;

    #[test]
    fn request_ids_are_16_lower_case_hex_digits() {
        for v in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(RequestId::hex(v).as_str(), format!("{v:016x}"));
        }
    }
}
