//! The job API under `/api/v1/jobs`: create, get, list, claim with a lease, heartbeat,
//! complete, fail, human-in-the-loop question and answer, cancel.
//!
//! Store calls block (SQLite and the writer's group commit), so they run on tokio's blocking
//! pool. Every `POST` requires the API token when one is configured. Store errors map to HTTP:
//! unknown job → 404, stale lease or illegal transition → 409 (with the current status),
//! invalid input → 422 naming the field, anything else → 500 (logged).

use super::extract::{bad_parameter, blocking, body, invalid, not_found, query, store_error};
use super::reply::{self, ApiError, Body};
use super::route::Route;
use super::AppState;
use crate::diagnostic::did_you_mean;
use crate::store::job::{self, Job, NewJob, Progress, Status};
use crate::store::{Filter, JobChange, Store};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, LOCATION, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

const PREFIX: &str = "/api/v1/jobs";
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
const MAX_LEASE_SECONDS: u64 = 86_400;
const QUERY_PARAMETERS: [&str; 5] = ["status", "type", "user_id", "limit", "cursor"];

/// Runs a matched job route (the method is already checked).
pub(super) async fn handle(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    route: Route,
    id: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let post = req.method() == Method::POST;
    let Some(store) = state.store.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the job store is not available: no database is open",
        ));
    };
    let id = id.unwrap_or_default();
    match route {
        Route::Jobs if post => create(state, store, req).await,
        Route::Jobs => list(store, &req).await,
        Route::JobsClaim => claim(state, store, req).await,
        Route::Job => {
            let job = blocking(store, {
                let id = id.clone();
                move |s| s.get(&id)
            })
            .await?;
            match job {
                Some(j) => Ok(reply::json(StatusCode::OK, &j)),
                None => Err(not_found(&id)),
            }
        }
        Route::JobHeartbeat => heartbeat(state, store, req, id).await,
        Route::JobComplete => {
            let b: CompleteBody = body(state, req).await?;
            let results = example_results(&b.result)?;
            // An outcome in the result (`optimizer_used`, `quality`, …) must be well-formed;
            // the decision it links to must be in the log before the store looks it up.
            let report = crate::store::outcomes::parse_report(&b.result)
                .map_err(|e| invalid(&format!("result.{}", e.field), e.message, None))?;
            if report.is_some() {
                if let Some(log) = &state.decisions {
                    log.sync().await.map_err(store_error)?;
                }
            }
            let spec = state.rules.snapshot().training.clone();
            let job = store
                .change_async(JobChange::Complete {
                    id: &id,
                    token: &b.lease_token,
                    result: b.result,
                    training: results.map(|r| (&spec, r)),
                })
                .await
                .map_err(store_error)?;
            if report.is_some() && job.job_type == "optimization" {
                state.refresh_history_logged().await;
            }
            Ok(reply::json(StatusCode::OK, &job))
        }
        Route::JobFail => {
            let b: FailBody = body(state, req).await?;
            let job = store
                .change_async(JobChange::Fail {
                    id: &id,
                    token: &b.lease_token,
                    error: &b.error,
                    retry: b.retry,
                })
                .await
                .map_err(store_error)?;
            Ok(reply::json(StatusCode::OK, &job))
        }
        Route::JobHitl if post => {
            let b: HitlBody = body(state, req).await?;
            let kind = b.kind.trim().to_string();
            job::check_len("type", &kind, 1, job::MAX_HITL_TYPE).map_err(store_error)?;
            let job = store
                .change_async(JobChange::RequestHitl {
                    id: &id,
                    token: &b.lease_token,
                    kind: &kind,
                    data: b.data,
                })
                .await
                .map_err(store_error)?;
            Ok(reply::json(StatusCode::OK, &job))
        }
        Route::JobHitl => hitl(store, id).await,
        Route::JobHitlResponse => {
            let b: ResponseBody = body(state, req).await?;
            if b.response.is_null() {
                return Err(invalid(
                    "response",
                    "`response` must not be null".into(),
                    Some(
                        "send the human's answer, e.g. {\"response\": {\"approved\": true}}".into(),
                    ),
                ));
            }
            let job = store
                .change_async(JobChange::RespondHitl {
                    id: &id,
                    response: b.response,
                })
                .await
                .map_err(store_error)?;
            Ok(reply::json(StatusCode::OK, &job))
        }
        Route::JobCancel => {
            empty_body(state, req).await?;
            let job = store
                .change_async(JobChange::Cancel { id: &id })
                .await
                .map_err(store_error)?;
            Ok(reply::json(StatusCode::OK, &job))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no route")),
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// The body of `POST /api/v1/jobs/claim`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimBody {
    /// The worker's name (kept as the lease owner).
    worker: String,
    /// Job types this worker runs; empty or absent: any.
    #[serde(default)]
    types: Option<Vec<String>>,
    /// Lease length; the server's default when absent.
    #[serde(default)]
    lease_seconds: Option<u64>,
    /// Claim this job only (204 when it is not claimable): a worker started for one job.
    #[serde(default)]
    id: Option<String>,
}

/// The body of `POST /api/v1/jobs/{id}/heartbeat`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HeartbeatBody {
    /// The token the claim returned.
    lease_token: String,
    /// Extend the lease by this much; the server's default when absent.
    #[serde(default)]
    lease_seconds: Option<u64>,
    /// Progress to show.
    #[serde(default)]
    progress: Option<ProgressBody>,
}

/// Progress reported with a heartbeat.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProgressBody {
    /// 0..100.
    #[schemars(range(min = 0, max = 100))]
    percent: f64,
    /// For people.
    #[serde(default)]
    message: Option<String>,
    /// The run's phase, e.g. `compiling`.
    #[serde(default)]
    phase: Option<String>,
}

/// The body of `POST /api/v1/jobs/{id}/complete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CompleteBody {
    /// The token the claim returned.
    lease_token: String,
    /// The run's result. For an `optimization` job, `optimizer_used` and `quality` (and
    /// optionally `actual_cost`, `actual_time_minutes`) record an outcome, and
    /// `example_results` updates the training examples.
    #[serde(default)]
    result: Value,
}

/// The body of `POST /api/v1/jobs/{id}/fail`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FailBody {
    /// The token the claim returned.
    lease_token: String,
    /// What went wrong.
    error: String,
    /// Back to `pending` (attempt + 1, with backoff) while attempts are left.
    #[serde(default)]
    retry: bool,
}

/// The body of `POST /api/v1/jobs/{id}/hitl`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HitlBody {
    /// The token the claim returned.
    lease_token: String,
    /// The kind of question, e.g. `approval`.
    #[serde(rename = "type")]
    kind: String,
    /// What the human needs to answer.
    #[serde(default)]
    data: Value,
}

/// The body of `POST /api/v1/jobs/{id}/hitl/response`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResponseBody {
    /// The human's answer, e.g. `{"approved": true}`.
    response: Value,
}

/// A body that must be empty (`{}`), e.g. of a cancel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

/// The answer to a successful claim.
#[derive(Serialize, JsonSchema)]
pub(super) struct Claimed<'a> {
    job: &'a Job,
    lease_token: &'a str,
}

/// `GET /api/v1/jobs/{id}/hitl`.
#[derive(Serialize, JsonSchema)]
pub(super) struct HitlView<'a> {
    status: Status,
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a Value,
    response: Option<&'a Value>,
}

/// A body that may be absent (no length, or length 0); when present it must be `{}`.
async fn empty_body(state: &AppState, req: Request<Incoming>) -> Result<(), ApiError> {
    let h = req.headers();
    let len = h
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if len == Some(0) || (len.is_none() && !h.contains_key(TRANSFER_ENCODING)) {
        return Ok(());
    }
    let _: EmptyBody = body(state, req).await?;
    Ok(())
}

/// The per-example results of an optimization run, when its result carries
/// `example_results: [{example_id, score, passed}]`; they update the training examples.
fn example_results(
    result: &Value,
) -> Result<Option<Vec<crate::engine::training::RunResult>>, ApiError> {
    let Some(raw) = result.get("example_results") else {
        return Ok(None);
    };
    let results: Vec<crate::engine::training::RunResult> = serde_json::from_value(raw.clone())
        .map_err(|e| {
            invalid(
                "result.example_results",
                format!(
                    "`result.example_results` must be a list of {{example_id, score, passed}}: {e}"
                ),
                None,
            )
        })?;
    if let Some(bad) = results.iter().find(|r| !(0.0..=1.0).contains(&r.score)) {
        return Err(invalid(
            "result.example_results",
            format!(
                "score {} of `{}` is outside 0..1",
                bad.score, bad.example_id
            ),
            None,
        ));
    }
    Ok(Some(results))
}

/// The lease in milliseconds: `lease_seconds` when given, else the configured default.
fn lease_ms(given: Option<u64>, default: u64) -> Result<i64, ApiError> {
    let secs = given.unwrap_or(default);
    if !(1..=MAX_LEASE_SECONDS).contains(&secs) {
        return Err(invalid(
            "lease_seconds",
            format!("`lease_seconds` is {secs}; it must be between 1 and {MAX_LEASE_SECONDS}"),
            Some("extend a long lease with heartbeats instead".into()),
        ));
    }
    Ok((secs * 1000) as i64)
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

async fn create(
    state: &AppState,
    store: Arc<Store>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let new: NewJob = body(state, req).await?;
    let (job, created) = store.create_async(new).await.map_err(store_error)?;
    if !created {
        return Ok(reply::json(StatusCode::OK, &job));
    }
    let mut r = reply::json(StatusCode::CREATED, &job);
    if let Ok(v) = HeaderValue::from_str(&format!("{PREFIX}/{}", job.id)) {
        r.headers_mut().insert(LOCATION, v);
    }
    Ok(r)
}

async fn list(store: Arc<Store>, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let filter = list_filter(req.uri().query())?;
    let page = blocking(store, move |s| s.list(&filter)).await?;
    Ok(reply::json(StatusCode::OK, &page))
}

/// `?status=&type=&user_id=&limit=&cursor=`; an empty value is the same as none.
fn list_filter(raw_query: Option<&str>) -> Result<Filter, ApiError> {
    let mut f = Filter {
        limit: DEFAULT_LIMIT,
        ..Filter::default()
    };
    for (k, v) in query(raw_query)? {
        let known = QUERY_PARAMETERS.contains(&k.as_str()) || k == "job_type";
        if !known {
            return Err(bad_parameter(
                &k,
                format!("unknown query parameter `{k}`"),
                did_you_mean(&k, QUERY_PARAMETERS).or_else(|| {
                    Some(format!(
                        "the parameters are {}",
                        QUERY_PARAMETERS.join(", ")
                    ))
                }),
            ));
        }
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "status" => {
                let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                f.status = Some(Status::parse(&v).ok_or_else(|| {
                    bad_parameter(
                        "status",
                        format!(
                            "query parameter `status` must be one of {}, found `{v}`",
                            names.join(", ")
                        ),
                        did_you_mean(&v, names.iter().copied()),
                    )
                })?);
            }
            "type" | "job_type" => f.job_type = Some(v),
            "user_id" => f.user_id = Some(v),
            "limit" => {
                f.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad_parameter(
                            "limit",
                            format!(
                                "query parameter `limit` must be an integer between 1 and {MAX_LIMIT}, found `{v}`"
                            ),
                            None,
                        )
                    })?;
            }
            _ => {
                // The store's cursor is `<created_at ms>_<id>`, as returned in `next_cursor`.
                let ok = v
                    .split_once('_')
                    .is_some_and(|(t, id)| t.parse::<i64>().is_ok() && !id.is_empty());
                if !ok {
                    return Err(bad_parameter(
                        "cursor",
                        format!("query parameter `cursor` is not a cursor: `{v}`"),
                        Some("pass the `next_cursor` of the previous page unchanged".into()),
                    ));
                }
                f.cursor = Some(v);
            }
        }
    }
    Ok(f)
}

async fn claim(
    state: &AppState,
    store: Arc<Store>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let b: ClaimBody = body(state, req).await?;
    let lease = lease_ms(b.lease_seconds, state.config.jobs.default_lease_seconds)?;
    let types = b.types.unwrap_or_default();
    let claimed = store
        .claim_job_async(&b.worker, &types, lease, b.id.as_deref())
        .await
        .map_err(store_error)?;
    Ok(match claimed {
        Some((job, lease_token)) => reply::json(
            StatusCode::OK,
            &Claimed {
                job: &job,
                lease_token: &lease_token,
            },
        ),
        None => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
    })
}

async fn heartbeat(
    state: &AppState,
    store: Arc<Store>,
    req: Request<Incoming>,
    id: String,
) -> Result<Response<Body>, ApiError> {
    let b: HeartbeatBody = body(state, req).await?;
    let lease = lease_ms(b.lease_seconds, state.config.jobs.default_lease_seconds)?;
    let progress = b.progress.map(|p| Progress {
        percent: p.percent,
        message: p.message,
        phase: p.phase,
    });
    let job = store
        .change_async(JobChange::Heartbeat {
            id: &id,
            token: &b.lease_token,
            lease_ms: lease,
            progress,
        })
        .await
        .map_err(store_error)?;
    Ok(reply::json(StatusCode::OK, &job))
}

async fn hitl(store: Arc<Store>, id: String) -> Result<Response<Body>, ApiError> {
    let job = blocking(store, {
        let id = id.clone();
        move |s| s.get(&id)
    })
    .await?
    .ok_or_else(|| not_found(&id))?;
    let Some(h) = job.hitl else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("job `{id}` has not asked for human input"),
        ));
    };
    Ok(reply::json(
        StatusCode::OK,
        &HitlView {
            status: job.status,
            kind: &h.kind,
            data: &h.data,
            response: h.response.as_ref(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::extract::parse;
    use super::*;
    use serde_json::json;

    #[test]
    fn body_errors_name_the_field() {
        let map = |v: Value| v.as_object().cloned().unwrap_or_default();
        let e = parse::<ClaimBody>(map(json!({"worker": "w", "lease_second": 5}))).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.error, "unknown field `lease_second`");
        assert_eq!(e.details[0]["field"], "lease_second");
        assert_eq!(e.details[0]["help"], "did you mean `lease_seconds`?");
        let e = parse::<ClaimBody>(map(json!({"types": ["x"]}))).unwrap_err();
        assert_eq!(e.error, "missing field `worker`");
        let e = parse::<ClaimBody>(map(json!({"worker": "w", "lease_seconds": "60"}))).unwrap_err();
        assert_eq!(e.details[0]["field"], "lease_seconds");
        assert_eq!(
            e.error,
            "invalid `lease_seconds`: expected an integer, found a string `60`"
        );
        let body = |progress: Value| map(json!({"lease_token": "t", "progress": progress}));
        let e = parse::<HeartbeatBody>(body(json!({"percent": 5, "phse": "x"}))).unwrap_err();
        assert_eq!(e.details[0]["field"], "progress.phse");
        assert_eq!(e.details[0]["help"], "did you mean `phase`?");
        let e = parse::<HeartbeatBody>(body(json!({"percent": 101}))).unwrap_err();
        assert_eq!(e.details[0]["field"], "progress.percent");
        let e = parse::<HeartbeatBody>(body(json!("half"))).unwrap_err();
        assert_eq!(e.details[0]["field"], "progress");
        assert!(parse::<HeartbeatBody>(body(Value::Null)).is_ok());
        // A number serde cannot hold is refused after the schema (named in the message).
        let e = parse::<ClaimBody>(map(json!({"worker": "w", "lease_seconds": -1}))).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn list_query_is_checked() {
        let f = list_filter(Some(
            "status=pending&type=opt%20imization&user_id=a+b&limit=3",
        ))
        .unwrap();
        assert_eq!(f.status, Some(Status::Pending));
        assert_eq!(f.job_type.as_deref(), Some("opt imization"));
        assert_eq!(f.user_id.as_deref(), Some("a b"));
        assert_eq!(f.limit, 3);
        assert_eq!(list_filter(None).unwrap().limit, DEFAULT_LIMIT);
        for (q, param) in [
            ("status=done", "status"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=x", "limit"),
            ("cursor=abc", "cursor"),
            ("stauts=pending", "stauts"),
        ] {
            let e = list_filter(Some(q)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{q}");
            assert_eq!(e.details[0]["parameter"], param, "{q}");
            assert!(e.error.contains(&format!("`{param}`")), "{q}: {}", e.error);
        }
    }
}
