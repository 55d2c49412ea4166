//! What every protocol does with a request once its messages and tools are typed: the
//! server's template kwargs merged under the request's, the family's thinking switch
//! set, reasoning re-injected into turns the client sent back without it, and the
//! fields braid accepted but did not act on named to the client. Written once here, so
//! Chat Completions, Messages and `/tokenize` render the same prompt for the same
//! conversation.

use axum::response::Response;
use braid_bus::{ChatMessage, Conversation, Setup, ToolSpec};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::structured::ToolChoice;
use crate::AppState;

/// The template kwargs of a request: the server's defaults, then the thinking switch
/// (`thinking`, when the family has one) and the effort level the request named (as
/// `reasoning_effort`, which gpt-oss's template and DeepSeek-V4's encoder read), then the
/// request's own (`request`, the field `param`), which win.
pub(crate) fn kwargs(
    state: &AppState,
    request: Option<&Value>,
    param: &'static str,
    thinking: Option<bool>,
    effort: Option<&str>,
) -> Result<Map<String, Value>, ApiError> {
    let mut merged = state.chat.default_kwargs.clone().unwrap_or_default();
    if let (Some(on), Some(switch)) = (
        thinking,
        state.chat.reasoning_parser.and_then(|r| r.format().switch),
    ) {
        merged.insert(switch.key.to_owned(), Value::Bool(on));
    }
    if let Some(level) = effort {
        merged.insert("reasoning_effort".to_owned(), Value::from(level));
    }
    match request {
        None | Some(Value::Null) => {}
        Some(Value::Object(k)) => merged.extend(k.clone()),
        Some(_) => return Err(ApiError::invalid(param, format!("{param} must be an object"))),
    }
    Ok(merged)
}

/// A reasoning effort (`reasoning_effort`, Responses' `reasoning.effort`, the field
/// `param`) as the family's thinking switch: `none` and `minimal` turn thinking off,
/// `low` to `xhigh` and `max` (DeepSeek-V4's top level) leave it on. The level itself
/// reaches the template as `reasoning_effort`; braid has no per-level token budget
/// (`thinking_token_budget` sets one), and explicit template kwargs win.
pub(crate) fn effort_thinking(effort: Option<&str>, param: &'static str) -> Result<Option<bool>, ApiError> {
    match effort {
        None => Ok(None),
        Some("none" | "minimal") => Ok(Some(false)),
        Some("low" | "medium" | "high" | "xhigh" | "max") => Ok(Some(true)),
        Some(other) => Err(ApiError::invalid(
            param,
            format!("{param} {other:?} is not none, minimal, low, medium, high, xhigh or max"),
        )),
    }
}

/// The `Setup` of a chat-shaped request: the server's parsers, the thinking switch as
/// the conversation's kwargs set it, and its tools parsed when `choice` lets the model
/// call them. Special tokens are kept when tools are parsed (a family's call markup may be
/// special tokens, as vLLM's tool parsers keep them) and when the reasoning format's
/// markers are special tokens (gpt-oss's channels, Kimi-K3's XTML). Protocols set their stop rules over it.
pub(crate) fn setup(state: &AppState, conversation: &Conversation, choice: &ToolChoice) -> Setup {
    let parse_tools = !conversation.tools.is_empty() && *choice != ToolChoice::None;
    let special_reasoning = state
        .chat
        .reasoning_parser
        .is_some_and(|r| r.format().markers_are_special());
    Setup {
        skip_special_tokens: !parse_tools && !special_reasoning,
        reasoning_parser: state.chat.reasoning_parser,
        thinking: thinking(state, &conversation.kwargs),
        tool_parser: state.chat.tool_parser.filter(|_| parse_tools),
        tools: if parse_tools {
            conversation.tools.clone()
        } else {
            Vec::new()
        },
        ..Setup::default()
    }
}

/// Whether the model will think: the family's switch as these kwargs set it (a family
/// without a reasoning parser counts as thinking, so its output is never withheld).
fn thinking(state: &AppState, kwargs: &Map<String, Value>) -> bool {
    state
        .chat
        .reasoning_parser
        .is_none_or(|r| r.format().thinking_enabled(Some(kwargs)))
}

/// The conversation the tokenizer stage renders, with kept reasoning re-injected.
pub(crate) async fn conversation(
    state: &AppState,
    mut messages: Vec<ChatMessage>,
    tools: Vec<ToolSpec>,
    kwargs: Map<String, Value>,
    add_generation_prompt: bool,
) -> Conversation {
    if let Some(cache) = &state.replay {
        let n = cache.reinject(&mut messages).await;
        if n > 0 {
            metrics::counter!("braid_reasoning_reinjections_total").increment(n as u64);
        }
    }
    Conversation {
        messages,
        tools,
        kwargs,
        add_generation_prompt,
    }
}

/// The names of the `fields` a request set (present and not `null`): what braid accepts
/// and does not act on, for [`ignored_header`].
pub(crate) fn set_fields(fields: &[(&'static str, &Option<Value>)]) -> Vec<&'static str> {
    fields
        .iter()
        .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
        .map(|(name, _)| *name)
        .collect()
}

/// Names the request fields braid accepted but did not act on, in the response's
/// `x-braid-ignored-fields` header and `braid_ignored_fields_total{protocol, field}`.
pub(crate) fn ignored_header(response: &mut Response, protocol: &'static str, ignored: &[&'static str]) {
    if ignored.is_empty() {
        return;
    }
    for field in ignored {
        metrics::counter!("braid_ignored_fields_total", "protocol" => protocol, "field" => *field)
            .increment(1);
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&ignored.join(", ")) {
        response.headers_mut().insert("x-braid-ignored-fields", v);
    }
}
