//! braid's OpenAI-compatible HTTP surface (axum). Handlers translate HTTP into the
//! ingress's submit call and chunks back into OpenAI JSON; nothing else.
//!
//! The key design decision: **only this crate knows OpenAI's shapes.** Stages speak bus
//! messages; [`ApiError`] is the single mapping from a failure to a status and
//! `{"error": {…}}`, so a malformed body, an overload and a stage lost mid-stream all
//! look alike to clients.

mod completions;
mod error;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use braid_actors::{Ingress, Members};
use braid_bus::Stage;
use serde_json::json;

pub use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where requests go.
    pub ingress: Ingress,
    /// Who is alive (for `/health`).
    pub members: Members,
    /// The served model name.
    pub model: String,
}

impl AppState {
    /// A request naming another model is a 404, as in vLLM; no name is fine.
    fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != self.model => Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "the model `{m}` does not exist; this server serves `{}`",
                    self.model
                ),
                param: Some("model"),
            }),
            _ => Ok(()),
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The HTTP routes, callable from tests without a socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions::completions))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such route".into(),
                param: None,
            }
        })
        .with_state(state)
}

/// 200 when every stage a request needs has a live replica, else 503 naming the missing.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let missing: Vec<&str> = [
        Stage::Tokenizer,
        Stage::Executor,
        Stage::Detokenizer,
        Stage::Splitter,
        Stage::Extractor,
    ]
    .into_iter()
    .filter(|&s| state.members.live(s).is_empty())
    .map(Stage::as_str)
    .collect();
    if missing.is_empty() {
        (StatusCode::OK, axum::Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "missing_stages": missing})),
        )
    }
}

async fn models(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": state.model, "object": "model", "created": unix_time(), "owned_by": "braid"}],
    }))
}
