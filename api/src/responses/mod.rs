//! OpenAI's Responses API: `POST /v1/responses` (what Codex speaks). A thin adapter: the
//! request becomes the one typed conversation on the bus, and the bus's deltas become
//! output items (`reasoning`, `function_call`, `message`), streamed as OpenAI streams
//! them (each event with its `sequence_number`) or whole.

mod decode;
mod items;
pub(crate) mod store;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use braid_bus::Response as Stream;
use braid_bus::{Collected, Finish, Prompt, Sampling, Submit};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use self::items::Items;
use crate::error::ApiError;
use crate::sampling::{parse_body, SamplingFields};
use crate::seal::Signatures;
use crate::sse::Machine;
use crate::structured::{self, Asked, ToolChoice};
use crate::{prompt, sse, AppState, RawBody};

/// The request body: every field of OpenAI's Responses reference (and Codex's
/// `client_metadata`). Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "m", "input": "hi", "max_output_tokens": 16, "store": false}))]
pub(crate) struct ResponsesRequest {
    model: Option<String>,
    input: Value,
    instructions: Option<String>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    reasoning: Option<ReasoningConfig>,
    max_output_tokens: Option<u32>,
    text: Option<TextConfig>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    #[serde(default)]
    stream: bool,
    store: Option<bool>,
    previous_response_id: Option<String>,
    include: Option<Vec<String>>,
    background: Option<bool>,
    conversation: Option<Value>,
    prompt: Option<Value>,
    top_logprobs: Option<u32>,
    // Accepted, not acted on, and named in `x-braid-ignored-fields`.
    prompt_cache_key: Option<Value>,
    prompt_cache_retention: Option<Value>,
    metadata: Option<Value>,
    user: Option<Value>,
    safety_identifier: Option<Value>,
    service_tier: Option<Value>,
    truncation: Option<Value>,
    max_tool_calls: Option<Value>,
    stream_options: Option<Value>,
    client_metadata: Option<Value>,
}

/// `reasoning`: the effort (the family's thinking switch) and whether a summary is
/// wanted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReasoningConfig {
    effort: Option<String>,
    summary: Option<String>,
    generate_summary: Option<String>,
}

/// `text`: the answer's format (structured outputs) and verbosity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TextConfig {
    format: Option<Value>,
    verbosity: Option<Value>,
}

impl ResponsesRequest {
    /// What braid cannot do: refused, never ignored.
    fn unsupported(&self) -> Result<(), ApiError> {
        if self.background == Some(true) {
            return Err(ApiError::invalid(
                "background",
                "background responses are not supported",
            ));
        }
        if self.conversation.as_ref().is_some_and(|c| !c.is_null()) {
            return Err(ApiError::invalid(
                "conversation",
                "conversations are not supported; send previous_response_id or the items",
            ));
        }
        if self.prompt.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(ApiError::invalid("prompt", "prompt templates are not supported"));
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(ApiError::invalid(
                "top_logprobs",
                "logprobs are not supported yet",
            ));
        }
        if let Some(unknown) = self
            .include
            .iter()
            .flatten()
            .find(|i| i.as_str() != "reasoning.encrypted_content")
        {
            return Err(ApiError::invalid(
                "include",
                format!("include {unknown:?} is not supported (reasoning.encrypted_content is)"),
            ));
        }
        Ok(())
    }

    /// The fields braid accepts and does not act on: prefix caching is automatic
    /// (`prompt_cache_key`), there is no billing tier, truncation or verbosity control,
    /// and the metadata is the caller's.
    fn ignored(&self, skipped_tools: bool, unstored: bool) -> Vec<&'static str> {
        let mut ignored = prompt::set_fields(&[
            ("prompt_cache_key", &self.prompt_cache_key),
            ("prompt_cache_retention", &self.prompt_cache_retention),
            ("metadata", &self.metadata),
            ("user", &self.user),
            ("safety_identifier", &self.safety_identifier),
            ("service_tier", &self.service_tier),
            ("truncation", &self.truncation),
            ("max_tool_calls", &self.max_tool_calls),
            ("stream_options", &self.stream_options),
            ("client_metadata", &self.client_metadata),
        ]);
        if self
            .text
            .as_ref()
            .is_some_and(|t| t.verbosity.as_ref().is_some_and(|v| !v.is_null()))
        {
            ignored.push("text.verbosity");
        }
        if skipped_tools {
            ignored.push("tools");
        }
        if unstored {
            ignored.push("store");
        }
        ignored
    }

    /// `text.format` as OpenAI Chat's `response_format`, so the one constraint path reads
    /// it.
    fn response_format(&self) -> Result<Option<Value>, ApiError> {
        let Some(f) = self
            .text
            .as_ref()
            .and_then(|t| t.format.as_ref())
            .filter(|f| !f.is_null())
        else {
            return Ok(None);
        };
        match f.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
            Some("json_schema") => {
                let mut schema = f.clone();
                if let Some(o) = schema.as_object_mut() {
                    o.remove("type");
                }
                Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
            }
            _ => Err(ApiError::invalid(
                "text.format",
                "text.format.type must be text, json_object or json_schema",
            )),
        }
    }
}

/// `POST /v1/responses`.
#[utoipa::path(post, path = "/v1/responses", request_body = ResponsesRequest, tag = "OpenAI",
    responses((status = 200, description = "The response, whole or as server-sent events"),
        (status = 400, description = "A field is invalid; the error names it")))]
pub(crate) async fn responses(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: ResponsesRequest = parse_body(&body)?;
    state.check_model(req.model.as_deref())?;
    req.unsupported()?;
    if req.max_output_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_output_tokens",
            "max_output_tokens must be at least 1",
        ));
    }
    let signatures = Signatures {
        seal: &state.seal,
        strict: state.strict_signatures,
        param: "input",
    };
    let before = match &req.previous_response_id {
        None => Vec::new(),
        Some(id) => previous(&state, id).await?,
    };
    let history = decode::messages(before, &req.input, &signatures)?;
    let messages = decode::instructed(req.instructions.as_deref(), &history);
    let (tools, skipped_tools) = decode::tools(req.tools.as_deref().unwrap_or_default())?;
    let choice = decode::tool_choice(req.tool_choice.as_ref(), &tools)?;
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    let reasoning = req.reasoning.as_ref();
    let effort = prompt::effort_thinking(reasoning.and_then(|r| r.effort.as_deref()), "reasoning.effort")?;
    let response_format = req.response_format()?;
    let constraint = structured::constraint(&Asked {
        response_format: response_format.as_ref(),
        structured_outputs: None,
        tools: &tools,
        choice: &choice,
        parallel,
    })?;
    let level = reasoning.and_then(|r| r.effort.as_deref());
    let kwargs = prompt::kwargs(&state, None, "reasoning", effort, level)?;
    let conversation = prompt::conversation(&state, messages, tools, kwargs, true).await;
    let setup = prompt::setup(&state, &conversation, &choice);
    let max_tokens = req.max_output_tokens.unwrap_or(0);
    let submit = Submit {
        prompt: Prompt::Chat(conversation),
        sampling: Sampling {
            thinking_token_budget: state.chat.thinking_token_budget,
            ..SamplingFields {
                temperature: req.temperature,
                top_p: req.top_p,
                ..SamplingFields::default()
            }
            .sampling(max_tokens)?
        },
        constraint,
        setup,
    };
    let stream = state.pipeline.submit(submit).await?;
    let id = stream.id.to_string();
    // `store` is the Responses API's default; with the store off (`--responses-store-size
    // 0`) nothing is kept and the header says so.
    let wants_store = req.store.unwrap_or(true);
    let keep = state
        .responses
        .clone()
        .filter(|_| wants_store)
        .map(|store| Keep { store, history });
    let asked = items::Asked {
        summary: reasoning.is_some_and(|r| r.summary.is_some() || r.generate_summary.is_some()),
        encrypted: req
            .include
            .iter()
            .flatten()
            .any(|i| i == "reasoning.encrypted_content"),
        parallel,
    };
    let reply = Reply {
        head: json!({
            "id": format!("resp_{id}"), "object": "response", "created_at": crate::unix_time(),
            "model": state.model, "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "parallel_tool_calls": parallel, "previous_response_id": req.previous_response_id, "store": keep.is_some(),
            "temperature": req.temperature, "top_p": req.top_p, "tool_choice": req.tool_choice.clone().unwrap_or(json!("auto")),
            "tools": req.tools.clone().unwrap_or_default(), "metadata": req.metadata.clone().unwrap_or(json!({})),
            "reasoning": {"effort": reasoning.and_then(|r| r.effort.clone()), "summary": reasoning.and_then(|r| r.summary.clone())},
            "error": null, "incomplete_details": null,
        }),
        input_tokens: stream.prompt_tokens,
        choice,
        items: Items::new(Arc::clone(&state.seal), asked, id),
        keep,
    };
    let mut response = if req.stream {
        stream_sse(stream, reply).into_response()
    } else {
        let mut reply = reply;
        let (all, events) = sse::collect(stream, &mut reply.items).await;
        let body = reply.finished(&all, items::fold(&events));
        if body["status"] == "failed" {
            return Err(reply
                .failure(&all)
                .unwrap_or_else(|| ApiError::bad_body("the response failed")));
        }
        reply.keep(&all, &body).await;
        axum::Json(body).into_response()
    };
    let unstored = wants_store && req.store.is_some() && state.responses.is_none();
    prompt::ignored_header(&mut response, "responses", &req.ignored(skipped_tools, unstored));
    Ok(response)
}

/// The conversation of a `previous_response_id`; an id not kept (never stored,
/// expired, deleted, or the store off) is a 404 that says so.
async fn previous(state: &AppState, id: &str) -> Result<Vec<braid_bus::ChatMessage>, ApiError> {
    let stored = match &state.responses {
        Some(store) => store.get(id).await,
        None => None,
    };
    stored
        .map(|s| s.conversation)
        .ok_or_else(|| not_found(id, "previous_response_id"))
}

fn not_found(id: &str, param: &'static str) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        message: format!("no response with id {id:?} is kept here: it was never stored (store: false), has expired, or was deleted"),
        param: Some(param.into()),
    }
}

/// `GET /v1/responses/{id}`: a stored response.
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "OpenAI",
    params(("id" = String, Path, description = "A stored response's id")),
    responses((status = 200, description = "The stored response"),
        (status = 404, description = "No response with that id is kept")))]
pub(crate) async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let stored = match &state.responses {
        Some(store) => store.get(&id).await,
        None => None,
    };
    let stored = stored.ok_or_else(|| not_found(&id, "response_id"))?;
    Ok(axum::Json(stored.response).into_response())
}

/// `DELETE /v1/responses/{id}`.
#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "OpenAI",
    params(("id" = String, Path, description = "A stored response's id")),
    responses((status = 200, description = "The response was deleted"),
        (status = 404, description = "No response with that id is kept")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = match &state.responses {
        Some(store) => store.delete(&id).await,
        None => false,
    };
    if !deleted {
        return Err(not_found(&id, "response_id"));
    }
    Ok(axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

/// Where a response is kept, with the conversation that led to it.
struct Keep {
    store: Arc<store::ResponseStore>,
    history: Vec<braid_bus::ChatMessage>,
}

/// A response in the making.
struct Reply {
    /// The response object's fields that do not change as it runs.
    head: Value,
    input_tokens: u32,
    choice: ToolChoice,
    items: Items,
    /// Set when the response is to be stored.
    keep: Option<Keep>,
}

impl Reply {
    /// Stores the finished response `body` and the conversation through it, when asked.
    /// Done before the response ends, so a next request finds it on any ingress.
    async fn keep(&mut self, all: &Collected, body: &Value) {
        let Some(keep) = self.keep.take() else { return };
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        let n = (self.items.calls() as usize).min(all.tool_calls.len());
        let calls: Vec<braid_bus::ToolCall> = all.tool_calls[..n]
            .iter()
            .map(|c| braid_bus::ToolCall {
                id: c.id.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
                parsed: serde_json::from_str::<Value>(&c.arguments)
                    .ok()
                    .filter(Value::is_object),
            })
            .collect();
        let mut conversation = keep.history;
        conversation.push(braid_bus::ChatMessage {
            content: Some(all.content.trim_start().to_owned()),
            reasoning: (!all.reasoning.is_empty()).then(|| all.reasoning.clone()),
            tool_calls: (!calls.is_empty()).then_some(calls),
            ..braid_bus::ChatMessage::text(braid_bus::Role::Assistant, "")
        });
        let stored = store::Stored {
            response: body.clone(),
            conversation,
        };
        keep.store.put(&id, &stored).await;
    }

    /// The response object with `status`, `output` and `usage`.
    fn object(&self, status: &str, output: Vec<Value>, usage: Value) -> Value {
        let mut r = self.head.clone();
        r["status"] = json!(status);
        r["output"] = Value::Array(output);
        r["usage"] = usage;
        r
    }

    /// Why the response failed, if it did: a stage's failure, or a `tool_choice` it did
    /// not honour.
    fn failure(&self, all: &Collected) -> Option<ApiError> {
        match &all.finish {
            Some(Finish::Failed(f)) => Some(f.clone().into()),
            Some(Finish::Abort) | None => Some(ApiError {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message: "the response was cut off".into(),
                param: None,
            }),
            Some(finish @ (Finish::Stop | Finish::StopSequence(_) | Finish::Length)) => {
                let calls = &all.tool_calls[..(self.items.calls() as usize).min(all.tool_calls.len())];
                let how = if *finish != Finish::Length {
                    "stop"
                } else {
                    "max_output_tokens"
                };
                self.choice.honoured(calls, how).err()
            }
        }
    }

    /// The finished response object: `completed`, `incomplete` (max_output_tokens) or
    /// `failed` (with its error).
    fn finished(&self, all: &Collected, output: Vec<Value>) -> Value {
        let u = all.usage.unwrap_or_default();
        let usage = json!({
            "input_tokens": self.input_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": self.input_tokens + u.completion_tokens,
        });
        if let Some(e) = self.failure(all) {
            let mut r = self.object("failed", output, usage);
            r["error"] = json!({"code": if e.status.is_server_error() { "server_error" } else { "invalid_prompt" }, "message": e.message});
            return r;
        }
        if all.finish == Some(Finish::Length) {
            let mut r = self.object("incomplete", output, usage);
            r["incomplete_details"] = json!({"reason": "max_output_tokens"});
            return r;
        }
        self.object("completed", output, usage)
    }
}

/// A streamed response: what has been seen so far.
struct Streaming {
    reply: Reply,
    /// Every item done so far, for the final response object.
    output: Vec<Value>,
    all: Collected,
    /// The next event's `sequence_number`.
    sequence: u64,
}

impl Streaming {
    /// `events`, numbered, as server-sent events named by their type.
    fn send(&mut self, events: Vec<Value>, out: &mut VecDeque<Event>) {
        self.output.extend(items::fold(&events));
        for mut data in events {
            data["sequence_number"] = json!(self.sequence);
            self.sequence += 1;
            let name = data["type"].as_str().unwrap_or_default().to_owned();
            out.push_back(Event::default().event(name).data(data.to_string()));
        }
    }
}

impl sse::Streamer for Streaming {
    fn chunk(&mut self, chunk: &braid_bus::Chunk, out: &mut VecDeque<Event>) {
        let events = sse::feed(&mut self.reply.items, &mut self.all, chunk);
        self.send(events, out);
    }

    /// The last item's events, then `response.completed`, `.incomplete` or `.failed`.
    async fn close(&mut self, out: &mut VecDeque<Event>) {
        let mut events = Vec::new();
        self.reply.items.close(&mut events);
        self.send(events, out);
        let response = self.reply.finished(&self.all, std::mem::take(&mut self.output));
        let kind = match response["status"].as_str() {
            Some("failed") => "response.failed",
            Some("incomplete") => "response.incomplete",
            _ => "response.completed",
        };
        if kind != "response.failed" {
            self.reply.keep(&self.all, &response).await;
        }
        self.send(vec![json!({"type": kind, "response": response})], out);
    }
}

fn stream_sse(
    stream: Stream,
    reply: Reply,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let started = reply.object("in_progress", Vec::new(), Value::Null);
    let mut streaming = Streaming {
        reply,
        output: Vec::new(),
        all: Collected::default(),
        sequence: 0,
    };
    let mut first = VecDeque::new();
    streaming.send(
        vec![
            json!({"type": "response.created", "response": started}),
            json!({"type": "response.in_progress", "response": started}),
        ],
        &mut first,
    );
    sse::events(stream, streaming, first)
}
