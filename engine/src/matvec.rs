//! `x · Wᵀ` for the rows of a decode step (up to [`MAX_ROWS`] sequences) with f32
//! weights on the CPU, reading each weight once.
//!
//! Decoding one token per sequence is a matrix-vector product per layer (a thin
//! matrix-matrix one for a batch): every weight is read once per step and used for only a
//! few multiply-adds, so speed is how fast the weights stream from memory. candle's GEMM
//! packs the weight matrix on every call, which at these shapes costs more than the
//! products (a batch-8 profile: two thirds of the step in packing, a seventh in the
//! micro-kernels). This kernel walks the weight rows once, in parallel chunks, in tiles
//! of weight rows × rows of `x` held in registers, with fused multiply-adds. Each output
//! is one dot product in a fixed order ([`fused_dot`]), so a row's result never depends
//! on which other rows share the batch, nor on the instruction set.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Shape};

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
        crate::parallel::for_each_chunk(&mut by_row, n * ROWS_PER_TASK, |task, out| {
            products(x, n, k, w, task * ROWS_PER_TASK, out)
        });
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
/// holds (`out[r * n + i]` = row `first + r` · `x[i]`), each exactly [`fused_dot`]. On
/// x86 with AVX2 and FMA, tiles of weight rows × rows of `x` are held in registers (4 × 2
/// with AVX2's 16 vector registers; with AVX-512's 32, 4 × 4, or 3 × 8 from 8 rows of `x`
/// on, so a batch of 8 streams each weight row once) so each loaded weight serves several
/// rows and each loaded `x` chunk several weights. 0.26B Qwen3 f32, 2 threads, decode
/// tok/s before → after (8 lanes multiplied and added apart, tiles of 4 × 2): batch 8
/// 134–137 → 198–204, batch 32 159–164 → 205–207, batch 1 unchanged (about 41).
fn products(x: &[f32], n: usize, k: usize, w: &[f32], first: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::avx512() {
            return x86::products_avx512(x, n, k, w, first, out);
        }
        if x86::avx2() {
            return x86::products_avx2(x, n, k, w, first, out);
        }
    }
    portable_products(x, n, k, w, first, out)
}

/// [`products`] one [`fused_dot`] at a time, for CPUs without the vector kernels (slow on
/// an x86 without FMA, where each fused multiply-add is a library call).
fn portable_products(x: &[f32], n: usize, k: usize, w: &[f32], first: usize, out: &mut [f32]) {
    for (r, outs) in out.chunks_exact_mut(n).enumerate() {
        let w_r = &w[(first + r) * k..][..k];
        for (i, o) in outs.iter_mut().enumerate() {
            *o = fused_dot(w_r, &x[i * k..][..k]);
        }
    }
}

/// A dot product as every path of [`products`] computes it: [`LANES`] accumulators, each
/// a chain of fused multiply-adds over its lane of every whole chunk, the leftover values
/// fused into one more sum, all added in [`reduce`]'s order.
fn fused_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = fused_tail(ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    reduce(acc, tail)
}

/// The leftover values' products, fused into one sum in order.
#[inline(always)]
fn fused_tail(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |t, (p, q)| p.mul_add(*q, t))
}

/// The lanes' sum (in the order a vector register halves) plus the leftover values'.
#[inline(always)]
fn reduce(a: [f32; LANES], tail: f32) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])) + tail
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{fused_tail, reduce, LANES};

    /// How far ahead (in values) a tile of 4 or more rows of `x` asks for its weight rows:
    /// computing that many rows leaves the hardware prefetchers behind (batch 8 against a
    /// 151,936-row LM head, 2 threads: 26 → 21 ms; a single row gains nothing).
    const PREFETCH: usize = 256;

    /// Whether the CPU has AVX-512 (foundation and 256-bit forms): 32 vector registers.
    pub(super) fn avx512() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") && avx2()
    }

    /// Whether the CPU has AVX2 and FMA.
    pub(super) fn avx2() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// [`super::products`] in tiles of 4 weight rows × 4 rows of `x`, or 3 × 8.
    /// Call only where [`avx512`] holds.
    pub(super) fn products_avx512(x: &[f32], n: usize, k: usize, w: &[f32], first: usize, out: &mut [f32]) {
        debug_assert!(avx512());
        // SAFETY: called only where `avx512()` found these features.
        unsafe { walk_avx512(x, n, k, w, first, out) }
    }

    /// [`super::products`] in tiles of 4 weight rows × 2 rows of `x`.
    /// Call only where [`avx2`] holds.
    pub(super) fn products_avx2(x: &[f32], n: usize, k: usize, w: &[f32], first: usize, out: &mut [f32]) {
        debug_assert!(avx2());
        // SAFETY: called only where `avx2()` found these features.
        unsafe { walk_avx2(x, n, k, w, first, out) }
    }

    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    fn walk_avx512(x: &[f32], n: usize, k: usize, w: &[f32], first: usize, out: &mut [f32]) {
        // SAFETY: this function has the features `walk` needs.
        unsafe {
            if n >= 8 {
                walk::<3, 8>(x, n, k, w, first, out)
            } else {
                walk::<4, 4>(x, n, k, w, first, out)
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn walk_avx2(x: &[f32], n: usize, k: usize, w: &[f32], first: usize, out: &mut [f32]) {
        // SAFETY: this function has the features `walk` needs.
        unsafe { walk::<4, 2>(x, n, k, w, first, out) }
    }

    /// Covers `out` with tiles of `R` weight rows (then single rows) × `C` rows of `x`
    /// (then 2, then 1).
    ///
    /// # Safety
    /// The caller has AVX2 and FMA enabled (this is inlined into it), and AVX-512VL when
    /// `R * C + R + 1` exceeds AVX2's 16 vector registers.
    #[inline(always)]
    unsafe fn walk<const R: usize, const C: usize>(
        x: &[f32],
        n: usize,
        k: usize,
        w: &[f32],
        first: usize,
        out: &mut [f32],
    ) {
        let rows = out.len() / n;
        let mut r = 0;
        while r < rows {
            let tall = rows - r >= R;
            let mut i = 0;
            while i < n {
                let at = (first + r, i);
                let step = match (tall, n - i) {
                    (true, left) if left >= C => store(out, n, r, i, tile::<R, C>(w, x, k, at)),
                    (true, left) if left >= 2 => store(out, n, r, i, tile::<R, 2>(w, x, k, at)),
                    (true, _) => store(out, n, r, i, tile::<R, 1>(w, x, k, at)),
                    (false, left) if left >= C => store(out, n, r, i, tile::<1, C>(w, x, k, at)),
                    (false, left) if left >= 2 => store(out, n, r, i, tile::<1, 2>(w, x, k, at)),
                    (false, _) => store(out, n, r, i, tile::<1, 1>(w, x, k, at)),
                };
                i += step;
            }
            r += if tall { R } else { 1 };
        }
    }

    /// Writes a tile's results into `out` (laid out by weight row); returns its width.
    #[inline(always)]
    fn store<const R: usize, const C: usize>(
        out: &mut [f32],
        n: usize,
        r: usize,
        i: usize,
        tile: [[f32; C]; R],
    ) -> usize {
        for (dr, row) in tile.iter().enumerate() {
            out[(r + dr) * n + i..][..C].copy_from_slice(row);
        }
        C
    }

    /// The dot products of `R` weight rows (from `at.0`) with `C` rows of `x` (from
    /// `at.1`), each summed exactly as [`super::fused_dot`] sums one.
    ///
    /// # Safety
    /// As [`walk`]'s.
    #[inline(always)]
    unsafe fn tile<const R: usize, const C: usize>(
        w: &[f32],
        x: &[f32],
        k: usize,
        at: (usize, usize),
    ) -> [[f32; C]; R] {
        let mut ws = [&w[..0]; R];
        for (d, w_d) in ws.iter_mut().enumerate() {
            *w_d = &w[(at.0 + d) * k..][..k];
        }
        let mut xs = [&x[..0]; C];
        for (j, x_j) in xs.iter_mut().enumerate() {
            *x_j = &x[(at.1 + j) * k..][..k];
        }
        let whole = k - k % LANES;
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut wv = [_mm256_setzero_ps(); R];
        let mut p = 0;
        while p < whole {
            for (v, w_d) in wv.iter_mut().zip(&ws) {
                // SAFETY: `p + LANES <= whole <= k`, the length of every row slice.
                *v = unsafe { _mm256_loadu_ps(w_d.as_ptr().add(p)) };
                if C >= 4 {
                    _mm_prefetch::<_MM_HINT_T0>(w_d.as_ptr().wrapping_add(p + PREFETCH).cast());
                }
            }
            for (j, x_j) in xs.iter().enumerate() {
                // SAFETY: as above.
                let xv = unsafe { _mm256_loadu_ps(x_j.as_ptr().add(p)) };
                for (acc_d, v) in acc.iter_mut().zip(&wv) {
                    acc_d[j] = _mm256_fmadd_ps(*v, xv, acc_d[j]);
                }
            }
            p += LANES;
        }
        let mut sums = [[0f32; C]; R];
        for ((sum_d, acc_d), w_d) in sums.iter_mut().zip(&acc).zip(&ws) {
            for ((sum, a), x_j) in sum_d.iter_mut().zip(acc_d).zip(&xs) {
                let mut lanes = [0f32; LANES];
                // SAFETY: `lanes` holds exactly one vector.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *a) };
                *sum = reduce(lanes, fused_tail(&w_d[whole..], &x_j[whole..]));
            }
        }
        sums
    }
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
                assert_eq!(
                    got[i][j].to_bits(),
                    fused_dot(wj, xi).to_bits(),
                    "row {i}, weight {j}"
                );
            }
        }
        assert!(x
            .to_dtype(candle_core::DType::BF16)
            .unwrap()
            .apply_op2_no_bwd(&w, &MatVec)
            .is_err());
    }

    /// A signature of [`products`].
    #[cfg(target_arch = "x86_64")]
    type Kernel = fn(&[f32], usize, usize, &[f32], usize, &mut [f32]);

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let (k, m) = (83, 23);
        let mut state = 7u32;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let w: Vec<f32> = (0..m * k).map(|_| next()).collect();
        for n in [1, 2, 3, 5, 8, 13] {
            let x: Vec<f32> = (0..n * k).map(|_| next()).collect();
            // Weight rows 3.. (a tail of the 4-row tiles), as a parallel task would.
            let rows = m - 3;
            let mut want = vec![0f32; rows * n];
            portable_products(&x, n, k, &w, 3, &mut want);
            for (r, outs) in want.chunks_exact(n).enumerate() {
                for (i, o) in outs.iter().enumerate() {
                    assert_eq!(
                        o.to_bits(),
                        fused_dot(&w[(3 + r) * k..][..k], &x[i * k..][..k]).to_bits()
                    );
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                let mut kernels: Vec<(&str, Kernel)> = Vec::new();
                if x86::avx2() {
                    kernels.push(("avx2", x86::products_avx2));
                }
                if x86::avx512() {
                    kernels.push(("avx512", x86::products_avx512));
                }
                assert_eq!(kernels.is_empty(), !x86::avx2());
                for (name, kernel) in kernels {
                    let mut got = vec![0f32; rows * n];
                    kernel(&x, n, k, &w, 3, &mut got);
                    let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{name}, {n} rows");
                }
            }
        }
    }

    #[test]
    #[ignore = "a timing, run by hand"]
    fn timing() {
        let dev = Device::Cpu;
        for (m, k) in [(3072, 1024), (1024, 3072), (151_936, 1024)] {
            let w = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            for n in [1, 2, 4, 8, 16, 32] {
                let x = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
                let _ = x.apply_op2_no_bwd(&w, &MatVec).unwrap();
                let t = std::time::Instant::now();
                let reps = 20;
                for _ in 0..reps {
                    let _ = x.apply_op2_no_bwd(&w, &MatVec).unwrap();
                }
                let s = t.elapsed().as_secs_f64() / reps as f64;
                let gb = (m * k * 4) as f64 / s / 1e9;
                let gf = (2 * m * k * n) as f64 / s / 1e9;
                eprintln!("{m}x{k} n={n}: {:.3} ms, {gb:.1} GB/s, {gf:.1} GFLOP/s", s * 1e3);
            }
        }
    }
}
