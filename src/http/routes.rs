//! Routing and handlers. Every response carries `X-Request-ID`; errors use the JSON error shape.

use super::conn::Activity;
use super::reply::{self, ApiError, Body};
use super::route::Route;
use super::AppState;
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
    // Only when request lines are asked for (`log.requests`): the method outlives the request.
    let method = state.config.log.requests.then(|| req.method().clone());
    let (route, result) = dispatch(&conn, rid, req).await;
    let mut resp = result.unwrap_or_else(|e| e.into_response(rid));
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    let took = start.elapsed();
    state.metrics.observe(route, resp.status().as_u16(), took);
    if let Some(method) = method {
        tracing::info!(
            request_id = rid,
            method = method.as_str(),
            route = route.label(),
            status = resp.status().as_u16(),
            duration_ms = took.as_secs_f64() * 1000.0,
            "request"
        );
    }
    conn.activity.end();
    Ok(resp)
}

async fn dispatch(
    conn: &Conn,
    rid: &str,
    mut req: Request<Incoming>,
) -> (Route, Result<Response<Body>, ApiError>) {
    let state = &conn.state;
    let path = req.uri().path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let Some((route, methods, id)) = resolve(path) else {
        let e = ApiError::new(StatusCode::NOT_FOUND, format!("no route for `{path}`"));
        return (Route::Unmatched, Err(e));
    };
    // HEAD is GET without the body (hyper leaves the body out: it saw the request's method).
    let as_get = req.method() == Method::HEAD && methods.contains(&Method::GET);
    if !as_get && !methods.contains(req.method()) {
        return (route, Err(method_not_allowed(req.method(), path, methods)));
    }
    if as_get {
        *req.method_mut() = Method::GET;
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
        Route::Ready => Box::pin(super::probes::ready(state)).await,
        Route::Metrics => Ok(super::probes::metrics(state)),
        Route::OpenApi => Ok(super::probes::openapi()),
        Route::Recommend => super::decide::decide(state, req, Some(rid)).await,
        Route::RulesEvaluate => Box::pin(super::decide::decide(state, req, None)).await,
        Route::Outcomes => Box::pin(super::optimization::record_outcome(state, req)).await,
        Route::SelectorMetrics => Box::pin(super::optimization::metrics(state, &req)).await,
        Route::RulesRollback => Box::pin(super::rules::rollback(state, req)).await,
        Route::RulesStatus => Ok(reply::json(StatusCode::OK, &state.rules.status())),
        Route::RulesReload => Box::pin(super::rules::reload(state)).await,
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

/// 405 with the `Allow` header (HEAD goes with GET).
fn method_not_allowed(method: &Method, path: &str, methods: &[Method]) -> ApiError {
    let mut allow: Vec<&str> = Vec::with_capacity(methods.len() + 1);
    for m in methods {
        allow.push(m.as_str());
        if m == Method::GET {
            allow.push(Method::HEAD.as_str());
        }
    }
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
