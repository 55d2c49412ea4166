//! Attention of a decode step's one new query per sequence, read where the keys and
//! values lie in the paged cache.
//!
//! The general path ([`crate::attention::causal`]) gathers a sequence's pages into one
//! tensor, then lays keys and values out per head for its matmuls: the whole context
//! copied three times per layer per step, more memory traffic than the attention reads
//! once the context is a few hundred tokens long. Here each cached row is read once, in
//! place, position after position with every head of the row together: the scores, one
//! softmax per query head, and the weighted sum of the value rows.

use crate::error::{Error, Result};
use crate::kv_cache::Rows;

/// Context length from which the positions are shared between threads (below it the
/// work is too small to be worth handing to another thread).
const PARALLEL_FROM: usize = 1024;

/// Positions per share of a long context: fixed, so the sums are grouped the same way
/// (and the numbers are the same) whatever the number of threads, and a thread held up
/// elsewhere delays only its own shares.
const SHARE: usize = 256;

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
///
/// The positions are walked in order, every head of a cached row read together, so the
/// cache streams from memory row after row (a head's part of a row alone is a few hundred
/// bytes a page apart, which the hardware prefetchers do not follow). From
/// [`PARALLEL_FROM`] positions on, the threads take shares of [`SHARE`] positions and
/// the shares' partial sums are added in order at the end.
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
        || q_heads == 0
        || keys.dim == 0
        || values.dim == 0
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
    let shape = Shape {
        q_heads,
        groups: q_heads / kv_heads,
        keys,
        values,
    };
    let slots: Vec<usize> = runs.iter().flat_map(|&(first, run)| first..first + run).collect();
    let share = if ctx >= PARALLEL_FROM { SHARE } else { ctx };
    // Every position's score for every query head, position after position.
    let mut scores = vec![0f32; ctx * q_heads];
    by_share(&mut scores, &slots, share, |scores, slots| {
        score_rows(shape, q, slots, scale, scores)
    });
    let mut max = vec![f32::NEG_INFINITY; q_heads];
    for row in scores.chunks_exact(q_heads) {
        for (m, &s) in max.iter_mut().zip(row) {
            *m = m.max(s);
        }
    }
    // Each share's softmax numerators' sums and weighted values, then added up in order.
    let parts = by_share(&mut scores, &slots, share, |scores, slots| {
        shape.weigh(&max, slots, scores)
    });
    let mut parts = parts.into_iter();
    let (mut sums, mut out) = parts.next().unwrap_or_default();
    for (part_sums, part_out) in parts {
        sums.iter_mut().zip(&part_sums).for_each(|(a, b)| *a += b);
        out.iter_mut().zip(&part_out).for_each(|(a, b)| *a += b);
    }
    for (acc, sum) in out.chunks_exact_mut(values.dim).zip(&sums) {
        for a in acc.iter_mut() {
            *a /= sum;
        }
    }
    Ok(out)
}

/// `work` of each share of `share` positions (its rows of `scores`, position after
/// position, and its slots), the results in position order; several shares are spread
/// over the thread pool, a single one runs on the calling thread.
fn by_share<T: Send>(
    scores: &mut [f32],
    slots: &[usize],
    share: usize,
    work: impl Fn(&mut [f32], &[usize]) -> T + Sync,
) -> Vec<T> {
    let rows = share * (scores.len() / slots.len().max(1));
    crate::parallel::map_chunks(scores, rows, |i, s| {
        work(s, &slots[i * share..(i * share + share).min(slots.len())])
    })
}

/// The heads of one call of [`attend`].
#[derive(Clone, Copy)]
struct Shape<'a> {
    q_heads: usize,
    /// Query heads per key/value head.
    groups: usize,
    keys: Heads<'a>,
    values: Heads<'a>,
}

impl Shape<'_> {
    /// Turns the scores of the positions in `slots` into softmax numerators (against
    /// `max`, per query head) in place; returns their sums per query head and the
    /// weighted values `[q_heads × values.dim]`.
    fn weigh(&self, max: &[f32], slots: &[usize], scores: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
        let mut sums = vec![0f32; self.q_heads];
        for row in scores.chunks_exact_mut(self.q_heads) {
            for ((s, m), sum) in row.iter_mut().zip(max).zip(&mut sums) {
                *s = crate::softmax::exp(*s - m);
                *sum += *s;
            }
        }
        let mut out = vec![0f32; self.q_heads * self.values.dim];
        weighted_values(*self, slots, scores, &mut out);
        (sums, out)
    }
}

/// Positions whose scores [`score_rows`] computes together: their sums are independent,
/// so one position's additions run while another's wait on the latency of theirs. One
/// dot product at a time (and, as the compiler laid out four, in 4-value pieces) spent
/// twice as long on the keys as the weighted sum spends on the values, the same bytes:
/// 4,096 positions of 8 heads × 128, cache-resident, one thread: 1.21 → 0.58–0.66 ms (the
/// timing test); a decode step reading them from memory gains little (bandwidth-bound).
const POSITIONS: usize = 8;

/// The scores of the positions in `slots`, `q_heads` per position, into `out` (in
/// registers where the CPU has AVX; the same numbers either way).
fn score_rows(shape: Shape<'_>, q: &[f32], slots: &[usize], scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::avx() {
        return x86::score_rows(shape, q, slots, scale, out);
    }
    portable_score_rows(shape, q, slots, scale, out)
}

/// [`score_rows`] through [`dots`], [`POSITIONS`] positions at a time.
fn portable_score_rows(shape: Shape<'_>, q: &[f32], slots: &[usize], scale: f32, out: &mut [f32]) {
    let dk = shape.keys.dim;
    let q_heads = shape.q_heads;
    let whole = slots.chunks_exact(POSITIONS);
    let rest = whole.remainder();
    let mut outs = out.chunks_exact_mut(POSITIONS * q_heads);
    for (group, rows) in whole.zip(&mut outs) {
        for qh in 0..q_heads {
            let keys: [&[f32]; POSITIONS] =
                std::array::from_fn(|p| shape.keys.at(group[p], qh / shape.groups));
            for (p, d) in dots(&q[qh * dk..][..dk], keys).into_iter().enumerate() {
                rows[p * q_heads + qh] = d * scale;
            }
        }
    }
    for (&slot, row) in rest.iter().zip(outs.into_remainder().chunks_exact_mut(q_heads)) {
        for (qh, s) in row.iter_mut().enumerate() {
            let [d] = dots(&q[qh * dk..][..dk], [shape.keys.at(slot, qh / shape.groups)]);
            *s = d * scale;
        }
    }
}

/// Lanes of one dot product's sums: the order of its additions, the same on every path.
const LANES: usize = 8;

/// Dot products of `a` with each of `bs` (as long as `a`), each in [`LANES`] independent
/// lanes, the lanes of all `N` side by side: multiplies and adds apart, as attention
/// always summed (the linear layers' kernel, `matvec`, fuses them). Each result is the
/// same whatever `N`.
fn dots<const N: usize>(a: &[f32], bs: [&[f32]; N]) -> [f32; N] {
    let bs = bs.map(|b| &b[..a.len()]);
    let whole = a.len() / LANES * LANES;
    let mut acc = [[0f32; LANES]; N];
    for (c, x) in a[..whole].chunks_exact(LANES).enumerate() {
        for (acc, b) in acc.iter_mut().zip(&bs) {
            let y = &b[c * LANES..][..LANES];
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
    }
    std::array::from_fn(|j| {
        let acc = &acc[j];
        let lanes = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        lanes + tail(&a[whole..], &bs[j][whole..])
    })
}

/// The products of the values past the last whole lane set, summed in order.
#[inline(always)]
fn tail(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `out += Σ weight × value row` over the positions in `slots`, per query head.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn weighted_values(shape: Shape<'_>, slots: &[usize], weights: &[f32], out: &mut [f32]) {
    let dv = shape.values.dim;
    for (&slot, row) in slots.iter().zip(weights.chunks_exact(shape.q_heads)) {
        for ((qh, acc), &w) in out.chunks_exact_mut(dv).enumerate().zip(row) {
            let v = shape.values.at(slot, qh / shape.groups);
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += w * x;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Shape, LANES, POSITIONS};

    /// Whether the CPU has AVX (8 f32 to a register: one [`super::dots`] lane set).
    pub(super) fn avx() -> bool {
        is_x86_feature_detected!("avx")
    }

    /// [`super::score_rows`] with each dot product's eight lanes in one register, the
    /// [`POSITIONS`] positions' registers side by side. Call only where [`avx`] holds.
    pub(super) fn score_rows(shape: Shape<'_>, q: &[f32], slots: &[usize], scale: f32, out: &mut [f32]) {
        debug_assert!(avx());
        // SAFETY: called only where `avx()` found the feature.
        unsafe { score_rows_avx(shape, q, slots, scale, out) }
    }

    #[target_feature(enable = "avx")]
    fn score_rows_avx(shape: Shape<'_>, q: &[f32], slots: &[usize], scale: f32, out: &mut [f32]) {
        let dk = shape.keys.dim;
        let q_heads = shape.q_heads;
        let whole = slots.chunks_exact(POSITIONS);
        let rest = whole.remainder();
        let mut outs = out.chunks_exact_mut(POSITIONS * q_heads);
        for (group, rows) in whole.zip(&mut outs) {
            for qh in 0..q_heads {
                let a = &q[qh * dk..][..dk];
                let keys: [&[f32]; POSITIONS] =
                    std::array::from_fn(|p| shape.keys.at(group[p], qh / shape.groups));
                for (p, d) in dots(a, keys).into_iter().enumerate() {
                    rows[p * q_heads + qh] = d * scale;
                }
            }
        }
        for (&slot, row) in rest.iter().zip(outs.into_remainder().chunks_exact_mut(q_heads)) {
            for (qh, s) in row.iter_mut().enumerate() {
                let [d] = dots(&q[qh * dk..][..dk], [shape.keys.at(slot, qh / shape.groups)]);
                *s = d * scale;
            }
        }
    }

    /// [`super::dots`], bit for bit, one register per key.
    #[target_feature(enable = "avx")]
    fn dots<const N: usize>(a: &[f32], bs: [&[f32]; N]) -> [f32; N] {
        let bs = bs.map(|b| &b[..a.len()]);
        let whole = a.len() / LANES * LANES;
        let mut acc = [_mm256_setzero_ps(); N];
        for c in (0..whole).step_by(LANES) {
            // SAFETY: `c + LANES <= whole <= a.len()`, and every `b` is `a.len()` long.
            let x = unsafe { _mm256_loadu_ps(a.as_ptr().add(c)) };
            for (acc, b) in acc.iter_mut().zip(&bs) {
                let y = unsafe { _mm256_loadu_ps(b.as_ptr().add(c)) };
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(x, y));
            }
        }
        std::array::from_fn(|j| {
            // The lanes added as `super::dots` adds them: s = [l0+l4, l1+l5, l2+l6,
            // l3+l7], then (s0 + s1) + (s2 + s3).
            let s = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps::<1>(acc[j]));
            let d = _mm_add_ps(s, _mm_movehdup_ps(s));
            let lanes = _mm_cvtss_f32(d) + _mm_cvtss_f32(_mm_movehl_ps(d, d));
            lanes + super::tail(&a[whole..], &bs[j][whole..])
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// `attend` over `ctx` positions in blocks of `block` slots handed out in reverse
    /// order (the last one partly filled), against the gathered context through
    /// [`crate::attention::causal`].
    fn check_scattered(ctx: usize, block: usize) {
        let (nq, nkv, dk, dv) = (4, 2, 8, 6);
        let blocks = ctx.div_ceil(block);
        let slots = blocks * block;
        let runs: Vec<(usize, usize)> = (0..blocks)
            .map(|b| ((blocks - 1 - b) * block, block.min(ctx - b * block)))
            .collect();
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
            assert!((a - b).abs() < 1e-6, "{ctx} positions: {a} vs {b}");
        }
    }

    #[test]
    fn reads_scattered_blocks_as_the_gathered_context_reads() {
        check_scattered(11, 4);
    }

    #[test]
    fn threads_sharing_a_long_context_add_up_to_the_gathered_reading() {
        // Past PARALLEL_FROM: the positions are shared between threads (the causal core
        // here runs two key tiles, so its running softmax is checked too).
        check_scattered(PARALLEL_FROM + 333, 16);
    }

    #[test]
    #[ignore = "a timing, run by hand"]
    fn timing() {
        let (nq, nkv, d, ctx) = (16, 8, 128, 4096);
        let rows: Vec<f32> = (0..ctx * nkv * d).map(|i| (i % 97) as f32 / 97.0 - 0.5).collect();
        let heads = Heads {
            rows: Rows {
                data: &rows,
                width: nkv * d,
            },
            dim: d,
        };
        let q: Vec<f32> = (0..nq * d).map(|i| (i % 13) as f32 / 13.0).collect();
        let slots: Vec<usize> = (0..ctx).collect();
        let shape = Shape {
            q_heads: nq,
            groups: nq / nkv,
            keys: heads,
            values: heads,
        };
        let mut scores = vec![0f32; ctx * nq];
        let reps = 50;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            score_rows(shape, &q, &slots, 0.1, &mut scores);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        let mut out = vec![0f32; nq * d];
        let t = std::time::Instant::now();
        for _ in 0..reps {
            weighted_values(shape, &slots, &scores, &mut out);
        }
        let v = t.elapsed().as_secs_f64() / reps as f64;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            attend(&q, nq, nkv, heads, heads, &[(0, ctx)], 0.1).unwrap();
        }
        let a = t.elapsed().as_secs_f64() / reps as f64;
        let gb = (ctx * nkv * d * 4) as f64 / 1e9;
        eprintln!(
            "scores {:.3} ms ({:.1} GB/s), values {:.3} ms ({:.1} GB/s), attend {:.3} ms",
            s * 1e3,
            gb / s,
            v * 1e3,
            gb / v,
            a * 1e3
        );
    }

    #[test]
    fn every_path_scores_the_same_bits() {
        let mut rng = crate::rng::SplitMix::new(5);
        let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f64() as f32 - 0.5).collect() };
        for (dk, ctx) in [(13, 7), (16, 9), (128, 12), (5, 3)] {
            let (nq, nkv) = (4, 2);
            let rows = rand(ctx * nkv * dk);
            let heads = Heads {
                rows: Rows {
                    data: &rows,
                    width: nkv * dk,
                },
                dim: dk,
            };
            let shape = Shape {
                q_heads: nq,
                groups: nq / nkv,
                keys: heads,
                values: heads,
            };
            let q = rand(nq * dk);
            let slots: Vec<usize> = (0..ctx).rev().collect();
            let (mut want, mut got) = (vec![0f32; ctx * nq], vec![0f32; ctx * nq]);
            portable_score_rows(shape, &q, &slots, 0.3, &mut want);
            score_rows(shape, &q, &slots, 0.3, &mut got);
            for (p, slot) in slots.iter().enumerate() {
                for qh in 0..nq {
                    let one = dots(&q[qh * dk..][..dk], [heads.at(*slot, qh / 2)])[0] * 0.3;
                    assert_eq!(
                        want[p * nq + qh].to_bits(),
                        one.to_bits(),
                        "dim {dk}, position {p}"
                    );
                }
            }
            assert!(
                got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "dim {dk}"
            );
        }
    }

    #[test]
    fn positions_scored_together_score_as_each_alone() {
        let mut rng = crate::rng::SplitMix::new(3);
        let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f64() as f32 - 0.5).collect() };
        for len in [1, 8, 13, 128] {
            let (a, b) = (rand(len), rand(4 * len));
            let bs: [&[f32]; 4] = std::array::from_fn(|j| &b[j * len..][..len]);
            let together = dots(&a, bs);
            for (j, got) in together.iter().enumerate() {
                assert_eq!(
                    got.to_bits(),
                    dots(&a, [bs[j]])[0].to_bits(),
                    "{len} values, key {j}"
                );
            }
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
