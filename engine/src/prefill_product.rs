//! `x · Wᵀ` for prefill chunks with f32 weights on the CPU: candle's GEMM on the rows
//! transposed rather than on the weight transposed.
//!
//! candle's GEMM (the `gemm` crate) wants its left operand's columns contiguous, and for
//! `x · Wᵀ` with `W` stored `[out, in]` that operand is `W`, whose columns lie a whole
//! row apart (4 KiB at 1,024 inputs): the crate gathers it one value at a time on every
//! call, and a 512-token prefill of a 0.26B Qwen3 spent a third of its time there (a
//! profile). Computed as `(W · xᵀ)ᵀ` with `xᵀ` laid out contiguous, both operands are
//! read along their contiguous axis; transposing the chunk's rows in and out costs far
//! less than the gather did, since the rows are a fraction of the weight's size. The GEMM
//! of a `[512, 1024] · [3072, 1024]ᵀ` product, 2 threads: 297–355 GFLOP/s with the weight
//! gathered, 420–500 with `xᵀ` contiguous.

use rayon::prelude::*;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::error::Result;

/// Rows up to which [`product`] pays: past them the GEMM's gather of the weight is spread
/// over enough rows to cost less than the transposes (a 0.26B Qwen3, 2 threads, prefill
/// tok/s, candle's matmul → [`product`]: 512 tokens 665–1,080 → 1,276–1,394; 1,024
/// tokens 1,049–1,175 → 1,109–1,218).
pub(crate) const MAX_ROWS: usize = 1024;

/// `x [n, k] · w [m, k]ᵀ → [n, m]` (f32, CPU, `w` contiguous) as `(w · xᵀ)ᵀ`.
pub(crate) fn product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let xt = x.contiguous()?.apply_op1_no_bwd(&Transpose)?;
    Ok(w.matmul(&xt)?.apply_op1_no_bwd(&Transpose)?)
}

/// Rows and columns of a square block of [`Transpose`] (one AVX register's worth).
const BLOCK: usize = 8;

/// Output rows per parallel task of [`Transpose`].
const ROWS_PER_TASK: usize = 64;

/// A contiguous f32 matrix `[r, c]` → `[c, r]`, laid out contiguous (candle's own copy
/// of a transposed view goes value by value at the view's strides: 1.5 M values took
/// 2.8 ms, half the GEMM they feed).
#[derive(Debug, Clone, Copy)]
struct Transpose;

impl CustomOp1 for Transpose {
    fn name(&self) -> &'static str {
        "braid-transpose"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else {
            bail!("braid-transpose takes f32")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("braid-transpose takes a contiguous input")
        };
        let (r, c) = layout.shape().dims2()?;
        Ok((
            CpuStorage::F32(transpose(&src[start..end], r, c)),
            Shape::from((c, r)),
        ))
    }
}

/// `src` (`[r, c]`, row-major) transposed to `[c, r]` in [`BLOCK`]-square blocks (in
/// registers where the CPU has AVX), the output's rows split over rayon's pool: the pool
/// candle's GEMM and f32 element-wise ops run on. (On candle's barrier pool, which braid's
/// decode kernels share with candle's quantized ones, its worker spins on after each
/// transpose while the GEMM's threads want the core: a 1,024-row product took twice the
/// sum of its parts.)
fn transpose(src: &[f32], r: usize, c: usize) -> Vec<f32> {
    debug_assert_eq!(src.len(), r * c);
    let mut out = vec![0f32; r * c];
    if r == 0 {
        return out;
    }
    out.par_chunks_mut(ROWS_PER_TASK * r)
        .enumerate()
        .for_each(|(task, rows)| {
            let first = task * ROWS_PER_TASK;
            for (b, block) in rows.chunks_mut(BLOCK * r).enumerate() {
                let j0 = first + b * BLOCK;
                let width = block.len() / r;
                let mut i0 = 0;
                #[cfg(target_arch = "x86_64")]
                if width == BLOCK && x86::avx() {
                    i0 = x86::full_blocks(src, r, c, j0, block);
                }
                for i in i0..r {
                    for (dj, &v) in src[i * c + j0..][..width].iter().enumerate() {
                        block[dj * r + i] = v;
                    }
                }
            }
        });
    out
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Whether the CPU has AVX (8 f32 to a register).
    pub(super) fn avx() -> bool {
        is_x86_feature_detected!("avx")
    }

    /// Columns `j0..j0 + 8` of `src` (`[r, c]`) into `block` (those 8 output rows, each
    /// `r` long) for the rows in whole blocks of 8; returns where the whole blocks end.
    /// Call only where [`avx`] holds.
    pub(super) fn full_blocks(src: &[f32], r: usize, c: usize, j0: usize, block: &mut [f32]) -> usize {
        debug_assert!(avx());
        assert!(j0 + BLOCK <= c && block.len() == BLOCK * r && src.len() == r * c);
        let whole = r / BLOCK * BLOCK;
        for i0 in (0..whole).step_by(BLOCK) {
            // SAFETY: `avx()` holds; rows `i0..i0 + 8` of `src` exist (`i0 + 8 <= r`) and
            // each has columns `j0..j0 + 8` (`j0 + 8 <= c`); each output row of `block` has
            // values `i0..i0 + 8` (`r` long). Unaligned loads and stores.
            unsafe { block8(src.as_ptr().add(i0 * c + j0), c, block.as_mut_ptr().add(i0), r) }
        }
        whole
    }

    /// One 8 × 8 block: 8 rows of 8 at `from` (rows `stride` apart) → 8 rows of 8 at `to`
    /// (rows `to_stride` apart), transposed in registers.
    #[target_feature(enable = "avx")]
    unsafe fn block8(from: *const f32, stride: usize, to: *mut f32, to_stride: usize) {
        // SAFETY (whole fn): the caller guarantees 8 rows of 8 readable at `from` and
        // writable at `to`.
        let row = |i: usize| unsafe { _mm256_loadu_ps(from.add(i * stride)) };
        let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
        let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
        // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves.
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        let (u0, u1) = (
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
        );
        let (u2, u3) = (
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        );
        let (u4, u5) = (
            _mm256_shuffle_ps::<0x44>(t4, t6),
            _mm256_shuffle_ps::<0xEE>(t4, t6),
        );
        let (u6, u7) = (
            _mm256_shuffle_ps::<0x44>(t5, t7),
            _mm256_shuffle_ps::<0xEE>(t5, t7),
        );
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (j, v) in out.into_iter().enumerate() {
            unsafe { _mm256_storeu_ps(to.add(j * to_stride), v) }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn transposes_every_shape_exactly() {
        for (r, c) in [
            (1, 1),
            (1, 37),
            (37, 1),
            (8, 8),
            (16, 16),
            (17, 65),
            (130, 70),
            (3, 200),
            (64, 200),
        ] {
            let src: Vec<f32> = (0..r * c).map(|v| v as f32).collect();
            let got = transpose(&src, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(got[j * r + i], src[i * c + j], "[{r}, {c}] at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    #[ignore = "a timing, run by hand"]
    fn timing() {
        for (r, c) in [(512, 1024), (512, 3072), (3072, 512), (1024, 3072)] {
            let src: Vec<f32> = (0..r * c).map(|v| v as f32).collect();
            let _ = transpose(&src, r, c);
            let t = std::time::Instant::now();
            for _ in 0..10 {
                let _ = transpose(&src, r, c);
            }
            let s = t.elapsed().as_secs_f64() / 10.0;
            eprintln!(
                "[{r}, {c}]: {:.3} ms, {:.1} GB/s",
                s * 1e3,
                (8 * r * c) as f64 / s / 1e9
            );
        }
    }

    #[test]
    fn matches_the_matmul_of_the_transposed_weight() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (300, 77), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (45, 77), &dev).unwrap();
        let ours = product(&x, &w).unwrap();
        assert_eq!(ours.dims(), [45, 300]);
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
        // A strided view of the rows is laid out first.
        let xs = Tensor::randn(0f32, 1.0, (77, 45), &dev).unwrap().t().unwrap();
        let diff = (product(&xs, &w).unwrap() - xs.matmul(&w.t().unwrap()).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }
}
