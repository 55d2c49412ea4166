//! `POST /v1/completions`: a prompt in, text out, streamed as server-sent events or
//! whole. No reasoning split or tool extraction here (as in vLLM): that is the chat
//! endpoint's job.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use braid_bus::Response as Stream;
use braid_bus::{Collected, Finish, Prompt, Setup, Submit, Usage};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::prompt;
use crate::sampling::{at_least_one, parse_with_sampling, SamplingFields};
use crate::{AppState, RawBody};

/// The request body: OpenAI's fields and vLLM's extensions, less the sampling and stop
/// fields every OpenAI text endpoint shares ([`SamplingFields`]). Unknown fields are
/// refused.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CompletionRequest {
    model: Option<String>,
    prompt: Value,
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    echo: Option<bool>,
    logprobs: Option<Value>,
    suffix: Option<Value>,
    /// Accepted, not acted on, named in the `x-braid-ignored-fields` header.
    user: Option<Value>,
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

/// OpenAI's default `max_tokens` for this endpoint.
const DEFAULT_MAX_TOKENS: u32 = 16;

/// The prompt: a string, a one-string array, or token ids.
fn decode_prompt(v: Value) -> Result<Prompt, ApiError> {
    let bad = || {
        ApiError::invalid(
            "prompt",
            "prompt must be a string, a list with one string, or a list of token ids",
        )
    };
    match v {
        Value::String(s) => Ok(Prompt::Text(s)),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            Ok(Prompt::Text(items[0].as_str().unwrap_or_default().to_owned()))
        }
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
            .collect::<Option<Vec<u32>>>()
            .map(Prompt::Tokens)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// OpenAI's name for how a request ended.
pub(crate) fn finish_reason(f: &Finish) -> &'static str {
    match f {
        Finish::Stop | Finish::StopSequence(_) => "stop",
        Finish::Length => "length",
        Finish::Abort => "abort",
        Finish::Failed(_) => "error",
    }
}

pub(crate) fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// The whole body as the OpenAPI description shows it (see `chat::ChatBody`).
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"model": "m", "prompt": "Once upon a time", "max_tokens": 8, "stop": ["\n"]}))]
#[allow(dead_code)]
pub(crate) struct CompletionBody {
    #[serde(flatten)]
    request: CompletionRequest,
    #[serde(flatten)]
    sampling: SamplingFields,
}

/// The handler.
#[utoipa::path(post, path = "/v1/completions", request_body = CompletionBody, tag = "OpenAI",
    responses((status = 200, description = "The completion, whole or as server-sent events"),
        (status = 400, description = "A field is invalid; the error names it")))]
pub(crate) async fn completions(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (req, fields): (CompletionRequest, SamplingFields) = parse_with_sampling(&body)?;
    state.check_model(req.model.as_deref())?;
    if req.echo == Some(true) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    if req.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported yet"));
    }
    if req.suffix.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid("suffix", "suffix (insertion) is not supported"));
    }
    let max_tokens = at_least_one(req.max_tokens, "max_tokens")?.unwrap_or(DEFAULT_MAX_TOKENS);
    let submit = Submit {
        prompt: decode_prompt(req.prompt)?,
        sampling: fields.sampling(max_tokens)?,
        setup: fields.setup(Setup::default())?,
        constraint: None,
    };
    let stream = state.pipeline.submit(submit).await?;
    let meta = Meta {
        id: format!("cmpl-{}", stream.id),
        created: crate::unix_time(),
        model: state.model.clone(),
    };
    let mut response = if req.stream {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        sse(stream, meta, include_usage).into_response()
    } else {
        whole(stream, &meta).await?
    };
    prompt::ignored_header(
        &mut response,
        "completions",
        &prompt::set_fields(&[("user", &req.user)]),
    );
    Ok(response)
}

struct Meta {
    id: String,
    created: u64,
    model: String,
}

impl Meta {
    fn chunk(&self, text: &str, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
        })
    }
}

async fn whole(mut stream: Stream, meta: &Meta) -> Result<Response, ApiError> {
    let mut all = Collected::default();
    while let Some(chunk) = stream.next().await {
        all.push(&chunk);
    }
    let finish = match all.finish {
        Some(Finish::Failed(f)) => return Err(f.into()),
        Some(f) => finish_reason(&f),
        None => "abort",
    };
    let mut body = meta.chunk(&all.content, Some(finish));
    body["usage"] = usage_json(all.usage.unwrap_or_default());
    Ok(axum::Json(body).into_response())
}

fn sse(
    stream: Stream,
    meta: Meta,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    enum Phase {
        Chunks(Stream),
        Done,
        End,
    }
    let events =
        futures_util::stream::unfold((Phase::Chunks(stream), meta), move |(phase, meta)| async move {
            match phase {
                Phase::Chunks(mut stream) => {
                    let chunk = stream.next().await?;
                    let mut all = Collected::default();
                    all.push(&chunk);
                    let data = match &chunk.finish {
                        Some(Finish::Failed(f)) => ApiError::from(f.clone()).body(),
                        Some(f) => {
                            let mut last = meta.chunk(&all.content, Some(finish_reason(f)));
                            if include_usage {
                                last["usage"] = usage_json(chunk.usage.unwrap_or_default());
                            }
                            last
                        }
                        None => meta.chunk(&all.content, None),
                    };
                    let next = if chunk.finish.is_some() {
                        Phase::Done
                    } else {
                        Phase::Chunks(stream)
                    };
                    Some((Ok(Event::default().data(data.to_string())), (next, meta)))
                }
                Phase::Done => Some((Ok(Event::default().data("[DONE]")), (Phase::End, meta))),
                Phase::End => None,
            }
        });
    Sse::new(events)
}
