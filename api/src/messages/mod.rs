//! Anthropic's Messages API: `POST /v1/messages` (what Claude Code speaks) and
//! `POST /v1/messages/count_tokens`. A thin adapter: the request becomes the one typed
//! conversation on the bus (so templates, re-injection, structured outputs and thinking
//! budgets work as they do for Chat Completions), and the bus's deltas become
//! Anthropic's content blocks, streamed as Anthropic streams them or whole. Errors are
//! Anthropic's shape ([`AnthropicError`]).

mod blocks;
mod decode;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use braid_bus::Response as Stream;
use braid_bus::{Collected, Finish, Prompt, Sampling, Setup, Submit, TokenizerAnswer, TokenizerCall};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use self::blocks::Blocks;
use crate::error::{AnthropicError, ApiError};
use crate::sampling::{parse_body, SamplingFields};
use crate::seal::Signatures;
use crate::sse::Machine;
use crate::structured::{self, Asked, ToolChoice};
use crate::{prompt, sse, AppState, RawBody};

/// How long a silent stream waits before a `ping` event (keeps proxies from closing it).
const PING_EVERY: Duration = Duration::from_secs(10);

/// The request body: every field of Anthropic's Messages reference. Unknown fields are
/// refused, as Anthropic refuses them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
    "thinking": {"type": "enabled", "budget_tokens": 32}}))]
pub(crate) struct MessagesRequest {
    model: String,
    messages: Vec<Value>,
    max_tokens: u32,
    system: Option<Value>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    thinking: Option<Value>,
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    output_config: Option<OutputConfig>,
    /// The older name of `output_config.format`.
    output_format: Option<Value>,
    // Accepted, not acted on, and named in `x-braid-ignored-fields`.
    metadata: Option<Value>,
    service_tier: Option<Value>,
    context_management: Option<Value>,
    container: Option<Value>,
    mcp_servers: Option<Value>,
    inference_geo: Option<Value>,
}

/// `output_config`: the answer's format (structured outputs) and the effort level.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OutputConfig {
    format: Option<Value>,
    effort: Option<String>,
}

/// `count_tokens`' body: the parts of a Messages request that make the prompt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))]
pub(crate) struct CountRequest {
    model: String,
    messages: Vec<Value>,
    system: Option<Value>,
    tools: Option<Vec<Value>>,
    #[allow(dead_code)]
    tool_choice: Option<Value>,
    thinking: Option<Value>,
    context_management: Option<Value>,
    #[allow(dead_code)]
    mcp_servers: Option<Value>,
    #[allow(dead_code)]
    output_config: Option<Value>,
}

impl MessagesRequest {
    /// The fields braid accepts and does not act on: there is no billing tier, container,
    /// MCP connector or region, `metadata` is the caller's, the effort level has no
    /// per-level budget (use `thinking.budget_tokens`), and `context_management` acts
    /// only where [`keep_thinking`] maps it (`kept`).
    fn ignored(&self, server_tools: bool, kept: bool) -> Vec<&'static str> {
        let context = self.context_management.as_ref().filter(|_| !kept).cloned();
        let mut ignored = prompt::set_fields(&[
            ("metadata", &self.metadata),
            ("service_tier", &self.service_tier),
            ("context_management", &context),
            ("container", &self.container),
            ("mcp_servers", &self.mcp_servers),
            ("inference_geo", &self.inference_geo),
        ]);
        if self.output_config.as_ref().is_some_and(|c| c.effort.is_some()) {
            ignored.push("output_config.effort");
        }
        if server_tools {
            ignored.push("tools");
        }
        ignored
    }

    /// Structured outputs: `output_config.format` (or `output_format`) as OpenAI's
    /// `response_format`, so the one constraint path reads it.
    fn response_format(&self) -> Result<Option<Value>, ApiError> {
        let format = self
            .output_config
            .as_ref()
            .and_then(|c| c.format.as_ref())
            .or(self.output_format.as_ref())
            .filter(|f| !f.is_null());
        let Some(f) = format else { return Ok(None) };
        match (f.get("type").and_then(Value::as_str), f.get("schema")) {
            (Some("json_schema"), Some(schema)) => Ok(Some(json!({
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": true},
            }))),
            _ => Err(ApiError::invalid(
                "output_config.format",
                "output_config.format must be {\"type\": \"json_schema\", \"schema\": {…}}",
            )),
        }
    }
}

/// `context_management`'s thinking edit as the family's template kwarg:
/// `clear_thinking_20251015` with `keep: "all"` (what Claude Code sends) keeps every
/// earlier turn's reasoning, which a family with such a kwarg (GLM-4.7's
/// `clear_thinking`) is told as `{kwarg: false}`. Anything else leaves the template's own
/// choice; `None` then.
fn keep_thinking(state: &AppState, context_management: Option<&Value>) -> Option<Value> {
    let key = state.chat.reasoning_parser?.format().clear_thinking?;
    let keeps_all = context_management?
        .get("edits")?
        .as_array()?
        .iter()
        .any(|e| e["type"] == "clear_thinking_20251015" && e["keep"] == "all");
    keeps_all.then(|| json!({ key: false }))
}

/// The signature checks this server applies.
fn signatures(state: &AppState) -> Signatures<'_> {
    Signatures {
        seal: &state.seal,
        strict: state.strict_signatures,
        param: "messages",
    }
}

/// A body as a request of type `T`, every failure in Anthropic's shape.
fn body<T: serde::de::DeserializeOwned>(body: Result<RawBody, ApiError>) -> Result<T, AnthropicError> {
    Ok(parse_body(&body?.0)?)
}

/// `POST /v1/messages`.
#[utoipa::path(post, path = "/v1/messages", request_body = MessagesRequest, tag = "Anthropic",
    responses((status = 200, description = "The message, whole or as server-sent events"),
        (status = 400, description = "A field is invalid (Anthropic's error shape)")))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    raw: Result<RawBody, ApiError>,
) -> Result<Response, AnthropicError> {
    let req: MessagesRequest = body(raw)?;
    state.check_model(Some(&req.model))?;
    if req.max_tokens == 0 {
        return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1").into());
    }
    let messages = decode::messages(req.system.as_ref(), &req.messages, &signatures(&state))?;
    let (tools, server_tools) = decode::tools(req.tools.as_deref().unwrap_or_default())?;
    let (choice, parallel) = decode::tool_choice(req.tool_choice.as_ref(), &tools)?;
    let thinking = decode::thinking(req.thinking.as_ref())?;
    let response_format = req.response_format()?;
    let constraint = structured::constraint(&Asked {
        response_format: response_format.as_ref(),
        structured_outputs: None,
        tools: &tools,
        choice: &choice,
        parallel,
    })?;
    let kept = keep_thinking(&state, req.context_management.as_ref());
    let kwargs = prompt::kwargs(&state, kept.as_ref(), "context_management", thinking.on, None)?;
    let conversation = prompt::conversation(&state, messages, tools, kwargs, true).await;
    let setup = prompt::setup(&state, &conversation, &choice);
    let stop = req.stop_sequences.clone().unwrap_or_default();
    if stop.len() > 16 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop_sequences",
            "stop_sequences takes up to 16 non-empty strings",
        )
        .into());
    }
    let submit = Submit {
        prompt: Prompt::Chat(conversation),
        sampling: Sampling {
            thinking_token_budget: thinking.budget.or(state.chat.thinking_token_budget),
            // Claude Code asks for 32000 whatever the context left: Anthropic's API lowers
            // an over-long max_tokens to what fits, and so does braid here.
            fit_max_tokens: true,
            ..SamplingFields {
                temperature: req.temperature,
                top_p: req.top_p,
                top_k: req.top_k,
                ..SamplingFields::default()
            }
            .sampling(req.max_tokens)?
        },
        constraint,
        setup: Setup { stop, ..setup },
    };
    let stream = state.pipeline.submit(submit).await?;
    let reply = Reply {
        id: format!("msg_{}", stream.id),
        model: state.model.clone(),
        input_tokens: stream.prompt_tokens,
        choice,
        blocks: Blocks::new(Arc::clone(&state.seal), thinking.omitted, parallel),
    };
    let mut response = if req.stream {
        stream_sse(stream, reply).into_response()
    } else {
        whole(stream, reply).await?
    };
    prompt::ignored_header(
        &mut response,
        "messages",
        &req.ignored(server_tools, kept.is_some()),
    );
    Ok(response)
}

/// `POST /v1/messages/count_tokens`: the prompt's length as this server renders it.
#[utoipa::path(post, path = "/v1/messages/count_tokens", request_body = CountRequest, tag = "Anthropic",
    responses((status = 200, description = "The prompt's input_tokens"),
        (status = 400, description = "A field is invalid (Anthropic's error shape)")))]
pub(crate) async fn count_tokens(
    State(state): State<AppState>,
    raw: Result<RawBody, ApiError>,
) -> Result<Response, AnthropicError> {
    let req: CountRequest = body(raw)?;
    state.check_model(Some(&req.model))?;
    let messages = decode::messages(req.system.as_ref(), &req.messages, &signatures(&state))?;
    let (tools, _) = decode::tools(req.tools.as_deref().unwrap_or_default())?;
    let thinking = decode::thinking(req.thinking.as_ref())?;
    let kept = keep_thinking(&state, req.context_management.as_ref());
    let kwargs = prompt::kwargs(&state, kept.as_ref(), "context_management", thinking.on, None)?;
    let conversation = prompt::conversation(&state, messages, tools, kwargs, true).await;
    match state
        .pipeline
        .call(TokenizerCall::Tokenize(Prompt::Chat(conversation)))
        .await?
    {
        TokenizerAnswer::Tokens { tokens, .. } => {
            Ok(axum::Json(json!({"input_tokens": tokens.len()})).into_response())
        }
        TokenizerAnswer::Refused(f) => Err(f.into()),
        TokenizerAnswer::Text { .. } => Err(braid_bus::Failure::new(
            braid_bus::FailureKind::Internal,
            braid_bus::Stage::Tokenizer,
            "the tokenizer answered another call",
        )
        .into()),
    }
}

/// A response in the making.
struct Reply {
    id: String,
    model: String,
    input_tokens: u32,
    choice: ToolChoice,
    blocks: Blocks,
}

impl Reply {
    /// `stop_reason` and `stop_sequence` (the stop string that matched, if one did), or
    /// the error the output ended in (a failure, or a `tool_choice` it did not honour).
    fn stop_reason<'a>(&self, all: &'a Collected) -> Result<(&'static str, Option<&'a str>), ApiError> {
        let reason = match &all.finish {
            Some(Finish::Failed(f)) => return Err(f.clone().into()),
            Some(Finish::Length) => ("max_tokens", None),
            Some(Finish::Stop | Finish::StopSequence(_)) if self.blocks.tool_uses() > 0 => ("tool_use", None),
            Some(Finish::Stop) => ("end_turn", None),
            Some(Finish::StopSequence(stop)) => ("stop_sequence", Some(stop.as_str())),
            Some(Finish::Abort) | None => {
                return Err(ApiError {
                    status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    message: "the response was cut off".into(),
                    param: None,
                })
            }
        };
        let calls = &all.tool_calls[..(self.blocks.tool_uses() as usize).min(all.tool_calls.len())];
        self.choice.honoured(calls, reason.0)?;
        Ok(reason)
    }

    /// Anthropic's usage: `input_tokens` are the prompt tokens the prefix cache did not
    /// serve, `cache_read_input_tokens` those it did.
    fn usage(&self, all: &Collected) -> Value {
        let cached = all.usage.map_or(0, |u| u.cached_tokens).min(self.input_tokens);
        json!({
            "input_tokens": self.input_tokens - cached,
            "cache_read_input_tokens": cached,
            "output_tokens": all.usage.map_or(0, |u| u.completion_tokens),
        })
    }

    /// The message as `message_start` and a whole response show it.
    fn message(&self, content: Vec<Value>, stop: (Option<&str>, Option<&str>), usage: Value) -> Value {
        let mut message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "stop_reason": stop.0, "stop_sequence": stop.1,
        });
        message["content"] = Value::Array(content);
        message["usage"] = usage;
        message
    }
}

async fn whole(stream: Stream, mut reply: Reply) -> Result<Response, AnthropicError> {
    let (all, events) = sse::collect(stream, &mut reply.blocks).await;
    let (reason, stop_sequence) = reply.stop_reason(&all)?;
    let body = reply.message(
        blocks::fold(&events),
        (Some(reason), stop_sequence),
        reply.usage(&all),
    );
    Ok(axum::Json(body).into_response())
}

/// A streamed message: what has been seen so far.
struct Streaming {
    reply: Reply,
    all: Collected,
}

fn event((name, data): blocks::Event) -> Event {
    Event::default().event(name).data(data.to_string())
}

impl sse::Streamer for Streaming {
    const PING: Option<Duration> = Some(PING_EVERY);

    fn ping(&mut self, out: &mut VecDeque<Event>) {
        out.push_back(event(("ping", json!({"type": "ping"}))));
    }

    fn chunk(&mut self, chunk: &braid_bus::Chunk, out: &mut VecDeque<Event>) {
        let events = sse::feed(&mut self.reply.blocks, &mut self.all, chunk);
        out.extend(events.into_iter().map(event));
    }

    /// The last block's stop, then `message_delta` and `message_stop`, or an `error`
    /// event.
    async fn close(&mut self, out: &mut VecDeque<Event>) {
        let mut events = Vec::new();
        self.reply.blocks.close(&mut events);
        match self.reply.stop_reason(&self.all) {
            Ok((reason, stop_sequence)) => {
                events.push((
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": stop_sequence}, "usage": self.reply.usage(&self.all)}),
                ));
                events.push(("message_stop", json!({"type": "message_stop"})));
            }
            Err(e) => events.push(("error", e.anthropic_body())),
        }
        out.extend(events.into_iter().map(event));
    }
}

fn stream_sse(
    stream: Stream,
    reply: Reply,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let start = json!({
        "type": "message_start",
        "message": reply.message(Vec::new(), (None, None), json!({"input_tokens": reply.input_tokens, "output_tokens": 0})),
    });
    let first = VecDeque::from([
        event(("message_start", start)),
        event(("ping", json!({"type": "ping"}))),
    ]);
    let streaming = Streaming {
        reply,
        all: Collected::default(),
    };
    sse::events(stream, streaming, first)
}
