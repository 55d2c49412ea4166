//! `braid bench upstream`: the latency braid adds per streamed token in front of an
//! upstream engine. A stub upstream on loopback streams chunks that carry their send
//! time (` <µs>;`); every braid stage runs between it and in-process clients, which read the
//! times back out of the content: added latency = receive time − send time.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use braid_actors::{Executing, ExecutorFactory, Node, NodeConfig, PromptAs, UpstreamExecutor, UpstreamSpec};
use braid_bus::{Bus, Delta, Finish, Prompt, Sampling, Setup, Submit};
use braid_engine::Tokenizer;
use serde_json::json;

use super::round;

/// Options of `braid bench upstream`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpstreamBenchArgs {
    /// Tokenizer folder.
    #[arg(long, default_value = ".fixtures/tokenizer-qwen3")]
    tokenizer: std::path::PathBuf,
    /// Concurrent streams.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Chunks (tokens) each stream's upstream sends.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Milliseconds between an upstream stream's chunks.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The stub upstream: each chunk's text is ` <send time in µs>`.
async fn stub(tokens: usize, interval: Duration) -> anyhow::Result<u16> {
    let app = axum::Router::new().route(
        "/v1/completions",
        axum::routing::post(move || async move {
            let events = futures_util::stream::unfold(0usize, move |i| async move {
                if i > tokens {
                    return None;
                }
                tokio::time::sleep(interval).await;
                let data = if i == tokens {
                    "[DONE]".to_owned()
                } else {
                    let finish = if i + 1 == tokens { json!("length") } else { json!(null) };
                    json!({"choices": [{"index": 0, "text": format!(" {};", now_us()), "finish_reason": finish}]}).to_string()
                };
                Some((Ok::<_, Infallible>(axum::response::sse::Event::default().data(data)), i + 1))
            });
            axum::response::sse::Sse::new(events)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

/// CPU seconds of this process so far.
fn cpu() -> f64 {
    super::pipeline::cpu_seconds("self").unwrap_or(0.0)
}

fn summary(mut lat: Vec<f64>) -> serde_json::Value {
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    json!({"mean": round(mean, 1), "p50": round(pct(0.5), 1), "p99": round(pct(0.99), 1)})
}

/// Reads ` <µs>;` timestamps out of `text` as they complete; returns their latencies.
fn timestamps(text: &mut String, now: u64, lat: &mut Vec<f64>) {
    while let Some(at) = text.find(';') {
        if let Ok(sent) = text[..at].trim().parse::<u64>() {
            lat.push(now.saturating_sub(sent) as f64);
        }
        text.drain(..=at);
    }
}

/// The same streams read straight from the stub (no braid): the baseline.
async fn direct(port: u16, streams: usize) -> Vec<f64> {
    use futures_util::StreamExt;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let Ok(resp) = client
                .post(format!("http://127.0.0.1:{port}/v1/completions"))
                .body("{}")
                .send()
                .await
            else {
                return lat;
            };
            let mut body = resp.bytes_stream();
            let (mut buf, mut text) = (String::new(), String::new());
            while let Some(Ok(piece)) = body.next().await {
                let now = now_us();
                buf.push_str(&String::from_utf8_lossy(&piece));
                while let Some(at) = buf.find("\n\n") {
                    let event: String = buf.drain(..at + 2).collect();
                    if let Some(v) = event
                        .trim()
                        .strip_prefix("data:")
                        .and_then(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
                    {
                        text.push_str(v["choices"][0]["text"].as_str().unwrap_or_default());
                    }
                }
                timestamps(&mut text, now, &mut lat);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all
}

pub(crate) fn run(args: &UpstreamBenchArgs) -> anyhow::Result<ExitCode> {
    if args.streams == 0 || args.tokens == 0 {
        bail!("--streams and --tokens must be positive");
    }
    let tok = Arc::new(Tokenizer::from_dir(&args.tokenizer).with_context(|| {
        format!(
            "loading the tokenizer in {} (run scripts/setup)",
            args.tokenizer.display()
        )
    })?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let port = stub(args.tokens, Duration::from_millis(args.interval_ms)).await?;
        let cpu0 = cpu();
        let baseline = direct(port, args.streams).await;
        let baseline_cpu = cpu() - cpu0;
        let spec = UpstreamSpec {
            urls: vec![format!("http://127.0.0.1:{port}")],
            api_key: None,
            model: None,
            prompt_as: PromptAs::Text,
            timeout: Duration::from_secs(30),
        };
        let t = Arc::clone(&tok);
        let factory: ExecutorFactory =
            Arc::new(move || Ok(Executing::Upstream(UpstreamExecutor::new(spec.clone(), Arc::clone(&t))?)));
        let config = NodeConfig {
            stages: NodeConfig::all_stages(),
            tokenizer: Some(Arc::clone(&tok)),
            executor: Some(factory),
            chat: None,
            max_model_len: None,
            guides: None,
            handoff: None,
            max_inflight: args.streams + 16,
            submit_timeout: Duration::from_secs(30),
        routing: braid_actors::Routing::default(),
        };
        let node = Node::start(Bus::in_process(), config).await?;
        if !node.wait_ready(Duration::from_secs(10)).await {
            bail!("the pipeline did not come up");
        }
        let ingress = node.ingress.clone().context("no ingress")?;
        let started = Instant::now();
        let cpu1 = cpu();
        let mut tasks = Vec::new();
        for _ in 0..args.streams {
            let ingress = ingress.clone();
            let max = args.tokens as u32 * 8;
            tasks.push(tokio::spawn(async move {
                let submit = Submit {
                    prompt: Prompt::Text("go".into()),
                    sampling: Sampling { max_tokens: max, ..Sampling::default() },
                    constraint: None,
                    setup: Setup { skip_special_tokens: true, ..Setup::default() },
                };
                let mut lat = Vec::new();
                let mut text = String::new();
                let Ok(mut response) = ingress.submit(submit).await else { return (lat, 1usize) };
                let mut failed = 0;
                while let Some(chunk) = response.next().await {
                    let now = now_us();
                    for d in &chunk.deltas {
                        if let Delta::Content { text: t } = d {
                            text.push_str(t);
                        }
                    }
                    timestamps(&mut text, now, &mut lat);
                    if matches!(chunk.finish, Some(Finish::Failed(_))) {
                        failed = 1;
                    }
                }
                (lat, failed)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, failed) = t.await.unwrap_or_default();
            all.extend(lat);
            errors += failed;
        }
        let wall = started.elapsed().as_secs_f64();
        let braid_cpu = cpu() - cpu1;
        node.shutdown().await;
        let tokens = all.len().max(1) as f64;
        let report = json!({
            "bench": "upstream",
            "streams": args.streams,
            "tokens_per_stream": args.tokens,
            "upstream_interval_ms": args.interval_ms,
            "tokens_measured": all.len(),
            "errors": errors,
            "latency_us_through_braid": summary(all),
            "latency_us_direct": summary(baseline),
            "added_cpu_us_per_token": round((braid_cpu - baseline_cpu) * 1e6 / tokens, 2),
            "cpu_us_per_token_through_braid": round(braid_cpu * 1e6 / tokens, 2),
            "cpu_us_per_token_direct": round(baseline_cpu * 1e6 / tokens, 2),
            "wall_s": round(wall, 3),
            "measured": "latency: the stub's chunk send time to the client's receive time, through every braid stage (latency_us_through_braid) and read straight from the stub (latency_us_direct); CPU: this process, stub included, braid run minus direct run, over tokens",
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
