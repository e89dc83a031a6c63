//! What a node on PostgreSQL follows of the others: outcomes they record reach this node's live
//! confidence model (`AppState.history`) within about a second, by `LISTEN`/`NOTIFY` with a
//! check of the outcomes' count and highest id after every wait (the fallback when a
//! notification was missed while the listening connection was down).

use crate::http::AppState;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for a notification before the fallback check.
const WAIT: Duration = Duration::from_millis(500);

/// Pause after the database failed, before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// Refreshes the history whenever any node records an outcome, until `stop` changes.
pub async fn follow_outcomes(
    state: Arc<AppState>,
    store: Arc<Store>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        if *stop.borrow() {
            break;
        }
        let s = Arc::clone(&store);
        let waited = tokio::task::spawn_blocking(move || s.wait_for_outcomes(WAIT)).await;
        match waited {
            Ok(Ok(changed)) => {
                if failing {
                    tracing::info!("following other nodes' outcomes again");
                    failing = false;
                }
                if changed {
                    state.refresh_history_logged().await;
                }
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!("cannot follow other nodes' outcomes (retrying): {e}");
                    failing = true;
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
            Err(e) => {
                tracing::warn!("the outcome follower stopped: {e}");
                break;
            }
        }
    }
}
