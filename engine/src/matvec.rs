//! `x · Wᵀ` for a few rows of `x` (decode steps) with f32 weights on the CPU, at memory
//! bandwidth.
//!
//! Decoding one token per sequence is a matrix-vector product per layer: every weight is
//! read once per step and used for only a few multiply-adds, so speed is how fast the
//! weights stream from memory. A general GEMM tuned for large products leaves bandwidth
//! unused at one row; this kernel walks the weight rows once, in parallel chunks, and dots
//! each with every row of `x` while the row is in cache. Each output is one dot product
//! in a fixed order, so a row's result never depends on which other rows share the batch.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Shape};
use rayon::prelude::*;

/// Rows of `x` up to which [`MatVec`] is used instead of candle's matmul. Measured with
/// `braid bench engine` on a 0.26B Qwen3 (2 threads): the kernel wins at 1 and 2 rows
/// (18.8 and 28.4 tok/s against candle's 11.8 at 1 row); from 4 rows candle's GEMM,
/// which reuses each loaded weight for several rows in registers, is faster (56 vs 47).
pub(crate) const MAX_ROWS: usize = 2;

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
            .for_each(|(task, out)| {
                let first = task * ROWS_PER_TASK;
                for (r, outs) in out.chunks_mut(n).enumerate() {
                    let row = &w[(first + r) * k..(first + r + 1) * k];
                    for (i, o) in outs.iter_mut().enumerate() {
                        *o = dot(&x[i * k..(i + 1) * k], row);
                    }
                }
            });
        let out = if n == 1 {
            by_row
        } else {
            let mut t = vec![0f32; n * m];
            for j in 0..m {
                for i in 0..n {
                    t[i * m + j] = by_row[j * n + i];
                }
            }
            t
        };
        Ok((CpuStorage::F32(out), Shape::from((n, m))))
    }
}

/// A dot product with eight independent accumulators (vectorisable, fixed order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
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
        assert!(x
            .to_dtype(candle_core::DType::BF16)
            .unwrap()
            .apply_op2_no_bwd(&w, &MatVec)
            .is_err());
    }
}
