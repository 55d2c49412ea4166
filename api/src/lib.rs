//! braid's HTTP surface (axum). Handlers decode each request once into the bus's typed
//! messages, hand them to the pipeline ([`braid_bus::Pipeline`]) and turn chunks back
//! into the protocol's JSON; nothing else. The crate needs the bus and the
//! parsers' pure types, never the engine or the stages: an ingress-only process is light,
//! and every handler is tested against a stub pipeline without a socket.
//!
//! Four protocols share one pipeline: OpenAI's Completions, Chat Completions and
//! Responses, and Anthropic's Messages, each a thin adapter.
//!
//! The key design decision: **only this crate knows the protocols' shapes.** Stages speak bus
//! messages; [`ApiError`] is the single mapping from a failure to a status and the
//! route's error body, so a malformed body, an overload and a stage lost mid-stream all
//! look alike to clients.

mod chat;
mod completions;
mod conversation;
mod error;
mod messages;
mod openapi;
mod prompt;
pub mod replay;
mod responses;
mod sampling;
pub mod seal;
mod sse;
pub mod structured;
mod tokenize;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use braid_bus::Pipeline;
use braid_parsers::{ReasoningParser, ToolParser};
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

pub use conversation::{messages as decode_messages, tools as decode_tools};
pub use error::{AnthropicError, ApiError};
pub use replay::ReasoningCache;
pub use responses::store::ResponseStore;
pub use seal::Seal;

/// Which fields carry reasoning in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReasoningField {
    /// `reasoning_content` (vLLM's, DeepSeek's).
    #[default]
    ReasoningContent,
    /// `reasoning_content` and `reasoning` (for clients that read the newer name).
    Both,
}

/// How chat requests are parsed and rendered.
#[derive(Debug, Clone, Default)]
pub struct ChatSettings {
    /// The reasoning parser (vLLM's names).
    pub reasoning_parser: Option<ReasoningParser>,
    /// The tool-call parser.
    pub tool_parser: Option<ToolParser>,
    /// `chat_template_kwargs` every request starts from.
    pub default_kwargs: Option<Map<String, Value>>,
    /// Where reasoning goes in responses.
    pub reasoning_field: ReasoningField,
    /// `thinking_token_budget` for requests that do not set one.
    pub thinking_token_budget: Option<u32>,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where requests go.
    pub pipeline: Arc<dyn Pipeline>,
    /// The served model name.
    pub model: String,
    /// Chat parsing and rendering settings.
    pub chat: ChatSettings,
    /// Reasoning kept for replay (`None`: off).
    pub replay: Option<Arc<ReasoningCache>>,
    /// Stored Responses-API responses (`None`: off).
    pub responses: Option<Arc<ResponseStore>>,
    /// Prompt plus output, at most, when this process knows it (`/v1/models`).
    pub max_model_len: Option<u32>,
    /// Required as `Authorization: Bearer KEY` on `/v1/*`, when set.
    pub api_key: Option<String>,
    /// Request bodies over this many bytes get 413.
    pub max_body_bytes: usize,
    /// Seals the reasoning handed to clients (thinking signatures) and opens it when it
    /// comes back: the same key on every replica (`--signing-key`).
    pub seal: Arc<Seal>,
    /// Refuse a thinking block whose signature does not open (else render it as sent).
    pub strict_signatures: bool,
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
                param: Some("model".into()),
            }),
            _ => Ok(()),
        }
    }
}

/// A request body as bytes; a body over the limit (or unreadable) is an OpenAI-shaped
/// error, not axum's plain text.
pub(crate) struct RawBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| ApiError {
                status: e.status(),
                message: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "the request body is too large".into()
                } else {
                    e.body_text()
                },
                param: None,
            })
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The API key a request presents: `Authorization: Bearer KEY` (the scheme in any case)
/// or Anthropic's `x-api-key: KEY`.
fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// The API key on `/v1/*` when one is set, compared in constant time; the refusal is
/// in the route's protocol's shape.
async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let matches = presented_key(req.headers())
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(key.as_bytes())));
        if !matches {
            let error = ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "a valid API key is required: Authorization: Bearer KEY, or x-api-key: KEY".into(),
                param: None,
            };
            return shaped(req.uri().path(), error);
        }
    }
    next.run(req).await
}

/// An error in the shape of the protocol `path` speaks: Anthropic's on `/v1/messages`,
/// OpenAI's elsewhere.
fn shaped(path: &str, error: ApiError) -> Response {
    if path.starts_with("/v1/messages") {
        error::AnthropicError(error).into_response()
    } else {
        error.into_response()
    }
}

/// A path no route serves: 404 in the protocol's shape.
async fn no_route(uri: axum::http::Uri) -> Response {
    let error = ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route {}", uri.path()),
        param: None,
    };
    shaped(uri.path(), error)
}

/// A route asked with a method it does not take: 405 in the protocol's shape.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let error = ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{method} is not allowed on {}", uri.path()),
        param: None,
    };
    shaped(uri.path(), error)
}

/// The protocol a path speaks, as metrics label it.
fn protocol(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        p if p.starts_with("/v1/messages") => "messages",
        p if p.starts_with("/v1/responses") => "responses",
        "/tokenize" | "/detokenize" => "tokenize",
        _ => "other",
    }
}

/// Counts every request by protocol and status (`braid_http_requests_total`).
async fn count_requests(req: Request, next: Next) -> Response {
    let protocol = protocol(req.uri().path());
    let response = next.run(req).await;
    metrics::counter!(
        "braid_http_requests_total",
        "protocol" => protocol,
        "status" => response.status().as_str().to_owned()
    )
    .increment(1);
    response
}

/// Names the ingress replica that served a response (`x-braid-ingress`), for operators
/// behind a load balancer.
async fn ingress_header(State(state): State<AppState>, mut response: Response) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(&state.pipeline.instance().to_string()) {
        response.headers_mut().insert("x-braid-ingress", v);
    }
    response
}

/// The HTTP routes, callable from tests without a socket.
pub fn router(state: AppState) -> Router {
    // Everything that does work needs the key (when one is set); /health, /metrics and
    // the description of the API (/openapi.json) stay open for probes, scrapers and tools.
    let authed = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/responses", post(responses::responses))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(authed)
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::map_response_with_state(state.clone(), ingress_header))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// 200 when every stage a request needs has a live replica, else 503 naming the missing.
#[utoipa::path(get, path = "/health", tag = "braid",
    responses((status = 200, description = "Every stage has a live replica"),
        (status = 503, description = "Some stage has none; the body names them")))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let missing: Vec<&str> = state.pipeline.missing().into_iter().map(|s| s.as_str()).collect();
    if missing.is_empty() {
        (StatusCode::OK, axum::Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "missing_stages": missing})),
        )
    }
}

/// `GET /v1/models`: the one model served.
#[utoipa::path(get, path = "/v1/models", tag = "OpenAI", responses((status = 200, description = "The served model")))]
async fn models(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": state.model, "object": "model", "created": unix_time(), "owned_by": "braid", "max_model_len": state.max_model_len}],
    }))
}
