//! `braid bench structured --model DIR`: what structured outputs cost the engine. Decode
//! tok/s at one batch size with and without a JSON-schema guide on every sequence, in
//! the same run and alternated, and the mask time per guided token (computed beside the
//! forward pass) with how long steps waited for masks after the forward was done.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use braid_engine::{
    load_model, Engine, EngineConfig, EngineStats, Guides, KvCache, ModelConfig, Request, SamplingParams,
    Tokenizer,
};
use candle_core::{DType, Device};
use serde_json::json;

use super::round;

/// Options of `braid bench structured`.
#[derive(Debug, clap::Args)]
pub(crate) struct StructuredBenchArgs {
    /// A model folder with its tokenizer (e.g. from `braid fixture qwen3`).
    #[arg(long)]
    model: PathBuf,
    /// Sequences decoding together.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Decode steps timed per run.
    #[arg(long, default_value_t = 64)]
    steps: usize,
    /// Runs of each kind, alternated (the best of each is reported beside the mean).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Long enough that no sequence finishes within the timed steps.
fn schema() -> serde_json::Value {
    json!({
        "type": "array",
        "minItems": 200,
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "integer", "minimum": 0, "maximum": 999},
                "kind": {"enum": ["cat", "dog", "bird"]},
                "name": {"type": "string", "maxLength": 12},
                "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
            },
            "required": ["id", "kind", "name", "tags"],
            "additionalProperties": false,
        },
    })
}

/// One timed decode: tok/s and the engine counters it moved.
fn run_once(
    e: &mut Engine,
    args: &StructuredBenchArgs,
    guide: Option<&str>,
    first_id: u64,
) -> anyhow::Result<(f64, EngineStats)> {
    for b in 0..args.batch {
        e.add(Request {
            id: first_id + b as u64,
            prompt: vec![(b as u32 * 7919 + 13) % 5000 + 100; 16],
            sampling: SamplingParams {
                seed: Some(b as u64),
                ..SamplingParams::default()
            },
            max_tokens: args.steps + 1,
            stop_token_ids: vec![],
            ignore_eos: true,
            guide: guide.map(str::to_owned),
            reasoning: None,
        })?;
    }
    // Prefill until every sequence has its first token.
    let mut started = 0;
    while started < args.batch {
        started += e.step()?.len();
    }
    let before = e.stats();
    let t = Instant::now();
    let mut produced = 0;
    while e.has_work() {
        produced += e.step()?.iter().filter(|o| o.token.is_some()).count();
    }
    let secs = t.elapsed().as_secs_f64();
    let after = e.stats();
    let delta = EngineStats {
        masks: after.masks - before.masks,
        mask_ns: after.mask_ns - before.mask_ns,
        mask_wait_ns: after.mask_wait_ns - before.mask_wait_ns,
        ..EngineStats::default()
    };
    Ok((produced as f64 / secs, delta))
}

pub(crate) fn run(args: &StructuredBenchArgs) -> anyhow::Result<ExitCode> {
    if args.batch == 0 || args.steps == 0 || args.rounds == 0 {
        bail!("--batch, --steps and --rounds must be positive");
    }
    let cfg = ModelConfig::from_dir(&args.model)?;
    let bar = crate::progress_bar((args.rounds * 2) as u64, "{msg} {bar:30} {pos}/{len}");
    bar.set_message("loading");
    let model = load_model(&args.model, DType::F32, &Device::Cpu, &mut |_, _| {})?;
    let tokenizer = Tokenizer::from_dir(&args.model)?;
    let t = Instant::now();
    let guides = Guides::new(&tokenizer).map_err(anyhow::Error::msg)?;
    let index_ms = t.elapsed().as_secs_f64() * 1e3;
    let lark = braid_parsers::grammar::json_schema(&schema());
    let t = Instant::now();
    guides.compile(&lark).map_err(anyhow::Error::msg)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let block_size = 16;
    let num_blocks = KvCache::blocks_for_budget(&cfg, 512 << 20, block_size, DType::F32);
    let mut e = Engine::new(
        model,
        vec![],
        EngineConfig {
            block_size,
            num_blocks,
            max_model_len: cfg.max_position_embeddings.min(num_blocks * block_size),
            ..Default::default()
        },
    )?;
    e.set_guides(guides);

    let mut free = Vec::new();
    let mut guided = Vec::new();
    let mut masks = EngineStats::default();
    let mut id = 0;
    for round_no in 0..args.rounds {
        bar.set_message(format!("round {}: unconstrained", round_no + 1));
        free.push(run_once(&mut e, args, None, id)?.0);
        id += args.batch as u64;
        bar.inc(1);
        bar.set_message(format!("round {}: JSON schema", round_no + 1));
        let (tok_s, s) = run_once(&mut e, args, Some(&lark), id)?;
        id += args.batch as u64;
        guided.push(tok_s);
        masks.masks += s.masks;
        masks.mask_ns += s.mask_ns;
        masks.mask_wait_ns += s.mask_wait_ns;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let per_mask_us = masks.mask_ns as f64 / masks.masks.max(1) as f64 / 1e3;
    let wait_us = masks.mask_wait_ns as f64 / masks.masks.max(1) as f64 / 1e3;
    let report = json!({
        "model": args.model,
        "params": cfg.num_params(),
        "vocab": cfg.vocab_size,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "batch": args.batch,
        "steps": args.steps,
        "rounds": args.rounds,
        "grammar": "JSON schema: an array of >=200 objects (integer range, enum, bounded string, boolean array)",
        "vocab_index_ms": round(index_ms, 1),
        "grammar_compile_ms": round(compile_ms, 2),
        "unconstrained_tok_s": {"mean": round(mean(&free), 1), "best": round(best(&free), 1)},
        "constrained_tok_s": {"mean": round(mean(&guided), 1), "best": round(best(&guided), 1)},
        "constrained_vs_unconstrained_pct": round((mean(&guided) / mean(&free) - 1.0) * 100.0, 1),
        "mask_us_per_token": round(per_mask_us, 1),
        "mask_wait_us_per_token": round(wait_us, 1),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
