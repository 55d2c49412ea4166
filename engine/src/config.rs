//! A model's `config.json`, read into the few numbers the engine needs.
//!
//! Qwen3, Qwen2, Llama, Qwen3-MoE, GLM-4.5, DeepSeek-V3 and MiniMax-M2 share one decoder; they
//! differ in flags read here (biases on the q/k/v projections, per-head q/k RMS norms,
//! how much of a head is rotated, how `head_dim` is given), in their attention (heads, or
//! DeepSeek's latent attention, [`MlaConfig`]) and in which layers' feed-forward is a
//! mixture of experts, routed how ([`MoeConfig`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::rope::Yarn;
use crate::routing::{Routing, Scoring};

/// The decoder families braid runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `Qwen3ForCausalLM`: per-head q/k RMS norms, no biases.
    Qwen3,
    /// `Qwen2ForCausalLM`: biases on q/k/v.
    Qwen2,
    /// `LlamaForCausalLM`.
    Llama,
    /// `Qwen3MoeForCausalLM`: Qwen3's attention, softmax-routed experts.
    Qwen3Moe,
    /// `Glm4MoeForCausalLM` (GLM-4.5, 4.6, 4.7): half-rotated heads, sigmoid-routed
    /// experts with a correction bias and a shared expert, dense first layers.
    Glm4Moe,
    /// `DeepseekV3ForCausalLM` (DeepSeek-V3, V3.1, R1, Kimi-K2): multi-head latent
    /// attention, GLM-4.5's kind of experts in groups.
    DeepseekV3,
    /// `MiniMaxM2ForCausalLM`: q/k RMS norms over all heads together, partial rotary,
    /// sigmoid-routed experts on every layer (Mixtral's checkpoint names).
    MiniMaxM2,
}

/// Where q and k are RMS-normed before RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// Not at all.
    None,
    /// Each head on its own (Qwen3; `q_norm` is `head_dim` wide).
    PerHead,
    /// All heads of the projection together (MiniMax-M2's `per_layer`; `q_norm` is
    /// `heads × head_dim` wide).
    Whole,
}

/// How a sparse layer's weights are named in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeLayout {
    /// `mlp.gate`, `mlp.gate.e_score_correction_bias`, `mlp.experts.N.{gate,up,down}_proj`,
    /// `mlp.shared_experts` (Qwen3-MoE, GLM-4.5, DeepSeek-V3).
    Mlp,
    /// `block_sparse_moe.gate`, `block_sparse_moe.e_score_correction_bias`,
    /// `block_sparse_moe.experts.N.{w1,w3,w2}` (Mixtral, MiniMax-M2).
    BlockSparse,
}

impl MoeLayout {
    /// The sparse block's module under a layer.
    pub fn module(self) -> &'static str {
        match self {
            MoeLayout::Mlp => "mlp",
            MoeLayout::BlockSparse => "block_sparse_moe",
        }
    }

    /// The correction bias's path under the module.
    pub fn correction_bias(self) -> &'static str {
        match self {
            MoeLayout::Mlp => "gate.e_score_correction_bias",
            MoeLayout::BlockSparse => "e_score_correction_bias",
        }
    }

    /// An expert's gate, up and down projections.
    pub fn projections(self) -> [&'static str; 3] {
        match self {
            MoeLayout::Mlp => DENSE_PROJECTIONS,
            MoeLayout::BlockSparse => ["w1", "w3", "w2"],
        }
    }
}

/// A dense MLP's gate, up and down projections.
pub const DENSE_PROJECTIONS: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

impl Architecture {
    const SUPPORTED: &'static str = concat!(
        "Qwen3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM, Qwen3MoeForCausalLM, ",
        "Glm4MoeForCausalLM, DeepseekV3ForCausalLM, MiniMaxM2ForCausalLM"
    );

    fn from_name(name: &str) -> Option<Architecture> {
        match name {
            "Qwen3ForCausalLM" => Some(Architecture::Qwen3),
            "Qwen2ForCausalLM" => Some(Architecture::Qwen2),
            "LlamaForCausalLM" => Some(Architecture::Llama),
            "Qwen3MoeForCausalLM" => Some(Architecture::Qwen3Moe),
            "Glm4MoeForCausalLM" => Some(Architecture::Glm4Moe),
            "DeepseekV3ForCausalLM" => Some(Architecture::DeepseekV3),
            "MiniMaxM2ForCausalLM" => Some(Architecture::MiniMaxM2),
            _ => None,
        }
    }
}

/// What the engine needs from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The decoder family.
    pub architecture: Architecture,
    /// Rows of the embedding (and of the LM head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// How many of a head's leading dimensions RoPE rotates (`head_dim` ×
    /// `partial_rotary_factor`); the rest pass through.
    pub rotary_dim: usize,
    /// RMS norm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// YaRN scaling of the rotary tables, where the config asks for it.
    pub rope_scaling: Option<Yarn>,
    /// Longest position the model supports.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections have biases.
    pub qkv_bias: bool,
    /// Where q and k are RMS-normed.
    pub qk_norm: QkNorm,
    /// EOS token ids from the config (`generation_config.json` may add more).
    pub eos_token_ids: Vec<u32>,
    /// The experts, for a mixture-of-experts model.
    pub moe: Option<MoeConfig>,
    /// Latent attention's shapes, for DeepSeek-V3.
    pub mla: Option<MlaConfig>,
    /// Whether RoPE rotates adjacent pairs (DeepSeek's `rope_interleave`) rather than
    /// the two halves of the rotated dimensions.
    pub rope_interleaved: bool,
}

/// Multi-head latent attention (DeepSeek-V2/V3): keys and values are rebuilt per head from
/// one compressed latent per token, and that latent, with the token's shared rotary key,
/// is all the KV cache holds.
#[derive(Debug, Clone, PartialEq)]
pub struct MlaConfig {
    /// Rank of the query's compression (`q_lora_rank`); `None`: a plain query projection.
    pub q_lora_rank: Option<usize>,
    /// Width of the key/value latent (`kv_lora_rank`).
    pub kv_lora_rank: usize,
    /// Per head: query/key dimensions without position (`qk_nope_head_dim`).
    pub qk_nope_head_dim: usize,
    /// Per head: query/key dimensions that RoPE rotates (`qk_rope_head_dim`), shared by
    /// all heads on the key side.
    pub qk_rope_head_dim: usize,
    /// Per head: value width (`v_head_dim`).
    pub v_head_dim: usize,
}

/// A mixture-of-experts model's experts and which layers use them.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Routed experts per sparse layer (`num_experts`, `n_routed_experts`,
    /// `num_local_experts`).
    pub experts: usize,
    /// Width of one expert's MLP (`moe_intermediate_size`).
    pub expert_intermediate_size: usize,
    /// Width of the always-on shared expert MLP; 0 when there is none.
    pub shared_intermediate_size: usize,
    /// How a token's experts are chosen and weighed.
    pub routing: Routing,
    /// Whether the router has a per-expert correction bias (`e_score_correction_bias`).
    pub correction_bias: bool,
    /// The checkpoint's names for the sparse block.
    pub layout: MoeLayout,
    /// Per layer: whether its feed-forward is the experts (else the dense MLP).
    pub sparse_layers: Vec<bool>,
}

impl MoeConfig {
    /// Whether layer `layer`'s feed-forward is the experts.
    pub fn is_sparse(&self, layer: usize) -> bool {
        self.sparse_layers.get(layer).copied().unwrap_or(false)
    }
}

impl ModelConfig {
    /// Reads `DIR/config.json`, or a GGUF file's metadata (see [`config_json`]).
    pub fn from_dir(dir: &Path) -> Result<ModelConfig> {
        let (value, path) = config_json(dir)?;
        ModelConfig::from_json(&value, &path)
    }

    /// Reads a parsed `config.json`; `path` names it in errors.
    pub fn from_json(v: &Value, path: &Path) -> Result<ModelConfig> {
        let cfg = Fields { v, path };
        let arch_name = match v
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            Some(Value::String(name)) => name.clone(),
            _ => return Err(cfg.error("architectures", "must be a list naming the model class")),
        };
        let architecture =
            Architecture::from_name(&arch_name).ok_or_else(|| Error::UnsupportedArchitecture {
                path: path.to_path_buf(),
                architecture: arch_name,
                supported: Architecture::SUPPORTED,
            })?;
        let hidden_size = cfg.usize("hidden_size")?;
        let num_heads = cfg.usize("num_attention_heads")?;
        let num_kv_heads = cfg.usize_or("num_key_value_heads", num_heads)?;
        let mla = match architecture {
            Architecture::DeepseekV3 => Some(cfg.mla()?),
            _ => None,
        };
        let head_dim = match (&mla, v.get("head_dim")) {
            (Some(m), _) => m.qk_nope_head_dim + m.qk_rope_head_dim,
            (None, Some(Value::Null) | None) if num_heads > 0 => hidden_size / num_heads,
            _ => cfg.usize("head_dim")?,
        };
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(cfg.error(
                "num_key_value_heads",
                &format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
            ));
        }
        if head_dim % 2 != 0 {
            return Err(cfg.error(
                "head_dim",
                &format!("{head_dim} must be even for rotary embeddings"),
            ));
        }
        if let Some(act) = v.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(cfg.error("hidden_act", &format!("{act:?} is not supported (only silu)")));
            }
        }
        // Newer configs gather the RoPE settings (scaling too) in `rope_parameters`.
        let rope = match v.get("rope_parameters") {
            Some(r @ Value::Object(_)) => Fields { v: r, path },
            _ => Fields { v, path },
        };
        let max_position_embeddings = cfg.usize_or("max_position_embeddings", 4096)?;
        let rope_scaling = match (v.get("rope_scaling"), v.get("rope_parameters")) {
            (Some(s @ Value::Object(_)), _) => {
                Fields { v: s, path }.yarn("rope_scaling", max_position_embeddings)?
            }
            (_, Some(s @ Value::Object(_))) => {
                Fields { v: s, path }.yarn("rope_parameters", max_position_embeddings)?
            }
            (None | Some(Value::Null), _) => None,
            (Some(other), _) => {
                return Err(cfg.error("rope_scaling", &format!("must be an object, got {other}")))
            }
        };
        let default_rotary = if architecture == Architecture::Glm4Moe {
            0.5
        } else {
            1.0
        };
        let rotary_factor = match rope
            .v
            .get("partial_rotary_factor")
            .or(v.get("partial_rotary_factor"))
        {
            None | Some(Value::Null) => default_rotary,
            Some(x) => x
                .as_f64()
                .filter(|f| *f > 0.0 && *f <= 1.0)
                .ok_or_else(|| cfg.error("partial_rotary_factor", &format!("must be in (0, 1], got {x}")))?,
        };
        let rotary_dim = match (&mla, v.get("rotary_dim")) {
            (Some(m), _) => m.qk_rope_head_dim,
            (None, Some(Value::Number(_))) => cfg.usize("rotary_dim")?,
            (None, _) => (head_dim as f64 * rotary_factor) as usize,
        };
        if rotary_dim > head_dim {
            return Err(cfg.error(
                "rotary_dim",
                &format!("{rotary_dim} is wider than head_dim {head_dim}"),
            ));
        }
        if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) {
            return Err(cfg.error(
                "partial_rotary_factor",
                &format!("rotates {rotary_dim} of head_dim {head_dim}; that must be even and positive"),
            ));
        }
        if let Some(q) = v.get("quantization_config").filter(|q| !q.is_null()) {
            // FP8 and other quantized safetensors would load with their scales ignored.
            let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("unknown");
            return Err(cfg.error(
                "quantization_config",
                &format!(
                    "quantized checkpoints ({method}) are not supported yet; use the bf16 or f32 weights"
                ),
            ));
        }
        let eos_token_ids = token_ids(v.get("eos_token_id"));
        let num_layers = cfg.usize("num_hidden_layers")?;
        let moe = match architecture {
            Architecture::Qwen3Moe => Some(cfg.qwen3_moe(num_layers)?),
            // Defaults where a config leaves a field out: each family's published defaults
            // (groups, groups allowed, dense first layers, scaling factor).
            Architecture::Glm4Moe => Some(cfg.sigmoid_moe(num_layers, (1, 1, 1, 1.0))?),
            Architecture::DeepseekV3 => Some(cfg.sigmoid_moe(num_layers, (8, 4, 3, 2.5))?),
            Architecture::MiniMaxM2 => Some(cfg.minimax_moe(num_layers)?),
            _ => None,
        };
        Ok(ModelConfig {
            architecture,
            vocab_size: cfg.usize("vocab_size")?,
            hidden_size,
            intermediate_size: cfg.usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rotary_dim,
            rms_norm_eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
            rope_theta: match rope.v.get("rope_theta") {
                Some(_) => rope.f64_or("rope_theta", 10_000.0)?,
                None => cfg.f64_or("rope_theta", 10_000.0)?,
            },
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings: cfg.bool_or("tie_word_embeddings", false)?,
            qkv_bias: match architecture {
                Architecture::Qwen2 => true,
                _ => cfg.bool_or("attention_bias", false)?,
            },
            qk_norm: match architecture {
                Architecture::Qwen3 | Architecture::Qwen3Moe => QkNorm::PerHead,
                Architecture::Glm4Moe if cfg.bool_or("use_qk_norm", false)? => QkNorm::PerHead,
                Architecture::MiniMaxM2 => match v.get("qk_norm_type").and_then(Value::as_str) {
                    _ if !cfg.bool_or("use_qk_norm", true)? => QkNorm::None,
                    None | Some("per_layer") => QkNorm::Whole,
                    Some("per_head") => QkNorm::PerHead,
                    Some(other) => {
                        return Err(cfg.error("qk_norm_type", &format!("{other:?} is not supported")));
                    }
                },
                _ => QkNorm::None,
            },
            eos_token_ids,
            moe,
            rope_interleaved: mla.is_some() && cfg.bool_or("rope_interleave", true)?,
            mla,
        })
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Widths of what the KV cache keeps per token and layer: the key row and the value
    /// row; for latent attention, the latent and rotary key in one row and no value row.
    pub fn cache_widths(&self) -> (usize, usize) {
        match &self.mla {
            Some(m) => (m.kv_lora_rank + m.qk_rope_head_dim, 0),
            None => (self.kv_dim(), self.kv_dim()),
        }
    }

    /// Parameters, counted from the shapes.
    pub fn num_params(&self) -> usize {
        self.count_params(false)
    }

    /// Parameters one token reads: all of them, less the experts it is not routed to.
    pub fn active_params(&self) -> usize {
        self.count_params(true)
    }

    fn count_params(&self, active_only: bool) -> usize {
        let (h, q, kv) = (self.hidden_size, self.num_heads * self.head_dim, self.kv_dim());
        let attn = match &self.mla {
            Some(m) => {
                let heads = self.num_heads;
                let query = match m.q_lora_rank {
                    Some(r) => h * r + r + r * heads * self.head_dim,
                    None => h * heads * self.head_dim,
                };
                let latent = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank;
                let expand = m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim);
                query + latent + expand + heads * m.v_head_dim * h
            }
            None => {
                let norms = match self.qk_norm {
                    QkNorm::None => 0,
                    QkNorm::PerHead => 2 * self.head_dim,
                    QkNorm::Whole => q + kv,
                };
                h * q * 2 + h * kv * 2 + norms
            }
        };
        let ffn = |layer: usize| match &self.moe {
            Some(m) if m.is_sparse(layer) => {
                let experts = if active_only { m.routing.top_k } else { m.experts };
                let bias = if m.correction_bias { m.experts } else { 0 };
                h * m.experts
                    + bias
                    + 3 * h * (experts * m.expert_intermediate_size + m.shared_intermediate_size)
            }
            _ => 3 * h * self.intermediate_size,
        };
        let layers: usize = (0..self.num_layers).map(|l| attn + ffn(l) + 2 * h).sum();
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + layers + h + head
    }
}

/// Token ids given as one number or a list (`eos_token_id` in Hugging Face configs).
pub(crate) fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

/// A model's `config.json` and the file it came from: `DIR/config.json` for a folder; for
/// a GGUF file, the one its metadata amounts to ([`crate::gguf::Gguf::config_json`]).
pub fn config_json(model: &Path) -> Result<(Value, PathBuf)> {
    if crate::gguf::is_gguf(model) {
        return Ok((
            crate::gguf::Gguf::open(model)?.config_json()?,
            model.to_path_buf(),
        ));
    }
    let path = model.join("config.json");
    Ok((read_json(&path)?, path))
}

/// Reads a JSON file, naming it in errors.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

struct Fields<'a> {
    v: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn error(&self, field: &str, problem: &str) -> Error {
        Error::Config {
            path: PathBuf::from(self.path),
            field: field.to_owned(),
            problem: problem.to_owned(),
        }
    }

    fn usize(&self, field: &str) -> Result<usize> {
        match self.v.get(field) {
            None | Some(Value::Null) => Err(self.error(field, "is missing")),
            Some(x) => match x.as_u64() {
                Some(n) if n > 0 => Ok(n as usize),
                _ => Err(self.error(field, &format!("must be a positive integer, got {x}"))),
            },
        }
    }

    /// The routed experts' count (`field`) and `num_experts_per_tok`, which must not
    /// exceed it.
    fn experts(&self, field: &str) -> Result<(usize, usize)> {
        let experts = self.usize(field)?;
        let top_k = self.usize("num_experts_per_tok")?;
        if top_k > experts {
            return Err(self.error(
                "num_experts_per_tok",
                &format!("{top_k} is more than {field} {experts}"),
            ));
        }
        Ok((experts, top_k))
    }

    /// Refuses a `scoring_func` other than sigmoid (absent means sigmoid).
    fn sigmoid_scoring(&self) -> Result<()> {
        match self.v.get("scoring_func").and_then(Value::as_str) {
            Some(f) if f != "sigmoid" => {
                Err(self.error("scoring_func", &format!("{f:?} is not supported (only sigmoid)")))
            }
            _ => Ok(()),
        }
    }

    /// Qwen3-MoE's experts: `num_experts` softmax-routed experts on every
    /// `decoder_sparse_step`-th layer not listed in `mlp_only_layers`.
    fn qwen3_moe(&self, num_layers: usize) -> Result<MoeConfig> {
        let (experts, top_k) = self.experts("num_experts")?;
        let step = self.usize_or("decoder_sparse_step", 1)?;
        let dense_only: Vec<u64> = match self.v.get("mlp_only_layers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .ok_or_else(|| self.error("mlp_only_layers", "must list layer numbers"))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(self.error("mlp_only_layers", "must list layer numbers")),
        };
        Ok(MoeConfig {
            experts,
            expert_intermediate_size: self.usize("moe_intermediate_size")?,
            shared_intermediate_size: 0,
            routing: Routing {
                scoring: Scoring::Softmax,
                top_k,
                normalize: self.bool_or("norm_topk_prob", false)?,
                groups: 1,
                topk_groups: 1,
                scale: 1.0,
            },
            correction_bias: false,
            layout: MoeLayout::Mlp,
            sparse_layers: (0..num_layers)
                .map(|l| !dense_only.contains(&(l as u64)) && (l + 1).is_multiple_of(step))
                .collect(),
        })
    }

    /// DeepSeek-V3-style experts (GLM-4.5 reads the same fields): `n_routed_experts`
    /// sigmoid-scored experts with `e_score_correction_bias`, group-limited, scaled by
    /// `routed_scaling_factor`, plus `n_shared_experts` always on, on every layer from
    /// `first_k_dense_replace` on.
    fn sigmoid_moe(&self, num_layers: usize, defaults: (usize, usize, usize, f64)) -> Result<MoeConfig> {
        let (default_groups, default_topk_groups, default_first_dense, default_scale) = defaults;
        let (experts, top_k) = self.experts("n_routed_experts")?;
        let groups = self.usize_or("n_group", default_groups)?;
        let topk_groups = self.usize_or("topk_group", default_topk_groups)?;
        if !experts.is_multiple_of(groups) || topk_groups > groups {
            return Err(self.error(
                "n_group",
                &format!("{groups} groups of {experts} experts with topk_group {topk_groups} do not fit"),
            ));
        }
        let width = self.usize("moe_intermediate_size")?;
        let shared = self.count_or("n_shared_experts", 1)?;
        let first_dense = self.count_or("first_k_dense_replace", default_first_dense)?;
        let every = self.usize_or("moe_layer_freq", 1)?;
        self.sigmoid_scoring()?;
        Ok(MoeConfig {
            experts,
            expert_intermediate_size: width,
            shared_intermediate_size: width * shared,
            routing: Routing {
                scoring: Scoring::Sigmoid,
                top_k,
                normalize: self.bool_or("norm_topk_prob", true)?,
                groups,
                topk_groups,
                scale: self.f64_or("routed_scaling_factor", default_scale)? as f32,
            },
            correction_bias: true,
            layout: MoeLayout::Mlp,
            sparse_layers: (0..num_layers)
                .map(|l| l >= first_dense && l.is_multiple_of(every))
                .collect(),
        })
    }

    /// MiniMax-M2's experts: `num_local_experts` sigmoid-scored experts of width
    /// `intermediate_size` on every layer, the choice steered by a correction bias
    /// (`use_routing_bias`), the chosen weights renormalised.
    fn minimax_moe(&self, num_layers: usize) -> Result<MoeConfig> {
        let (experts, top_k) = self.experts("num_local_experts")?;
        self.sigmoid_scoring()?;
        Ok(MoeConfig {
            experts,
            expert_intermediate_size: self.usize("intermediate_size")?,
            shared_intermediate_size: 0,
            routing: Routing {
                scoring: Scoring::Sigmoid,
                top_k,
                normalize: true,
                groups: 1,
                topk_groups: 1,
                scale: self.f64_or("routed_scaling_factor", 1.0)? as f32,
            },
            correction_bias: self.bool_or("use_routing_bias", true)?,
            layout: MoeLayout::BlockSparse,
            sparse_layers: vec![true; num_layers],
        })
    }

    /// The RoPE scaling described by this object (`rope_scaling`, or `rope_parameters` in
    /// newer configs), named `field` in errors: `None` for plain RoPE, YaRN's settings, or
    /// an error for a kind braid does not compute.
    fn yarn(&self, field: &str, max_position_embeddings: usize) -> Result<Option<Yarn>> {
        let kind = self
            .v
            .get("rope_type")
            .or(self.v.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        match kind {
            "default" => return Ok(None),
            "yarn" => {}
            other => {
                return Err(self.error(
                    field,
                    &format!("RoPE scaling {other:?} is not supported (supported: yarn)"),
                ))
            }
        }
        let original = self.usize("original_max_position_embeddings")?;
        let optional = |name: &str| match self.v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| self.error(name, &format!("must be a number, got {x}"))),
        };
        Ok(Some(Yarn {
            factor: match optional("factor")? {
                Some(f) if f >= 1.0 => f,
                Some(f) => return Err(self.error("factor", &format!("must be at least 1, got {f}"))),
                None => (max_position_embeddings as f64 / original as f64).max(1.0),
            },
            original_max_position_embeddings: original,
            beta_fast: optional("beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0),
            beta_slow: optional("beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0),
            mscale: optional("mscale")?,
            mscale_all_dim: optional("mscale_all_dim")?,
            attention_factor: optional("attention_factor")?,
            truncate: self.bool_or("truncate", true)?,
        }))
    }

    /// DeepSeek's latent attention shapes.
    fn mla(&self) -> Result<MlaConfig> {
        let q_lora_rank = match self.v.get("q_lora_rank") {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.usize("q_lora_rank")?),
        };
        let rope = self.usize("qk_rope_head_dim")?;
        if !rope.is_multiple_of(2) {
            return Err(self.error("qk_rope_head_dim", &format!("{rope} must be even")));
        }
        Ok(MlaConfig {
            q_lora_rank,
            kv_lora_rank: self.usize("kv_lora_rank")?,
            qk_nope_head_dim: self.usize("qk_nope_head_dim")?,
            qk_rope_head_dim: rope,
            v_head_dim: self.usize("v_head_dim")?,
        })
    }

    fn usize_or(&self, field: &str, default: usize) -> Result<usize> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(_) => self.usize(field),
        }
    }

    /// A non-negative integer (a count that may be zero), or `default` when absent.
    fn count_or(&self, field: &str, default: usize) -> Result<usize> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.error(field, &format!("must be a whole number, got {x}"))),
        }
    }

    fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .filter(|f| f.is_finite() && *f > 0.0)
                .ok_or_else(|| self.error(field, &format!("must be a positive number, got {x}"))),
        }
    }

    fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_bool()
                .ok_or_else(|| self.error(field, &format!("must be true or false, got {x}"))),
        }
    }
}
