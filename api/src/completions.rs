//! `POST /v1/completions`: a prompt in, text out, streamed as server-sent events or
//! whole. No reasoning split or tool extraction here (as in vLLM): that is the chat
//! endpoint's job.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use braid_bus::Response as Stream;
use braid_bus::{Collected, Finish, Prompt, Sampling, Setup, Submit, Usage};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::{AppState, RawBody};

/// The request body (OpenAI's fields, plus vLLM's sampling extensions).
#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Value,
    #[serde(default = "default_max_tokens")]
    max_tokens: u32,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    seed: Option<u64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    repetition_penalty: Option<f32>,
    stop: Option<Value>,
    #[serde(default)]
    stop_token_ids: Vec<u32>,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    include_stop_str_in_output: bool,
    skip_special_tokens: Option<bool>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
    echo: Option<bool>,
    logprobs: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn default_max_tokens() -> u32 {
    16
}

/// Reads a JSON body, turning any problem into an OpenAI-shaped 400 that names the field
/// at fault.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("the request body is not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_body(format!("the request body is not valid: {inner}"))
        } else {
            ApiError::bad_body(format!("the request body is not valid: {path}: {inner}"))
        }
    })
}

/// The prompt: a string, a one-string array, or token ids.
fn prompt(v: Value) -> Result<Prompt, ApiError> {
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

/// `stop` as a list: a string, or up to 16 strings.
pub(crate) fn stop_list(v: Option<Value>) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) if items.len() <= 16 => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::invalid(
                    "stop",
                    "stop must be a string or a list of strings",
                )),
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(
            "stop",
            "stop must be a string or a list of at most 16 strings",
        )),
    }
}

/// Sampling settings, range-checked, named as the client sent them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sampling(
    max_tokens: u32,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    seed: Option<u64>,
    penalties: (Option<f32>, Option<f32>, Option<f32>),
) -> Result<Sampling, ApiError> {
    let d = Sampling::default();
    let s = Sampling {
        max_tokens,
        temperature: temperature.unwrap_or(d.temperature),
        top_p: top_p.unwrap_or(d.top_p),
        top_k: match top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => u32::try_from(k).unwrap_or(u32::MAX),
            Some(_) => return Err(ApiError::invalid("top_k", "top_k must be -1 (off) or positive")),
        },
        min_p: min_p.unwrap_or(d.min_p),
        seed,
        presence_penalty: penalties.0.unwrap_or(d.presence_penalty),
        frequency_penalty: penalties.1.unwrap_or(d.frequency_penalty),
        repetition_penalty: penalties.2.unwrap_or(d.repetition_penalty),
        ..d
    };
    if max_tokens == 0 {
        return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1"));
    }
    if !(0.0..=100.0).contains(&s.temperature) || !s.temperature.is_finite() {
        return Err(ApiError::invalid(
            "temperature",
            "temperature must be between 0 and 100",
        ));
    }
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        return Err(ApiError::invalid("top_p", "top_p must be in (0, 1]"));
    }
    if !(0.0..=1.0).contains(&s.min_p) {
        return Err(ApiError::invalid("min_p", "min_p must be in [0, 1]"));
    }
    if !(-2.0..=2.0).contains(&s.presence_penalty) {
        return Err(ApiError::invalid(
            "presence_penalty",
            "presence_penalty must be in [-2, 2]",
        ));
    }
    if !(-2.0..=2.0).contains(&s.frequency_penalty) {
        return Err(ApiError::invalid(
            "frequency_penalty",
            "frequency_penalty must be in [-2, 2]",
        ));
    }
    if !(s.repetition_penalty > 0.0 && s.repetition_penalty.is_finite()) {
        return Err(ApiError::invalid(
            "repetition_penalty",
            "repetition_penalty must be positive",
        ));
    }
    Ok(s)
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

/// The handler.
pub(crate) async fn completions(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse_body(&body)?;
    state.check_model(req.model.as_deref())?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    if req.echo == Some(true) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    if req.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported yet"));
    }
    let submit = Submit {
        prompt: prompt(req.prompt)?,
        sampling: Sampling {
            stop_token_ids: req.stop_token_ids,
            ignore_eos: req.ignore_eos,
            ..sampling(
                req.max_tokens,
                req.temperature,
                req.top_p,
                req.top_k,
                req.min_p,
                req.seed,
                (
                    req.presence_penalty,
                    req.frequency_penalty,
                    req.repetition_penalty,
                ),
            )?
        },
        setup: Setup {
            stop: stop_list(req.stop)?,
            include_stop_str: req.include_stop_str_in_output,
            skip_special_tokens: req.skip_special_tokens.unwrap_or(true),
            ..Setup::default()
        },
        constraint: None,
    };
    let stream = state.pipeline.submit(submit).await?;
    let meta = Meta {
        id: format!("cmpl-{}", stream.id),
        created: crate::unix_time(),
        model: state.model.clone(),
    };
    if req.stream {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        Ok(sse(stream, meta, include_usage).into_response())
    } else {
        whole(stream, &meta).await
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn body_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct R {
            temperature: Option<f32>,
        }
        let e = super::parse_body::<R>(br#"{"temperature": "hot"}"#)
            .err()
            .map(|e| e.message);
        assert!(e.as_deref().is_some_and(|m| m.contains("temperature")), "{e:?}");
    }
}
