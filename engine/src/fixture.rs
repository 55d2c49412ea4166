//! Random-weight models in the real Hugging Face layout (`config.json` +
//! `model.safetensors`), for tests and benchmarks where no checkpoint can be downloaded:
//! Qwen3, and Qwen3-MoE when the spec has experts.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::rng::SplitMix;

/// The experts of a random Qwen3-MoE (`Qwen3MoeForCausalLM`).
#[derive(Debug, Clone, PartialEq)]
pub struct MoeSpec {
    /// Experts per sparse layer.
    pub experts: usize,
    /// Experts each token is routed to.
    pub experts_per_token: usize,
    /// Width of one expert's MLP.
    pub expert_intermediate: usize,
    /// Whether the chosen experts' weights are renormalised.
    pub norm_topk_prob: bool,
    /// Every this-many-th layer is sparse (1: all of them).
    pub decoder_sparse_step: usize,
    /// Layers kept dense whatever the step.
    pub mlp_only_layers: Vec<usize>,
}

impl MoeSpec {
    /// A few small experts, for unit tests.
    pub fn tiny() -> MoeSpec {
        MoeSpec {
            experts: 8,
            experts_per_token: 2,
            expert_intermediate: 32,
            norm_topk_prob: true,
            decoder_sparse_step: 1,
            mlp_only_layers: Vec::new(),
        }
    }

    /// The experts of Qwen3-30B-A3B: 128 experts of width 768, 8 per token.
    pub fn qwen3_30b_a3b() -> MoeSpec {
        MoeSpec {
            experts: 128,
            experts_per_token: 8,
            expert_intermediate: 768,
            ..MoeSpec::tiny()
        }
    }
}

/// The shape of a random Qwen3 model (Qwen3-MoE when `moe` is set).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3Spec {
    /// Decoder layers.
    pub layers: usize,
    /// Residual width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Vocabulary (the tokenizer's size, when a tokenizer is shipped with the model).
    pub vocab: usize,
    /// Longest position.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding (Qwen3-0.6B does).
    pub tie_word_embeddings: bool,
    /// Weight dtype on disk: F32 or BF16.
    pub dtype: DType,
    /// Seed of the weights.
    pub seed: u64,
    /// EOS ids written to `config.json`.
    pub eos_token_ids: Vec<u32>,
    /// The experts, for a Qwen3-MoE.
    pub moe: Option<MoeSpec>,
}

impl Qwen3Spec {
    /// A model small enough for unit tests.
    pub fn tiny(vocab: usize) -> Qwen3Spec {
        Qwen3Spec {
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            intermediate: 128,
            vocab,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
            dtype: DType::F32,
            seed: 0,
            eos_token_ids: vec![],
            moe: None,
        }
    }

    /// The shape of Qwen3-0.6B (28 layers, hidden 1024, 16 heads, 8 KV heads, head_dim 128).
    pub fn qwen3_0_6b(vocab: usize) -> Qwen3Spec {
        Qwen3Spec {
            layers: 28,
            hidden: 1024,
            heads: 16,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 3072,
            vocab,
            max_position_embeddings: 40960,
            tie_word_embeddings: true,
            ..Qwen3Spec::tiny(vocab)
        }
    }

    /// The shape of Qwen3-30B-A3B (48 layers, hidden 2048, 32 heads, 4 KV heads,
    /// head_dim 128, 128 experts, 8 per token).
    pub fn qwen3_30b_a3b(vocab: usize) -> Qwen3Spec {
        Qwen3Spec {
            layers: 48,
            hidden: 2048,
            heads: 32,
            kv_heads: 4,
            head_dim: 128,
            intermediate: 6144,
            max_position_embeddings: 40960,
            tie_word_embeddings: false,
            moe: Some(MoeSpec::qwen3_30b_a3b()),
            ..Qwen3Spec::tiny(vocab)
        }
    }

    /// The `config.json` of this model.
    pub fn config_json(&self) -> serde_json::Value {
        let mut config = self.dense_config_json();
        if let (Some(moe), Some(fields)) = (&self.moe, config.as_object_mut()) {
            fields.extend([
                ("architectures".to_owned(), json!(["Qwen3MoeForCausalLM"])),
                ("model_type".to_owned(), json!("qwen3_moe")),
                ("num_experts".to_owned(), json!(moe.experts)),
                ("num_experts_per_tok".to_owned(), json!(moe.experts_per_token)),
                ("moe_intermediate_size".to_owned(), json!(moe.expert_intermediate)),
                ("norm_topk_prob".to_owned(), json!(moe.norm_topk_prob)),
                ("decoder_sparse_step".to_owned(), json!(moe.decoder_sparse_step)),
                ("mlp_only_layers".to_owned(), json!(moe.mlp_only_layers)),
                ("output_router_logits".to_owned(), json!(false)),
                ("router_aux_loss_coef".to_owned(), json!(0.001)),
            ]);
        }
        config
    }

    fn dense_config_json(&self) -> serde_json::Value {
        json!({
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "max_window_layers": self.layers,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "rope_scaling": null,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "sliding_window": null,
            "use_sliding_window": false,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": if self.dtype == DType::BF16 { "bfloat16" } else { "float32" },
            "eos_token_id": self.eos_token_ids.first().copied().unwrap_or(0),
            "bos_token_id": null,
        })
    }

    /// Tensor names and shapes, in checkpoint order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, q, kv, i) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        );
        // Which layers are sparse is the engine's reading of this config, so the two agree.
        let sparse = ModelConfig::from_json(&self.config_json(), Path::new("config.json"))
            .ok()
            .and_then(|c| c.moe)
            .map(|m| m.sparse_layers)
            .unwrap_or_default();
        let mut out = vec![("model.embed_tokens.weight".to_owned(), vec![self.vocab, h])];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            out.extend([
                (format!("{p}.input_layernorm.weight"), vec![h]),
                (format!("{p}.post_attention_layernorm.weight"), vec![h]),
                (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
                (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
                (format!("{p}.self_attn.q_norm.weight"), vec![self.head_dim]),
                (format!("{p}.self_attn.k_norm.weight"), vec![self.head_dim]),
            ]);
            match &self.moe {
                Some(moe) if sparse.get(l).copied().unwrap_or(false) => {
                    out.push((format!("{p}.mlp.gate.weight"), vec![moe.experts, h]));
                    for e in 0..moe.experts {
                        out.extend(mlp(&format!("{p}.mlp.experts.{e}"), h, moe.expert_intermediate));
                    }
                }
                _ => out.extend(mlp(&format!("{p}.mlp"), h, i)),
            }
        }
        out.push(("model.norm.weight".to_owned(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_owned(), vec![self.vocab, h]));
        }
        out
    }

    /// Writes `config.json` and `model.safetensors` into `dir`. `progress` hears
    /// `(tensors written, total)`.
    pub fn write(&self, dir: &Path, progress: &mut dyn FnMut(usize, usize)) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let config = dir.join("config.json");
        let text = serde_json::to_string_pretty(&self.config_json()).map_err(|source| Error::Json {
            path: config.clone(),
            source,
        })?;
        std::fs::write(&config, text).map_err(|source| Error::Io { path: config, source })?;
        let specs = self.tensors();
        let mut rng = Gaussian::new(self.seed);
        let mut tensors = HashMap::new();
        for (n, (name, shape)) in specs.iter().enumerate() {
            let count: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                (0..count).map(|_| 1.0 + 0.1 * rng.next()).collect()
            } else {
                // Kaiming-like scale keeps activations O(1), so logits spread and greedy
                // choices are not decided by rounding noise.
                let fan_in = if name.contains("embed_tokens") {
                    1
                } else {
                    shape[shape.len() - 1]
                };
                let std = (1.0 / fan_in as f32).sqrt();
                (0..count).map(|_| std * rng.next()).collect()
            };
            let t = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)?.to_dtype(self.dtype)?;
            tensors.insert(name.clone(), t);
            progress(n + 1, specs.len());
        }
        let weights = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors, &weights).map_err(|source| Error::Weights {
            path: weights,
            source,
        })?;
        Ok(())
    }
}

/// A SwiGLU MLP's three weights under `prefix`.
fn mlp(prefix: &str, hidden: usize, intermediate: usize) -> [(String, Vec<usize>); 3] {
    [
        (format!("{prefix}.gate_proj.weight"), vec![intermediate, hidden]),
        (format!("{prefix}.up_proj.weight"), vec![intermediate, hidden]),
        (format!("{prefix}.down_proj.weight"), vec![hidden, intermediate]),
    ]
}

/// Seeded standard normal numbers (Box-Muller over SplitMix64), reproducible everywhere.
struct Gaussian {
    rng: SplitMix,
    spare: Option<f32>,
}

impl Gaussian {
    fn new(seed: u64) -> Gaussian {
        Gaussian {
            rng: SplitMix::new(seed ^ 0x5DEE_CE66_D1CE_4E5B),
            spare: None,
        }
    }

    fn next(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1 = self.rng.next_f64().max(1e-300);
        let u2 = self.rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare = Some((r * s) as f32);
        (r * c) as f32
    }
}
