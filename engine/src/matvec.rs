//! `x · Wᵀ` for the rows of a decode step (up to [`MAX_ROWS`] sequences) with f32
//! weights on the CPU, reading each weight once.
//!
//! Decoding one token per sequence is a matrix-vector product per layer (a thin
//! matrix-matrix one for a batch): every weight is read once per step and used for only a
//! few multiply-adds, so speed is how fast the weights stream from memory. candle's GEMM
//! packs the weight matrix on every call, which at these shapes costs more than the
//! products (a batch-8 profile: two thirds of the step in packing, a seventh in the
//! micro-kernels). This kernel walks the weight rows once, in parallel chunks, in tiles
//! of 4 weight rows × 2 rows of `x` held in registers. Each output is one dot product in
//! a fixed order, so a row's result never depends on which other rows share the batch.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Shape};
use rayon::prelude::*;

/// Rows of `x` up to which [`MatVec`] is used instead of candle's matmul (prefill chunks
/// are longer and go to candle). `braid bench engine` on a 0.26B Qwen3 (7 layers of the
/// 0.6B shape, 2 threads), decode tok/s, candle's GEMM → this kernel: batch 8 25–27 →
/// 54–55, batch 32 64–65 → 64–71 (and batch 1 through the kernel as before).
pub(crate) const MAX_ROWS: usize = 32;

/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// The op: `x [n, k]` (f32, contiguous) times `w [m, k]` (f32, contiguous) transposed →
/// `[n, m]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatVec;

impl CustomOp2 for MatVec {
    fn name(&self) -> &'static str {
        "braid-matvec"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(w)) = (s1, s2) else {
            bail!("braid-matvec takes f32 inputs")
        };
        let (Some((xa, xb)), Some((wa, wb))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            bail!("braid-matvec takes contiguous inputs")
        };
        let (n, k) = l1.shape().dims2()?;
        let (m, k2) = l2.shape().dims2()?;
        if k != k2 {
            bail!("braid-matvec: x is [{n}, {k}] but w is [{m}, {k2}]")
        }
        let (x, w) = (&x[xa..xb], &w[wa..wb]);
        // Computed as [m, n] (each weight row's outputs together), then laid out [n, m].
        let mut by_row = vec![0f32; m * n];
        by_row
            .par_chunks_mut(n * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, out)| products(x, n, k, w, task * ROWS_PER_TASK, out));
        Ok((CpuStorage::F32(by_batch_row(by_row, n, m)), Shape::from((n, m))))
    }
}

/// Outputs computed by weight row (`by_row[j * n + i]`: weight row `j`, batch row `i`)
/// laid out by batch row (`[n, m]`), as the product's result is.
pub(crate) fn by_batch_row(by_row: Vec<f32>, n: usize, m: usize) -> Vec<f32> {
    if n == 1 {
        return by_row;
    }
    let mut t = vec![0f32; n * m];
    for j in 0..m {
        for i in 0..n {
            t[i * m + j] = by_row[j * n + i];
        }
    }
    t
}

/// Lanes of one accumulator: the dot products' order of additions (fixed, so a row's
/// result never depends on the batch or on the instruction set chosen at run time).
const LANES: usize = 8;

/// The products of `x`'s `n` rows with the weight rows from `first` on, as many as `out`
/// holds (`out[r * n + i]` = row `first + r` · `x[i]`). Tiles of 4 weight rows × 2 `x`
/// rows keep each loaded weight in registers for two rows and each `x` chunk for four
/// weights. Compiled for AVX-512 and AVX2 too, chosen at run time.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn products(x: &[f32], n: usize, k: usize, w: &[f32], first: usize, out: &mut [f32]) {
    if n == 1 {
        for (r, o) in out.iter_mut().enumerate() {
            *o = dot(x, &w[(first + r) * k..][..k]);
        }
        return;
    }
    let rows = out.len() / n;
    let mut r = 0;
    while r < rows {
        let tall = rows - r >= 4;
        let mut i = 0;
        while i < n {
            let wide = n - i >= 2;
            let (wr, xr) = (first + r, i);
            match (tall, wide) {
                (true, true) => store(out, n, r, i, tile::<4, 2>(w, x, k, wr, xr)),
                (true, false) => store(out, n, r, i, tile::<4, 1>(w, x, k, wr, xr)),
                (false, true) => store(out, n, r, i, tile::<1, 2>(w, x, k, wr, xr)),
                (false, false) => store(out, n, r, i, tile::<1, 1>(w, x, k, wr, xr)),
            }
            i += if wide { 2 } else { 1 };
        }
        r += if tall { 4 } else { 1 };
    }
}

/// Writes a tile's results into `out` (laid out by weight row).
#[inline(always)]
fn store<const R: usize, const C: usize>(out: &mut [f32], n: usize, r: usize, i: usize, tile: [[f32; C]; R]) {
    for (dr, row) in tile.iter().enumerate() {
        out[(r + dr) * n + i..][..C].copy_from_slice(row);
    }
}

/// The dot products of `R` weight rows (from `wr`) with `C` rows of `x` (from `xr`),
/// each summed exactly as [`dot`] sums one.
#[inline(always)]
fn tile<const R: usize, const C: usize>(
    w: &[f32],
    x: &[f32],
    k: usize,
    wr: usize,
    xr: usize,
) -> [[f32; C]; R] {
    let ws: [&[f32]; R] = std::array::from_fn(|dr| &w[(wr + dr) * k..][..k]);
    let xs: [&[f32]; C] = std::array::from_fn(|j| &x[(xr + j) * k..][..k]);
    let mut acc = [[[0f32; LANES]; C]; R];
    let whole = k - k % LANES;
    for at in (0..whole).step_by(LANES) {
        let xc: [&[f32; LANES]; C] = std::array::from_fn(|j| as_lanes(&xs[j][at..at + LANES]));
        for (acc_r, w_r) in acc.iter_mut().zip(&ws) {
            let wv = as_lanes(&w_r[at..at + LANES]);
            for (acc_rj, xj) in acc_r.iter_mut().zip(&xc) {
                for l in 0..LANES {
                    acc_rj[l] += wv[l] * xj[l];
                }
            }
        }
    }
    let mut sums = [[0f32; C]; R];
    for ((sum_r, acc_r), w_r) in sums.iter_mut().zip(&acc).zip(&ws) {
        for ((sum, a), x_j) in sum_r.iter_mut().zip(acc_r).zip(&xs) {
            let mut tail = 0f32;
            for (p, q) in w_r[whole..].iter().zip(&x_j[whole..]) {
                tail += p * q;
            }
            *sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail;
        }
    }
    sums
}

/// A chunk of exactly [`LANES`] values as an array (the caller slices it so).
#[inline(always)]
fn as_lanes(chunk: &[f32]) -> &[f32; LANES] {
    chunk.try_into().unwrap_or(&[0.0; LANES])
}

/// A dot product with eight independent accumulators (vectorisable, fixed order); the
/// order every [`tile`] sums in.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn matches_matmul_and_is_the_same_alone_or_batched() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (300, 77), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (5, 77), &dev).unwrap();
        let ours = x.apply_op2_no_bwd(&w, &MatVec).unwrap();
        let theirs = x.matmul(&w.t().unwrap()).unwrap();
        let diff = (&ours - &theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
        let row2 = x
            .get(2)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .apply_op2_no_bwd(&w, &MatVec)
            .unwrap();
        assert_eq!(
            row2.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            ours.get(2).unwrap().to_vec1::<f32>().unwrap()
        );
        // Every product is summed in one order, whatever tile computed it.
        let (xs, ws) = (x.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        let got = ours.to_vec2::<f32>().unwrap();
        for (i, xi) in xs.iter().enumerate() {
            for (j, wj) in ws.iter().enumerate() {
                assert_eq!(got[i][j].to_bits(), dot(xi, wj).to_bits(), "row {i}, weight {j}");
            }
        }
        assert!(x
            .to_dtype(candle_core::DType::BF16)
            .unwrap()
            .apply_op2_no_bwd(&w, &MatVec)
            .is_err());
    }
}
