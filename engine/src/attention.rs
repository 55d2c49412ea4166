//! Attention: the per-head kind (Qwen, Llama, GLM: grouped-query heads with their own
//! keys and values in the cache) and DeepSeek's latent kind ([`crate::mla`]), over the
//! same causal core and rotary embedding.

use std::sync::{Mutex, PoisonError};

use candle_core::{DType, Module, Tensor};
use candle_nn::RmsNorm;

use crate::config::{ModelConfig, QkNorm};
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::linear::Proj;
use crate::mla::LatentAttention;
use crate::model::SeqInput;
use crate::paged_attention::Heads;
use crate::softmax::{Numerators, NumeratorsOp};
use crate::weights::Source;

/// Positions' rotary tables for one step: `[tokens, rotary_dim / 2]` each.
pub(crate) struct Rotary<'a> {
    /// Cosines of the step's positions.
    pub(crate) cos: &'a Tensor,
    /// Sines of the step's positions.
    pub(crate) sin: &'a Tensor,
    /// Adjacent pairs rotated (DeepSeek) rather than halves (GPT-NeoX, Llama).
    pub(crate) interleaved: bool,
}

impl Rotary<'_> {
    /// RoPE over the whole last dimension of `[tokens, heads, dim]`.
    pub(crate) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.interleaved {
            // candle's interleaved kernel wants [batch, heads, tokens, dim].
            let y = candle_nn::rotary_emb::rope_i(
                &x.transpose(0, 1)?.unsqueeze(0)?.contiguous()?,
                self.cos,
                self.sin,
            )?;
            Ok(y.squeeze(0)?.transpose(0, 1)?)
        } else {
            Ok(
                candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0)?.contiguous()?, self.cos, self.sin)?
                    .squeeze(0)?,
            )
        }
    }
}

/// Query positions per tile of the causal core.
const Q_TILE: usize = 256;
/// Keys per tile of the causal core: a tile's scores, `[kv_heads, groups × Q_TILE,
/// K_TILE]` in f32, are the most the scores ever take, whatever the context length (the
/// step's queries, keys and values are still converted to f32 whole).
const K_TILE: usize = 1024;

/// Causal attention of `len` new queries `[len, q_heads, dk]` at positions `start..` over
/// a sequence's `ctx` keys `[ctx, kv_heads, dk]` and values `[ctx, kv_heads, dv]`; query
/// head `h` reads key/value head `h / (q_heads / kv_heads)`. Computed in f32; returns
/// `[len, q_heads * dv]` in f32.
///
/// Tiled with a running softmax (the FlashAttention recurrence): the full `len × ctx`
/// score matrix never exists, and key tiles wholly after a query tile's last position are
/// skipped. Each tile's scores become softmax numerators in one pass
/// ([`crate::softmax`]). (A decode step
/// on an f32 cache in CPU memory reads the cache in place instead: [`Cached::attend_last`].)
pub(crate) fn causal(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, scale: f64) -> Result<Tensor> {
    causal_tiled(q, k, v, start, scale, Q_TILE, K_TILE)
}

fn causal_tiled(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    start: usize,
    scale: f64,
    q_tile: usize,
    k_tile: usize,
) -> Result<Tensor> {
    let (len, nq, dk) = q.dims3()?;
    let (ctx, nkv, _) = k.dims3()?;
    let dv = v.dim(2)?;
    let groups = nq / nkv;
    // Group the queries by the key/value head they read: [kv_heads, groups, len, dk].
    let q = q
        .to_dtype(DType::F32)?
        .reshape((len, nkv, groups, dk))?
        .permute((1, 2, 0, 3))?
        .contiguous()?;
    let k = k.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?;
    let v = v.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?;
    let mut outs = Vec::with_capacity(len.div_ceil(q_tile));
    for r0 in (0..len).step_by(q_tile) {
        let rows = q_tile.min(len - r0);
        let qt = q
            .narrow(2, r0, rows)?
            .contiguous()?
            .reshape((nkv, groups * rows, dk))?;
        // Keys the tile's last query may see: positions up to start + r0 + rows - 1.
        let visible = (start + r0 + rows).min(ctx);
        if visible == 0 {
            return Err(crate::Error::Input("attention over an empty context".into()));
        }
        // Running max, sum and weighted values per query row, one key tile at a time.
        let heads_rows = nkv * groups * rows;
        let mut max = vec![f32::NEG_INFINITY; heads_rows];
        let mut sum = vec![0f32; heads_rows];
        let mut acc: Option<Tensor> = None;
        for c0 in (0..visible).step_by(k_tile) {
            let cols = k_tile.min(visible - c0);
            let scores = qt.matmul(&k.narrow(1, c0, cols)?.t()?)?;
            let op = NumeratorsOp {
                numerators: Numerators {
                    scale: scale as f32,
                    rows,
                    offset: (start + r0) as isize - c0 as isize,
                    previous: &max,
                },
                stats: Mutex::default(),
            };
            let p = scores.apply_op1_no_bwd(&op)?;
            let stats = op.stats.into_inner().unwrap_or_else(PoisonError::into_inner);
            let weighted = p.matmul(&v.narrow(1, c0, cols)?.contiguous()?)?;
            acc = Some(match acc {
                None => weighted,
                Some(acc) => {
                    let rescale = Tensor::from_slice(&stats.rescale, (nkv, groups * rows, 1), qt.device())?;
                    (acc.broadcast_mul(&rescale)? + weighted)?
                }
            });
            for ((s, add), r) in sum.iter_mut().zip(&stats.sum).zip(&stats.rescale) {
                *s = s.mul_add(*r, *add);
            }
            max = stats.max;
        }
        let acc = acc.ok_or_else(|| crate::Error::Input("attention over an empty context".into()))?;
        let out = acc.broadcast_div(&Tensor::from_vec(sum, (nkv, groups * rows, 1), qt.device())?)?;
        outs.push(out.reshape((nkv, groups, rows, dv))?);
    }
    Ok(Tensor::cat(&outs, 2)?
        .permute((2, 0, 1, 3))?
        .contiguous()?
        .reshape((len, nq * dv))?)
}

/// Grouped-query attention with per-head keys and values in the cache.
#[derive(Debug)]
pub(crate) struct HeadsAttention {
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

impl HeadsAttention {
    /// Loads `q_proj`, `k_proj`, `v_proj`, `o_proj` and, with q/k norms, `q_norm` and
    /// `k_norm` under `src` (a layer's `self_attn`).
    pub(crate) fn load(cfg: &ModelConfig, src: &Source) -> candle_core::Result<HeadsAttention> {
        let (h, nh, nkv, hd) = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let norm = |name: &str, heads: usize| {
            let width = match cfg.qk_norm {
                QkNorm::None => return Ok(None),
                QkNorm::PerHead => hd,
                QkNorm::Whole => heads * hd,
            };
            candle_nn::rms_norm(width, cfg.rms_norm_eps, src.vb().pp(name)).map(Some)
        };
        Ok(HeadsAttention {
            q: Proj::load(h, nh * hd, cfg.qkv_bias, &src.pp("q_proj"))?,
            k: Proj::load(h, nkv * hd, cfg.qkv_bias, &src.pp("k_proj"))?,
            v: Proj::load(h, nkv * hd, cfg.qkv_bias, &src.pp("v_proj"))?,
            o: Proj::load(nh * hd, h, false, &src.pp("o_proj"))?,
            q_norm: norm("q_norm", nh)?,
            k_norm: norm("k_norm", nkv)?,
        })
    }

    /// RoPE on the leading `rotary_dim` of each head of `[tokens, heads, head_dim]`; the
    /// rest pass through.
    fn rotate(cfg: &ModelConfig, x: &Tensor, rotary: &Rotary<'_>) -> Result<Tensor> {
        let (hd, rd) = (cfg.head_dim, cfg.rotary_dim);
        if rd == hd {
            return rotary.apply(x);
        }
        let rotated = rotary.apply(&x.narrow(2, 0, rd)?)?;
        Ok(Tensor::cat(&[&rotated, &x.narrow(2, rd, hd - rd)?], 2)?)
    }

    fn forward(
        &self,
        cfg: &ModelConfig,
        layer: usize,
        x: &Tensor,
        rotary: &Rotary<'_>,
        batch: &[SeqInput<'_>],
        cache: &KvCache,
    ) -> Result<Tensor> {
        let (n, nh, nkv, hd) = (x.dim(0)?, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let (mut q, mut k, v) = match Proj::fused(&[&self.q, &self.k, &self.v], x)?.as_deref() {
            Some([q, k, v]) => (q.clone(), k.clone(), v.clone()),
            _ => (self.q.forward(x)?, self.k.forward(x)?, self.v.forward(x)?),
        };
        if let (QkNorm::Whole, Some(qn), Some(kn)) = (cfg.qk_norm, &self.q_norm, &self.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let (mut q, mut k) = (q.reshape((n, nh, hd))?, k.reshape((n, nkv, hd))?);
        if let (QkNorm::PerHead, Some(qn), Some(kn)) = (cfg.qk_norm, &self.q_norm, &self.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let q = Self::rotate(cfg, &q, rotary)?;
        let k = Self::rotate(cfg, &k, rotary)?.reshape((n, nkv * hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let out = each_sequence(layer, batch, cache, &k, Some(&v), |s, offset, cached| {
            let (len, ctx) = (s.tokens.len(), s.start + s.tokens.len());
            if let Some(out) = cached.attend_last(s, &q, offset, nkv, ValueRows::Own { dim: hd }, scale)? {
                return Ok(out.to_dtype(x.dtype())?);
            }
            let (keys, values) = cached.gather()?;
            let values = values.ok_or_else(no_values)?;
            let out = causal(
                &q.narrow(0, offset, len)?,
                &keys.reshape((ctx, nkv, hd))?,
                &values.reshape((ctx, nkv, hd))?,
                s.start,
                scale,
            )?;
            Ok(out.to_dtype(x.dtype())?)
        })?;
        self.o.forward(&out)
    }
}

/// For each sequence of the step, in order: writes its rows of the step's new `keys` and
/// `values` (`[tokens, width]`; no values for latent attention) into the cache at its
/// positions, then calls `attend(sequence, offset of its rows in the step, its cached
/// context)`. Returns the outputs concatenated.
pub(crate) fn each_sequence(
    layer: usize,
    batch: &[SeqInput<'_>],
    cache: &KvCache,
    keys: &Tensor,
    values: Option<&Tensor>,
    mut attend: impl FnMut(&SeqInput<'_>, usize, Cached<'_>) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut outs = Vec::with_capacity(batch.len());
    let mut offset = 0;
    for s in batch {
        let len = s.tokens.len();
        let new_values = values.map(|v| v.narrow(0, offset, len)).transpose()?;
        cache.write(
            layer,
            s.blocks,
            s.start,
            &keys.narrow(0, offset, len)?,
            new_values.as_ref(),
        )?;
        let cached = Cached {
            cache,
            layer,
            blocks: s.blocks,
            len: s.start + len,
        };
        outs.push(attend(s, offset, cached)?);
        offset += len;
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// A per-head attention's cache that holds no value rows.
fn no_values() -> crate::Error {
    crate::Error::Cache("the cache holds no values".into())
}

/// A sequence's context in one layer of the cache: read in place for a single new query
/// ([`Cached::attend_last`]), gathered into tensors otherwise ([`Cached::gather`]).
pub(crate) struct Cached<'a> {
    cache: &'a KvCache,
    layer: usize,
    blocks: &'a [u32],
    /// Positions cached, the step's own included.
    len: usize,
}

/// Where the values of a cache's rows are.
#[derive(Clone, Copy)]
pub(crate) enum ValueRows {
    /// In the value rows, `dim` columns per head.
    Own { dim: usize },
    /// The first `dim` columns of the key rows (latent attention: the latent is both).
    InKeys { dim: usize },
}

impl Cached<'_> {
    /// Every cached key row and value row (none for latent attention), `[len, width]`.
    pub(crate) fn gather(&self) -> Result<(Tensor, Option<Tensor>)> {
        self.cache.read(self.layer, self.blocks, self.len)
    }

    /// For a sequence with a single new token (a decode step), the attention
    /// `[1, q_heads × value dim]` (f32) of its query, row `offset` of the step's queries
    /// `q` `[tokens, q_heads, key dim]`, over `kv_heads` cached heads, read where the rows
    /// lie ([`crate::paged_attention`]); `None` for more new tokens, or where the cache is
    /// not f32 in CPU memory (then [`Cached::gather`] and [`causal`]).
    pub(crate) fn attend_last(
        &self,
        s: &SeqInput<'_>,
        q: &Tensor,
        offset: usize,
        kv_heads: usize,
        values: ValueRows,
        scale: f64,
    ) -> Result<Option<Tensor>> {
        if s.tokens.len() != 1 {
            return Ok(None);
        }
        let (_, q_heads, dk) = q.dims3()?;
        let out = self.cache.in_place(self.layer, |k, v| {
            let runs = self.cache.runs(self.blocks, 0, self.len)?;
            let qs = q
                .narrow(0, offset, 1)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let keys = Heads { rows: k, dim: dk };
            let values = match (values, v) {
                (ValueRows::Own { dim }, Some(rows)) => Heads { rows, dim },
                (ValueRows::InKeys { dim }, _) => Heads { rows: k, dim },
                (ValueRows::Own { .. }, None) => return Err(no_values()),
            };
            crate::paged_attention::attend(&qs, q_heads, kv_heads, keys, values, &runs, scale as f32)
        });
        let Some(out) = out else { return Ok(None) };
        let out = out?;
        let width = out.len();
        Ok(Some(Tensor::from_vec(out, (1, width), q.device())?))
    }
}

/// A layer's attention.
#[derive(Debug)]
pub(crate) enum Attention {
    /// Per-head keys and values.
    Heads(HeadsAttention),
    /// DeepSeek's latent attention.
    Latent(LatentAttention),
}

impl Attention {
    /// The attention of a layer whose weights are under `src` (`self_attn`).
    pub(crate) fn load(cfg: &ModelConfig, src: &Source) -> candle_core::Result<Attention> {
        Ok(match &cfg.mla {
            Some(mla) => Attention::Latent(LatentAttention::load(cfg, mla, src)?),
            None => Attention::Heads(HeadsAttention::load(cfg, src)?),
        })
    }

    /// Writes the step's new tokens into the cache and returns every token's attention
    /// output, `[tokens, hidden]`, for the normed input `x` `[tokens, hidden]`.
    pub(crate) fn forward(
        &self,
        cfg: &ModelConfig,
        layer: usize,
        x: &Tensor,
        rotary: &Rotary<'_>,
        batch: &[SeqInput<'_>],
        cache: &KvCache,
    ) -> Result<Tensor> {
        match self {
            Attention::Heads(a) => a.forward(cfg, layer, x, rotary, batch, cache),
            Attention::Latent(a) => a.forward(layer, x, rotary, batch, cache),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Attention as written in the papers: the whole score matrix, masked, softmaxed.
    fn naive(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, scale: f64) -> Tensor {
        let (len, nq, _) = q.dims3().unwrap();
        let (ctx, nkv, _) = k.dims3().unwrap();
        let groups = nq / nkv;
        let mut heads = Vec::new();
        for h in 0..nq {
            let qh = q.narrow(1, h, 1).unwrap().squeeze(1).unwrap();
            let kh = k.narrow(1, h / groups, 1).unwrap().squeeze(1).unwrap();
            let vh = v.narrow(1, h / groups, 1).unwrap().squeeze(1).unwrap();
            let s = (qh.matmul(&kh.t().unwrap()).unwrap() * scale).unwrap();
            let mask: Vec<f32> = (0..len)
                .flat_map(|i| (0..ctx).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            let s = (s + Tensor::from_vec(mask, (len, ctx), &Device::Cpu).unwrap()).unwrap();
            heads.push(candle_nn::ops::softmax_last_dim(&s).unwrap().matmul(&vh).unwrap());
        }
        Tensor::stack(&heads, 1).unwrap().reshape((len, ())).unwrap()
    }

    #[test]
    fn tiles_with_a_running_softmax_give_whole_attention() {
        // Odd tile sizes so tiles straddle the diagonal, partial tiles and a prefix of
        // cached keys (start > 0); grouped heads with different key and value widths.
        let (len, start, nq, nkv, dk, dv) = (37, 50, 4, 2, 12, 8);
        let ctx = start + len;
        let rand = |shape: (usize, usize, usize), seed: u64| {
            let n = shape.0 * shape.1 * shape.2;
            let mut rng = crate::rng::SplitMix::new(seed);
            let data: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32 * 4.0 - 2.0).collect();
            Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
        };
        let (q, k, v) = (
            rand((len, nq, dk), 1),
            rand((ctx, nkv, dk), 2),
            rand((ctx, nkv, dv), 3),
        );
        let want = naive(&q, &k, &v, start, 0.3);
        for (qt, kt) in [(256, 1024), (5, 7), (1, 16), (37, 87), (8, 1)] {
            let got = causal_tiled(&q, &k, &v, start, 0.3, qt, kt).unwrap();
            let diff = (&got - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "tiles {qt}x{kt}: off by {diff}");
        }
    }
}
