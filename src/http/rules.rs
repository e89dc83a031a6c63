//! `POST /api/v1/rules/reload` and `POST /api/v1/rules/rollback`: the live rule set changed
//! on request, on the blocking pool (a rebuild reads files and runs the fixtures).

use super::reply::{self, ApiError, Body};
use super::AppState;
use crate::loader::live::{Reload, Rollback};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// `POST /api/v1/rules/reload`: rebuild from disk now.
pub(super) async fn reload(state: &Arc<AppState>) -> Result<Response<Body>, ApiError> {
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
pub(super) async fn rollback(
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
