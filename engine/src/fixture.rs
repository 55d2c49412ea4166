//! Random-weight models in the real Hugging Face layout (`config.json` +
//! `model.safetensors`), for tests and benchmarks where no checkpoint can be downloaded:
//! Qwen3, Qwen3-MoE (Qwen3 with experts), GLM-4.5 (`Glm4MoeForCausalLM`), DeepSeek-V3
//! (`DeepseekV3ForCausalLM`) and MiniMax-M2 (`MiniMaxM2ForCausalLM`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use crate::config::{MlaConfig, ModelConfig, MoeConfig, QkNorm, DENSE_PROJECTIONS};
use crate::error::{Error, Result};
use crate::rng::SplitMix;

/// Which published architecture a fixture is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `Qwen3ForCausalLM`, or `Qwen3MoeForCausalLM` when the spec has experts.
    Qwen3,
    /// `Glm4MoeForCausalLM`: q/k/v biases, half-rotated heads, sigmoid-routed experts
    /// with a correction bias and a shared expert, dense first layers.
    Glm4Moe,
    /// `DeepseekV3ForCausalLM`: latent attention, GLM-4.5's kind of experts.
    DeepseekV3,
    /// `MiniMaxM2ForCausalLM`: q/k norms over all heads, half-rotated heads, sigmoid
    /// experts on every layer (`intermediate` is unused; experts are `expert_intermediate`).
    MiniMaxM2,
}

/// The experts of a random mixture-of-experts model. Qwen3-MoE reads
/// `decoder_sparse_step` and `mlp_only_layers`; GLM-4.5 the shared experts, dense first
/// layers, groups and scaling factor.
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
    /// Shared experts, each as wide as a routed one (GLM-4.5).
    pub shared_experts: usize,
    /// Leading layers kept dense (GLM-4.5's `first_k_dense_replace`).
    pub first_dense_layers: usize,
    /// Expert groups (GLM-4.5's `n_group`).
    pub groups: usize,
    /// Groups a token may choose from.
    pub topk_groups: usize,
    /// Factor on the routed experts' weights (GLM-4.5).
    pub routed_scaling_factor: f64,
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
            shared_experts: 1,
            first_dense_layers: 1,
            groups: 4,
            topk_groups: 2,
            routed_scaling_factor: 2.5,
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

    /// The experts of GLM-4.5-Air: 128 experts of width 1408, 8 per token, one shared
    /// expert, the first layer dense.
    pub fn glm_4_5_air() -> MoeSpec {
        MoeSpec {
            experts: 128,
            experts_per_token: 8,
            expert_intermediate: 1408,
            groups: 1,
            topk_groups: 1,
            routed_scaling_factor: 1.0,
            ..MoeSpec::tiny()
        }
    }
}

/// The shape of a random model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The architecture written.
    pub family: Family,
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
    /// The experts (Qwen3-MoE, GLM-4.5, DeepSeek-V3, MiniMax-M2).
    pub moe: Option<MoeSpec>,
    /// Latent attention's shapes (DeepSeek-V3; `heads` and `hidden` are the spec's).
    pub mla: Option<MlaConfig>,
}

impl ModelSpec {
    /// A model small enough for unit tests.
    pub fn tiny(vocab: usize) -> ModelSpec {
        ModelSpec {
            family: Family::Qwen3,
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
            mla: None,
        }
    }

    /// The shape of Qwen3-0.6B (28 layers, hidden 1024, 16 heads, 8 KV heads, head_dim 128).
    pub fn qwen3_0_6b(vocab: usize) -> ModelSpec {
        ModelSpec {
            layers: 28,
            hidden: 1024,
            heads: 16,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 3072,
            vocab,
            max_position_embeddings: 40960,
            tie_word_embeddings: true,
            ..ModelSpec::tiny(vocab)
        }
    }

    /// The shape of Qwen3-30B-A3B (48 layers, hidden 2048, 32 heads, 4 KV heads,
    /// head_dim 128, 128 experts, 8 per token).
    pub fn qwen3_30b_a3b(vocab: usize) -> ModelSpec {
        ModelSpec {
            layers: 48,
            hidden: 2048,
            heads: 32,
            kv_heads: 4,
            head_dim: 128,
            intermediate: 6144,
            max_position_embeddings: 40960,
            tie_word_embeddings: false,
            moe: Some(MoeSpec::qwen3_30b_a3b()),
            ..ModelSpec::tiny(vocab)
        }
    }

    /// A small GLM-4.5: two layers (the first dense), 8 experts in 4 groups.
    pub fn glm4_moe_tiny(vocab: usize) -> ModelSpec {
        ModelSpec {
            family: Family::Glm4Moe,
            moe: Some(MoeSpec::tiny()),
            ..ModelSpec::tiny(vocab)
        }
    }

    /// The shape of GLM-4.5-Air (46 layers, hidden 4096, 96 heads, 8 KV heads,
    /// head_dim 128, 128 experts, 8 per token).
    pub fn glm_4_5_air(vocab: usize) -> ModelSpec {
        ModelSpec {
            family: Family::Glm4Moe,
            layers: 46,
            hidden: 4096,
            heads: 96,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 10944,
            max_position_embeddings: 131072,
            tie_word_embeddings: false,
            moe: Some(MoeSpec::glm_4_5_air()),
            ..ModelSpec::tiny(vocab)
        }
    }

    /// A small DeepSeek-V3: three layers (the first dense), latent attention with
    /// compressed queries, 8 experts in 4 groups.
    pub fn deepseek_v3_tiny(vocab: usize) -> ModelSpec {
        ModelSpec {
            family: Family::DeepseekV3,
            layers: 3,
            // Latent attention has no key/value heads; the config repeats the heads.
            kv_heads: 4,
            moe: Some(MoeSpec::tiny()),
            mla: Some(MlaConfig {
                q_lora_rank: Some(32),
                kv_lora_rank: 32,
                qk_nope_head_dim: 16,
                qk_rope_head_dim: 8,
                v_head_dim: 16,
            }),
            ..ModelSpec::tiny(vocab)
        }
    }

    /// The shape of DeepSeek-V3 (61 layers, hidden 7168, 128 heads, latent 512, 256
    /// experts in 8 groups, 8 per token, the first 3 layers dense).
    pub fn deepseek_v3(vocab: usize) -> ModelSpec {
        ModelSpec {
            family: Family::DeepseekV3,
            layers: 61,
            hidden: 7168,
            heads: 128,
            kv_heads: 128,
            intermediate: 18432,
            max_position_embeddings: 163840,
            tie_word_embeddings: false,
            moe: Some(MoeSpec {
                experts: 256,
                experts_per_token: 8,
                expert_intermediate: 2048,
                first_dense_layers: 3,
                groups: 8,
                topk_groups: 4,
                ..MoeSpec::tiny()
            }),
            mla: Some(MlaConfig {
                q_lora_rank: Some(1536),
                kv_lora_rank: 512,
                qk_nope_head_dim: 128,
                qk_rope_head_dim: 64,
                v_head_dim: 128,
            }),
            ..ModelSpec::tiny(vocab)
        }
    }

    /// A small MiniMax-M2: two layers of 8 experts, 2 per token.
    pub fn minimax_m2_tiny(vocab: usize) -> ModelSpec {
        ModelSpec {
            family: Family::MiniMaxM2,
            moe: Some(MoeSpec::tiny()),
            ..ModelSpec::tiny(vocab)
        }
    }

    /// The shape of MiniMax-M2 (62 layers, hidden 3072, 48 heads, 8 KV heads, head_dim
    /// 128 with 64 rotated, 256 experts of width 1536, 8 per token).
    pub fn minimax_m2(vocab: usize) -> ModelSpec {
        ModelSpec {
            family: Family::MiniMaxM2,
            layers: 62,
            hidden: 3072,
            heads: 48,
            kv_heads: 8,
            head_dim: 128,
            max_position_embeddings: 196608,
            tie_word_embeddings: false,
            moe: Some(MoeSpec {
                experts: 256,
                experts_per_token: 8,
                expert_intermediate: 1536,
                ..MoeSpec::tiny()
            }),
            ..ModelSpec::tiny(vocab)
        }
    }

    /// The `config.json` of this model.
    pub fn config_json(&self) -> serde_json::Value {
        let mut config = self.dense_config_json();
        let Some(fields) = config.as_object_mut() else {
            return config;
        };
        match (self.family, &self.moe) {
            (Family::Qwen3, None) => {}
            (Family::Qwen3, Some(moe)) => fields.extend([
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
            ]),
            (Family::MiniMaxM2, moe) => {
                let moe = moe.clone().unwrap_or_else(MoeSpec::tiny);
                fields.extend([
                    ("architectures".to_owned(), json!(["MiniMaxM2ForCausalLM"])),
                    ("model_type".to_owned(), json!("minimax_m2")),
                    ("intermediate_size".to_owned(), json!(moe.expert_intermediate)),
                    ("num_local_experts".to_owned(), json!(moe.experts)),
                    ("num_experts_per_tok".to_owned(), json!(moe.experts_per_token)),
                    ("rotary_dim".to_owned(), json!(self.head_dim / 2)),
                    ("use_qk_norm".to_owned(), json!(true)),
                    ("qk_norm_type".to_owned(), json!("per_layer")),
                    ("scoring_func".to_owned(), json!("sigmoid")),
                    ("use_routing_bias".to_owned(), json!(true)),
                    ("rope_theta".to_owned(), json!(5_000_000.0)),
                    ("attn_type_list".to_owned(), json!(vec![1; self.layers])),
                ]);
                for unused in ["max_window_layers", "sliding_window", "use_sliding_window"] {
                    fields.remove(unused);
                }
            }
            (Family::Glm4Moe | Family::DeepseekV3, moe) => {
                let moe = moe.clone().unwrap_or_else(MoeSpec::tiny);
                if self.family == Family::Glm4Moe {
                    fields.extend([
                        ("architectures".to_owned(), json!(["Glm4MoeForCausalLM"])),
                        ("model_type".to_owned(), json!("glm4_moe")),
                        ("attention_bias".to_owned(), json!(true)),
                        ("use_qk_norm".to_owned(), json!(false)),
                        ("partial_rotary_factor".to_owned(), json!(0.5)),
                        ("rms_norm_eps".to_owned(), json!(1e-5)),
                    ]);
                } else {
                    let mla = self.mla.clone().unwrap_or(MlaConfig {
                        q_lora_rank: None,
                        kv_lora_rank: self.head_dim,
                        qk_nope_head_dim: self.head_dim,
                        qk_rope_head_dim: self.head_dim / 2,
                        v_head_dim: self.head_dim,
                    });
                    fields.extend([
                        ("architectures".to_owned(), json!(["DeepseekV3ForCausalLM"])),
                        ("model_type".to_owned(), json!("deepseek_v3")),
                        ("q_lora_rank".to_owned(), json!(mla.q_lora_rank)),
                        ("kv_lora_rank".to_owned(), json!(mla.kv_lora_rank)),
                        ("qk_nope_head_dim".to_owned(), json!(mla.qk_nope_head_dim)),
                        ("qk_rope_head_dim".to_owned(), json!(mla.qk_rope_head_dim)),
                        ("v_head_dim".to_owned(), json!(mla.v_head_dim)),
                        ("moe_layer_freq".to_owned(), json!(1)),
                        ("topk_method".to_owned(), json!("noaux_tc")),
                        ("scoring_func".to_owned(), json!("sigmoid")),
                        ("ep_size".to_owned(), json!(1)),
                    ]);
                    fields.remove("head_dim");
                }
                fields.extend([
                    ("n_routed_experts".to_owned(), json!(moe.experts)),
                    ("num_experts_per_tok".to_owned(), json!(moe.experts_per_token)),
                    ("moe_intermediate_size".to_owned(), json!(moe.expert_intermediate)),
                    ("n_shared_experts".to_owned(), json!(moe.shared_experts)),
                    ("first_k_dense_replace".to_owned(), json!(moe.first_dense_layers)),
                    ("n_group".to_owned(), json!(moe.groups)),
                    ("topk_group".to_owned(), json!(moe.topk_groups)),
                    (
                        "routed_scaling_factor".to_owned(),
                        json!(moe.routed_scaling_factor),
                    ),
                    ("norm_topk_prob".to_owned(), json!(moe.norm_topk_prob)),
                    ("num_nextn_predict_layers".to_owned(), json!(0)),
                ]);
                for unused in ["max_window_layers", "sliding_window", "use_sliding_window"] {
                    fields.remove(unused);
                }
            }
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
    pub fn tensors(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let (h, q, kv) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
        );
        // The engine's reading of this config decides which tensors exist, so the two agree.
        let cfg = ModelConfig::from_json(&self.config_json(), Path::new("config.json"))?;
        let (qk_norm, qkv_bias, mla, moe) = (cfg.qk_norm, cfg.qkv_bias, cfg.mla, cfg.moe);
        let mut out = vec![("model.embed_tokens.weight".to_owned(), vec![self.vocab, h])];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            let a = format!("{p}.self_attn");
            out.extend([
                (format!("{p}.input_layernorm.weight"), vec![h]),
                (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            ]);
            if let Some(m) = &mla {
                out.extend(latent_attention(&a, h, self.heads, m));
                out.extend(self.ffn_tensors(&p, moe.as_ref(), l));
                continue;
            }
            out.extend([
                (format!("{a}.q_proj.weight"), vec![q, h]),
                (format!("{a}.k_proj.weight"), vec![kv, h]),
                (format!("{a}.v_proj.weight"), vec![kv, h]),
                (format!("{a}.o_proj.weight"), vec![h, q]),
            ]);
            if qkv_bias {
                out.extend([
                    (format!("{a}.q_proj.bias"), vec![q]),
                    (format!("{a}.k_proj.bias"), vec![kv]),
                    (format!("{a}.v_proj.bias"), vec![kv]),
                ]);
            }
            let norms = match qk_norm {
                QkNorm::None => None,
                QkNorm::PerHead => Some((self.head_dim, self.head_dim)),
                QkNorm::Whole => Some((q, kv)),
            };
            if let Some((qw, kw)) = norms {
                out.extend([
                    (format!("{a}.q_norm.weight"), vec![qw]),
                    (format!("{a}.k_norm.weight"), vec![kw]),
                ]);
            }
            out.extend(self.ffn_tensors(&p, moe.as_ref(), l));
        }
        out.push(("model.norm.weight".to_owned(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_owned(), vec![self.vocab, h]));
        }
        Ok(out)
    }

    /// The feed-forward tensors of layer `l` (prefix `p`): the dense MLP, or the router,
    /// experts and shared experts where the layer is sparse.
    fn ffn_tensors(&self, p: &str, moe: Option<&MoeConfig>, l: usize) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden;
        let Some(m) = moe.filter(|m| m.is_sparse(l)) else {
            return mlp(&format!("{p}.mlp"), h, self.intermediate, DENSE_PROJECTIONS).to_vec();
        };
        let (module, names) = (format!("{p}.{}", m.layout.module()), m.layout.projections());
        let mut out = vec![(format!("{module}.gate.weight"), vec![m.experts, h])];
        if m.correction_bias {
            out.push((
                format!("{module}.{}", m.layout.correction_bias()),
                vec![m.experts],
            ));
        }
        for e in 0..m.experts {
            out.extend(mlp(
                &format!("{module}.experts.{e}"),
                h,
                m.expert_intermediate_size,
                names,
            ));
        }
        if m.shared_intermediate_size > 0 {
            out.extend(mlp(
                &format!("{module}.shared_experts"),
                h,
                m.shared_intermediate_size,
                names,
            ));
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
        let specs = self.tensors()?;
        let mut rng = Gaussian::new(self.seed);
        let mut tensors = HashMap::new();
        for (n, (name, shape)) in specs.iter().enumerate() {
            let count: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                (0..count).map(|_| 1.0 + 0.1 * rng.next()).collect()
            } else if name.ends_with("bias") {
                (0..count).map(|_| 0.05 * rng.next()).collect()
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

/// Latent attention's weights under `a` (a layer's `self_attn`), in DeepSeek-V3's names.
fn latent_attention(a: &str, hidden: usize, heads: usize, m: &MlaConfig) -> Vec<(String, Vec<usize>)> {
    let q_width = heads * (m.qk_nope_head_dim + m.qk_rope_head_dim);
    let mut out = match m.q_lora_rank {
        Some(r) => vec![
            (format!("{a}.q_a_proj.weight"), vec![r, hidden]),
            (format!("{a}.q_a_layernorm.weight"), vec![r]),
            (format!("{a}.q_b_proj.weight"), vec![q_width, r]),
        ],
        None => vec![(format!("{a}.q_proj.weight"), vec![q_width, hidden])],
    };
    out.extend([
        (
            format!("{a}.kv_a_proj_with_mqa.weight"),
            vec![m.kv_lora_rank + m.qk_rope_head_dim, hidden],
        ),
        (format!("{a}.kv_a_layernorm.weight"), vec![m.kv_lora_rank]),
        (
            format!("{a}.kv_b_proj.weight"),
            vec![heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank],
        ),
        (format!("{a}.o_proj.weight"), vec![hidden, heads * m.v_head_dim]),
    ]);
    out
}

/// A SwiGLU MLP's gate, up and down weights under `prefix`, named `names`.
fn mlp(
    prefix: &str,
    hidden: usize,
    intermediate: usize,
    [gate, up, down]: [&str; 3],
) -> [(String, Vec<usize>); 3] {
    [
        (format!("{prefix}.{gate}.weight"), vec![intermediate, hidden]),
        (format!("{prefix}.{up}.weight"), vec![intermediate, hidden]),
        (format!("{prefix}.{down}.weight"), vec![hidden, intermediate]),
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
