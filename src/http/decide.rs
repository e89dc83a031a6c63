//! `POST /api/v1/optimization/recommend` and `POST /api/v1/rules/evaluate`: the request body
//! checked against the live context model in one pass, the decision, its JSON written from the
//! rule set's pre-escaped fragments, and the decision log's entry.

use super::reply::{self, ApiError, Body};
use super::AppState;
use crate::engine::{self, Options};
use crate::rules::context::JsonCheckError;
use crate::store::decisions::{DecisionTexts, NewDecision};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// A `true`/`false` query parameter (`?explain`, alone, is true); absent is false.
fn query_flag(req: &Request<Incoming>, name: &str) -> Result<bool, ApiError> {
    for (k, v) in super::extract::query(req.uri().query())? {
        if k == name {
            return match v.as_str() {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(super::extract::bad_parameter(
                    name,
                    format!("query parameter `{name}` must be true or false, found `{other}`"),
                    None,
                )),
            };
        }
    }
    Ok(false)
}

/// `recommend` (counted and logged as a decision; `log` has the request id) and `evaluate`
/// (a dry run, never recorded).
///
/// Only reading the body and queueing the log entry wait; the decision itself is made in
/// [`decide_now`], so its locals do not live in this future, which hyper moves for every
/// request.
pub(super) async fn decide(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    log: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let explain = query_flag(&req, "explain")?;
    let limit = state.config.server.body_limit_bytes;
    let timeout = std::time::Duration::from_millis(state.config.server.body_read_timeout_ms);
    let body = match reply::json_request_body(req, limit) {
        Ok(b) => b,
        Err(r) => return Err(Box::pin(r.linger(timeout)).await),
    };
    let body = reply::read_json_body(body, limit, timeout).await?;
    let (resp, entry) = if state.rules.guard().runs_rhai {
        // Rhai may run up to its time limit: not on a thread that serves other requests.
        Box::pin(decide_on_blocking_pool(state, body, explain, log)).await?
    } else {
        decide_now(state, &body, explain, log)?
    };
    if let (Some(entry), Some(dl)) = (entry, &state.decisions) {
        dl.push(entry).await.map_err(super::extract::store_error)?;
    }
    Ok(resp)
}

/// [`decide_now`] on tokio's blocking pool (for rule sets that run Rhai).
async fn decide_on_blocking_pool(
    state: &Arc<AppState>,
    body: bytes::Bytes,
    explain: bool,
    log: Option<&str>,
) -> Result<(Response<Body>, Option<NewDecision>), ApiError> {
    let state = Arc::clone(state);
    let log = log.map(str::to_string);
    tokio::task::spawn_blocking(move || decide_now(&state, &body, explain, log.as_deref()))
        .await
        .map_err(|e| {
            tracing::error!("rule evaluation task failed: {e}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "rule evaluation failed")
        })?
}

/// The decision for a request body: the response, and the decision log's entry when it is
/// logged.
fn decide_now(
    state: &AppState,
    body: &bytes::Bytes,
    explain: bool,
    log: Option<&str>,
) -> Result<(Response<Body>, Option<NewDecision>), ApiError> {
    let count = log.is_some();
    // No `.await` here: a guard is enough and avoids a shared reference count.
    let rs = state.rules.guard();
    // Parsed and checked in one pass: no intermediate map.
    let ctx = rs.check_input_json(body).map_err(|e| match e {
        JsonCheckError::Syntax(e) => reply::malformed(&e),
        JsonCheckError::NotObject(kind) => reply::not_an_object(kind),
        JsonCheckError::Input(errors) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid input").details(
                errors
                    .iter()
                    .map(|e| serde_json::to_value(e).unwrap_or_default())
                    .collect(),
            )
        }
    })?;
    let history = state.history.load();
    let mut d = engine::evaluate_with(
        &rs,
        &ctx,
        &**history,
        Options {
            explain,
            guard: None,
        },
    )
    .map_err(|e| {
        let diag = e.to_diagnostic();
        tracing::error!("rule evaluation failed: {}", diag.render(&[]));
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "rule evaluation failed")
            .details(vec![serde_json::to_value(&diag).unwrap_or_default()])
    })?;
    if count {
        state.metrics.decision(&d.choice.optimizer);
    }
    let log = match (log, &state.decisions) {
        (Some(rid), Some(dl)) => {
            d.decision_id = Some(dl.next_id().map_err(super::extract::store_error)?);
            Some(rid)
        }
        _ => None,
    };
    // Written straight from the rule set's pre-escaped fragments (same bytes as serde).
    // Written in a buffer each thread reuses, then copied once into an exactly sized body.
    thread_local! {
        static OUT: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
    }
    let out = OUT.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            d.write_json(&mut buf);
            let body = bytes::Bytes::copy_from_slice(&buf);
            // A large answer (with `explain`) does not keep its buffer.
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::with_capacity(1024);
            }
            body
        }
        Err(_) => {
            let mut buf = Vec::with_capacity(1024);
            d.write_json(&mut buf);
            bytes::Bytes::from(buf)
        }
    });
    let entry = match (log, d.decision_id) {
        // One buffer holds every text of the entry; the body is copied, so hyper's read
        // buffer is not pinned until the batch is written.
        (Some(rid), Some(id)) => Some(NewDecision::new(
            id,
            crate::timefmt::now_ms(),
            "http",
            (d.estimate.cost, d.estimate.minutes as f64),
            DecisionTexts {
                request_id: Some(rid),
                revision: &d.revision[..],
                rule: &d.rule.id[..],
                optimizer: &d.choice.optimizer[..],
                variant: d.choice.variant.as_deref(),
                input: body,
            },
            |out| d.write_log_json(out),
        )),
        _ => None,
    };
    Ok((reply::full(StatusCode::OK, "application/json", out), entry))
}
