//! The decoder (Qwen3, Qwen2, Llama, Qwen3-MoE, GLM-4.5, DeepSeek-V3, MiniMax-M2) with a
//! batched forward: one call runs any number of sequences, each at its own position with
//! its own block table in the paged cache.
//!
//! Linear layers run once over all new tokens of the step (the weights are read once per
//! step, whatever the batch); attention runs per sequence over that sequence's cached
//! keys and values. Layers hold no per-sequence state: the cache is passed in, so one
//! model serves every sequence (candle-transformers keeps a cache inside each layer,
//! which means one sequence per model).

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{RmsNorm, VarBuilder};

use crate::attention::{Attention, Rotary};
use crate::config::{ModelConfig, DENSE_PROJECTIONS};
use crate::error::{Error, Result};
use crate::ffn::{Experts, FeedForward, Mlp};
use crate::kv_cache::KvCache;
use crate::linear::{Embed, Proj};
use crate::weights::Source;

/// One sequence's share of a forward step.
#[derive(Debug, Clone, Copy)]
pub struct SeqInput<'a> {
    /// Tokens new in this step: a (chunk of a) prompt, or the last sampled token.
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`: how many of the sequence's tokens are cached already.
    pub start: usize,
    /// The sequence's block table, covering positions up to `start + tokens.len()`.
    pub blocks: &'a [u32],
}

#[derive(Debug)]
struct Layer {
    attn: Attention,
    input_norm: RmsNorm,
    post_norm: RmsNorm,
    ffn: FeedForward,
}

/// A loaded decoder.
#[derive(Debug)]
pub struct Model {
    cfg: ModelConfig,
    embed: Embed,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Proj,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    dtype: DType,
}

impl Model {
    /// Builds the model from weights named as in Hugging Face checkpoints
    /// (`model.layers.N.self_attn.q_proj.weight`, …). `progress` hears each layer loaded.
    pub fn new(
        cfg: &ModelConfig,
        vb: &VarBuilder<'static>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> candle_core::Result<Model> {
        Model::load(cfg, &Source::plain(vb.clone()), progress)
    }

    /// Builds the model from `src`'s tensors, under their Hugging Face names.
    pub(crate) fn load(
        cfg: &ModelConfig,
        src: &Source,
        progress: &mut dyn FnMut(usize, usize),
    ) -> candle_core::Result<Model> {
        let h = cfg.hidden_size;
        let embed = Embed::load(cfg.vocab_size, h, &src.pp("model.embed_tokens"))?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let src = src.pp("model.layers").pp(i);
            let vb = src.vb();
            let ffn = match &cfg.moe {
                Some(moe) if moe.is_sparse(i) => {
                    FeedForward::Experts(Experts::load(h, moe, &src.pp(moe.layout.module()))?)
                }
                _ => FeedForward::Dense(Mlp::load(
                    h,
                    cfg.intermediate_size,
                    &src.pp("mlp"),
                    DENSE_PROJECTIONS,
                )?),
            };
            layers.push(Layer {
                attn: Attention::load(cfg, &src.pp("self_attn"))?,
                input_norm: candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
                post_norm: candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
                ffn,
            });
            progress(i + 1, cfg.num_layers);
        }
        let vb = src.vb();
        let norm = candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("model.norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Proj::tied(&embed)?
        } else {
            Proj::load(h, cfg.vocab_size, false, &src.pp("lm_head"))?
        };
        let (cos, sin) = crate::rope::tables(cfg, vb.dtype(), vb.device())?;
        Ok(Model {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype (the cache uses it too).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Runs one step for a batch of sequences: writes their new keys and values into the
    /// cache and returns the next-token logits of each, `[batch.len(), vocab]` in f32.
    pub fn forward(&self, batch: &[SeqInput<'_>], cache: &KvCache) -> Result<Tensor> {
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut last = Vec::with_capacity(batch.len());
        for s in batch {
            if s.tokens.is_empty() {
                return Err(Error::Input("a sequence in the batch has no new tokens".into()));
            }
            let end = s.start + s.tokens.len();
            if end > self.cfg.max_position_embeddings {
                return Err(Error::Input(format!(
                    "position {end} is past the model's limit of {}",
                    self.cfg.max_position_embeddings
                )));
            }
            if let Some(bad) = s.tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
                return Err(Error::Input(format!(
                    "token id {bad} is outside the vocabulary ({})",
                    self.cfg.vocab_size
                )));
            }
            ids.extend_from_slice(s.tokens);
            positions.extend((s.start..end).map(|p| p as u32));
            last.push((ids.len() - 1) as u32);
        }
        if batch.is_empty() {
            return Err(Error::Input("empty batch".into()));
        }
        let n = ids.len();
        let ids = Tensor::from_vec(ids, n, &self.device)?;
        let positions = Tensor::from_vec(positions, n, &self.device)?;
        let cos = self.cos.index_select(&positions, 0)?;
        let sin = self.sin.index_select(&positions, 0)?;
        let rotary = Rotary {
            cos: &cos,
            sin: &sin,
            interleaved: self.cfg.rope_interleaved,
        };
        let mut x = self.embed.forward(&ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = self.layer_forward(i, layer, &x, &rotary, batch, cache)?;
        }
        let last = Tensor::from_vec(last, batch.len(), &self.device)?;
        let h = self.norm.forward(&x.index_select(&last, 0)?)?;
        Ok(self.lm_head.forward(&h)?.to_dtype(DType::F32)?)
    }

    fn layer_forward(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        rotary: &Rotary<'_>,
        batch: &[SeqInput<'_>],
        cache: &KvCache,
    ) -> Result<Tensor> {
        let h = layer.input_norm.forward(x)?;
        let x = (x + layer.attn.forward(&self.cfg, index, &h, rotary, batch, cache)?)?;
        let h = layer.post_norm.forward(&x)?;
        Ok((x + layer.ffn.forward(&h)?)?)
    }
}

/// Index of the largest value in a `[vocab]` f32 row (greedy sampling).
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::{Path, PathBuf};

    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::{qwen3, qwen3_moe};

    use super::*;
    use crate::fixture::{ModelSpec, MoeSpec};
    use crate::{load_model, BlockAllocator, KvCache};

    fn fixture(name: &str, spec: &ModelSpec) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("braid-engine-{name}-{}", std::process::id()));
        spec.write(&dir, &mut |_, _| {}).unwrap();
        dir
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Blocks for a sequence, taken from a shared allocator so tables interleave.
    fn take(alloc: &mut BlockAllocator, n: usize) -> Vec<u32> {
        (0..n).map(|_| alloc.allocate().unwrap()).collect()
    }

    /// A reference decoder: one sequence, cache inside, `forward(input, offset)`.
    type Reference = Box<dyn FnMut(&Tensor, usize) -> candle_core::Result<Tensor>>;

    /// Prefill and 32 greedy steps of `spec`'s fixture, ours against `reference`: every
    /// step's logits within 1e-4 and the same greedy choice.
    fn assert_matches_reference(name: &str, spec: &ModelSpec, reference: impl FnOnce(&PathBuf) -> Reference) {
        let dir = fixture(name, spec);
        let model = load_model(&dir, DType::F32, &Device::Cpu, &mut |_, _| {}).unwrap();
        let mut reference = reference(&dir);

        let cache = KvCache::new(model.config(), 32, 4, DType::F32, &Device::Cpu).unwrap();
        let mut alloc = BlockAllocator::new(32);
        let _other = take(&mut alloc, 1);
        let blocks: Vec<u32> = (0..10)
            .flat_map(|_| take(&mut alloc, 2).into_iter().take(1))
            .collect();
        let prompt = [3u32, 141, 59, 26, 5, 358, 97];

        let ours = model
            .forward(
                &[SeqInput {
                    tokens: &prompt,
                    start: 0,
                    blocks: &blocks,
                }],
                &cache,
            )
            .unwrap();
        let input = Tensor::new(&prompt[..], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let theirs = reference(&input, 0).unwrap().squeeze(0).unwrap();
        assert!(
            max_abs_diff(&ours, &theirs) <= 1e-4,
            "{name}: prefill differs by {}",
            max_abs_diff(&ours, &theirs)
        );

        let (mut logits, mut reference_logits) = (ours, theirs);
        let mut distinct = std::collections::HashSet::new();
        for step in 0..32 {
            let token = argmax(&logits.squeeze(0).unwrap()).unwrap();
            let reference_token = argmax(&reference_logits.squeeze(0).unwrap()).unwrap();
            assert_eq!(
                token, reference_token,
                "{name}: greedy choice differs at step {step}"
            );
            distinct.insert(token);
            let pos = prompt.len() + step;
            logits = model
                .forward(
                    &[SeqInput {
                        tokens: &[token],
                        start: pos,
                        blocks: &blocks,
                    }],
                    &cache,
                )
                .unwrap();
            let input = Tensor::new(&[token], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            reference_logits = reference(&input, pos).unwrap().squeeze(0).unwrap();
            let diff = max_abs_diff(&logits, &reference_logits);
            assert!(diff <= 1e-4, "{name}: step {step} differs by {diff}");
        }
        assert!(distinct.len() > 3, "{name}: degenerate decode: {distinct:?}");
    }

    fn weights_of(dir: &std::path::Path) -> candle_nn::VarBuilder<'static> {
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
    }

    #[test]
    fn logits_match_candle_transformers_for_prefill_and_every_greedy_step() {
        let spec = ModelSpec::tiny(512);
        let config = spec.config_json();
        assert_matches_reference("parity", &spec, |dir| {
            let rcfg: qwen3::Config = serde_json::from_value(config).unwrap();
            let mut m = qwen3::ModelForCausalLM::new(&rcfg, weights_of(dir)).unwrap();
            Box::new(move |input, offset| m.forward(input, offset))
        });
    }

    #[test]
    fn qwen3_moe_logits_match_candle_transformers_with_dense_and_sparse_layers() {
        // Every second layer sparse (candle-transformers reads decoder_sparse_step, not
        // mlp_only_layers), softmax routing renormalised and not.
        for norm_topk_prob in [true, false] {
            let spec = ModelSpec {
                layers: 4,
                moe: Some(MoeSpec {
                    decoder_sparse_step: 2,
                    norm_topk_prob,
                    ..MoeSpec::tiny()
                }),
                ..ModelSpec::tiny(512)
            };
            let config = spec.config_json();
            assert_matches_reference(&format!("moe-parity-{norm_topk_prob}"), &spec, |dir| {
                let rcfg: qwen3_moe::Config = serde_json::from_value(config).unwrap();
                let mut m = qwen3_moe::ModelForCausalLM::new(&rcfg, weights_of(dir)).unwrap();
                Box::new(move |input, offset| m.forward(input, offset))
            });
        }
    }

    fn greedy(model: &Model, batch: &[(Vec<u32>, Vec<u32>)], cache: &KvCache, steps: usize) -> Vec<Vec<u32>> {
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); batch.len()];
        let inputs: Vec<SeqInput<'_>> = batch
            .iter()
            .map(|(p, b)| SeqInput {
                tokens: p,
                start: 0,
                blocks: b,
            })
            .collect();
        let mut logits = model.forward(&inputs, cache).unwrap();
        for step in 0..steps {
            for (i, o) in out.iter_mut().enumerate() {
                o.push(argmax(&logits.get(i).unwrap()).unwrap());
            }
            if step + 1 == steps {
                break;
            }
            let inputs: Vec<SeqInput<'_>> = batch
                .iter()
                .zip(&out)
                .map(|((p, b), o)| SeqInput {
                    tokens: &o[o.len() - 1..],
                    start: p.len() + o.len() - 1,
                    blocks: b,
                })
                .collect();
            logits = model.forward(&inputs, cache).unwrap();
        }
        out
    }

    #[test]
    fn sequences_batched_together_decode_exactly_as_alone() {
        batched_decode_is_exact("batch", &ModelSpec::tiny(512));
    }

    #[test]
    fn moe_sequences_batched_together_decode_exactly_as_alone() {
        // Batched tokens route to different experts: each expert runs over the rows
        // gathered for it, and every row must come out as it would alone.
        let spec = ModelSpec {
            moe: Some(MoeSpec::tiny()),
            ..ModelSpec::tiny(512)
        };
        batched_decode_is_exact("moe-batch", &spec);
        batched_decode_is_exact("glm-batch", &ModelSpec::glm4_moe_tiny(512));
        batched_decode_is_exact("deepseek-batch", &ModelSpec::deepseek_v3_tiny(512));
        batched_decode_is_exact("minimax-batch", &ModelSpec::minimax_m2_tiny(512));
    }

    #[test]
    fn q8_0_sequences_batched_together_decode_exactly_as_alone() {
        // A GGUF file's Q8_0 weights: one row through candle's kernel, a batch through
        // braid's (`q8_0.rs`), the same numbers.
        let dir = fixture("q8-batch", &ModelSpec::tiny(512));
        let file = crate::gguf::tests::convert(&dir, candle_core::quantized::GgmlDType::Q8_0);
        batched_decode_is_exact_on(&file);
    }

    fn batched_decode_is_exact(name: &str, spec: &ModelSpec) {
        batched_decode_is_exact_on(&fixture(name, spec));
    }

    fn batched_decode_is_exact_on(dir: &Path) {
        let model = load_model(dir, DType::F32, &Device::Cpu, &mut |_, _| {}).unwrap();
        let prompts: Vec<Vec<u32>> = (0..8)
            .map(|i| {
                (0..(1 + i * 3))
                    .map(|j| ((i * 37 + j * 11) % 500) as u32)
                    .collect()
            })
            .collect();
        let steps = 12;
        let mut alloc = BlockAllocator::new(64);
        let cache = KvCache::new(model.config(), 64, 4, DType::F32, &Device::Cpu).unwrap();
        let together: Vec<(Vec<u32>, Vec<u32>)> = prompts
            .iter()
            .map(|p| (p.clone(), take(&mut alloc, (p.len() + steps).div_ceil(4))))
            .collect();
        let batched = greedy(&model, &together, &cache, steps);
        for (i, p) in prompts.iter().enumerate() {
            let cache = KvCache::new(model.config(), 16, 4, DType::F32, &Device::Cpu).unwrap();
            let blocks: Vec<u32> = (0..16).collect();
            let alone = greedy(&model, &[(p.clone(), blocks)], &cache, steps);
            assert_eq!(alone[0], batched[i], "prompt {i}");
        }
    }

    #[test]
    fn bad_batches_are_errors_not_panics() {
        let spec = ModelSpec::tiny(64);
        let dir = fixture("badinput", &spec);
        let model = load_model(&dir, DType::F32, &Device::Cpu, &mut |_, _| {}).unwrap();
        let cache = KvCache::new(model.config(), 2, 4, DType::F32, &Device::Cpu).unwrap();
        let blocks = [0u32];
        for (tokens, start) in [
            (&[][..], 0),
            (&[64u32][..], 0),
            (&[1u32, 2, 3, 4, 5][..], 0),
            (&[1u32][..], 5000),
        ] {
            let r = model.forward(
                &[SeqInput {
                    tokens,
                    start,
                    blocks: &blocks,
                }],
                &cache,
            );
            assert!(r.is_err(), "{tokens:?} at {start} was accepted");
        }
    }

    #[test]
    fn bf16_weights_track_f32_and_batch_the_same() {
        let spec = ModelSpec::tiny(256);
        let dir = fixture("bf16", &spec);
        let logits = |dtype: DType| {
            let model = load_model(&dir, dtype, &Device::Cpu, &mut |_, _| {}).unwrap();
            let cache = KvCache::new(model.config(), 8, 4, dtype, &Device::Cpu).unwrap();
            let blocks: Vec<u32> = (0..8).collect();
            model
                .forward(
                    &[SeqInput {
                        tokens: &[5, 77, 3, 200, 9],
                        start: 0,
                        blocks: &blocks,
                    }],
                    &cache,
                )
                .unwrap()
        };
        let (full, half) = (logits(DType::F32), logits(DType::BF16));
        let scale = full.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = max_abs_diff(&full, &half);
        assert!(
            diff < 0.05 * scale,
            "bf16 logits are off by {diff} (scale {scale})"
        );

        let model = load_model(&dir, DType::BF16, &Device::Cpu, &mut |_, _| {}).unwrap();
        let cache = KvCache::new(model.config(), 32, 4, DType::BF16, &Device::Cpu).unwrap();
        let mut alloc = BlockAllocator::new(32);
        let batch: Vec<(Vec<u32>, Vec<u32>)> = [vec![1u32, 2, 3], vec![9; 7], vec![100, 3]]
            .into_iter()
            .map(|p| (p, take(&mut alloc, 4)))
            .collect();
        let together = greedy(&model, &batch, &cache, 6);
        for (i, (p, _)) in batch.iter().enumerate() {
            let cache = KvCache::new(model.config(), 4, 4, DType::BF16, &Device::Cpu).unwrap();
            assert_eq!(
                greedy(&model, &[(p.clone(), vec![0, 1, 2, 3])], &cache, 6)[0],
                together[i],
                "prompt {i}"
            );
        }
    }
}
