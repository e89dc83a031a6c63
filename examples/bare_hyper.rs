//! Baseline for `scripts/load.sh` and `examples/write_bench.rs`: a bare hyper 1 + tokio server
//! that does the least an endpoint must do — read the body, parse it as JSON — and answers any
//! POST with a fixed decision of the same size as a real one (761 bytes, the shipped rules'
//! answer for `{"trainset_size": 200, "budget_usd": 10}`).
//!
//! Same stack as `skill-fleet serve`: hyper 1 `http1` with keep-alive, the tokio multi-thread
//! runtime with its default worker count, `TCP_NODELAY` on every accepted socket, the body
//! collected with `http-body-util` and parsed into a `serde_json::Value`. Nothing else: no rule
//! evaluation, no request ids, metrics, timeouts or graceful shutdown — that difference is what
//! the load test measures.
//!
//! ```sh
//! cargo build --release --example bare_hyper
//! target/release/examples/bare_hyper 127.0.0.1:8100
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// A real decision, compact, as `recommend` returns it.
const ANSWER: &str = r#"{"recommended":"miprov2","config":{"auto":"light","max_bootstrapped_demos":2,"max_labeled_demos":4,"num_candidates":10,"num_iters":3,"num_threads":8},"estimated_cost":2.5,"estimated_time_minutes":14,"confidence":0.75,"reasoning":"Moderate trainset (200 examples) and budget ($10.00): MIPROv2 light tunes instructions and a few demos.","alternatives":[{"optimizer":"reflection_metrics","estimated_cost":0.1,"estimated_time_minutes":2,"quality_risk":0.15,"note":"Cheapest and fastest; may fall short of the quality target."},{"optimizer":"bootstrap_fewshot","estimated_cost":0.2,"estimated_time_minutes":2,"quality_risk":0.1,"note":"Simple baseline with few-shot demonstrations; little tuning."}],"rule":"moderate_trainset_budget","rules_revision":"8ec552ae9a34"}"#;

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Any POST path: the recommend load test and the write bench (`/api/v1/jobs…`) use it.
    if req.method() != Method::POST {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":"no route"}"#),
        ));
    }
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(br#"{"error":"cannot read request body"}"#),
            ))
        }
    };
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => {
            Ok(reply(StatusCode::OK, Bytes::from_static(ANSWER.as_bytes())))
        }
        _ => Ok(reply(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(br#"{"error":"request body must be a JSON object"}"#),
        )),
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8100".to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("bare_hyper listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    })
}
