//! `braid fixture qwen3`, `qwen3-moe`, `glm4-moe`, `deepseek-v3` and `minimax-m2`: a random-weight model folder in
//! the real Hugging Face layout, with the real Qwen3 tokenizer (fetched by `scripts/setup`
//! from npm).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use braid_engine::fixture::{Family, ModelSpec, MoeSpec};
use braid_engine::Tokenizer;
use candle_core::DType;

/// Fixture builders.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FixtureCommand {
    /// A random-weight Qwen3 (config.json, model.safetensors, tokenizer files).
    Qwen3(Qwen3Args),
    /// A random-weight Qwen3-MoE (`Qwen3MoeForCausalLM`): Qwen3's attention, routed experts.
    #[command(name = "qwen3-moe")]
    Qwen3Moe(MoeArgs),
    /// A random-weight GLM-4.5 (`Glm4MoeForCausalLM`): q/k/v biases, half-rotated heads,
    /// sigmoid-routed experts with a correction bias, a shared expert, a dense first layer.
    #[command(name = "glm4-moe")]
    Glm4Moe(MoeArgs),
    /// A random-weight DeepSeek-V3 (`DeepseekV3ForCausalLM`): multi-head latent attention,
    /// sigmoid-routed experts in groups, a shared expert, dense first layers.
    #[command(name = "deepseek-v3")]
    DeepseekV3(MoeArgs),
    /// A random-weight MiniMax-M2 (`MiniMaxM2ForCausalLM`): q/k norms over all heads,
    /// half-rotated heads, sigmoid-routed experts on every layer.
    #[command(name = "minimax-m2")]
    MiniMaxM2(MoeArgs),
}

/// Options of `braid fixture qwen3-moe`, `glm4-moe`, `deepseek-v3` and `minimax-m2`: the
/// shape flags, presets `tiny` and `qwen3-30b-a3b`, `glm-4.5-air`, `deepseek-v3` or
/// `minimax-m2`, and the experts' shape.
#[derive(Debug, clap::Args)]
pub(crate) struct MoeArgs {
    #[command(flatten)]
    base: Qwen3Args,
    /// Experts per sparse layer.
    #[arg(long)]
    experts: Option<usize>,
    /// Experts each token is routed to.
    #[arg(long)]
    experts_per_token: Option<usize>,
    /// Width of one expert's MLP.
    #[arg(long)]
    expert_intermediate: Option<usize>,
    /// Qwen3-MoE: every this-many-th layer is sparse, the others dense (1: all sparse).
    #[arg(long)]
    decoder_sparse_step: Option<usize>,
    /// GLM-4.5 and DeepSeek-V3: how many leading layers stay dense (`first_k_dense_replace`).
    #[arg(long)]
    first_dense_layers: Option<usize>,
}

/// Options of `braid fixture qwen3`; shape flags override the preset.
#[derive(Debug, clap::Args)]
pub(crate) struct Qwen3Args {
    /// Folder to write (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// Starting shape: `tiny` (2 layers, hidden 64) or `qwen3-0.6b` (28 layers, hidden 1024,
    /// 16 heads, 8 KV heads, head_dim 128); for qwen3-moe, `tiny` (8 experts, 2 per token)
    /// or `qwen3-30b-a3b` (48 layers, hidden 2048, 128 experts, 8 per token); for
    /// glm4-moe, `tiny` (8 experts in 4 groups) or `glm-4.5-air` (46 layers, hidden 4096,
    /// 128 experts, 8 per token); for deepseek-v3, `tiny` (3 layers, a 32-wide latent) or
    /// `deepseek-v3` (61 layers, hidden 7168, 128 heads, 256 experts); for minimax-m2,
    /// `tiny` or `minimax-m2` (62 layers, hidden 3072, 256 experts). DeepSeek's latent
    /// attention keeps the preset's latent shapes whatever --heads and --head-dim say.
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

fn tiny(vocab: usize) -> ModelSpec {
    ModelSpec {
        tie_word_embeddings: true,
        ..ModelSpec::tiny(vocab)
    }
}

fn spec(args: &Qwen3Args, vocab: usize) -> anyhow::Result<ModelSpec> {
    let spec = match args.preset.as_str() {
        "tiny" => tiny(vocab),
        "qwen3-0.6b" => ModelSpec::qwen3_0_6b(vocab),
        other => bail!("unknown --preset {other:?}; known: tiny, qwen3-0.6b"),
    };
    shaped(spec, args)
}

fn moe_spec(args: &MoeArgs, family: Family, vocab: usize) -> anyhow::Result<ModelSpec> {
    let spec = match (family, args.base.preset.as_str()) {
        (Family::Qwen3, "tiny") => ModelSpec {
            moe: Some(MoeSpec::tiny()),
            ..tiny(vocab)
        },
        (Family::Qwen3, "qwen3-30b-a3b") => ModelSpec::qwen3_30b_a3b(vocab),
        (Family::Glm4Moe, "tiny") => ModelSpec::glm4_moe_tiny(vocab),
        (Family::Glm4Moe, "glm-4.5-air") => ModelSpec::glm_4_5_air(vocab),
        (Family::DeepseekV3, "tiny") => ModelSpec::deepseek_v3_tiny(vocab),
        (Family::DeepseekV3, "deepseek-v3") => ModelSpec::deepseek_v3(vocab),
        (Family::Qwen3, other) => bail!("unknown --preset {other:?}; known: tiny, qwen3-30b-a3b"),
        (Family::Glm4Moe, other) => bail!("unknown --preset {other:?}; known: tiny, glm-4.5-air"),
        (Family::DeepseekV3, other) => bail!("unknown --preset {other:?}; known: tiny, deepseek-v3"),
        (Family::MiniMaxM2, "tiny") => ModelSpec::minimax_m2_tiny(vocab),
        (Family::MiniMaxM2, "minimax-m2") => ModelSpec::minimax_m2(vocab),
        (Family::MiniMaxM2, other) => bail!("unknown --preset {other:?}; known: tiny, minimax-m2"),
    };
    let mut spec = spec;
    if let (Family::DeepseekV3, Some(heads)) = (family, args.base.heads) {
        // Latent attention has no key/value heads of its own; the config repeats the heads.
        spec.kv_heads = heads;
    }
    let mut spec = shaped(spec, &args.base)?;
    let Some(moe) = spec.moe.as_mut() else {
        bail!("the preset has no experts");
    };
    for (value, field) in [
        (args.experts, &mut moe.experts),
        (args.experts_per_token, &mut moe.experts_per_token),
        (args.expert_intermediate, &mut moe.expert_intermediate),
        (args.decoder_sparse_step, &mut moe.decoder_sparse_step),
    ] {
        if let Some(v) = value {
            if v == 0 {
                bail!("every expert flag must be positive");
            }
            *field = v;
        }
    }
    if let Some(first) = args.first_dense_layers {
        moe.first_dense_layers = first;
    }
    if moe.experts_per_token > moe.experts {
        bail!(
            "--experts-per-token {} is more than --experts {}",
            moe.experts_per_token,
            moe.experts
        );
    }
    if matches!(family, Family::Glm4Moe | Family::DeepseekV3) && !moe.experts.is_multiple_of(moe.groups) {
        bail!(
            "--experts {} must be a multiple of the preset's {} expert groups",
            moe.experts,
            moe.groups
        );
    }
    Ok(spec)
}

/// The preset with the shape flags applied, checked.
fn shaped(mut spec: ModelSpec, args: &Qwen3Args) -> anyhow::Result<ModelSpec> {
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
    if !spec.heads.is_multiple_of(spec.kv_heads) {
        bail!("--kv-heads {} must divide --heads {}", spec.kv_heads, spec.heads);
    }
    if !spec.head_dim.is_multiple_of(2) {
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
    let args = match cmd {
        FixtureCommand::Qwen3(args) => args,
        FixtureCommand::Qwen3Moe(moe)
        | FixtureCommand::Glm4Moe(moe)
        | FixtureCommand::DeepseekV3(moe)
        | FixtureCommand::MiniMaxM2(moe) => &moe.base,
    };
    let tokenizer = Tokenizer::from_dir(&args.tokenizer).with_context(|| {
        format!(
            "reading the tokenizer in {} (run scripts/setup to fetch it)",
            args.tokenizer.display()
        )
    })?;
    let mut spec = match cmd {
        FixtureCommand::Qwen3(args) => spec(args, tokenizer.vocab_size())?,
        FixtureCommand::Qwen3Moe(args) => moe_spec(args, Family::Qwen3, tokenizer.vocab_size())?,
        FixtureCommand::Glm4Moe(args) => moe_spec(args, Family::Glm4Moe, tokenizer.vocab_size())?,
        FixtureCommand::DeepseekV3(args) => moe_spec(args, Family::DeepseekV3, tokenizer.vocab_size())?,
        FixtureCommand::MiniMaxM2(args) => moe_spec(args, Family::MiniMaxM2, tokenizer.vocab_size())?,
    };
    let eos: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_id(t))
        .collect();
    spec.eos_token_ids = eos.clone();

    let bar = crate::progress_bar(
        spec.tensors()?.len() as u64,
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
    let config = braid_engine::ModelConfig::from_dir(&args.out)?;
    let (params, active) = (config.num_params(), config.active_params());
    let kind = match (spec.family, &spec.moe) {
        (Family::Qwen3, None) => "Qwen3",
        (Family::Qwen3, Some(_)) => "Qwen3-MoE",
        (Family::Glm4Moe, _) => "GLM-4.5",
        (Family::DeepseekV3, _) => "DeepSeek-V3",
        (Family::MiniMaxM2, _) => "MiniMax-M2",
    };
    eprintln!(
        "braid: wrote a random {kind} ({params} parameters, {active} active per token, {} layers, vocab {}) to {}",
        spec.layers,
        spec.vocab,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
