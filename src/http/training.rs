//! The training API under `/api/v2/training`: analytics, trainset selection and optimization
//! results. Scoring uses the training rules of the live rule set; store calls run on tokio's
//! blocking pool; `POST /results` requires the API token when one is configured.

use super::extract::{blocking, body, invalid, store_error};
use super::reply::{self, ApiError, Body};
use super::route::Route;
use super::AppState;
use crate::engine::training::{self, RunResult, SelectRequest, Style};
use crate::store::Store;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

/// Body of `POST /api/v2/training/select`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SelectBody {
    /// Preferred style.
    style: Option<String>,
    /// At most this many.
    max: Option<u64>,
    /// Minimum score, 0..1.
    #[schemars(range(min = 0, max = 1))]
    min_score: Option<f64>,
    /// The same as `min_score`, under the original's name.
    #[schemars(range(min = 0, max = 1))]
    min_quality: Option<f64>,
    /// Only these categories.
    #[serde(default)]
    categories: Vec<String>,
    /// Diversity bonus.
    #[serde(default)]
    diverse: bool,
    /// Keep the excluded examples in the answer.
    #[serde(default)]
    explain: bool,
}

/// Body of `POST /api/v2/training/results`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResultsBody {
    /// The outcomes.
    results: Vec<RunResult>,
}

fn store_of(state: &AppState) -> Result<Arc<Store>, ApiError> {
    state.store.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the training store is not available: no database is open",
        )
    })
}

/// Runs a matched training route (the method is already checked).
pub(super) async fn handle(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    route: Route,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::TrainingAnalytics => {
            let store = store_of(state)?;
            let spec = state.rules.snapshot().training.clone();
            let all = blocking(store, |s| s.examples()).await?;
            Ok(reply::json(
                StatusCode::OK,
                &training::analytics(&spec, &all),
            ))
        }
        Route::TrainingSelect => {
            let store = store_of(state)?;
            let b: SelectBody = body(state, req).await?;
            let style = match &b.style {
                None => None,
                Some(s) => Some(Style::parse(s).ok_or_else(|| {
                    invalid(
                        "style",
                        format!("unknown style `{s}`"),
                        Some(format!(
                            "styles: {}",
                            Style::ALL.map(|x| x.as_str()).join(", ")
                        )),
                    )
                })?),
            };
            let min_score = match (b.min_score, b.min_quality) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "min_quality",
                        "`min_score` and `min_quality` are the same field: give one".into(),
                        None,
                    ))
                }
                (a, b) => a.or(b),
            };
            if b.max == Some(0) {
                return Err(invalid("max", "`max` must be at least 1".into(), None));
            }
            let spec = state.rules.snapshot().training.clone();
            let all = blocking(store, |s| s.examples()).await?;
            let req = SelectRequest {
                style,
                max: b.max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
                min_score,
                categories: b.categories,
                diversity: b.diverse,
                explain: b.explain,
            };
            let sel = training::select(&spec, &all, &req);
            Ok(reply::json(StatusCode::OK, &sel))
        }
        Route::TrainingResults => {
            let store = store_of(state)?;
            let b: ResultsBody = body(state, req).await?;
            training::check_results(&b.results).map_err(|e| {
                let field = format!(
                    "results[{}]{}",
                    e.index,
                    e.field
                        .as_ref()
                        .map(|f| format!(".{f}"))
                        .unwrap_or_default()
                );
                invalid(&field, e.to_string(), None)
            })?;
            let spec = state.rules.snapshot().training.clone();
            let outcome = store
                .apply_example_results_async(&spec, b.results)
                .await
                .map_err(store_error)?;
            Ok(reply::json(StatusCode::OK, &outcome))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no route")),
    }
}
