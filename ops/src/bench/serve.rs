//! `braid bench serve`: a load generator for streaming chat completions against a running
//! braid (or any OpenAI-compatible server): concurrency, request rate, prompt and output
//! lengths, with or without tools. Prints JSON: requests/s, output tokens/s, TTFT and
//! inter-token latency p50/p99, errors, and — against a braid replaying the recordings
//! it writes (`--write-recordings`) — cross-talk between streams.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::round;

/// Options of `braid bench serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeBenchArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Streams open at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// New requests per second (default: as fast as the concurrency allows).
    #[arg(long)]
    rate: Option<f64>,
    /// `max_tokens` of each request.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Words of filler in each prompt.
    #[arg(long, default_value_t = 32)]
    prompt_words: usize,
    /// Send a `tools` array with every request.
    #[arg(long)]
    tools: bool,
    /// The model name to send.
    #[arg(long)]
    model: Option<String>,
    /// `Authorization: Bearer KEY`.
    #[arg(long, env = "BRAID_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Write replay recordings for `--requests` requests to FILE and exit: serve them
    /// with `braid serve --executor replay:FILE`, and each stream's answer names its own
    /// request, so cross-talk is checked.
    #[arg(long)]
    write_recordings: Option<PathBuf>,
}

fn tag(i: usize) -> String {
    format!("[req {i}]")
}

/// Recordings in Qwen3's shape: reasoning, then an answer naming the request.
fn write_recordings(path: &PathBuf, n: usize, words: u32) -> anyhow::Result<()> {
    let mut out = String::new();
    for i in 0..n {
        let filler = "ok ".repeat(words as usize / 2);
        let output = format!(
            "<think>\nThinking about request {i}: {filler}\n</think>\n\nAnswer for {}: {filler}",
            tag(i)
        );
        out.push_str(&json!({"match": tag(i), "output": output}).to_string());
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

#[derive(Default)]
struct Outcome {
    error: Option<String>,
    crosstalk: bool,
    ttft: Option<f64>,
    gaps: Vec<f64>,
    completion_tokens: u64,
    reasoning_tokens: u64,
}

async fn one(
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    body: Value,
    i: usize,
    checked: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let started = Instant::now();
    let mut req = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(k) = &key {
        req = req.bearer_auth(k);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    if !resp.status().is_success() {
        out.error = Some(format!("HTTP {}", resp.status()));
        return out;
    }
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let (mut content, mut reasoning, mut done) = (String::new(), String::new(), false);
    let mut last: Option<Instant> = None;
    while let Some(piece) = stream.next().await {
        let Ok(piece) = piece else {
            out.error = Some("the stream broke".into());
            return out;
        };
        buf.push_str(&String::from_utf8_lossy(&piece));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                out.error = Some(format!("bad event: {data}"));
                continue;
            };
            if v.get("error").is_some() {
                out.error = Some(v["error"]["message"].as_str().unwrap_or("error").to_owned());
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                out.completion_tokens = u["completion_tokens"].as_u64().unwrap_or(0);
                out.reasoning_tokens = u["completion_tokens_details"]["reasoning_tokens"]
                    .as_u64()
                    .unwrap_or(0);
            }
            let delta = &v["choices"][0]["delta"];
            let text = delta["content"].as_str().unwrap_or_default();
            let thought = delta["reasoning_content"].as_str().unwrap_or_default();
            if text.is_empty() && thought.is_empty() {
                continue;
            }
            content.push_str(text);
            reasoning.push_str(thought);
            let now = Instant::now();
            match last {
                None => out.ttft = Some(now.duration_since(started).as_secs_f64()),
                Some(t) => out.gaps.push(now.duration_since(t).as_secs_f64()),
            }
            last = Some(now);
        }
    }
    if !done && out.error.is_none() {
        out.error = Some("the stream ended without [DONE]".into());
    }
    if checked {
        let mine = content.contains(&tag(i)) && reasoning.contains(&format!("request {i}:"));
        let others = content.matches("[req ").count() != 1;
        out.crosstalk = !mine || others;
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sum of a metric family's samples in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

pub(crate) fn run(args: &ServeBenchArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 || args.requests == 0 || args.max_tokens == 0 {
        bail!("--concurrency, --requests and --max-tokens must be positive");
    }
    if let Some(path) = &args.write_recordings {
        write_recordings(path, args.requests, args.max_tokens)?;
        eprintln!("wrote {} recordings to {}", args.requests, path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(drive(args))
}

async fn drive(args: &ServeBenchArgs) -> anyhow::Result<ExitCode> {
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .context("building the HTTP client")?;
    let metrics_before = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.ok(),
        Err(_) => None,
    };
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let filler = "word ".repeat(args.prompt_words);
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let bar = crate::progress_bar(args.requests as u64, "requests {bar:30} {pos}/{len}");
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let mut body = json!({
            "messages": [{"role": "user", "content": format!("{} {filler}", tag(i))}],
            "max_tokens": args.max_tokens, "stream": true, "stream_options": {"include_usage": true},
        });
        if let Some(m) = &args.model {
            body["model"] = json!(m);
        }
        if args.tools {
            body["tools"] = tools.clone();
        }
        let (client, url, key, bar) = (
            client.clone(),
            format!("{base}/v1/chat/completions"),
            args.api_key.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let outcome = one(client, url, key, body, i, true).await;
            drop(permit);
            bar.inc(1);
            outcome
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await.unwrap_or_else(|e| Outcome {
            error: Some(e.to_string()),
            ..Outcome::default()
        }));
    }
    let wall = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let errors: Vec<&String> = outcomes.iter().filter_map(|o| o.error.as_ref()).collect();
    let crosstalk = outcomes
        .iter()
        .filter(|o| o.error.is_none() && o.crosstalk)
        .count();
    let mut ttft: Vec<f64> = outcomes.iter().filter_map(|o| o.ttft).collect();
    let mut gaps: Vec<f64> = outcomes.iter().flat_map(|o| o.gaps.iter().copied()).collect();
    ttft.sort_by(f64::total_cmp);
    gaps.sort_by(f64::total_cmp);
    let tokens: u64 = outcomes.iter().map(|o| o.completion_tokens).sum();
    let reasoning: u64 = outcomes.iter().map(|o| o.reasoning_tokens).sum();
    let metrics_after = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.ok(),
        Err(_) => None,
    };
    let agree = match (&metrics_before, &metrics_after) {
        (Some(a), Some(b)) => {
            let delta = |name: &str| metric(b, name).unwrap_or(0.0) - metric(a, name).unwrap_or(0.0);
            Some(json!({
                "reasoning_tokens_metric": delta("braid_reasoning_tokens_total"),
                "generation_tokens_metric": delta("braid_generation_tokens_total"),
                "agree_with_usage": delta("braid_reasoning_tokens_total") as u64 == reasoning
                    && delta("braid_generation_tokens_total") as u64 == tokens,
            }))
        }
        _ => None,
    };
    let report = json!({
        "bench": "serve",
        "url": base,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "max_tokens": args.max_tokens,
        "tools": args.tools,
        "errors": errors.len(),
        "first_errors": errors.iter().take(3).collect::<Vec<_>>(),
        "crosstalk": crosstalk,
        "wall_s": round(wall, 3),
        "requests_per_s": round(args.requests as f64 / wall, 2),
        "output_tokens": tokens,
        "reasoning_tokens": reasoning,
        "output_tokens_per_s": round(tokens as f64 / wall, 1),
        "ttft_ms": {"p50": round(percentile(&ttft, 0.5) * 1e3, 2), "p99": round(percentile(&ttft, 0.99) * 1e3, 2)},
        "itl_ms": {"p50": round(percentile(&gaps, 0.5) * 1e3, 3), "p99": round(percentile(&gaps, 0.99) * 1e3, 3)},
        "metrics": agree,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if errors.is_empty() && crosstalk == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
