//! `POST /api/v1/optimization/outcomes` (record the outcome of a run not tracked as a job) and
//! `GET /api/v1/optimization/metrics` (selector metrics over a window).

use super::extract::{blocking, invalid, parse, store_error};
use super::reply::{self, ApiError, Body};
use super::AppState;
use crate::outcome::{parse_report, NewOutcome, RunContext};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The body of `POST /api/v1/optimization/outcomes`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the report fields are read by `parse_report`
pub(super) struct OutcomeBody {
    /// The logged decision the run followed (`decision_id` of the recommend answer).
    decision_id: Option<i64>,
    /// Optimizer the run used.
    #[schemars(with = "String")]
    optimizer_used: Value,
    /// Quality reached, 0..1.
    #[schemars(with = "f64")]
    quality: Value,
    /// Actual cost in USD.
    #[schemars(with = "Option<f64>")]
    actual_cost: Option<Value>,
    /// Actual wall time in minutes.
    #[schemars(with = "Option<f64>")]
    actual_time_minutes: Option<Value>,
    /// Domain, when no decision is named.
    domain: Option<String>,
    /// Trainset size, when no decision is named.
    trainset_size: Option<i64>,
    /// Budget in USD, when no decision is named.
    budget_usd: Option<f64>,
    /// Quality target, when no decision is named.
    #[schemars(range(min = 0, max = 1))]
    quality_target: Option<f64>,
    /// Model, when no decision is named.
    model: Option<String>,
    /// Variant (e.g. MIPROv2's `auto` level).
    variant: Option<String>,
}

fn no_store() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "outcomes need the database, and none is open",
    )
}

/// Records an outcome: 201 with the stored record.
pub(super) async fn record_outcome(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let Some(store) = state.store.clone() else {
        return Err(no_store());
    };
    let map = reply::json_object(
        req,
        state.config.server.body_limit_bytes,
        std::time::Duration::from_millis(state.config.server.body_read_timeout_ms),
    )
    .await?;
    let whole = Value::Object(map.clone());
    let body: OutcomeBody = parse(map)?;
    let report = parse_report(&whole)
        .map_err(|e| invalid(e.field, e.message, None))?
        .ok_or_else(|| {
            invalid(
                "optimizer_used",
                "`optimizer_used` is required".into(),
                None,
            )
        })?;
    if let Some(id) = body.decision_id {
        // The decision may still be queued behind the response that announced it.
        if let Some(log) = &state.decisions {
            log.sync().await.map_err(store_error)?;
        }
        let s = Arc::clone(&store);
        if blocking(s, move |s| s.decision(id)).await?.is_none() {
            return Err(invalid(
                "decision_id",
                format!("no decision `{id}` in the decision log"),
                Some("use the `decision_id` a recommend response returned, or leave it out".into()),
            ));
        }
    }
    let mut context = RunContext::from_json(&whole);
    context.variant = body.variant.clone();
    context.auto_selected = body.decision_id.is_some();
    let new = NewOutcome {
        report,
        decision_id: body.decision_id,
        job_id: None,
        context,
    };
    let record = store.record_outcome_async(new).await.map_err(store_error)?;
    state.refresh_history_logged().await;
    Ok(reply::json(StatusCode::CREATED, &record))
}

/// The `since` query parameter: an age (`30d`, default) or `all`.
fn since_param(req: &Request<Incoming>) -> Result<(String, Option<i64>), ApiError> {
    let mut text = "30d".to_string();
    for (k, v) in super::extract::query(req.uri().query())? {
        match k.as_str() {
            "since" => text = v,
            _ => {
                return Err(super::extract::bad_parameter(
                    &k,
                    format!("unknown query parameter `{k}`; this endpoint takes `since`"),
                    None,
                ));
            }
        }
    }
    let age = crate::util::time::parse_age(&text).map_err(|m| {
        ApiError::new(StatusCode::BAD_REQUEST, m).details(vec![json!({"field": "since"})])
    })?;
    Ok((text, age))
}

/// Selector metrics over the window `since` (default `30d`).
pub(super) async fn metrics(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let Some(store) = state.store.clone() else {
        return Err(no_store());
    };
    let (window, age) = since_param(req)?;
    if let Some(log) = &state.decisions {
        log.sync().await.map_err(store_error)?;
    }
    let body = blocking(store, move |s| {
        let since_ms = age.map_or(i64::MIN, |a| s.now_ms().saturating_sub(a));
        let m = s.selector_metrics(since_ms)?;
        let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut v {
            o.insert("window".into(), Value::String(window));
        }
        Ok(v)
    })
    .await?;
    Ok(reply::json(StatusCode::OK, &body))
}

/// Most intervals of a timeline.
const MAX_BUCKETS: usize = 500;

/// `GET /api/v1/optimization/timeline?since=7d&buckets=24`: decisions per optimizer in equal
/// intervals from `since` (an age) to now.
pub(super) async fn timeline(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let Some(store) = state.store.clone() else {
        return Err(no_store());
    };
    let (mut since, mut buckets) = ("7d".to_string(), 24usize);
    for (k, v) in super::extract::query(req.uri().query())? {
        match k.as_str() {
            "since" => since = v,
            "buckets" => {
                buckets = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_BUCKETS).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "buckets",
                            format!(
                            "`buckets` must be a whole number from 1 to {MAX_BUCKETS}, found `{v}`"
                        ),
                            None,
                        )
                    })?
            }
            _ => {
                return Err(super::extract::bad_parameter(
                    &k,
                    format!(
                        "unknown query parameter `{k}`; this endpoint takes `since` and `buckets`"
                    ),
                    None,
                ))
            }
        }
    }
    let age = match crate::util::time::parse_age(&since) {
        Ok(Some(age)) if age > 0 => age,
        Ok(_) => {
            return Err(invalid(
                "since",
                format!("`since` must be an age such as `7d` or `12h`, found `{since}`"),
                None,
            ))
        }
        Err(m) => return Err(invalid("since", m, None)),
    };
    if let Some(log) = &state.decisions {
        log.sync().await.map_err(store_error)?;
    }
    let body = blocking(store, move |s| {
        let now = s.now_ms();
        let bucket_ms = (age / buckets as i64).max(1);
        let start = now - bucket_ms * buckets as i64 + 1;
        let counts = s.decision_timeline(start, bucket_ms, buckets)?;
        let rows: Vec<Value> = counts
            .into_iter()
            .enumerate()
            .map(|(k, by)| {
                json!({
                    "start": crate::util::time::rfc3339_ms(start + bucket_ms * k as i64),
                    "by_optimizer": by,
                })
            })
            .collect();
        Ok(json!({
            "since": crate::util::time::rfc3339_ms(start),
            "bucket_seconds": bucket_ms as f64 / 1000.0,
            "buckets": rows,
        }))
    })
    .await?;
    Ok(reply::json(StatusCode::OK, &body))
}
