//! What probes and tools read: `GET /ready`, `GET /metrics` (Prometheus) and
//! `GET /openapi.json`.

use super::prometheus::Gauges;
use super::reply::{self, ApiError, Body};
use super::AppState;
use hyper::{Response, StatusCode};
use std::sync::Arc;

/// `GET /ready`: rules loaded and the database answers.
pub(super) async fn ready(state: &Arc<AppState>) -> Result<Response<Body>, ApiError> {
    let status = state.rules.status();
    let db = match &state.store {
        None => Err("no database is open".to_string()),
        Some(store) => {
            let s = Arc::clone(store);
            match tokio::task::spawn_blocking(move || s.check_file().and_then(|()| s.ping())).await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match db {
        Ok(()) => Ok(reply::json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ready",
                "rules_revision": status.revision,
                "rules_state": status.state,
                "database": "ok",
            }),
        )),
        Err(e) => Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not ready").details(vec![
                serde_json::json!({"component": "database", "message": e}),
            ]),
        ),
    }
}

/// `GET /openapi.json`: the document, built once.
pub(super) fn openapi() -> Response<Body> {
    static TEXT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| super::openapi::text().into());
    reply::text(StatusCode::OK, "application/json", text.clone())
}

/// `GET /metrics`: the Prometheus text.
pub(super) fn metrics(state: &Arc<AppState>) -> Response<Body> {
    let st = state.rules.status();
    let text = state.metrics.render(&Gauges {
        revision: st.revision,
        degraded: st.state == crate::loader::live::State::Degraded,
        reloads_ok: st.reloads_ok,
        reloads_failed: st.reloads_failed,
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        decision_log: state.decisions.as_ref().map(|d| {
            use std::sync::atomic::Ordering::Relaxed;
            (
                d.stats.written.load(Relaxed),
                d.stats.failed.load(Relaxed),
                d.stats.batches.load(Relaxed),
            )
        }),
    });
    reply::text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    )
}
