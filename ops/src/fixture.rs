//! `braid fixture qwen3`: a random-weight Qwen3 model folder in the real Hugging Face
//! layout, with the real Qwen3 tokenizer (fetched by `scripts/setup` from npm).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use braid_engine::fixture::Qwen3Spec;
use braid_engine::Tokenizer;
use candle_core::DType;

/// Fixture builders.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FixtureCommand {
    /// A random-weight Qwen3 (config.json, model.safetensors, tokenizer files).
    Qwen3(Qwen3Args),
}

/// Options of `braid fixture qwen3`; shape flags override the preset.
#[derive(Debug, clap::Args)]
pub(crate) struct Qwen3Args {
    /// Folder to write (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// Starting shape: `tiny` (2 layers, hidden 64) or `qwen3-0.6b` (28 layers, hidden 1024,
    /// 16 heads, 8 KV heads, head_dim 128).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Decoder layers.
    #[arg(long)]
    layers: Option<usize>,
    /// Residual width.
    #[arg(long)]
    hidden: Option<usize>,
    /// Query heads.
    #[arg(long)]
    heads: Option<usize>,
    /// Key/value heads.
    #[arg(long)]
    kv_heads: Option<usize>,
    /// Width of one head.
    #[arg(long)]
    head_dim: Option<usize>,
    /// MLP width.
    #[arg(long)]
    intermediate: Option<usize>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Weight dtype on disk: f32 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Folder holding the real tokenizer.json and tokenizer_config.json.
    #[arg(long, default_value = ".fixtures/tokenizer-qwen3")]
    tokenizer: PathBuf,
}

fn spec(args: &Qwen3Args, vocab: usize) -> anyhow::Result<Qwen3Spec> {
    let mut spec = match args.preset.as_str() {
        "tiny" => Qwen3Spec {
            tie_word_embeddings: true,
            ..Qwen3Spec::tiny(vocab)
        },
        "qwen3-0.6b" => Qwen3Spec::qwen3_0_6b(vocab),
        other => bail!("unknown --preset {other:?}; known: tiny, qwen3-0.6b"),
    };
    for (value, field) in [
        (args.layers, &mut spec.layers),
        (args.hidden, &mut spec.hidden),
        (args.heads, &mut spec.heads),
        (args.kv_heads, &mut spec.kv_heads),
        (args.head_dim, &mut spec.head_dim),
        (args.intermediate, &mut spec.intermediate),
    ] {
        if let Some(v) = value {
            *field = v;
        }
    }
    let dims = [
        spec.layers,
        spec.hidden,
        spec.heads,
        spec.kv_heads,
        spec.head_dim,
        spec.intermediate,
    ];
    if dims.contains(&0) {
        bail!("every shape flag must be positive");
    }
    if spec.heads % spec.kv_heads != 0 {
        bail!("--kv-heads {} must divide --heads {}", spec.kv_heads, spec.heads);
    }
    if spec.head_dim % 2 != 0 {
        bail!("--head-dim {} must be even (rotary embeddings)", spec.head_dim);
    }
    spec.dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        other => bail!("unknown --dtype {other:?}; known: f32, bf16"),
    };
    spec.seed = args.seed;
    Ok(spec)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

pub(crate) fn run(cmd: &FixtureCommand) -> anyhow::Result<ExitCode> {
    let FixtureCommand::Qwen3(args) = cmd;
    let tokenizer = Tokenizer::from_dir(&args.tokenizer).with_context(|| {
        format!(
            "reading the tokenizer in {} (run scripts/setup to fetch it)",
            args.tokenizer.display()
        )
    })?;
    let mut spec = spec(args, tokenizer.vocab_size())?;
    let eos: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_id(t))
        .collect();
    spec.eos_token_ids = eos.clone();

    let bar = crate::progress_bar(
        spec.tensors().len() as u64,
        "writing weights {bar:30} {pos}/{len} tensors",
    );
    spec.write(&args.out, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        copy(&args.tokenizer.join(file), &args.out.join(file))?;
    }
    let generation = serde_json::json!({"eos_token_id": eos, "do_sample": false});
    std::fs::write(
        args.out.join("generation_config.json"),
        serde_json::to_string_pretty(&generation)?,
    )
    .context("writing generation_config.json")?;
    let params = braid_engine::ModelConfig::from_dir(&args.out)?.num_params();
    eprintln!(
        "braid: wrote a random Qwen3 ({params} parameters, {} layers, vocab {}) to {}",
        spec.layers,
        spec.vocab,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
