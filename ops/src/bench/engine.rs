//! `braid bench engine --model DIR`: the engine's speed on a model folder, with
//! candle-transformers' model of the same architecture (Qwen3, Qwen3-MoE) on the same
//! weights as the reference, in one run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use braid_engine::{
    load_model, Architecture, Engine, EngineConfig, KvCache, Model, ModelConfig, Request, SamplingParams,
};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use super::round;

/// Options of `braid bench engine`.
#[derive(Debug, clap::Args)]
pub(crate) struct EngineBenchArgs {
    /// A model folder (e.g. from `braid fixture qwen3 --preset qwen3-0.6b`) or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Weight dtype: f32 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Prompt length for the prefill and TTFT figures.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Decode steps timed per batch size.
    #[arg(long, default_value_t = 32)]
    decode_steps: usize,
    /// Batch sizes for decode.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batches: Vec<usize>,
    /// Also time a batch-1 decode after a prompt this long (0: not), as every tool round
    /// of a long conversation decodes: the attention then reads the whole context.
    #[arg(long, default_value_t = 0)]
    long_context: usize,
    /// Shared prefix for the prefix-cache TTFT figure.
    #[arg(long, default_value_t = 2048)]
    shared_prefix: usize,
    /// KV cache budget in MiB.
    #[arg(long, default_value_t = 2048)]
    kv_cache_mib: usize,
    /// A Python with llama-cpp-python (scripts/setup makes `.fixtures/venv/bin/python`):
    /// on a GGUF model, llama.cpp runs the same prefill prompt and a batch-1 decode after
    /// the same 16-token prompt, on the same file and threads, in this run; the report
    /// gains its figures and braid's ratios.
    #[arg(long)]
    llama_cpp: Option<PathBuf>,
    /// Runs of each timed figure (prefill, each decode batch, the long context, and
    /// llama.cpp's, in turns); the report gives each figure's median and, past one run,
    /// every run's value under `runs`. A shared VM's figures swing ±15% and more from one
    /// run to the next.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

/// `tests/clients/llama_bench.py`: llama.cpp measured as this bench measures braid.
const LLAMA_BENCH: &str = include_str!("../../../tests/clients/llama_bench.py");

/// llama.cpp's prefill and batch-1 decodes (after 16 tokens, and after `--long-context`
/// ones) on the same GGUF file, prompts and threads.
fn llama_cpp(python: &Path, args: &EngineBenchArgs, threads: usize) -> anyhow::Result<Value> {
    if !braid_engine::gguf::is_gguf(&args.model) {
        bail!(
            "--llama-cpp compares on a GGUF file; {} is not one",
            args.model.display()
        );
    }
    let script = std::env::temp_dir().join(format!("braid-llama-bench-{}.py", std::process::id()));
    std::fs::write(&script, LLAMA_BENCH).context("writing the llama.cpp bench script")?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg("--gguf")
        .arg(&args.model)
        .args(["--prompt-tokens", &args.prompt_tokens.to_string()])
        .args(["--decode-steps", &args.decode_steps.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--long-context", &args.long_context.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()));
    let _ = std::fs::remove_file(&script);
    let out = out?;
    if !out.status.success() {
        bail!(
            "llama.cpp's bench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("llama.cpp's bench printed {last:?}"))
}

/// llama.cpp's timed figures, of which [`medians`] takes each one's median.
const LLAMA_TIMED: &[&str] = &[
    "prefill_tok_s",
    "ttft_ms",
    "decode_tok_s",
    "prefill_long_context_tok_s",
    "decode_long_context_tok_s",
];

/// The first of `runs` with each of `timed` replaced by its median over the runs that
/// have it, and every run's values of `timed` under `runs` (past one run).
fn medians(runs: &[Value], timed: &[&str]) -> Value {
    let mut out = runs.first().cloned().unwrap_or(Value::Null);
    if runs.len() > 1 {
        let mut each = serde_json::Map::new();
        for &key in timed {
            let values: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
            if !values.is_empty() {
                out[key] = json!(round(median(&values), 2));
                each.insert(
                    key.into(),
                    json!(values.iter().map(|v| round(*v, 2)).collect::<Vec<_>>()),
                );
            }
        }
        out["runs"] = Value::Object(each);
    }
    out
}

/// The median of `values` (the mean of the middle two for an even count; 0 for none).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Every run's value of braid's timed figures (`--repeat`).
#[derive(Default)]
struct Runs {
    ttft_ms: Vec<f64>,
    /// Tokens per second at each batch size.
    decode: Vec<(usize, Vec<f64>)>,
    long_prefill_tok_s: Vec<f64>,
    long_decode_tok_s: Vec<f64>,
}

impl Runs {
    /// The runs' values as the report lists them.
    fn report(&self, prompt_tokens: usize) -> Value {
        let rounded = |v: &[f64]| v.iter().map(|x| round(*x, 2)).collect::<Vec<_>>();
        let prefill: Vec<f64> = self
            .ttft_ms
            .iter()
            .map(|ms| prompt_tokens as f64 / (ms / 1e3))
            .collect();
        json!({
            "prefill_tok_s": rounded(&prefill),
            "decode": self.decode.iter().map(|(batch, v)| json!({"batch": batch, "tok_s": rounded(v)})).collect::<Vec<_>>(),
            "long_context_prefill_tok_s": rounded(&self.long_prefill_tok_s),
            "long_context_decode_tok_s": rounded(&self.long_decode_tok_s),
        })
    }
}

fn dtype(name: &str) -> anyhow::Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        other => bail!("unknown --dtype {other:?}; known: f32, bf16"),
    }
}

/// Deterministic prompt tokens inside the vocabulary.
fn tokens(n: usize, salt: u32, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(salt) >> 7) % vocab as u32)
        .collect()
}

fn engine(model: Model, cfg: &ModelConfig, args: &EngineBenchArgs, dt: DType) -> anyhow::Result<Engine> {
    let block_size = 16;
    let num_blocks = KvCache::blocks_for_budget(cfg, args.kv_cache_mib << 20, block_size, dt);
    let max_model_len = cfg.max_position_embeddings.min(num_blocks * block_size);
    Ok(Engine::new(
        model,
        vec![],
        EngineConfig {
            block_size,
            num_blocks,
            max_model_len,
            max_num_batched_tokens: 4096,
            ..Default::default()
        },
    )?)
}

fn request(id: u64, prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        id,
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop_token_ids: vec![],
        ignore_eos: true,
        guide: None,
        reasoning: None,
    }
}

/// Runs until request `id` has its first token; milliseconds taken.
fn time_to_first_token(e: &mut Engine, id: u64) -> anyhow::Result<f64> {
    let t = Instant::now();
    loop {
        if e.step()?.iter().any(|o| o.id == id && o.token.is_some()) {
            return Ok(t.elapsed().as_secs_f64() * 1e3);
        }
        if !e.has_work() {
            bail!("request {id} finished without a token");
        }
    }
}

/// Runs a 64-token prompt (other tokens than any timed one) through a fresh engine, so
/// that what a kernel does once per weight on its first use (candle repacks quantized
/// weights into tiles) is not timed as prefill: llama.cpp does it while loading.
fn warm_up(e: &mut Engine, vocab: usize) -> anyhow::Result<()> {
    const WARM_UP: u64 = u64::MAX;
    // A salt in the high bits: the timed prompts' salts are small, and `tokens` shifts the low
    // bits out, so this prompt shares no block with theirs.
    e.add(request(WARM_UP, tokens(64, 0x5bd1_e995, vocab), 1))?;
    time_to_first_token(e, WARM_UP)?;
    while e.has_work() {
        e.step()?;
    }
    Ok(())
}

/// Decode tokens per second at `batch`, and the greedy tokens of request 0.
fn decode(e: &mut Engine, batch: usize, steps: usize, vocab: usize) -> anyhow::Result<(f64, Vec<u32>)> {
    let (tok_s, first, _) = decode_after(e, batch, 16, steps, vocab)?;
    Ok((tok_s, first))
}

/// [`decode`] after prompts of `context` tokens; also the seconds until every sequence
/// had its first token (the prefill).
fn decode_after(
    e: &mut Engine,
    batch: usize,
    context: usize,
    steps: usize,
    vocab: usize,
) -> anyhow::Result<(f64, Vec<u32>, f64)> {
    let prefill = Instant::now();
    for b in 0..batch {
        e.add(request(b as u64, tokens(context, b as u32 + 1, vocab), steps + 1))?;
    }
    let mut first: Vec<u32> = Vec::new();
    // Prefill until every sequence has its first token.
    let mut started = 0;
    while started < batch {
        for o in e.step()? {
            if o.id == 0 {
                first.extend(o.token.map(|t| t.token));
            }
            started += 1;
        }
    }
    let prefill = prefill.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut produced = 0;
    while e.has_work() {
        for o in e.step()? {
            produced += 1;
            if o.id == 0 {
                first.extend(o.token.map(|t| t.token));
            }
        }
    }
    Ok((produced as f64 / t.elapsed().as_secs_f64(), first, prefill))
}

/// A candle-transformers decoder over `config.json` and the weights: `forward(input, offset)`.
type ReferenceModel = Box<dyn FnMut(&Tensor, usize) -> candle_core::Result<Tensor>>;

/// candle-transformers' model of the same architecture on the same weights, and its
/// name; `None` for architectures it is not compared against.
fn reference_model(
    args: &EngineBenchArgs,
    arch: Architecture,
    dt: DType,
) -> anyhow::Result<Option<(&'static str, ReferenceModel)>> {
    if braid_engine::gguf::is_gguf(&args.model) {
        return gguf_reference_model(args, arch);
    }
    let config = std::fs::read_to_string(args.model.join("config.json"))?;
    let mut tensors = HashMap::new();
    for file in braid_engine::weights::safetensors_files(&args.model)? {
        tensors.extend(candle_core::safetensors::load(&file, &Device::Cpu)?);
    }
    let vb = candle_nn::VarBuilder::from_tensors(tensors, dt, &Device::Cpu);
    let context = "config.json as candle-transformers reads it";
    Ok(match arch {
        Architecture::Qwen3 => {
            use candle_transformers::models::qwen3;
            let config: qwen3::Config = serde_json::from_str(&config).context(context)?;
            let mut m = qwen3::ModelForCausalLM::new(&config, vb)?;
            Some((
                "candle-transformers qwen3 (single sequence)",
                Box::new(move |x, o| m.forward(x, o)),
            ))
        }
        Architecture::Qwen3Moe => {
            use candle_transformers::models::qwen3_moe;
            let config: qwen3_moe::Config = serde_json::from_str(&config).context(context)?;
            let mut m = qwen3_moe::ModelForCausalLM::new(&config, vb)?;
            Some((
                "candle-transformers qwen3_moe (single sequence)",
                Box::new(move |x, o| m.forward(x, o)),
            ))
        }
        _ => None,
    })
}

/// candle-transformers' own GGUF model on the same file (the same quantized kernels, its
/// own decoder) for Qwen3; its `quantized_qwen3_moe` runs experts on CUDA only.
fn gguf_reference_model(
    args: &EngineBenchArgs,
    arch: Architecture,
) -> anyhow::Result<Option<(&'static str, ReferenceModel)>> {
    use candle_core::quantized::gguf_file::Content;
    use candle_transformers::models::quantized_qwen3;
    if arch != Architecture::Qwen3 {
        return Ok(None);
    }
    let mut file = std::fs::File::open(&args.model)?;
    let content = Content::read(&mut file)?;
    let mut m = quantized_qwen3::ModelWeights::from_gguf(content, &mut file, &Device::Cpu)?;
    Ok(Some((
        "candle-transformers quantized_qwen3 (single sequence)",
        Box::new(move |x, o| m.forward(x, o)),
    )))
}

/// The reference's single-sequence greedy decode: tokens per second and its tokens.
fn reference(model: &mut ReferenceModel, steps: usize, vocab: usize) -> anyhow::Result<(f64, Vec<u32>)> {
    let prompt = tokens(16, 1, vocab);
    let greedy = |logits: Tensor| -> anyhow::Result<u32> {
        Ok(logits
            .flatten_all()?
            .to_dtype(DType::F32)?
            .argmax(0)?
            .to_scalar::<u32>()?)
    };
    let mut next = greedy(model(
        &Tensor::new(prompt.as_slice(), &Device::Cpu)?.unsqueeze(0)?,
        0,
    )?)?;
    let mut out = vec![next];
    let t = Instant::now();
    for step in 0..steps {
        let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
        next = greedy(model(&input, prompt.len() + step)?)?;
        out.push(next);
    }
    Ok((steps as f64 / t.elapsed().as_secs_f64(), out))
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn run(args: &EngineBenchArgs) -> anyhow::Result<ExitCode> {
    let dt = dtype(&args.dtype)?;
    if args.batches.is_empty()
        || args.batches.contains(&0)
        || args.prompt_tokens == 0
        || args.decode_steps == 0
        || args.repeat == 0
    {
        bail!("--batches, --prompt-tokens, --decode-steps and --repeat must be positive");
    }
    let cfg = ModelConfig::from_dir(&args.model)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // llama.cpp first, so neither side gains from running second (warm page cache).
    let llama = match &args.llama_cpp {
        Some(python) => {
            let runs = (0..args.repeat)
                .map(|_| llama_cpp(python, args, threads))
                .collect::<anyhow::Result<Vec<Value>>>()?;
            Some(medians(&runs, LLAMA_TIMED))
        }
        None => None,
    };
    let mut runs = Runs::default();
    let gguf_types = if braid_engine::gguf::is_gguf(&args.model) {
        Some(braid_engine::gguf::Gguf::open(&args.model)?.dtype_counts())
    } else {
        None
    };
    let bar = crate::progress_bar(cfg.num_layers as u64, "{msg} {bar:30} {pos}/{len}");
    bar.set_message("loading layers");
    let load = |bar: &indicatif::ProgressBar| {
        load_model(&args.model, dt, &Device::Cpu, &mut |done, _| {
            bar.set_position(done as u64)
        })
    };
    let vocab = cfg.vocab_size;
    let step = |msg: &str| {
        bar.set_message(msg.to_owned());
        bar.set_length(1);
        bar.set_position(0);
    };

    // Prefill and time to first token.
    let mut e = engine(load(&bar)?, &cfg, args, dt)?;
    step("prefill");
    warm_up(&mut e, vocab)?;
    for run in 0..args.repeat {
        // Each run's prompt shares no block with another's (`tokens` drops a salt's low
        // 7 bits).
        let salt = 7 + ((run as u32) << 16);
        e.add(request(
            run as u64 + 1,
            tokens(args.prompt_tokens, salt, vocab),
            1,
        ))?;
        runs.ttft_ms.push(time_to_first_token(&mut e, run as u64 + 1)?);
    }
    let ttft_ms = median(&runs.ttft_ms);
    let prefill_tok_s = args.prompt_tokens as f64 / (ttft_ms / 1e3);
    // The high-water mark so far: the model's pages, the cache, and the prefill's scratch.
    let prefill_peak_rss_mb = peak_rss_mb();
    drop(e);

    // The reference first, so neither side gains from running second (warm caches).
    step("candle-transformers reference");
    let reference_run = match reference_model(args, cfg.architecture, dt)? {
        Some((name, mut model)) => Some((name, reference(&mut model, args.decode_steps, vocab)?)),
        None => None,
    };

    // Decode at each batch size, on a fresh engine each time.
    let mut rows = Vec::new();
    let mut batch1_tokens = Vec::new();
    for &batch in &args.batches {
        step(&format!("decode batch {batch}"));
        let mut each = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            let mut e = engine(load(&bar)?, &cfg, args, dt)?;
            let (tok_s, first) = decode(&mut e, batch, args.decode_steps, vocab)?;
            if batch == 1 {
                batch1_tokens = first;
            }
            each.push(tok_s);
        }
        rows.push(json!({"batch": batch, "tok_s": round(median(&each), 2)}));
        runs.decode.push((batch, each));
    }
    let long = match args.long_context {
        0 => None,
        context => {
            step(&format!("decode after {context} tokens"));
            for _ in 0..args.repeat {
                let mut e = engine(load(&bar)?, &cfg, args, dt)?;
                warm_up(&mut e, vocab)?;
                let (tok_s, _, prefill) = decode_after(&mut e, 1, context, args.decode_steps, vocab)?;
                runs.long_prefill_tok_s.push(context as f64 / prefill);
                runs.long_decode_tok_s.push(tok_s);
            }
            Some(json!({
                "context": context,
                "prefill_tok_s": round(median(&runs.long_prefill_tok_s), 2),
                "batch": 1,
                "tok_s": round(median(&runs.long_decode_tok_s), 2),
            }))
        }
    };

    // Prefix cache: the same long prefix twice, with different endings.
    step("prefix cache");
    let mut e = engine(load(&bar)?, &cfg, args, dt)?;
    let prefix = tokens(args.shared_prefix, 11, vocab);
    let with_end = |end: u32| {
        prefix
            .iter()
            .copied()
            .chain(tokens(16, end, vocab))
            .collect::<Vec<u32>>()
    };
    e.add(request(1, with_end(1), 1))?;
    let ttft_cold_ms = time_to_first_token(&mut e, 1)?;
    e.add(request(2, with_end(2), 1))?;
    let ttft_warm_ms = time_to_first_token(&mut e, 2)?;
    let hit_tokens = e.stats().prefix_hit_tokens;
    bar.finish_and_clear();

    let batch1 = rows
        .iter()
        .find(|r| r["batch"] == 1)
        .and_then(|r| r["tok_s"].as_f64());
    let vs_llama_cpp = llama.as_ref().map(|l| {
        let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(a), Some(b)) if b > 0.0 => Some(round(a / b, 2)),
            _ => None,
        };
        json!({
            "prefill": ratio(Some(prefill_tok_s), l["prefill_tok_s"].as_f64()),
            "decode_batch1": ratio(batch1, l["decode_tok_s"].as_f64()),
            "prefill_long_context": ratio(
                long.as_ref().and_then(|r| r["prefill_tok_s"].as_f64()),
                l["prefill_long_context_tok_s"].as_f64()
            ),
            "decode_long_context": ratio(
                long.as_ref().and_then(|r| r["tok_s"].as_f64()),
                l["decode_long_context_tok_s"].as_f64()
            ),
        })
    });
    let report = json!({
        "model": args.model,
        "dtype": args.dtype,
        "architecture": format!("{:?}", cfg.architecture),
        "params": cfg.num_params(),
        "active_params": cfg.active_params(),
        "gguf_tensor_types": gguf_types,
        "threads": threads,
        "prefill_tokens": args.prompt_tokens,
        "prefill_tok_s": round(prefill_tok_s, 2),
        "prefill_peak_rss_mb": prefill_peak_rss_mb.map(|x| round(x, 2)),
        "ttft_ms": round(ttft_ms, 2),
        "decode": rows,
        "decode_long_context": long,
        "reference": reference_run.map(|(name, (tok_s, tokens))| json!({
            "name": name,
            "decode_tok_s": round(tok_s, 2),
            "greedy_tokens_match": batch1_tokens.is_empty() || tokens.starts_with(&batch1_tokens)
                || batch1_tokens.starts_with(&tokens),
        })),
        "llama_cpp": llama,
        "vs_llama_cpp": vs_llama_cpp,
        "repeat": args.repeat,
        "runs": (args.repeat > 1).then(|| runs.report(args.prompt_tokens)),
        "prefix_cache": {
            "shared_prefix_tokens": args.shared_prefix,
            "hit_tokens": hit_tokens,
            "ttft_cold_ms": round(ttft_cold_ms, 2),
            "ttft_warm_ms": round(ttft_warm_ms, 2),
        },
        "peak_rss_mb": peak_rss_mb().map(|x| round(x, 2)),
        "kv_bytes_per_token": KvCache::bytes_per_token(&cfg, dt),
        // Latent attention caches one latent row per token; expanded per-head keys and
        // values (what a cache without MLA would hold) for comparison.
        "kv_bytes_per_token_expanded": cfg.mla.as_ref().map(|m| {
            cfg.num_layers * cfg.num_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim) * dt.size_in_bytes()
        }),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
