//! `braid bench protocols`: what each protocol adapter costs per streamed token. The
//! same model output (reasoning, an answer, a tool call) is streamed through the real
//! HTTP handlers (`braid_api::router`, no socket) from a pipeline that answers at once,
//! for Chat Completions, Anthropic Messages and OpenAI Responses, at several numbers of
//! concurrent streams; the figure is CPU µs per token, and each adapter's cost over Chat
//! Completions'.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use braid_bus::{
    Chunk, Delta, Failure, Finish, InstanceId, Pipeline, RequestId, Response, Stage, Submit, TokenizerAnswer,
    TokenizerCall, Usage,
};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use super::pipeline::cpu_seconds;
use super::round;

/// Options of `braid bench protocols`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProtocolsBenchArgs {
    /// Concurrent streams, comma-separated.
    #[arg(long, default_value = "1,1000", value_delimiter = ',')]
    streams: Vec<usize>,
    /// Tokens (deltas) in each streamed response.
    #[arg(long, default_value_t = 256)]
    tokens: usize,
    /// Streamed tokens to measure per protocol and concurrency.
    #[arg(long, default_value_t = 500_000)]
    total_tokens: usize,
}

/// A pipeline that answers every request with the same chunks, at once.
struct Canned {
    chunks: Vec<Chunk>,
}

impl Pipeline for Canned {
    fn submit(&self, _submit: Submit) -> BoxFuture<'_, Result<Response, Failure>> {
        Box::pin(std::future::ready(Ok(Response::from_chunks(
            RequestId::random(),
            16,
            self.chunks.clone(),
        ))))
    }

    fn call(&self, _call: TokenizerCall) -> BoxFuture<'_, Result<TokenizerAnswer, Failure>> {
        Box::pin(std::future::ready(Ok(TokenizerAnswer::Text(String::new()))))
    }

    fn missing(&self) -> Vec<Stage> {
        Vec::new()
    }

    fn instance(&self) -> InstanceId {
        InstanceId(1)
    }
}

/// `tokens` chunks of one delta each, as the pipeline streams a model that reasons,
/// answers and calls a tool: half reasoning, then text, then the call's arguments.
fn output(tokens: usize) -> Vec<Chunk> {
    let one = |d: Delta| Chunk {
        deltas: vec![d],
        finish: None,
        usage: None,
    };
    let reasoning = tokens / 2;
    let text = tokens / 4;
    let mut chunks: Vec<Chunk> = (0..reasoning)
        .map(|i| {
            one(Delta::Reasoning {
                text: format!(" step{i}"),
            })
        })
        .collect();
    chunks.extend((0..text).map(|i| {
        one(Delta::Content {
            text: format!(" word{i}"),
        })
    }));
    chunks.push(one(Delta::ToolCallStart {
        index: 0,
        id: "call_0".into(),
        name: "lookup".into(),
    }));
    let args = tokens.saturating_sub(reasoning + text + 2).max(1);
    chunks.push(one(Delta::ToolCallArguments {
        index: 0,
        fragment: "{\"q\": \"".into(),
    }));
    chunks.extend((1..args).map(|i| {
        one(Delta::ToolCallArguments {
            index: 0,
            fragment: format!("x{i}"),
        })
    }));
    chunks.push(Chunk {
        deltas: vec![
            Delta::ToolCallArguments {
                index: 0,
                fragment: "\"}".into(),
            },
            Delta::ToolCallEnd {
                index: 0,
                outcome: "parsed".into(),
            },
        ],
        finish: Some(Finish::Stop),
        usage: Some(Usage {
            prompt_tokens: 16,
            completion_tokens: tokens as u32,
            reasoning_tokens: reasoning as u32,
            cached_tokens: 0,
        }),
    });
    chunks
}

/// Each protocol's path and streamed request for the same conversation and tool.
fn protocols() -> [(&'static str, &'static str, String); 3] {
    let schema = json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]});
    [
        (
            "chat_completions",
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "Look it up."}],
                   "tools": [{"type": "function", "function": {"name": "lookup", "parameters": schema}}]})
            .to_string(),
        ),
        (
            "messages",
            "/v1/messages",
            json!({"model": "m", "stream": true, "max_tokens": 1024, "messages": [{"role": "user", "content": "Look it up."}],
                   "tools": [{"name": "lookup", "input_schema": schema}]})
            .to_string(),
        ),
        (
            "responses",
            "/v1/responses",
            json!({"model": "m", "stream": true, "input": "Look it up.", "reasoning": {"summary": "auto"},
                   "include": ["reasoning.encrypted_content"], "store": false,
                   "tools": [{"type": "function", "name": "lookup", "parameters": schema}]})
            .to_string(),
        ),
    ]
}

/// One streamed request through the router; the body's bytes.
async fn one(app: axum::Router, path: &'static str, body: String) -> anyhow::Result<usize> {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))?;
    let response = app.oneshot(request).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{path} answered {}",
        response.status()
    );
    Ok(response.into_body().collect().await?.to_bytes().len())
}

pub(crate) fn run(args: &ProtocolsBenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let state = braid_api::AppState {
        pipeline: Arc::new(Canned {
            chunks: output(args.tokens),
        }),
        model: "m".into(),
        chat: braid_api::ChatSettings::default(),
        replay: None,
        responses: None,
        max_model_len: None,
        api_key: None,
        max_body_bytes: 1 << 20,
        seal: Arc::new(braid_api::Seal::from_secret("bench")),
        strict_signatures: false,
    };
    let app = braid_api::router(state);
    let mut results = Vec::new();
    for &streams in &args.streams {
        let requests = (args.total_tokens / args.tokens).max(streams);
        let mut chat_us = None;
        for (name, path, body) in protocols() {
            eprintln!(
                "bench protocols: {name}, {streams} streams, {requests} requests of {} tokens",
                args.tokens
            );
            let cpu_before = cpu_seconds("self").unwrap_or(0.0);
            let started = Instant::now();
            let bytes = runtime.block_on(async {
                let mut bytes = 0;
                let mut left = requests;
                while left > 0 {
                    let wave = left.min(streams);
                    let all = (0..wave).map(|_| one(app.clone(), path, body.clone()));
                    for b in futures_util::future::join_all(all).await {
                        bytes += b?;
                    }
                    left -= wave;
                }
                anyhow::Ok(bytes)
            })?;
            let wall = started.elapsed();
            let cpu = cpu_seconds("self").unwrap_or(0.0) - cpu_before;
            let tokens = (requests * args.tokens) as f64;
            let us = cpu * 1e6 / tokens;
            let over = chat_us.map(|c: f64| round(us - c, 3));
            chat_us.get_or_insert(us);
            results.push(json!({
                "protocol": name, "streams": streams, "requests": requests, "tokens": tokens,
                "cpu_us_per_token": round(us, 3), "over_chat_completions_us_per_token": over,
                "wall_us_per_token": round(wall.as_secs_f64() * 1e6 / tokens, 3),
                "bytes_per_token": round(bytes as f64 / tokens, 1),
            }));
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"bench": "protocols", "results": results}))?
    );
    Ok(ExitCode::SUCCESS)
}
