//! Attention of a decode step's one new query per sequence, read where the keys and
//! values lie in the paged cache.
//!
//! The general path ([`crate::attention::causal`]) gathers a sequence's pages into one
//! tensor, then lays keys and values out per head for its matmuls: the whole context
//! copied three times per layer per step, more memory traffic than the attention reads
//! once the context is a few hundred tokens long. Here each cached row is read once, in
//! place: per key/value head, every position's score for the head's query group, one
//! softmax, and the weighted sum of the value rows.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kv_cache::Rows;
use crate::matvec::dot;

/// Context length from which the key/value heads are computed in parallel (below it a
/// head's work is too small to be worth handing to another thread).
const PARALLEL_FROM: usize = 1024;

/// Where each head's columns sit in a layer's cache rows: head `h` is columns
/// `h × dim .. (h + 1) × dim`.
#[derive(Clone, Copy)]
pub(crate) struct Heads<'a> {
    /// The layer's rows.
    pub(crate) rows: Rows<'a>,
    /// Columns per head.
    pub(crate) dim: usize,
}

impl<'a> Heads<'a> {
    /// Head `h`'s columns of slot `slot` (the caller has checked they exist).
    #[inline(always)]
    fn at(&self, slot: usize, h: usize) -> &'a [f32] {
        &self.rows.data[slot * self.rows.width + h * self.dim..][..self.dim]
    }

    /// Whether `heads` heads fit a row and every slot of `runs` is in `data`.
    fn holds(&self, heads: usize, runs: &[(usize, usize)]) -> bool {
        let end = runs.iter().map(|&(slot, run)| slot + run).max().unwrap_or(0);
        heads * self.dim <= self.rows.width && end * self.rows.width <= self.rows.data.len()
    }
}

/// The attention output `[q_heads × values.dim]` of one query per query head,
/// `q [q_heads × keys.dim]`, over every position whose slots `runs` lists (`(first slot,
/// positions)`, in position order; the query is the last position, so all are visible).
/// Query head `h` reads key/value head `h / (q_heads / kv_heads)`; scores are scaled by
/// `scale`.
pub(crate) fn attend(
    q: &[f32],
    q_heads: usize,
    kv_heads: usize,
    keys: Heads<'_>,
    values: Heads<'_>,
    runs: &[(usize, usize)],
    scale: f32,
) -> Result<Vec<f32>> {
    let ctx: usize = runs.iter().map(|&(_, run)| run).sum();
    if kv_heads == 0
        || !q_heads.is_multiple_of(kv_heads)
        || q.len() != q_heads * keys.dim
        || ctx == 0
        || !keys.holds(kv_heads, runs)
        || !values.holds(kv_heads, runs)
    {
        return Err(Error::Cache(format!(
            "paged attention: {q_heads} query heads of {} over {kv_heads} cached heads of {} and {} in {ctx} positions do not fit the cache",
            keys.dim, keys.dim, values.dim
        )));
    }
    let groups = q_heads / kv_heads;
    let mut out = vec![0f32; q_heads * values.dim];
    let head = |(h, out): (usize, &mut [f32])| {
        let q = &q[h * groups * keys.dim..][..groups * keys.dim];
        one_head(q, h, groups, keys, values, runs, ctx, scale, out);
    };
    if ctx >= PARALLEL_FROM {
        out.par_chunks_mut(groups * values.dim).enumerate().for_each(head);
    } else {
        out.chunks_mut(groups * values.dim).enumerate().for_each(head);
    }
    Ok(out)
}

/// Key/value head `h` for its `groups` queries (`q`, one after another): their outputs
/// into `out`, one after another.
#[allow(clippy::too_many_arguments)]
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn one_head(
    q: &[f32],
    h: usize,
    groups: usize,
    keys: Heads<'_>,
    values: Heads<'_>,
    runs: &[(usize, usize)],
    ctx: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (dk, dv) = (keys.dim, values.dim);
    // Scores, one row of `ctx` per query of the group.
    let mut scores = vec![0f32; groups * ctx];
    let mut p = 0;
    for &(first, run) in runs {
        for slot in first..first + run {
            let k = keys.at(slot, h);
            for (g, qg) in q.chunks_exact(dk).enumerate() {
                scores[g * ctx + p] = dot(qg, k) * scale;
            }
            p += 1;
        }
    }
    // Softmax numerators in place, and their sums.
    let mut sums = vec![0f32; groups];
    for (row, sum) in scores.chunks_exact_mut(ctx).zip(&mut sums) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            *sum += *s;
        }
    }
    // The weighted values.
    out.fill(0.0);
    let mut p = 0;
    for &(first, run) in runs {
        for slot in first..first + run {
            let v = values.at(slot, h);
            for (g, acc) in out.chunks_exact_mut(dv).enumerate() {
                let w = scores[g * ctx + p];
                for (a, &x) in acc.iter_mut().zip(v) {
                    *a += w * x;
                }
            }
            p += 1;
        }
    }
    for (acc, sum) in out.chunks_exact_mut(dv).zip(&sums) {
        for a in acc.iter_mut() {
            *a /= sum;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn reads_scattered_blocks_as_the_gathered_context_reads() {
        // 4 query heads over 2 key/value heads; blocks of 4 slots given out of order, the
        // last one partly filled: 11 positions in slots 8..12, 0..4, 12..15.
        let (nq, nkv, dk, dv, slots) = (4, 2, 8, 6, 16);
        let runs = [(8, 4), (0, 4), (12, 3)];
        let mut rng = crate::rng::SplitMix::new(7);
        let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect() };
        let (k_rows, v_rows, q) = (rand(slots * nkv * dk), rand(slots * nkv * dv), rand(nq * dk));
        let keys = Heads {
            rows: Rows {
                data: &k_rows,
                width: nkv * dk,
            },
            dim: dk,
        };
        let values = Heads {
            rows: Rows {
                data: &v_rows,
                width: nkv * dv,
            },
            dim: dv,
        };
        let got = attend(&q, nq, nkv, keys, values, &runs, 0.35).unwrap();

        let gather = |rows: &[f32], width: usize| -> Vec<f32> {
            runs.iter()
                .flat_map(|&(first, run)| rows[first * width..(first + run) * width].to_vec())
                .collect()
        };
        let dev = Device::Cpu;
        let ctx = 11;
        let k = Tensor::from_vec(gather(&k_rows, nkv * dk), (ctx, nkv, dk), &dev).unwrap();
        let v = Tensor::from_vec(gather(&v_rows, nkv * dv), (ctx, nkv, dv), &dev).unwrap();
        let q = Tensor::from_vec(q, (1, nq, dk), &dev).unwrap();
        let want: Vec<f32> = crate::attention::causal(&q, &k, &v, ctx - 1, 0.35)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn a_cache_too_small_for_the_heads_is_an_error_not_a_panic() {
        let rows = vec![0f32; 8];
        let heads = Heads {
            rows: Rows {
                data: &rows,
                width: 4,
            },
            dim: 4,
        };
        assert!(attend(&[0.0; 8], 2, 2, heads, heads, &[(0, 2)], 1.0).is_err());
        assert!(attend(&[0.0; 4], 1, 1, heads, heads, &[(1, 2)], 1.0).is_err());
    }
}
