//! Q8_0 weights (llama.cpp's 8-bit blocks: an f16 scale and 32 values) times the rows of a
//! decode step, on x86 CPUs with AVX2. The rows are quantized to Q8_0 blocks and each
//! output is the sum over blocks of `scale_w × scale_x × Σ w·x`, in eight lanes added up
//! in the order llama.cpp's and candle's AVX2 dot product adds them: llama.cpp's AVX2
//! numbers, to the last bit, which are candle's untiled product's (the tests check
//! against that one).
//!
//! candle computes each (weight row, row of x) pair as a call of its own, converting both
//! f16 scales each time through a function call, so a batch of 8 costs about 8 batches
//! of 1. Here a weight block is loaded and made unsigned once for a tile of up to 4 rows
//! of x, two weight rows share each block of x (batch 8 171 → 238 tok/s, batch 32 140 →
//! 182 on a 0.26B Qwen3 Q8_0, AVX-512 EPYC), the rows' scales are converted once per step
//! and the weights' in one F16C instruction. A single row (batch-1 decode) runs against 4
//! weight rows at a time, its block loaded once for the four, where that is faster: on
//! the AVX2-only EPYC braid was measured on (decode 45.6 → 54.7 tok/s, 0.26B Qwen3 Q8_0),
//! but not on the AVX-512/VNNI one, where four weight streams a thread wait on memory (43
//! tok/s) and one row at a time runs at 80; so with VNNI a single row streams the weight
//! rows one by one.
//!
//! candle has a tiled Q8_0 kernel of its own on VNNI CPUs, which rounds the rows to
//! blocks of 256 values (Q8_K) rather than 32: its logits differ from llama.cpp's by
//! about 6e-3 of their range on every step, where this kernel's agree to the last bit or
//! nearly. Once the weights' rows are padded to whole tiles it is faster at every batch
//! size (`linear::tiled_q8_0` has the figures) and takes the weights it can on VNNI CPUs;
//! this kernel takes the rest: CPUs with AVX2 but no VNNI, and rows that are not whole
//! 256-value blocks.

use half::f16;

use crate::parallel::for_each_chunk;

/// Values per block.
const BLOCK: usize = 32;
/// Bytes per stored block: the f16 scale, then 32 signed bytes.
const BLOCK_BYTES: usize = 2 + BLOCK;
/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 32;
/// Rows of `x` computed together against one weight row.
const TILE: usize = 4;

/// Whether this CPU runs the kernel (AVX2, FMA and F16C).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows of `x` quantized to Q8_0 as candle's `BlockQ8_0::from_float` does: per block, the
/// scale `max|x| / 127` (kept as f16, used as f32) and `round(x / scale)`.
struct Rows {
    scales: Vec<f32>,
    /// The signed 8-bit values, as bytes.
    quants: Vec<u8>,
}

fn quantize(x: &[f32]) -> Rows {
    let mut scales = Vec::with_capacity(x.len() / BLOCK);
    let mut quants = Vec::with_capacity(x.len());
    for block in x.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        scales.push(f16::from_f32(d).to_f32());
        quants.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    Rows { scales, quants }
}

/// `x [n, k] · Wᵀ` → `[n, m]`, for `w` holding `m` rows of `k / 32` Q8_0 blocks; `None`
/// where the CPU lacks AVX2/FMA/F16C or the sizes do not fit (the caller then uses
/// candle's).
pub(crate) fn product(w: &[u8], m: usize, k: usize, x: &[f32], n: usize) -> Option<Vec<f32>> {
    if !available() || !k.is_multiple_of(BLOCK) || w.len() != m * k / BLOCK * BLOCK_BYTES || x.len() != n * k
    {
        return None;
    }
    let rows = quantize(x);
    if n == 1 {
        let mut out = vec![0f32; m];
        let row_by_row = crate::linear::vnni();
        for_each_chunk(&mut out, ROWS_PER_TASK, |task, out| match row_by_row {
            true => products(w, &rows, 1, k, task * ROWS_PER_TASK, out),
            false => one_row(w, &rows, k, task * ROWS_PER_TASK, out),
        });
        return Some(out);
    }
    let mut by_row = vec![0f32; m * n];
    for_each_chunk(&mut by_row, n * ROWS_PER_TASK, |task, out| {
        products(w, &rows, n, k, task * ROWS_PER_TASK, out)
    });
    Some(crate::matvec::by_batch_row(by_row, n, m))
}

/// The outputs of the weight rows from `first` on, as many as `out` holds
/// (`out[r * n + i]` = row `first + r` · `x[i]`).
fn products(w: &[u8], rows: &Rows, n: usize, k: usize, first: usize, out: &mut [f32]) {
    let row_bytes = k / BLOCK * BLOCK_BYTES;
    // Two weight rows at a time against full tiles of x: each x block loaded once for both.
    let mut pairs = out.chunks_exact_mut(2 * n);
    let mut r = first;
    for pair in &mut pairs {
        let (o0, o1) = pair.split_at_mut(n);
        let w_pair = &w[r * row_bytes..][..2 * row_bytes];
        let mut i = 0;
        while i + TILE <= n {
            let [d0, d1] = avx2::pair_dots(w_pair, rows, k, i);
            o0[i..i + TILE].copy_from_slice(&d0);
            o1[i..i + TILE].copy_from_slice(&d1);
            i += TILE;
        }
        if i < n {
            one_weight_row(&w_pair[..row_bytes], rows, k, i, &mut o0[i..]);
            one_weight_row(&w_pair[row_bytes..], rows, k, i, &mut o1[i..]);
        }
        r += 2;
    }
    for out_r in pairs.into_remainder().chunks_exact_mut(n) {
        one_weight_row(&w[r * row_bytes..][..row_bytes], rows, k, 0, out_r);
        r += 1;
    }
}

/// One weight row `w_r` · rows `first..first + out.len()` of `x`, in tiles of up to
/// [`TILE`].
fn one_weight_row(w_r: &[u8], rows: &Rows, k: usize, first: usize, out: &mut [f32]) {
    let mut done = 0;
    while done < out.len() {
        let c = TILE.min(out.len() - done);
        let (o, i) = (&mut out[done..done + c], first + done);
        match c {
            1 => o.copy_from_slice(&avx2::dots::<1>(w_r, rows, k, i)),
            2 => o.copy_from_slice(&avx2::dots::<2>(w_r, rows, k, i)),
            3 => o.copy_from_slice(&avx2::dots::<3>(w_r, rows, k, i)),
            _ => o.copy_from_slice(&avx2::dots::<TILE>(w_r, rows, k, i)),
        }
        done += c;
    }
}

/// The single row of `x` against the weight rows from `first` on, as many as `out` holds,
/// [`WEIGHT_TILE`] weight rows at a time.
fn one_row(w: &[u8], rows: &Rows, k: usize, first: usize, out: &mut [f32]) {
    let row_bytes = k / BLOCK * BLOCK_BYTES;
    let mut tiles = out.chunks_exact_mut(WEIGHT_TILE);
    let mut r = first;
    for o in &mut tiles {
        let w_t = &w[r * row_bytes..][..WEIGHT_TILE * row_bytes];
        o.copy_from_slice(&avx2::rows_dot(w_t, rows, k));
        r += WEIGHT_TILE;
    }
    for o in tiles.into_remainder() {
        one_weight_row(
            &w[r * row_bytes..][..row_bytes],
            rows,
            k,
            0,
            std::slice::from_mut(o),
        );
        r += 1;
    }
}

/// Weight rows computed together against a single row of `x`.
const WEIGHT_TILE: usize = 4;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Rows, BLOCK, BLOCK_BYTES, WEIGHT_TILE};

    /// How far ahead (in bytes) a weight row asks for its next blocks: computing several
    /// rows of `x` per block leaves the hardware prefetchers behind (batch 32, 0.26B Qwen3
    /// Q8_0: 178–188 → 197–199 tok/s; batch 8 unchanged; a single row within noise).
    const PREFETCH: usize = 1024;

    /// One weight row's dot products with rows `first..first + C` of `x`.
    pub(super) fn dots<const C: usize>(w_r: &[u8], rows: &Rows, k: usize, first: usize) -> [f32; C] {
        // SAFETY: `product` runs only where `available()` found AVX2 and FMA.
        #[allow(unsafe_code)]
        unsafe {
            dots_avx2::<C>(w_r, rows, k, first)
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dots_avx2<const C: usize>(w_r: &[u8], rows: &Rows, k: usize, first: usize) -> [f32; C] {
        let blocks = k / BLOCK;
        let mut acc = [_mm256_setzero_ps(); C];
        for (b, block) in w_r.chunks_exact(BLOCK_BYTES).enumerate() {
            _mm_prefetch::<_MM_HINT_T0>(block.as_ptr().wrapping_add(PREFETCH).cast());
            let dw = scale(block);
            let wv = load(&block[2..]);
            let aw = _mm256_sign_epi8(wv, wv);
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let row = first + j;
                let q = block_dot(wv, aw, load(&rows.quants[row * k + b * BLOCK..]));
                let d = _mm256_set1_ps(dw * rows.scales[row * blocks + b]);
                *acc_j = _mm256_fmadd_ps(d, q, *acc_j);
            }
        }
        acc.map(|a| hsum(a))
    }

    /// The two weight rows in `w_pair` (one after the other) · rows `first..first + 4`
    /// of `x`: per output, the same operations in the same order as [`dots`] (so the
    /// same numbers), each x block loaded once for both weight rows.
    pub(super) fn pair_dots(w_pair: &[u8], rows: &Rows, k: usize, first: usize) -> [[f32; 4]; 2] {
        // SAFETY: `product` runs only where `available()` found AVX2, FMA and F16C.
        #[allow(unsafe_code)]
        unsafe {
            pair_dots_avx2(w_pair, rows, k, first)
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn pair_dots_avx2(w_pair: &[u8], rows: &Rows, k: usize, first: usize) -> [[f32; 4]; 2] {
        let blocks = k / BLOCK;
        let row_bytes = blocks * BLOCK_BYTES;
        let (w0, w1) = w_pair.split_at(row_bytes);
        let mut acc0 = [_mm256_setzero_ps(); 4];
        let mut acc1 = [_mm256_setzero_ps(); 4];
        for (b, (block0, block1)) in w0
            .chunks_exact(BLOCK_BYTES)
            .zip(w1.chunks_exact(BLOCK_BYTES))
            .enumerate()
        {
            _mm_prefetch::<_MM_HINT_T0>(block0.as_ptr().wrapping_add(PREFETCH).cast());
            _mm_prefetch::<_MM_HINT_T0>(block1.as_ptr().wrapping_add(PREFETCH).cast());
            let (dw0, dw1) = (scale(block0), scale(block1));
            let (wv0, wv1) = (load(&block0[2..]), load(&block1[2..]));
            let (aw0, aw1) = (_mm256_sign_epi8(wv0, wv0), _mm256_sign_epi8(wv1, wv1));
            for j in 0..4 {
                let row = first + j;
                let xv = load(&rows.quants[row * k + b * BLOCK..]);
                let dx = rows.scales[row * blocks + b];
                let (q0, q1) = (block_dot(wv0, aw0, xv), block_dot(wv1, aw1, xv));
                acc0[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw0 * dx), q0, acc0[j]);
                acc1[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw1 * dx), q1, acc1[j]);
            }
        }
        [acc0.map(|a| hsum(a)), acc1.map(|a| hsum(a))]
    }

    /// Row `first + j` of the [`WEIGHT_TILE`] weight rows in `w_t` (row after row) · the
    /// single row of `x`, for each `j`: per row, the same operations in the same order as
    /// [`dots`] for one row (so the same numbers), the row's block loaded once for all.
    pub(super) fn rows_dot(w_t: &[u8], rows: &Rows, k: usize) -> [f32; WEIGHT_TILE] {
        // SAFETY: `product` runs only where `available()` found AVX2, FMA and F16C.
        #[allow(unsafe_code)]
        unsafe {
            rows_dot_avx2(w_t, rows, k)
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn rows_dot_avx2(w_t: &[u8], rows: &Rows, k: usize) -> [f32; WEIGHT_TILE] {
        let row_bytes = k / BLOCK * BLOCK_BYTES;
        let mut acc = [_mm256_setzero_ps(); WEIGHT_TILE];
        for (b, (xq, &dx)) in rows.quants.chunks_exact(BLOCK).zip(&rows.scales).enumerate() {
            let xv = load(xq);
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let block = &w_t[j * row_bytes + b * BLOCK_BYTES..][..BLOCK_BYTES];
                let wv = load(&block[2..]);
                let q = block_dot(wv, _mm256_sign_epi8(wv, wv), xv);
                let d = _mm256_set1_ps(scale(block) * dx);
                *acc_j = _mm256_fmadd_ps(d, q, *acc_j);
            }
        }
        acc.map(|a| hsum(a))
    }

    /// A weight block's 32 values `wv` (`aw`: their absolute values) times a block of x,
    /// `xv`: the products summed four by four into eight lanes, as f32, the way
    /// llama.cpp's AVX2 dot product forms them (x takes w's signs, so the unsigned ×
    /// signed multiply-add applies).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn block_dot(wv: __m256i, aw: __m256i, xv: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), pairs))
    }

    /// A block's f16 scale (its first two bytes, little-endian) as f32, exactly.
    #[target_feature(enable = "f16c")]
    fn scale(block: &[u8]) -> f32 {
        let bits = u16::from_le_bytes([block[0], block[1]]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
    }

    /// The first 32 bytes of `bytes` (which must hold that many) as one vector.
    #[target_feature(enable = "avx2")]
    fn load(bytes: &[u8]) -> __m256i {
        let chunk: &[u8; BLOCK] = match bytes.get(..BLOCK).and_then(|c| c.try_into().ok()) {
            Some(c) => c,
            None => return _mm256_setzero_si256(),
        };
        // SAFETY: `chunk` is 32 readable bytes; the load has no alignment requirement.
        #[allow(unsafe_code)]
        unsafe {
            _mm256_loadu_si256(chunk.as_ptr().cast())
        }
    }

    /// The eight lanes' sum in the order candle's and llama.cpp's `hsum_float_8` add them.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::Rows;

    /// Never called: `product` declines where AVX2 is absent.
    pub(super) fn dots<const C: usize>(_: &[u8], _: &Rows, _: usize, _: usize) -> [f32; C] {
        [0.0; C]
    }

    /// Never called: `product` declines where AVX2 is absent.
    pub(super) fn pair_dots(_: &[u8], _: &Rows, _: usize, _: usize) -> [[f32; 4]; 2] {
        [[0.0; 4]; 2]
    }

    /// Never called: `product` declines where AVX2 is absent.
    pub(super) fn rows_dot(_: &[u8], _: &Rows, _: usize) -> [f32; super::WEIGHT_TILE] {
        [0.0; super::WEIGHT_TILE]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    use super::*;

    #[test]
    fn the_product_is_candles_to_the_last_bit_alone_or_batched() {
        if !available() {
            eprintln!("no AVX2/FMA on this CPU: the kernel is not used, nothing to compare");
            return;
        }
        let dev = Device::Cpu;
        // 301 rows: a last task of 13, so a single row meets weight rows past the tiles of 4
        // and a batch a weight row past the pairs; and not a multiple of 16, so candle takes
        // its untiled product, whose numbers are llama.cpp's (its tiled one on VNNI CPUs,
        // for rows in sixteens, rounds x otherwise).
        let (m, k) = (301, 256);
        let w = QTensor::quantize(&Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap(), GgmlDType::Q8_0).unwrap();
        let bytes = w.data().unwrap().to_vec();
        let w = QMatMul::from_qtensor(w).unwrap();
        for n in [1, 3, 8, 13] {
            let x = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let theirs = w
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let ours = product(&bytes, m, k, &xs, n).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(&theirs), "batch {n}");
        }
    }

    #[test]
    #[ignore = "a timing, run by hand"]
    fn timing() {
        let dev = Device::Cpu;
        let (m, k) = (3072, 1024);
        let w = QTensor::quantize(&Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap(), GgmlDType::Q8_0).unwrap();
        let bytes = w.data().unwrap().to_vec();
        let w = QMatMul::from_qtensor(w).unwrap();
        for n in [1, 8, 32] {
            let x = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let t = Instant::now();
            for _ in 0..50 {
                w.forward(&x).unwrap();
            }
            let candle = t.elapsed() / 50;
            let t = Instant::now();
            for _ in 0..50 {
                product(&bytes, m, k, &xv, n);
            }
            let braid = t.elapsed() / 50;
            eprintln!("n {n}: candle {candle:?}, braid {braid:?}");
        }
    }
}
