//! vLLM's `POST /tokenize` (a prompt or a conversation to token ids) and
//! `POST /detokenize` (token ids to text), for clients that count or debug prompts.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use braid_bus::{Prompt, TokenizerAnswer, TokenizerCall};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::chat::decode_conversation;
use crate::error::ApiError;
use crate::sampling::parse_body;
use crate::{AppState, RawBody};

/// vLLM's `/tokenize` body: a prompt, or a conversation rendered through the template.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"messages": [{"role": "user", "content": "hi"}]}))]
pub(crate) struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Value>,
    tools: Option<Value>,
    chat_template_kwargs: Option<Value>,
    add_generation_prompt: Option<bool>,
    #[allow(dead_code)]
    add_special_tokens: Option<bool>,
}

/// vLLM's `/detokenize` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tokens": [9707, 1879]}))]
pub(crate) struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

/// Asks a tokenizer; its refusal is the client's error.
async fn ask(state: &AppState, call: TokenizerCall) -> Result<TokenizerAnswer, ApiError> {
    match state.pipeline.call(call).await? {
        TokenizerAnswer::Refused(f) => Err(f.into()),
        answer => Ok(answer),
    }
}

fn unexpected() -> ApiError {
    braid_bus::Failure::new(
        braid_bus::FailureKind::Internal,
        braid_bus::Stage::Tokenizer,
        "the tokenizer answered another call",
    )
    .into()
}

/// `POST /tokenize`.
#[utoipa::path(post, path = "/tokenize", request_body = TokenizeRequest, tag = "vLLM",
    responses((status = 200, description = "The token ids, their count and the model's length"),
        (status = 400, description = "A field is invalid; the error names it")))]
pub(crate) async fn tokenize(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: TokenizeRequest = parse_body(&body)?;
    state.check_model(req.model.as_deref())?;
    let prompt = match (req.prompt, req.messages) {
        (Some(p), None) => Prompt::Text(p),
        (None, Some(messages)) => {
            let conversation = decode_conversation(
                &state,
                &messages,
                req.tools.as_ref(),
                req.chat_template_kwargs.as_ref(),
                None,
                req.add_generation_prompt.unwrap_or(true),
            )
            .await?;
            Prompt::Chat(conversation)
        }
        _ => return Err(ApiError::bad_body("give either prompt or messages")),
    };
    match ask(&state, TokenizerCall::Tokenize(prompt)).await? {
        TokenizerAnswer::Tokens {
            tokens,
            max_model_len,
        } => Ok(
            axum::Json(json!({"count": tokens.len(), "max_model_len": max_model_len, "tokens": tokens}))
                .into_response(),
        ),
        _ => Err(unexpected()),
    }
}

/// `POST /detokenize`.
#[utoipa::path(post, path = "/detokenize", request_body = DetokenizeRequest, tag = "vLLM",
    responses((status = 200, description = "The text of the token ids"),
        (status = 400, description = "An id is outside the vocabulary")))]
pub(crate) async fn detokenize(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: DetokenizeRequest = parse_body(&body)?;
    state.check_model(req.model.as_deref())?;
    match ask(&state, TokenizerCall::Detokenize(req.tokens)).await? {
        TokenizerAnswer::Text(prompt) => Ok(axum::Json(json!({"prompt": prompt})).into_response()),
        _ => Err(unexpected()),
    }
}
