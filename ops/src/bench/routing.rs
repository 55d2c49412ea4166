//! `braid bench routing`: what prefix-aware routing buys. Multi-round conversations with
//! a long shared system prompt and a long first turn of their own (a file an agent read),
//! every round re-sending the whole conversation plus a short tool result after a pause
//! (the tool running), as agents do, run against braid's engine on one executor replica,
//! then on two with `--executor-routing prefix`, then on two with `round-robin`, in one
//! run: the prefix-cache hit rate (prompt tokens served from cache over prompt tokens),
//! TTFT of the rounds after the first, and requests per replica.
//!
//! Every run has the same KV memory: the one replica holds what the two hold between
//! them. By default that is the conversations' working set plus a quarter, as a cache
//! sized for its sessions would be. Routed by prefix, each conversation lives on one
//! replica; in turn, it ends up on both, so each replica's cache must hold twice as much
//! and evicts what the next round needed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use braid_actors::{EngineExecutor, Executing, ExecutorFactory, Node, NodeConfig, Routing};
use braid_bus::{Bus, Finish, InstanceId, Prompt, Sampling, Setup, Stage, Submit};
use braid_engine::{load_model, Engine, EngineConfig, KvCache, ModelConfig, Tokenizer};
use candle_core::{DType, Device};
use serde_json::json;

use super::round;

/// Options of `braid bench routing`.
#[derive(Debug, clap::Args)]
pub(crate) struct RoutingBenchArgs {
    /// A model folder (e.g. from `braid fixture qwen3 --layers 4 --hidden 256`).
    #[arg(long)]
    model: PathBuf,
    /// Conversations running at once.
    #[arg(long, default_value_t = 12)]
    conversations: usize,
    /// Rounds per conversation.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Tokens of the system prompt every conversation shares.
    #[arg(long, default_value_t = 512)]
    system_tokens: usize,
    /// Tokens of each conversation's own first turn.
    #[arg(long, default_value_t = 1024)]
    first_turn_tokens: usize,
    /// Tokens each later round adds (the tool result the next round sends back).
    #[arg(long, default_value_t = 64)]
    turn_tokens: usize,
    /// Longest pause between rounds (the tool running), milliseconds; each pause is
    /// drawn between 0 and this.
    #[arg(long, default_value_t = 1000)]
    tool_ms: u64,
    /// Milliseconds between two conversations' starts (agents do not all begin at once).
    #[arg(long, default_value_t = 250)]
    stagger_ms: u64,
    /// Tokens generated per round.
    #[arg(long, default_value_t = 8)]
    output_tokens: u32,
    /// Executor replicas in the routed runs.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// KV cache per executor replica in the routed runs, MiB; the one-replica run gets
    /// all of theirs (the same memory in one place). Default: the conversations' working
    /// set once, plus a quarter, shared out over the replicas (a cache sized for its
    /// sessions, as deployments size it).
    #[arg(long)]
    kv_cache_mib: Option<usize>,
    /// Tokens one engine step may take (prompts longer than this prefill in chunks).
    #[arg(long, default_value_t = 2048)]
    max_num_batched_tokens: usize,
}

/// One round as the client saw it.
struct Round {
    round: usize,
    ttft_ms: f64,
    prompt: u32,
    cached: u32,
    executor: Option<InstanceId>,
}

/// Deterministic token ids for conversation `c`, part `part` (below the special tokens).
fn tokens(c: usize, part: usize, n: usize) -> Vec<u32> {
    let mut x = (c as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (part as u64).wrapping_add(7).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 150_000) as u32
        })
        .collect()
}

/// The shape of every conversation.
#[derive(Debug, Clone, Copy)]
struct Shape {
    rounds: usize,
    system: usize,
    first: usize,
    turn: usize,
    output: u32,
    tool_ms: u64,
    stagger_ms: u64,
}

/// Runs one conversation to its end.
async fn conversation(ingress: braid_bus::Client, c: usize, shape: Shape) -> Vec<Round> {
    let Shape {
        rounds,
        system,
        first,
        turn,
        output,
        tool_ms,
        stagger_ms,
    } = shape;
    tokio::time::sleep(Duration::from_millis(stagger_ms * c as u64)).await;
    let mut prompt = tokens(usize::MAX, 0, system);
    prompt.extend(tokens(c, 0, first));
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let submit = Submit {
            prompt: Prompt::Tokens(prompt.clone()),
            sampling: Sampling {
                max_tokens: output,
                ignore_eos: true,
                ..Sampling::default()
            },
            constraint: None,
            setup: Setup::default(),
        };
        let started = Instant::now();
        let Ok(mut response) = ingress.submit(submit).await else {
            break;
        };
        let executor = response.executor;
        let mut ttft = None;
        let mut usage = None;
        let mut ok = false;
        while let Some(chunk) = response.next().await {
            if !chunk.deltas.is_empty() && ttft.is_none() {
                ttft = Some(started.elapsed());
            }
            if let Some(f) = &chunk.finish {
                ok = matches!(f, Finish::Length | Finish::Stop);
                usage = chunk.usage;
            }
        }
        let (Some(ttft), Some(usage), true) = (ttft, usage, ok) else {
            break;
        };
        out.push(Round {
            round,
            ttft_ms: ttft.as_secs_f64() * 1e3,
            prompt: usage.prompt_tokens,
            cached: usage.cached_tokens,
            executor,
        });
        prompt.extend(tokens(c, round + 1, turn));
        let pause = tokens(c, 1000 + round, 1)[0] as u64 % (tool_ms + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Runs every conversation on a node with `replicas` executors routed by `routing`.
async fn measure(
    args: &RoutingBenchArgs,
    factory: &ExecutorFactory,
    tok: &Arc<Tokenizer>,
    replicas: usize,
    routing: Routing,
) -> anyhow::Result<serde_json::Value> {
    let mut stages = NodeConfig::all_stages();
    for s in &mut stages {
        if s.0 == Stage::Executor {
            s.1 = replicas;
        }
    }
    let config = NodeConfig {
        stages,
        tokenizer: Some(Arc::clone(tok)),
        executor: Some(Arc::clone(factory)),
        chat: None,
        max_model_len: None,
        guides: None,
        handoff: None,
        max_inflight: args.conversations + 16,
        submit_timeout: Duration::from_secs(120),
        routing,
    };
    let node = Node::start(Bus::in_process(), config).await?;
    if !node.wait_ready(Duration::from_secs(30)).await {
        bail!("the pipeline did not come up");
    }
    let ingress = node.ingress.clone().context("no ingress")?;
    let shape = Shape {
        rounds: args.rounds,
        system: args.system_tokens,
        first: args.first_turn_tokens,
        turn: args.turn_tokens,
        output: args.output_tokens,
        tool_ms: args.tool_ms,
        stagger_ms: args.stagger_ms,
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.conversations)
        .map(|c| tokio::spawn(conversation(ingress.clone(), c, shape)))
        .collect();
    let mut rounds = Vec::new();
    for t in tasks {
        rounds.extend(t.await?);
    }
    let wall_s = started.elapsed().as_secs_f64();
    node.shutdown().await;
    let expected = args.conversations * args.rounds;
    let (prompt, cached) = rounds.iter().fold((0u64, 0u64), |(p, c), r| {
        (p + r.prompt as u64, c + r.cached as u64)
    });
    let mut later: Vec<f64> = rounds.iter().filter(|r| r.round > 0).map(|r| r.ttft_ms).collect();
    later.sort_by(f64::total_cmp);
    let mut per_replica: HashMap<InstanceId, usize> = HashMap::new();
    for r in &rounds {
        if let Some(e) = r.executor {
            *per_replica.entry(e).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = per_replica.into_values().collect();
    counts.sort_unstable();
    let spread = match (counts.first(), counts.last()) {
        (Some(&lo), Some(&hi)) if counts.len() == replicas && hi > 0 => (hi - lo) as f64 / hi as f64,
        _ => 1.0,
    };
    Ok(json!({
        "replicas": replicas,
        "routing": match routing { Routing::Prefix => "prefix", Routing::RoundRobin => "round-robin" },
        "requests": rounds.len(),
        "errors": expected - rounds.len(),
        "prefix_cache_hit_rate": round(cached as f64 / prompt.max(1) as f64, 4),
        "ttft_ms_rounds_after_first": {
            "mean": round(later.iter().sum::<f64>() / later.len().max(1) as f64, 2),
            "p50": round(percentile(&later, 0.5), 2),
            "p90": round(percentile(&later, 0.9), 2),
            "p99": round(percentile(&later, 0.99), 2),
        },
        "requests_per_replica": counts,
        "replica_spread": round(spread, 3),
        "wall_s": round(wall_s, 2),
    }))
}

pub(crate) fn run(args: &RoutingBenchArgs) -> anyhow::Result<ExitCode> {
    if args.conversations == 0 || args.rounds < 2 || args.turn_tokens == 0 || args.replicas == 0 {
        bail!("--conversations, --replicas and --turn-tokens must be positive and --rounds at least 2");
    }
    let cfg = ModelConfig::from_dir(&args.model)?;
    let tok = Arc::new(Tokenizer::from_dir(&args.model)?);
    let own = args.first_turn_tokens + (args.turn_tokens + args.output_tokens as usize) * args.rounds;
    let longest = args.system_tokens + own;
    let kv_cache_mib = args.kv_cache_mib.unwrap_or_else(|| {
        let working_set =
            (args.system_tokens + args.conversations * own) * KvCache::bytes_per_token(&cfg, DType::F32);
        (working_set * 5 / 4 / args.replicas).div_ceil(1 << 20)
    });
    // An executor factory whose engines hold `mib` of KV cache.
    let executors = |mib: usize| -> anyhow::Result<ExecutorFactory> {
        let block_size = 16;
        let num_blocks = KvCache::blocks_for_budget(&cfg, mib << 20, block_size, DType::F32);
        if num_blocks * block_size < longest {
            bail!(
                "{mib} MiB of KV cache holds {} tokens; a conversation reaches {longest}",
                num_blocks * block_size
            );
        }
        let engine_cfg = EngineConfig {
            block_size,
            num_blocks,
            max_model_len: num_blocks * block_size,
            max_num_batched_tokens: args.max_num_batched_tokens,
            enable_prefix_caching: true,
            ..EngineConfig::default()
        };
        let dir = args.model.clone();
        Ok(Arc::new(move || {
            let model = load_model(&dir, DType::F32, &Device::Cpu, &mut |_, _| {})
                .map_err(|e| braid_actors::StageError::Config(e.to_string()))?;
            let engine = Engine::new(model, Vec::new(), engine_cfg.clone())
                .map_err(|e| braid_actors::StageError::Config(e.to_string()))?;
            Ok(Executing::Stepped(Box::new(EngineExecutor::new(
                engine, None, None,
            ))))
        }))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bar = crate::progress_bar(3, "{msg} {bar:30} {pos}/{len}");
    let mut runs = Vec::new();
    for (replicas, routing, what) in [
        (1, Routing::Prefix, "one replica"),
        (args.replicas, Routing::Prefix, "replicas routed by prefix"),
        (args.replicas, Routing::RoundRobin, "replicas in turn"),
    ] {
        bar.set_message(what);
        let mib = kv_cache_mib * args.replicas / replicas;
        let factory = executors(mib)?;
        let mut run = runtime.block_on(measure(args, &factory, &tok, replicas, routing))?;
        run["kv_cache_mib_per_replica"] = json!(mib);
        runs.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let figure = |i: usize, path: &str| {
        runs[i]
            .pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    // Round robin's TTFT over prefix routing's, at one statistic.
    let speedup = |stat: &str| {
        let at = |i| figure(i, &format!("/ttft_ms_rounds_after_first/{stat}"));
        round(at(2) / at(1).max(1e-9), 2)
    };
    let report = json!({
        "bench": "routing",
        "model": args.model.display().to_string(),
        "conversations": args.conversations,
        "rounds": args.rounds,
        "system_tokens": args.system_tokens,
        "first_turn_tokens": args.first_turn_tokens,
        "turn_tokens": args.turn_tokens,
        "tool_ms": args.tool_ms,
        "stagger_ms": args.stagger_ms,
        "output_tokens": args.output_tokens,
        "runs": runs,
        "prefix_vs_round_robin": {
            "ttft_mean_speedup": speedup("mean"),
            "ttft_p50_speedup": speedup("p50"),
            "ttft_p99_speedup": speedup("p99"),
            "hit_rate_gap_to_one_replica": round(figure(0, "/prefix_cache_hit_rate") - figure(1, "/prefix_cache_hit_rate"), 4),
        },
        "measured": "hit rate: prompt tokens served from a prefix cache over prompt tokens, all rounds (usage.cached_tokens); TTFT: submit to first streamed token, rounds 2+; replica_spread: (most - fewest requests) / most",
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
