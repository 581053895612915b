//! A server that answers Didit's endpoint at once: the photos section's "sink that answers at
//! once". The emulator decodes every image to measure it (about 20 ms of CPU for a 1.3 MP
//! photo), so against it the client waits on the server; this one reads the upload and answers
//! the emulator's own sandbox result (`emulator::results`), without decoding anything.
//!
//! It is this binary re-invoked (`--instant-server`), so its CPU is not the client's. Like the
//! emulator, it prints `... listening on URL` first and serves `GET /emulator/stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use liveness_batch::emulator::results::{Assessment, response_body};
use serde_json::json;

/// The hidden first argument that makes this binary the instant server.
pub const INSTANT_ARG: &str = "--instant-server";

/// Requests answered.
type Count = Arc<AtomicU64>;

pub fn instant_main() {
    let rt = tokio::runtime::Runtime::new().expect("start a tokio runtime");
    if let Err(e) = rt.block_on(serve()) {
        eprintln!("instant server: {e}");
        std::process::exit(1);
    }
}

async fn serve() -> std::io::Result<()> {
    let count: Count = Arc::default();
    let app = Router::new()
        .route("/v3/passive-liveness/", post(answer))
        .route("/emulator/stats", get(stats))
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(count);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "instant server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}

/// Read the whole upload, answer a fixed Approved result.
async fn answer(State(count): State<Count>, _upload: Bytes) -> impl IntoResponse {
    count.fetch_add(1, Ordering::Relaxed);
    let body = response_body(
        uuid::Uuid::new_v4(),
        &Assessment::sandbox(),
        None,
        None,
        chrono::Utc::now(),
    );
    axum::Json(body)
}

async fn stats(State(count): State<Count>) -> impl IntoResponse {
    let n = count.load(Ordering::Relaxed);
    axum::Json(json!({ "requests": n, "by_status": { "200": n }, "rate_limited": 0 }))
}
