//! Routing and handlers. Every response carries `X-Request-ID`; errors use the JSON error shape.

use super::conn::Activity;
use super::metrics::{Gauges, Route};
use super::reply::{self, ApiError, Body};
use super::AppState;
use crate::engine::{self, Options};
use crate::loader::live::{Reload, Rollback};
use crate::rules::context::JsonCheckError;
use crate::store::decisions::{DecisionTexts, NewDecision};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

const X_REQUEST_ID: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-request-id");

fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The state as one connection holds it (see `serve`), and the requests it has handled (for
/// the header-read timeout, see `conn`).
pub(super) struct Conn {
    state: Arc<AppState>,
    activity: Arc<Activity>,
}

impl Conn {
    /// A new connection's handle.
    pub(super) fn new(state: Arc<AppState>) -> Self {
        Self {
            state,
            activity: Arc::default(),
        }
    }

    /// The connection's request counter.
    pub(super) fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }
}

/// The methods a route accepts. With [`Route::label`] (the path pattern) this is the one
/// route table: routing, `405 Allow`, the metrics labels and the OpenAPI document all read it.
pub(super) fn methods(route: Route) -> &'static [Method] {
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    const GET_POST: &[Method] = &[Method::GET, Method::POST];
    match route {
        Route::Jobs | Route::JobHitl => GET_POST,
        Route::Health
        | Route::Ready
        | Route::Metrics
        | Route::OpenApi
        | Route::RulesStatus
        | Route::SelectorMetrics
        | Route::Job
        | Route::TrainingAnalytics
        | Route::RulesContext
        | Route::RulesMap
        | Route::Timeline
        | Route::Console
        | Route::ConsoleAsset => GET,
        Route::Unmatched => &[],
        _ => POST,
    }
}

/// Matches `path` against a route's pattern: `Some(id)` when it matches (`{id}` takes one
/// non-empty segment, a final `{path}` the non-empty rest), `Some(None)` for a pattern
/// without either.
fn matches(pattern: &str, path: &str) -> Option<Option<String>> {
    if !pattern.contains('{') {
        return (pattern == path).then_some(None);
    }
    if let Some(prefix) = pattern.strip_suffix("{path}") {
        let rest = path.strip_prefix(prefix)?;
        return (!rest.is_empty()).then(|| Some(rest.to_string()));
    }
    let (mut pat, mut got) = (pattern.split('/'), path.split('/'));
    let mut id = None;
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(seg)) if !seg.is_empty() => id = Some(seg.to_string()),
            (Some(p), Some(seg)) if p == seg => {}
            _ => return None,
        }
    }
}

/// The route of a path, its methods, and the job id in it (job routes with an id). Routes
/// are tried in [`Route::ALL`] order, so `/api/v1/jobs/claim` is found before
/// `/api/v1/jobs/{id}`.
pub(super) fn resolve(path: &str) -> Option<(Route, &'static [Method], Option<String>)> {
    Route::ALL
        .iter()
        .find_map(|&route| matches(route.label(), path).map(|id| (route, methods(route), id)))
}

/// Handles one request: route, run, add the request id, record metrics.
pub(super) async fn handle(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let state: &Arc<AppState> = &conn.state;
    conn.activity.begin();
    let start = Instant::now();
    let given = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_string);
    let own;
    let rid = match &given {
        Some(g) => g.as_str(),
        None => {
            own = state.request_id();
            own.as_str()
        }
    };
    let (route, result) = dispatch(&conn, rid, req).await;
    let mut resp = result.unwrap_or_else(|e| e.into_response(rid));
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    state
        .metrics
        .observe(route, resp.status().as_u16(), start.elapsed());
    conn.activity.end();
    Ok(resp)
}

async fn dispatch(
    conn: &Conn,
    rid: &str,
    req: Request<Incoming>,
) -> (Route, Result<Response<Body>, ApiError>) {
    let state = &conn.state;
    let path = req.uri().path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let Some((route, methods, id)) = resolve(path) else {
        let e = ApiError::new(StatusCode::NOT_FOUND, format!("no route for `{path}`"));
        return (Route::Unmatched, Err(e));
    };
    if !methods.contains(req.method()) {
        return (route, Err(method_not_allowed(req.method(), path, methods)));
    }
    // With a token configured, every `/api/…` route needs it, reads included.
    if route.label().starts_with("/api/") {
        if let Err(e) = authorize(state, &req) {
            return (route, Err(e));
        }
    }
    if let Some(id) = id {
        let result = match route {
            Route::ConsoleAsset => super::console::asset(state, &id),
            _ => Box::pin(super::jobs::handle(state, req, route, Some(id))).await,
        };
        return (route, result);
    }
    let result = match route {
        Route::Health => Ok(reply::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        Route::Ready => Box::pin(ready(state)).await,
        Route::Metrics => Ok(metrics(state)),
        Route::OpenApi => Ok(openapi()),
        Route::Recommend => decide(state, req, Some(rid)).await,
        Route::RulesEvaluate => Box::pin(decide(state, req, None)).await,
        Route::Outcomes => Box::pin(super::optimization::record_outcome(state, req)).await,
        Route::SelectorMetrics => Box::pin(super::optimization::metrics(state, &req)).await,
        Route::RulesRollback => Box::pin(rollback(state, req)).await,
        Route::RulesStatus => Ok(reply::json(StatusCode::OK, &state.rules.status())),
        Route::RulesReload => Box::pin(reload(state)).await,
        Route::Jobs | Route::JobsClaim => {
            Box::pin(super::jobs::handle(state, req, route, None)).await
        }
        Route::TrainingAnalytics | Route::TrainingSelect | Route::TrainingResults => {
            Box::pin(super::training::handle(state, req, route)).await
        }
        Route::RulesContext => super::map::context(state),
        Route::RulesMap => Box::pin(super::map::map(state, &req)).await,
        Route::Timeline => Box::pin(super::optimization::timeline(state, &req)).await,
        Route::Console => super::console::asset(state, "index.html"),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no route")),
    };
    (route, result)
}

/// 405 with the `Allow` header.
fn method_not_allowed(method: &Method, path: &str, methods: &[Method]) -> ApiError {
    let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {method} is not allowed on `{path}`; use {}",
            allow.join(", ")
        ),
    )
    .header("allow", allow.join(", "))
}

/// Mutating endpoints require `Authorization: Bearer <token>` when a token is configured.
pub(super) fn authorize(state: &AppState, req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(token) = &state.config.server.api_token else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme name is case-insensitive (RFC 9110 §11.1).
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })
        .unwrap_or("");
    // Constant-time comparison.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong API token")
                .header("www-authenticate", "Bearer".into()),
        )
    }
}

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
async fn decide(
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
            now_ms(),
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn reload(state: &Arc<AppState>) -> Result<Response<Body>, ApiError> {
    let live = Arc::clone(&state.rules);
    let outcome = tokio::task::spawn_blocking(move || live.reload())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload task failed: {e}"),
            )
        })?;
    crate::loader::watch::log_reload(&outcome, "api");
    let result = match &outcome {
        Reload::Swapped { .. } => "reloaded",
        Reload::Unchanged(_) => "unchanged",
        Reload::Failed(diags, _) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "rules reload refused; revision {} keeps serving",
                    state.rules.status().revision
                ),
            )
            .details(
                diags
                    .iter()
                    .map(|d| serde_json::to_value(d).unwrap_or_default())
                    .collect(),
            ));
        }
    };
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"result": result, "status": state.rules.status()}),
    ))
}

/// The body of `POST /api/v1/rules/rollback`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    /// A kept revision (or a unique prefix of one).
    revision: String,
}

/// `POST /api/v1/rules/rollback {"revision": "..."}`: serve a kept revision again.
async fn rollback(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let b: RollbackBody = super::extract::body(state, req).await?;
    let live = Arc::clone(&state.rules);
    let rev = b.revision.trim().to_string();
    let outcome = tokio::task::spawn_blocking(move || live.rollback(&rev))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rollback task failed: {e}"),
            )
        })?;
    let kept = |list: &[String]| format!("kept revisions: {}", list.join(", "));
    let result = match outcome {
        Rollback::Activated { from } => {
            tracing::info!(from = %from, to = %state.rules.status().revision, "rules rolled back");
            "rolled_back"
        }
        Rollback::Unchanged => "unchanged",
        Rollback::Unknown(list) => {
            return Err(super::extract::invalid(
                "revision",
                format!("no kept revision `{}`", b.revision.trim()),
                Some(kept(&list)),
            ))
        }
        Rollback::Ambiguous(list) => {
            return Err(super::extract::invalid(
                "revision",
                format!(
                    "`{}` matches more than one kept revision",
                    b.revision.trim()
                ),
                Some(format!("give more characters; {}", kept(&list))),
            ))
        }
    };
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({"result": result, "status": state.rules.status()}),
    ))
}

async fn ready(state: &Arc<AppState>) -> Result<Response<Body>, ApiError> {
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
fn openapi() -> Response<Body> {
    static TEXT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| super::openapi::text().into());
    reply::text(StatusCode::OK, "application/json", text.clone())
}

fn metrics(state: &Arc<AppState>) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The route and id `resolve` finds for a path.
    fn route_of(path: &str) -> Option<(Route, Option<String>)> {
        resolve(path).map(|(r, _, id)| (r, id))
    }

    #[test]
    fn paths_match_their_routes() {
        let id = |r: Route, id: &str| Some((r, Some(id.to_string())));
        assert_eq!(route_of("/api/v1/jobs"), Some((Route::Jobs, None)));
        assert_eq!(
            route_of("/api/v1/jobs/claim"),
            Some((Route::JobsClaim, None))
        );
        assert_eq!(route_of("/api/v1/jobs/a1"), id(Route::Job, "a1"));
        assert_eq!(
            route_of("/api/v1/jobs/a1/heartbeat"),
            id(Route::JobHeartbeat, "a1")
        );
        assert_eq!(
            route_of("/api/v1/jobs/a1/complete"),
            id(Route::JobComplete, "a1")
        );
        assert_eq!(route_of("/api/v1/jobs/a1/fail"), id(Route::JobFail, "a1"));
        assert_eq!(
            route_of("/api/v1/jobs/a1/cancel"),
            id(Route::JobCancel, "a1")
        );
        assert_eq!(route_of("/api/v1/jobs/a1/hitl"), id(Route::JobHitl, "a1"));
        assert_eq!(
            route_of("/api/v1/jobs/a1/hitl/response"),
            id(Route::JobHitlResponse, "a1")
        );
        for other in [
            "/api/v1/jobsx",
            "/api/v1/jobs//complete",
            "/api/v1/jobs/a1/finish",
            "/api/v1/jobs/a1/complete/now",
            "/api/v1/jobs/a1/hitl/response/x",
            "/api/v1/job",
        ] {
            assert_eq!(route_of(other), None, "{other}");
        }
    }
}
