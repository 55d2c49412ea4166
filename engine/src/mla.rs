//! Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2), on the absorbed-weight path.
//!
//! Each token's keys and values are `W_uk · c` and `W_uv · c` per head, for one
//! compressed latent `c` (`kv_lora_rank` wide), plus a rotary key shared by all heads.
//! The cache keeps only `[c, k_rope]`: 576 numbers per token and layer on DeepSeek-V3,
//! where expanded keys and values would be 128 heads × (192 + 128) = 40,960. Attention
//! never expands them: the query absorbs `W_uk` (`q_nope · W_uk` scores against `c`
//! directly), so every head reads the same cached row, which is multi-query attention
//! with 576-wide keys and 512-wide values; the output absorbs `W_uv` after the weighted
//! sum of latents.

use candle_core::{Module, Tensor};
use candle_nn::RmsNorm;

use crate::attention::{causal, each_sequence, Rotary, ValueRows};
use crate::config::{MlaConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::linear::Proj;
use crate::model::SeqInput;
use crate::weights::Source;

/// How the query is made: one projection, or through a low-rank compression.
#[derive(Debug)]
enum Query {
    /// `q_proj`.
    Direct(Proj),
    /// `q_b_proj(q_a_layernorm(q_a_proj(x)))`.
    Compressed { down: Proj, norm: RmsNorm, up: Proj },
}

/// One layer's latent attention.
#[derive(Debug)]
pub(crate) struct LatentAttention {
    query: Query,
    /// `kv_a_proj_with_mqa`: the latent and the rotary key, `[kv_lora_rank + rope]`.
    kv_down: Proj,
    /// `kv_a_layernorm`, on the latent.
    kv_norm: RmsNorm,
    /// `W_uk` per head, `[heads, nope, kv_lora_rank]` (from `kv_b_proj`).
    absorb_k: Tensor,
    /// `W_uvᵀ` per head, `[heads, kv_lora_rank, v_head_dim]` (from `kv_b_proj`).
    expand_v: Tensor,
    o: Proj,
    shape: MlaConfig,
    heads: usize,
    /// The softmax scale: `1 / sqrt(qk_nope + qk_rope)`, times YaRN's correction.
    scale: f64,
}

impl LatentAttention {
    /// Loads a layer's `self_attn` weights in DeepSeek-V3's checkpoint names.
    pub(crate) fn load(
        cfg: &ModelConfig,
        m: &MlaConfig,
        src: &Source,
    ) -> candle_core::Result<LatentAttention> {
        let (h, heads, eps) = (cfg.hidden_size, cfg.num_heads, cfg.rms_norm_eps);
        let q_width = heads * (m.qk_nope_head_dim + m.qk_rope_head_dim);
        let query = match m.q_lora_rank {
            Some(r) => Query::Compressed {
                down: Proj::load(h, r, false, &src.pp("q_a_proj"))?,
                norm: candle_nn::rms_norm(r, eps, src.vb().pp("q_a_layernorm"))?,
                up: Proj::load(r, q_width, false, &src.pp("q_b_proj"))?,
            },
            None => Query::Direct(Proj::load(h, q_width, false, &src.pp("q_proj"))?),
        };
        let kv_b = src
            .vb()
            .pp("kv_b_proj")
            .get(
                (heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank),
                "weight",
            )?
            .reshape((heads, m.qk_nope_head_dim + m.v_head_dim, m.kv_lora_rank))?;
        Ok(LatentAttention {
            query,
            kv_down: Proj::load(
                h,
                m.kv_lora_rank + m.qk_rope_head_dim,
                false,
                &src.pp("kv_a_proj_with_mqa"),
            )?,
            kv_norm: candle_nn::rms_norm(m.kv_lora_rank, eps, src.vb().pp("kv_a_layernorm"))?,
            absorb_k: kv_b.narrow(1, 0, m.qk_nope_head_dim)?.contiguous()?,
            expand_v: kv_b
                .narrow(1, m.qk_nope_head_dim, m.v_head_dim)?
                .transpose(1, 2)?
                .contiguous()?,
            o: Proj::load(heads * m.v_head_dim, h, false, &src.pp("o_proj"))?,
            shape: m.clone(),
            heads,
            scale: cfg.rope_scaling.as_ref().map_or(1.0, |y| y.softmax_factor())
                / ((m.qk_nope_head_dim + m.qk_rope_head_dim) as f64).sqrt(),
        })
    }

    /// Writes the step's latents into the cache and returns every token's attention
    /// output, `[tokens, hidden]`, for the normed input `x` `[tokens, hidden]`.
    pub(crate) fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        rotary: &Rotary<'_>,
        batch: &[SeqInput<'_>],
        cache: &KvCache,
    ) -> Result<Tensor> {
        let m = &self.shape;
        let (n, heads) = (x.dim(0)?, self.heads);
        let (nope, rope, rank) = (m.qk_nope_head_dim, m.qk_rope_head_dim, m.kv_lora_rank);
        let q = match &self.query {
            Query::Direct(p) => p.forward(x)?,
            Query::Compressed { down, norm, up } => up.forward(&norm.forward(&down.forward(x)?)?)?,
        }
        .reshape((n, heads, nope + rope))?;
        // The query absorbs W_uk: per head, q_nope · W_uk is a row in latent space.
        let q_latent = q
            .narrow(2, 0, nope)?
            .transpose(0, 1)?
            .contiguous()?
            .matmul(&self.absorb_k)?
            .transpose(0, 1)?;
        let q_rope = rotary.apply(&q.narrow(2, nope, rope)?)?;
        let q = Tensor::cat(&[&q_latent, &q_rope], 2)?;

        let kv = self.kv_down.forward(x)?;
        let latent = self.kv_norm.forward(&kv.narrow(1, 0, rank)?.contiguous()?)?;
        let k_rope = rotary
            .apply(&kv.narrow(1, rank, rope)?.reshape((n, 1, rope))?)?
            .reshape((n, rope))?;
        let rows = Tensor::cat(&[&latent, &k_rope], 1)?;

        let latents = each_sequence(layer, batch, cache, &rows, None, |s, offset, cached| {
            let (len, ctx) = (s.tokens.len(), s.start + s.tokens.len());
            if let Some(out) =
                cached.attend_last(s, &q, offset, 1, ValueRows::InKeys { dim: rank }, self.scale)?
            {
                return Ok(out);
            }
            let (cached, _) = cached.gather()?;
            if cached.dim(1)? != rank + rope {
                return Err(Error::Cache(format!(
                    "cache rows are {} wide, latent attention needs {}",
                    cached.dim(1)?,
                    rank + rope
                )));
            }
            let keys = cached.reshape((ctx, 1, rank + rope))?;
            let values = cached.narrow(1, 0, rank)?.reshape((ctx, 1, rank))?;
            causal(&q.narrow(0, offset, len)?, &keys, &values, s.start, self.scale)
        })?;
        // The output absorbs W_uv: per head, the weighted latent times W_uvᵀ.
        let out = latents
            .to_dtype(x.dtype())?
            .reshape((n, heads, rank))?
            .transpose(0, 1)?
            .contiguous()?
            .matmul(&self.expand_v)?
            .transpose(0, 1)?
            .reshape((n, heads * m.v_head_dim))?;
        self.o.forward(&out)
    }
}
