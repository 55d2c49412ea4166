//! `POST /v1/chat/completions`: a conversation in; reasoning, answer and tool calls out,
//! streamed as OpenAI streams them or whole.

use std::collections::VecDeque;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use braid_bus::Response as Stream;
use braid_bus::{Collected, Conversation, Delta, Finish, Prompt, Sampling, Submit, ToolSpec, Usage};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::completions::finish_reason;
use crate::conversation;
use crate::error::ApiError;
use crate::prompt;
use crate::sampling::{at_least_one, parse_with_sampling, SamplingFields};
use crate::sse;
use crate::structured::{self, Asked, ToolChoice};
use crate::{AppState, RawBody, ReasoningField};

/// The request body: OpenAI's fields plus vLLM's extensions, less the sampling and stop
/// fields every OpenAI text endpoint shares ([`SamplingFields`]). Unknown fields are
/// refused (a misspelt parameter should not be silently ignored).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ChatRequest {
    model: Option<String>,
    messages: Value,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    response_format: Option<Value>,
    structured_outputs: Option<Value>,
    thinking_token_budget: Option<u32>,
    chat_template_kwargs: Option<Value>,
    /// The family's thinking switch (see [`prompt::effort_thinking`]).
    reasoning_effort: Option<String>,
    // The rest of OpenAI's request reference: accepted, not acted on, and named in the
    // response's `x-braid-ignored-fields` header (see `ChatRequest::ignored`).
    user: Option<Value>,
    metadata: Option<Value>,
    store: Option<Value>,
    service_tier: Option<Value>,
    prompt_cache_key: Option<Value>,
    prompt_cache_retention: Option<Value>,
    safety_identifier: Option<Value>,
    web_search_options: Option<Value>,
    prediction: Option<Value>,
    modalities: Option<Value>,
    verbosity: Option<Value>,
    audio: Option<Value>,
    functions: Option<Value>,
    function_call: Option<Value>,
}

impl ChatRequest {
    /// Fields that would change the output in a way braid cannot honour: refused, never
    /// ignored.
    fn unsupported(&self) -> Result<(), ApiError> {
        let set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        let wants_audio = self
            .modalities
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x != "text"));
        if set(&self.audio) || wants_audio {
            return Err(ApiError::invalid("modalities", "only text output is supported"));
        }
        if set(&self.functions) || set(&self.function_call) {
            return Err(ApiError::invalid(
                "functions",
                "functions and function_call are deprecated and not supported; send tools and tool_choice",
            ));
        }
        Ok(())
    }

    /// The fields of OpenAI's reference this request sets that braid does not act on
    /// and that change nothing it can produce: prefix caching is automatic
    /// (`prompt_cache_key`), and there is no web search, predicted output, billing tier,
    /// verbosity control or stored completion.
    fn ignored(&self) -> Vec<&'static str> {
        prompt::set_fields(&[
            ("user", &self.user),
            ("metadata", &self.metadata),
            ("store", &self.store),
            ("service_tier", &self.service_tier),
            ("prompt_cache_key", &self.prompt_cache_key),
            ("prompt_cache_retention", &self.prompt_cache_retention),
            ("safety_identifier", &self.safety_identifier),
            ("web_search_options", &self.web_search_options),
            ("prediction", &self.prediction),
            ("modalities", &self.modalities),
            ("verbosity", &self.verbosity),
        ])
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
    #[serde(default)]
    #[allow(dead_code)]
    continuous_usage_stats: bool,
}

fn tool_choice(v: Option<&Value>, tools: &[ToolSpec]) -> Result<ToolChoice, ApiError> {
    let choice = match v {
        None | Some(Value::Null) => return Ok(ToolChoice::unset(tools)),
        Some(Value::String(s)) => match ToolChoice::from_openai_name(s) {
            Some(choice) => choice,
            None => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("tool_choice {s:?} is not none, auto, required or a named function"),
                ));
            }
        },
        Some(obj) => match obj.pointer("/function/name").and_then(Value::as_str) {
            Some(name) if obj.get("type").and_then(Value::as_str) == Some("function") => {
                ToolChoice::Named(name.into())
            }
            _ => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    "a named tool_choice is {\"type\": \"function\", \"function\": {\"name\": …}}",
                ))
            }
        },
    };
    choice.checked(tools)
}

/// Everything the response needs besides the stream.
struct Reply {
    id: String,
    created: u64,
    model: String,
    field: ReasoningField,
    include_usage: bool,
    choice: ToolChoice,
    parallel: bool,
    prompt_tokens: u32,
}

impl Reply {
    fn chunk(&self, delta: &Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn reasoning(&self, obj: &mut Map<String, Value>, text: Value) {
        match self.field {
            ReasoningField::ReasoningContent => {
                obj.insert("reasoning_content".into(), text);
            }
            ReasoningField::Both => {
                obj.insert("reasoning_content".into(), text.clone());
                obj.insert("reasoning".into(), text);
            }
        }
    }

    fn usage(&self, u: Option<Usage>) -> Value {
        let u = u.unwrap_or(Usage {
            prompt_tokens: self.prompt_tokens,
            ..Usage::default()
        });
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        })
    }

    /// The finish reason, or the error when `tool_choice` was not honoured.
    fn finish(&self, all: &Collected) -> Result<&'static str, ApiError> {
        let finish = match &all.finish {
            Some(Finish::Failed(f)) => return Err(f.clone().into()),
            Some(f) => finish_reason(f),
            None => "abort",
        };
        let calls = &all.tool_calls[..if self.parallel {
            all.tool_calls.len()
        } else {
            all.tool_calls.len().min(1)
        }];
        self.choice.honoured(calls, finish)?;
        Ok(if !calls.is_empty() && finish == "stop" {
            "tool_calls"
        } else {
            finish
        })
    }
}

/// The whole body as the OpenAPI description shows it: the endpoint's own fields and
/// the shared sampling ones, as [`parse_with_sampling`] reads them.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "max_tokens": 16, "temperature": 0}))]
#[allow(dead_code)]
pub(crate) struct ChatBody {
    #[serde(flatten)]
    request: ChatRequest,
    #[serde(flatten)]
    sampling: SamplingFields,
}

/// The handler.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatBody, tag = "OpenAI",
    responses((status = 200, description = "The completion, whole or as server-sent events"),
        (status = 400, description = "A field is invalid; the error names it")))]
pub(crate) async fn chat(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (req, fields): (ChatRequest, SamplingFields) = parse_with_sampling(&body)?;
    state.check_model(req.model.as_deref())?;
    if req.logprobs == Some(true) || req.top_logprobs.is_some() {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported yet"));
    }
    req.unsupported()?;
    let mut ignored = req.ignored();
    let effort = prompt::effort_thinking(req.reasoning_effort.as_deref(), "reasoning_effort")?;
    let switch = state.chat.reasoning_parser.and_then(|r| r.format().switch);
    if effort.is_some() && switch.is_none() {
        ignored.push("reasoning_effort");
    }
    let conversation = decode_conversation(
        &state,
        &req.messages,
        req.tools.as_ref(),
        req.chat_template_kwargs.as_ref(),
        effort.map(|on| (on, req.reasoning_effort.as_deref().unwrap_or_default())),
        true,
    )
    .await?;
    let tools = &conversation.tools;
    let choice = tool_choice(req.tool_choice.as_ref(), tools)?;
    let max_tokens = at_least_one(req.max_completion_tokens.or(req.max_tokens), "max_tokens")?;
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    let constraint = structured::constraint(&Asked {
        response_format: req.response_format.as_ref(),
        structured_outputs: req.structured_outputs.as_ref(),
        tools,
        choice: &choice,
        parallel,
    })?;
    let setup = prompt::setup(&state, &conversation, &choice);
    let submit = Submit {
        prompt: Prompt::Chat(conversation),
        sampling: Sampling {
            thinking_token_budget: req.thinking_token_budget.or(state.chat.thinking_token_budget),
            ..fields.sampling(max_tokens.unwrap_or(0))?
        },
        constraint,
        setup: fields.setup(setup)?,
    };
    let stream = state.pipeline.submit(submit).await?;
    let reply = Reply {
        id: format!("chatcmpl-{}", stream.id),
        created: crate::unix_time(),
        model: state.model.clone(),
        field: state.chat.reasoning_field,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
        choice,
        parallel,
        prompt_tokens: stream.prompt_tokens,
    };
    let mut response = if req.stream {
        stream_sse(stream, reply, state).into_response()
    } else {
        whole(stream, &reply, &state).await?
    };
    prompt::ignored_header(&mut response, "chat_completions", &ignored);
    Ok(response)
}

/// Keeps the reasoning behind the response's tool calls for replay; done before the
/// response ends, so the client's next round finds it on any ingress.
async fn remember(state: &AppState, all: &Collected) {
    if let Some(cache) = &state.replay {
        let calls: Vec<(String, String, String)> = all
            .tool_calls
            .iter()
            .map(|c| (c.id.clone(), c.name.clone(), c.arguments.clone()))
            .collect();
        cache
            .remember(&crate::replay::calls_made(&calls), &all.reasoning)
            .await;
    }
}

/// A chat request's conversation, decoded once: messages (with reasoning re-injected),
/// tools, and the server's template kwargs with the request's over them. `/tokenize`
/// uses the same, so it shows exactly the prompt a generation request would get.
pub(crate) async fn decode_conversation(
    state: &AppState,
    messages: &Value,
    tools: Option<&Value>,
    kwargs: Option<&Value>,
    effort: Option<(bool, &str)>,
    add_generation_prompt: bool,
) -> Result<Conversation, ApiError> {
    let messages = conversation::messages(messages)?;
    let tools = match tools.filter(|t| !t.is_null()) {
        Some(t) => conversation::tools(t)?,
        None => Vec::new(),
    };
    let (thinking, level) = (effort.map(|e| e.0), effort.map(|e| e.1));
    let kwargs = prompt::kwargs(state, kwargs, "chat_template_kwargs", thinking, level)?;
    Ok(prompt::conversation(state, messages, tools, kwargs, add_generation_prompt).await)
}

fn tool_calls_json(all: &Collected, parallel: bool) -> Vec<Value> {
    let n = if parallel {
        all.tool_calls.len()
    } else {
        all.tool_calls.len().min(1)
    };
    all.tool_calls[..n]
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect()
}

async fn whole(mut stream: Stream, reply: &Reply, state: &AppState) -> Result<Response, ApiError> {
    let mut all = Collected::default();
    while let Some(chunk) = stream.next().await {
        all.push(&chunk);
    }
    let finish = reply.finish(&all)?;
    remember(state, &all).await;
    let calls = tool_calls_json(&all, reply.parallel);
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if all.content.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(all.content)
    };
    message.insert("content".into(), content);
    let reasoning = if all.reasoning.is_empty() {
        Value::Null
    } else {
        json!(all.reasoning)
    };
    reply.reasoning(&mut message, reasoning);
    message.insert("tool_calls".into(), json!(calls));
    let body = json!({
        "id": reply.id, "object": "chat.completion", "created": reply.created, "model": reply.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": reply.usage(all.usage),
    });
    Ok(axum::Json(body).into_response())
}

/// A streamed chat completion: what has been seen so far.
struct Streaming {
    reply: Reply,
    state: AppState,
    all: Collected,
}

fn data(payload: impl AsRef<str>) -> Event {
    Event::default().data(payload)
}

impl sse::Streamer for Streaming {
    /// The deltas of one chunk as chunk objects.
    fn chunk(&mut self, chunk: &braid_bus::Chunk, out: &mut VecDeque<Event>) {
        self.all.push(chunk);
        for d in &chunk.deltas {
            let delta = match d {
                Delta::Reasoning { text } => {
                    let mut obj = Map::new();
                    self.reply.reasoning(&mut obj, json!(text));
                    Value::Object(obj)
                }
                Delta::Content { text } => json!({"content": text}),
                Delta::Fallback {
                    text, content: true, ..
                } => json!({"content": text}),
                Delta::ToolCallStart { index, id, name } if self.reply.parallel || *index == 0 => {
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]})
                }
                Delta::ToolCallArguments { index, fragment } if self.reply.parallel || *index == 0 => {
                    json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
                }
                _ => continue,
            };
            out.push_back(data(self.reply.chunk(&delta, None).to_string()));
        }
    }

    /// The finish chunk (or an error), usage, `[DONE]`.
    async fn close(&mut self, out: &mut VecDeque<Event>) {
        match self.reply.finish(&self.all) {
            Ok(finish) => {
                remember(&self.state, &self.all).await;
                out.push_back(data(self.reply.chunk(&json!({}), Some(finish)).to_string()));
                if self.reply.include_usage {
                    let usage = json!({
                        "id": self.reply.id, "object": "chat.completion.chunk", "created": self.reply.created,
                        "model": self.reply.model, "choices": [], "usage": self.reply.usage(self.all.usage),
                    });
                    out.push_back(data(usage.to_string()));
                }
            }
            Err(e) => out.push_back(data(e.body().to_string())),
        }
        out.push_back(data("[DONE]"));
    }
}

fn stream_sse(
    stream: Stream,
    reply: Reply,
    state: AppState,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let first = data(
        reply
            .chunk(&json!({"role": "assistant", "content": ""}), None)
            .to_string(),
    );
    let streaming = Streaming {
        reply,
        state,
        all: Collected::default(),
    };
    sse::events(stream, streaming, VecDeque::from([first]))
}
