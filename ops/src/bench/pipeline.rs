//! `braid bench pipeline`: CPU spent by the pipeline per streamed token, with the replay
//! executor (so the engine is not measured), in-process and over a real nats-server, at
//! several concurrencies; and bus messages per token.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use braid_actors::{Executing, ExecutorFactory, Node, NodeConfig, Pace, ReplayExecutor};
use braid_bus::{Bus, Collected, Finish, NatsOptions, Prompt, Sampling, Setup, Submit};
use braid_engine::Tokenizer;
use serde_json::json;

use super::round;

/// Options of `braid bench pipeline`.
#[derive(Debug, clap::Args)]
pub(crate) struct PipelineBenchArgs {
    /// Tokenizer folder (the replayed output is tokenized with it).
    #[arg(long, default_value = ".fixtures/tokenizer-qwen3")]
    tokenizer: PathBuf,
    /// Concurrent streams, comma-separated.
    #[arg(long, default_value = "1,100,1000", value_delimiter = ',')]
    streams: Vec<usize>,
    /// Transports, comma-separated: inproc, nats.
    #[arg(long, default_value = "inproc,nats", value_delimiter = ',')]
    transports: Vec<String>,
    /// Tokens each executor step gives each request.
    #[arg(long, default_value_t = 8)]
    tokens_per_step: usize,
    /// Streamed tokens to measure per configuration (spread over its streams).
    #[arg(long, default_value_t = 1_000_000)]
    total_tokens: usize,
    /// The nats-server binary (default: .fixtures/venv/bin/nats-server, then PATH).
    #[arg(long)]
    nats_server: Option<PathBuf>,
}

/// A recorded output of Qwen3 shape: reasoning, then an answer with a tool call.
fn recording(tokens_wanted: usize, tok: &Tokenizer) -> anyhow::Result<(String, usize)> {
    let mut reasoning = String::new();
    let mut i = 0;
    loop {
        let text = format!(
            "<think>\n{reasoning}</think>\n\nThe answer follows.\n<tool_call>\n{{\"name\": \"lookup\", \"arguments\": {{\"q\": \"x\"}}}}\n</tool_call>"
        );
        let n = tok.encode(&text)?.len();
        if n >= tokens_wanted {
            return Ok((text, n));
        }
        reasoning.push_str(&format!("Step {i}: weigh the option, check it twice. "));
        i += 1;
    }
}

/// CPU seconds (user + system) of a process so far, from /proc.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct NatsServer {
    child: Child,
    url: String,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nats(binary: Option<&Path>) -> anyhow::Result<NatsServer> {
    let bin = match binary {
        Some(b) => b.to_path_buf(),
        None => {
            let local = PathBuf::from(".fixtures/venv/bin/nats-server");
            if local.exists() {
                local
            } else {
                PathBuf::from("nats-server")
            }
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (run scripts/setup, or give --nats-server)",
                bin.display()
            )
        })?;
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(NatsServer { child, url });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nats-server did not start on port {port}")
}

fn submit(max_tokens: u32) -> Submit {
    Submit {
        prompt: Prompt::Text("bench".into()),
        sampling: Sampling {
            max_tokens,
            ..Sampling::default()
        },
        constraint: None,
        setup: Setup {
            reasoning_parser: "qwen3".parse().ok(),
            tool_parser: "hermes".parse().ok(),
            skip_special_tokens: true,
            ..Setup::default()
        },
    }
}

/// Sum of a counter family in the Prometheus text.
fn counter_sum(text: &str, name: &str, must_contain: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(must_contain))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) fn run(args: &PipelineBenchArgs) -> anyhow::Result<ExitCode> {
    if args.tokens_per_step == 0 || args.streams.contains(&0) || args.total_tokens == 0 {
        bail!("--tokens-per-step, --streams and --total-tokens must be positive");
    }
    for t in &args.transports {
        if t != "inproc" && t != "nats" {
            bail!("unknown transport {t:?}; known: inproc, nats");
        }
    }
    let tok = Arc::new(Tokenizer::from_dir(&args.tokenizer).with_context(|| {
        format!(
            "loading the tokenizer in {} (run scripts/setup)",
            args.tokenizer.display()
        )
    })?);
    let (output, per_request) = recording(256, &tok)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let metrics = runtime.block_on(async { crate::metrics::install() })?;
    let nats = if args.transports.iter().any(|t| t == "nats") {
        Some(start_nats(args.nats_server.as_deref())?)
    } else {
        None
    };
    let nats_pid = nats.as_ref().map(|n| n.child.id().to_string());
    let configs: Vec<(String, usize)> = args
        .transports
        .iter()
        .flat_map(|t| args.streams.iter().map(move |&s| (t.clone(), s)))
        .collect();
    let bar = crate::progress_bar(configs.len() as u64, "{msg} {bar:30} {pos}/{len}");
    let mut results = Vec::new();
    for (transport, streams) in configs {
        bar.set_message(format!("{transport} × {streams}"));
        let bus = match (&transport[..], &nats) {
            ("nats", Some(n)) => runtime.block_on(Bus::connect(&n.url, &NatsOptions::default()))?,
            _ => Bus::in_process(),
        };
        let rounds = (args.total_tokens / (streams * per_request)).max(1);
        let row = runtime.block_on(measure(
            bus,
            &tok,
            &output,
            args.tokens_per_step,
            streams,
            rounds,
            &metrics,
            nats_pid.as_deref(),
        ))?;
        results.push(json!({
            "transport": transport,
            "streams": streams,
            "tokens": row.tokens,
            "us_per_token": round(row.cpu_s * 1e6 / row.tokens as f64, 3),
            "nats_server_us_per_token": row.nats_cpu_s.map(|c| round(c * 1e6 / row.tokens as f64, 3)),
            "msgs_per_token": round(row.messages / row.tokens as f64, 4),
            "msgs_per_token_per_hop": round(row.messages / 4.0 / row.tokens as f64, 4),
            "tokens_per_s": round(row.tokens as f64 / row.wall_s, 0),
            "wall_s": round(row.wall_s, 3),
            "errors": row.errors,
        }));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = json!({
        "bench": "pipeline",
        "executor": "replay",
        "tokens_per_step": args.tokens_per_step,
        "tokens_per_request": per_request,
        "parsers": {"reasoning": "qwen3", "tools": "hermes"},
        "cpu_measured": "user+system CPU of this process (every stage, the bus client, and the collecting clients) over streamed tokens; nats_server_us_per_token is the nats-server process",
        "hops_counted": "executor→detokenizer→splitter→extractor→braid.out (4 per-token hops)",
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

struct Row {
    tokens: usize,
    cpu_s: f64,
    nats_cpu_s: Option<f64>,
    messages: f64,
    wall_s: f64,
    errors: usize,
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    bus: Bus,
    tok: &Arc<Tokenizer>,
    output: &str,
    tokens_per_step: usize,
    streams: usize,
    rounds: usize,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    nats_pid: Option<&str>,
) -> anyhow::Result<Row> {
    let (t, out) = (Arc::clone(tok), output.to_owned());
    let pace = Pace {
        tokens_per_step,
        interval: Duration::ZERO,
    };
    let factory: ExecutorFactory = Arc::new(move || {
        Ok(Executing::Stepped(Box::new(ReplayExecutor::from_outputs(
            &[(None, out.as_str())],
            Arc::clone(&t),
            pace,
        )?)))
    });
    let config = NodeConfig {
        stages: NodeConfig::all_stages(),
        tokenizer: Some(Arc::clone(tok)),
        executor: Some(factory),
        chat: None,
        max_model_len: None,
        guides: None,
        handoff: None,
        max_inflight: streams + 16,
        submit_timeout: Duration::from_secs(60),
        routing: braid_actors::Routing::default(),
    };
    let node = Node::start(bus, config).await?;
    if !node.wait_ready(Duration::from_secs(10)).await {
        bail!("the pipeline did not come up");
    }
    let ingress = node.ingress.clone().context("no ingress")?;
    // Warm up: one request end to end.
    drive(&ingress, 1).await;
    let messages = |text: &str| counter_sum(text, "braid_bus_messages_total", "direction=\"out\"");
    let msgs_before = messages(&metrics.render());
    let cpu_before = cpu_seconds("self").unwrap_or(0.0);
    let nats_before = nats_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let mut tokens = 0;
    let mut errors = 0;
    for _ in 0..rounds {
        let (t, e) = drive(&ingress, streams).await;
        tokens += t;
        errors += e;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds("self").unwrap_or(0.0) - cpu_before;
    let nats_cpu_s = match (nats_pid.and_then(cpu_seconds), nats_before) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    // Messages other than the four per-token hops (tokenizer replies, prefills) are
    // counted too; they are per request, not per token.
    let messages = messages(&metrics.render()) - msgs_before;
    node.shutdown().await;
    Ok(Row {
        tokens,
        cpu_s,
        nats_cpu_s,
        messages,
        wall_s,
        errors,
    })
}

/// Runs `streams` concurrent requests to the end; returns (tokens streamed, errors).
async fn drive(ingress: &braid_bus::Client, streams: usize) -> (usize, usize) {
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let ingress = ingress.clone();
        tasks.push(tokio::spawn(async move {
            let mut response = ingress.submit(submit(4096)).await.ok()?;
            let mut all = Collected::default();
            while let Some(chunk) = response.next().await {
                all.push(&chunk);
            }
            match all.finish {
                Some(Finish::Stop) => all.usage.map(|u| u.completion_tokens as usize),
                _ => None,
            }
        }));
    }
    let (mut tokens, mut errors) = (0, 0);
    for t in tasks {
        match t.await.ok().flatten() {
            Some(n) => tokens += n,
            None => errors += 1,
        }
    }
    (tokens, errors)
}
