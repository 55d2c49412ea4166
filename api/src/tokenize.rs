//! vLLM's `POST /tokenize` (a prompt or a conversation to token ids) and
//! `POST /detokenize` (token ids to text), for clients that count or debug prompts.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use braid_engine::Conversation;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::completions::parse_body;
use crate::error::ApiError;
use crate::{AppState, RawBody};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Value>,
    tools: Option<Value>,
    chat_template_kwargs: Option<Value>,
    add_generation_prompt: Option<bool>,
    #[allow(dead_code)]
    add_special_tokens: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

fn unavailable(what: &str) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_IMPLEMENTED,
        message: format!("this server process has no {what} (start it with a model folder)"),
        param: None,
    }
}

pub(crate) async fn tokenize(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: TokenizeRequest = parse_body(&body)?;
    state.check_model(req.model.as_deref())?;
    let tokenizer = state.tokenizer.as_ref().ok_or_else(|| unavailable("tokenizer"))?;
    let text = match (req.prompt, req.messages) {
        (Some(p), None) => p,
        (None, Some(messages)) => {
            let renderer = state
                .renderer
                .as_ref()
                .ok_or_else(|| unavailable("chat template"))?;
            let mut kwargs = state.chat.default_kwargs.clone().unwrap_or_default();
            if let Some(Value::Object(k)) = req.chat_template_kwargs {
                kwargs.extend(k);
            }
            let kwargs = Value::Object(kwargs);
            renderer
                .render(&Conversation {
                    messages: &messages,
                    tools: req.tools.as_ref().filter(|t| !t.is_null()),
                    kwargs: Some(&kwargs),
                    add_generation_prompt: req.add_generation_prompt.unwrap_or(true),
                })
                .map_err(|e| ApiError::invalid("messages", e.to_string()))?
        }
        _ => return Err(ApiError::bad_body("give either prompt or messages")),
    };
    let tokens = tokenizer
        .encode(&text)
        .map_err(|e| ApiError::invalid("prompt", e.to_string()))?;
    Ok(
        axum::Json(json!({"count": tokens.len(), "max_model_len": state.max_model_len, "tokens": tokens}))
            .into_response(),
    )
}

pub(crate) async fn detokenize(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: DetokenizeRequest = parse_body(&body)?;
    state.check_model(req.model.as_deref())?;
    let tokenizer = state.tokenizer.as_ref().ok_or_else(|| unavailable("tokenizer"))?;
    let vocab = tokenizer.vocab_size() as u32;
    if let Some(bad) = req.tokens.iter().find(|&&t| t >= vocab) {
        return Err(ApiError::invalid(
            "tokens",
            format!("token id {bad} is outside the vocabulary (size {vocab})"),
        ));
    }
    let prompt = tokenizer
        .decode(&req.tokens)
        .map_err(|e| ApiError::invalid("tokens", e.to_string()))?;
    Ok(axum::Json(json!({"prompt": prompt})).into_response())
}
