//! A linear layer that picks its product by how its weight is stored and the batch's
//! shape: quantized weights (a GGUF file's Q8_0, Q4_K, …) through candle's quantized
//! kernels, but Q8_0 decode batches through braid's ([`crate::q8_0`]) and long prefill
//! chunks, where candle has no tiled kernel, as a matmul of the expanded weight;
//! small-batch f32 products on the CPU through [`MatVec`] (memory-bandwidth
//! matrix-vector, bit-identical whatever the batch) and prefill chunks through
//! [`prefill_product`] (candle's GEMM on the rows transposed); the rest through candle's
//! matmul.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Embedding, Linear};

use crate::error::Result;
use crate::matvec::{MatVec, MAX_ROWS};
use crate::prefill_product;
use crate::weights::Source;

/// A linear layer (`x · Wᵀ + b`).
#[derive(Debug)]
pub(crate) enum Proj {
    /// A plain weight.
    Dense(Linear),
    /// A weight kept quantized as the file stores it.
    Quantized {
        /// `[out, in]`, quantized, its rows padded to whole tiles ([`whole_tiles`]).
        weight: QMatMul,
        /// `out`: the outputs past it are the padding's.
        outputs: usize,
        /// The bias, plain.
        bias: Option<Tensor>,
    },
}

impl Proj {
    /// Loads `PREFIX.weight` (`[out, in]`) and, when `bias`, `PREFIX.bias`.
    pub(crate) fn load(input: usize, output: usize, bias: bool, src: &Source) -> candle_core::Result<Proj> {
        let Some(w) = src.quantized("weight")? else {
            return Ok(Proj::Dense(candle_nn::linear_b(
                input,
                output,
                bias,
                src.vb().clone(),
            )?));
        };
        if w.shape().dims() != [output, input] {
            candle_core::bail!(
                "shape mismatch for {}.weight: expected [{output}, {input}], the file has {:?}",
                src.vb().prefix(),
                w.shape()
            )
        }
        Ok(Proj::Quantized {
            weight: QMatMul::from_qtensor(whole_tiles(w)?)?,
            outputs: output,
            bias: if bias {
                Some(src.vb().get(output, "bias")?)
            } else {
                None
            },
        })
    }

    /// The LM head that reuses the embedding's weight (tied embeddings).
    pub(crate) fn tied(embed: &Embed) -> candle_core::Result<Proj> {
        Ok(match embed {
            Embed::Dense(e) => Proj::Dense(Linear::new(e.embeddings().clone(), None)),
            Embed::Quantized { table, vocab, .. } => Proj::Quantized {
                weight: QMatMul::from_arc(Arc::clone(table))?,
                outputs: *vocab,
                bias: None,
            },
        })
    }

    /// `x · Wᵀ + b` for `x` of `[rows, in]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, outputs, bias) = match self {
            Proj::Quantized {
                weight,
                outputs,
                bias,
            } => (weight, *outputs, bias),
            Proj::Dense(linear) => {
                let w = linear.weight();
                if x.rank() != 2 || x.dtype() != DType::F32 || !x.device().is_cpu() || !w.is_contiguous() {
                    return Ok(linear.forward(x)?);
                }
                let rows = x.dim(0)?;
                let y = if rows <= MAX_ROWS {
                    x.contiguous()?.apply_op2_no_bwd(w, &MatVec)?
                } else if rows <= prefill_product::MAX_ROWS {
                    prefill_product::product(x, w)?
                } else {
                    return Ok(linear.forward(x)?);
                };
                return Ok(match linear.bias() {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                });
            }
        };
        let y = match (q8_0_batch(weight, x)?, expanded(weight, x)?) {
            (Some(y), _) => y,
            (None, Some((q, rows_as))) => expanded_product(q, rows_as, x)?,
            (None, None) => weight.forward(&x.contiguous()?)?.to_dtype(x.dtype())?,
        };
        finish(y, outputs, bias.as_ref())
    }

    /// Each of `projs` applied to the same `x` ([`Proj::forward`]'s numbers) through one
    /// quantization of `x` and one parallel region (candle's `gemv_fused_shared_lhs`),
    /// where every weight is quantized, of one type, and taken by candle's tiled kernels
    /// (q, k and v; gate and up); `None` otherwise. A layer's products then quantize `x`
    /// and wait on the pool 4 times rather than 7.
    pub(crate) fn fused(projs: &[&Proj], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let mut weights = Vec::with_capacity(projs.len());
        for p in projs {
            match p {
                Proj::Quantized {
                    weight: QMatMul::QTensor(q),
                    ..
                } if q.dtype() != GgmlDType::Q8_0 || tiled_q8_0(q)? => weights.push(q.as_ref()),
                _ => return Ok(None),
            }
        }
        if x.rank() != 2 || x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Ok(None);
        }
        let Some(ys) = QTensor::gemv_fused_shared_lhs(&weights, &x.contiguous()?)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(ys.len());
        for (y, p) in ys.into_iter().zip(projs) {
            let Proj::Quantized { outputs, bias, .. } = p else {
                return Ok(None);
            };
            out.push(finish(y, *outputs, bias.as_ref())?);
        }
        Ok(Some(out))
    }
}

/// A quantized product's `y` with the padding's outputs dropped (past `outputs`) and the
/// bias added.
fn finish(y: Tensor, outputs: usize, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = if y.dim(D::Minus1)? > outputs {
        y.narrow(D::Minus1, 0, outputs)?.contiguous()?
    } else {
        y
    };
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// A decode batch (1 to [`MAX_ROWS`] f32 rows on the CPU) against a Q8_0 weight that
/// candle's tiled kernel does not take ([`tiled_q8_0`]), through braid's kernel
/// ([`crate::q8_0`]: llama.cpp's AVX2 numbers, each weight block read once for up to 4
/// rows); `None` for other shapes and types.
fn q8_0_batch(weight: &QMatMul, x: &Tensor) -> Result<Option<Tensor>> {
    let QMatMul::QTensor(q) = weight else {
        return Ok(None);
    };
    let n = x.dim(0)?;
    if q.dtype() != GgmlDType::Q8_0
        || tiled_q8_0(q)?
        || x.rank() != 2
        || !(1..=MAX_ROWS).contains(&n)
        || x.dtype() != DType::F32
        || !x.device().is_cpu()
    {
        return Ok(None);
    }
    let (m, k) = q.shape().dims2()?;
    let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    Ok(match crate::q8_0::product(&q.data()?, m, k, &xs, n) {
        Some(y) => Some(Tensor::from_vec(y, (n, m), x.device())?),
        None => None,
    })
}

/// Whether candle's tiled Q8_0 kernel takes `q`: on CPUs with VNNI, for weights of whole
/// 256-value blocks per row and whole tiles of rows ([`whole_tiles`] pads the rows). It
/// rounds the rows to 256-value blocks (Q8_K) where llama.cpp rounds them to 32, so its
/// logits are about 5e-3 of their range off llama.cpp's, but it reads a tile's weights
/// once for every row of the step: 0.26B Qwen3 Q8_0 on an AVX-512/VNNI EPYC, decode tok/s,
/// braid's kernel → this one: batch 1 98–101 → 136–139, batch 8 266–276 → 535–546, batch
/// 32 248–255 → 714–722 (and the same kernel for every batch size, so a sequence's numbers
/// do not depend on the batch).
fn tiled_q8_0(q: &QTensor) -> Result<bool> {
    let (rows, k) = q.shape().dims2()?;
    Ok(q.dtype() == GgmlDType::Q8_0
        && vnni()
        && k.is_multiple_of(GgmlDType::Q8K.block_size())
        && rows.is_multiple_of(TILE_ROWS))
}

/// For more rows than a decode batch (a prefill chunk, or a step of over [`MAX_ROWS`]
/// sequences) on a CPU where candle's product for the weight's type has no tiled kernel
/// (x86: Q4_0, Q5_0, Q2_K, Q3_K, Q5_K, and Q8_0 unless [`tiled_q8_0`]; its generic one
/// runs a 512-token Q8_0 prefill at a quarter of llama.cpp's speed): the weight, and the
/// block type its product quantizes the rows to.
fn expanded<'a>(weight: &'a QMatMul, x: &Tensor) -> Result<Option<(&'a QTensor, GgmlDType)>> {
    let QMatMul::QTensor(q) = weight else {
        return Ok(None);
    };
    if x.dim(0)? <= MAX_ROWS || !x.device().is_cpu() || !cfg!(target_arch = "x86_64") {
        return Ok(None);
    }
    Ok(match q.dtype() {
        GgmlDType::Q8_0 if tiled_q8_0(q)? => None,
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => Some((q, GgmlDType::Q8_0)),
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q5K => Some((q, GgmlDType::Q8K)),
        _ => None,
    })
}

/// Whether the CPU has the 8-bit dot products candle's tiled Q8_0 kernel needs (that
/// kernel rounds the rows to 256-value blocks: prefill logits within about 6e-3 of
/// llama.cpp's, at 1.1–1.3× its speed, where the expanded product is exact at half).
pub(crate) fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Weight values expanded at a time by [`expanded_product`] (16 MB of f32), so a large
/// weight (an LM head of 150k rows) never exists expanded whole.
const EXPANDED_VALUES: usize = 4 << 20;

/// `x · Wᵀ` with `W` expanded to f32 a slab of rows at a time and `x`'s rows rounded to
/// the blocks (`rows_as`) the quantized product would make of them: that product's
/// numbers, summed in another order, at a plain matmul's speed.
fn expanded_product(w: &QTensor, rows_as: GgmlDType, x: &Tensor) -> Result<Tensor> {
    expanded_in_slabs(w, rows_as, x, EXPANDED_VALUES)
}

/// [`expanded_product`], expanding at most `values` weight values at a time.
fn expanded_in_slabs(w: &QTensor, rows_as: GgmlDType, x: &Tensor, values: usize) -> Result<Tensor> {
    let (out, k) = w.shape().dims2()?;
    let rows = QTensor::quantize(&x.to_dtype(DType::F32)?, rows_as)?.dequantize(x.device())?;
    let data = w.data()?;
    let row_bytes = data.len() / out.max(1);
    let slab = (values / k.max(1)).max(1);
    let mut parts = Vec::with_capacity(out.div_ceil(slab));
    for first in (0..out).step_by(slab) {
        let n = slab.min(out - first);
        let bytes = &data[first * row_bytes..(first + n) * row_bytes];
        let part = QTensor::new(
            QStorage::from_data(Cow::Borrowed(bytes), x.device(), w.dtype())?,
            (n, k),
        )?;
        parts.push(rows.matmul(&part.dequantize(x.device())?.t()?)?);
    }
    Ok(Tensor::cat(&parts, 1)?.to_dtype(x.dtype())?)
}

/// Rows of one tile of candle's tiled quantized products on x86 (`repack_x86`'s
/// `TILE_N`): a weight whose rows are not a whole number of tiles is multiplied one row
/// of `x` at a time instead, reading the whole weight once per row. Qwen3's GGUF LM head
/// (151,669 rows, Q6_K) made a batch-8 decode step 5× a batch-1 step that way.
const TILE_ROWS: usize = 16;

/// `w` (`[out, in]`) with zero rows appended up to a whole number of [`TILE_ROWS`]
/// (they multiply to zeros, which [`Proj::forward`] drops); `w` itself when it has one.
fn whole_tiles(w: QTensor) -> candle_core::Result<QTensor> {
    let (out, k) = w.shape().dims2()?;
    let padded = out.next_multiple_of(TILE_ROWS);
    if padded == out {
        return Ok(w);
    }
    let mut bytes = w.data()?.into_owned();
    let row_bytes = bytes.len() / out;
    bytes.resize(padded * row_bytes, 0);
    QTensor::new(
        QStorage::from_data(Cow::Owned(bytes), &w.device(), w.dtype())?,
        (padded, k),
    )
}

/// The token embedding: a plain table, or a quantized one whose rows are dequantized as
/// tokens look them up.
#[derive(Debug)]
pub(crate) enum Embed {
    /// A plain `[vocab, hidden]` table.
    Dense(Embedding),
    /// A quantized table; rows come out as `dtype`.
    Quantized {
        /// `[vocab, hidden]`, quantized, its rows padded to whole tiles ([`whole_tiles`])
        /// for when it is also the LM head.
        table: Arc<QTensor>,
        /// The tokens: the table's rows past it are the padding's.
        vocab: usize,
        /// The model's dtype.
        dtype: DType,
    },
}

impl Embed {
    /// Loads `PREFIX.weight` (`[vocab, hidden]`).
    pub(crate) fn load(vocab: usize, hidden: usize, src: &Source) -> candle_core::Result<Embed> {
        match src.quantized("weight")? {
            Some(t)
                if t.shape().dims() == [vocab, hidden] && hidden.is_multiple_of(t.dtype().block_size()) =>
            {
                Ok(Embed::Quantized {
                    table: Arc::new(whole_tiles(t)?),
                    vocab,
                    dtype: src.vb().dtype(),
                })
            }
            _ => Ok(Embed::Dense(candle_nn::embedding(
                vocab,
                hidden,
                src.vb().clone(),
            )?)),
        }
    }

    /// The rows of `ids`.
    pub(crate) fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embed::Dense(e) => e.forward(ids),
            Embed::Quantized { table, dtype, .. } => table.embedding(ids)?.to_dtype(*dtype),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn a_weight_padded_to_whole_tiles_gives_the_same_outputs() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (37, 256), &dev).unwrap();
        let plain = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q4K).unwrap()).unwrap();
        let padded = whole_tiles(QTensor::quantize(&w, GgmlDType::Q4K).unwrap()).unwrap();
        assert_eq!(padded.shape().dims(), [48, 256]);
        let proj = Proj::Quantized {
            weight: QMatMul::from_qtensor(padded).unwrap(),
            outputs: 37,
            bias: None,
        };
        for m in [1, 8] {
            let x = Tensor::randn(0f32, 1.0, (m, 256), &dev).unwrap();
            let (got, want) = (proj.forward(&x).unwrap(), plain.forward(&x).unwrap());
            assert_eq!(got.dims(), [m, 37]);
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-3, "{m} rows: {diff}");
        }
        let whole = QTensor::quantize(
            &Tensor::zeros((32, 256), DType::F32, &dev).unwrap(),
            GgmlDType::Q8_0,
        )
        .unwrap();
        assert_eq!(whole_tiles(whole).unwrap().shape().dims(), [32, 256]);
    }

    #[test]
    fn fused_projections_give_each_ones_numbers_or_step_aside() {
        let dev = Device::Cpu;
        let quantized = |rows: usize, dtype: GgmlDType| {
            let w = Tensor::randn(0f32, 1.0, (rows, 256), &dev).unwrap();
            Proj::Quantized {
                weight: QMatMul::from_qtensor(whole_tiles(QTensor::quantize(&w, dtype).unwrap()).unwrap())
                    .unwrap(),
                outputs: rows,
                bias: None,
            }
        };
        let (a, b) = (quantized(48, GgmlDType::Q4K), quantized(37, GgmlDType::Q4K));
        for m in [1, 8] {
            let x = Tensor::randn(0f32, 1.0, (m, 256), &dev).unwrap();
            let Some(ys) = Proj::fused(&[&a, &b], &x).unwrap() else {
                // candle fuses only with its 512-bit VNNI kernels.
                #[cfg(target_arch = "x86_64")]
                assert!(!std::arch::is_x86_feature_detected!("avx512vnni"));
                continue;
            };
            for (y, p) in ys.iter().zip([&a, &b]) {
                let alone = p.forward(&x).unwrap();
                assert_eq!(y.dims(), alone.dims());
                let diff = (y - alone)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert_eq!(diff, 0.0, "{m} rows");
            }
        }
        let x = Tensor::randn(0f32, 1.0, (2, 256), &dev).unwrap();
        let mixed = quantized(16, GgmlDType::Q8_0);
        assert!(Proj::fused(&[&a, &mixed], &x).unwrap().is_none());
        let dense = Proj::Dense(Linear::new(
            Tensor::zeros((16, 256), DType::F32, &dev).unwrap(),
            None,
        ));
        assert!(Proj::fused(&[&a, &dense], &x).unwrap().is_none());
    }

    #[test]
    fn an_expanded_product_gives_the_quantized_products_numbers_in_slabs() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (300, 256), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (40, 256), &dev).unwrap();
        for (dtype, rows_as) in [
            (GgmlDType::Q8_0, GgmlDType::Q8_0),
            (GgmlDType::Q5K, GgmlDType::Q8K),
        ] {
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let quantized = QMatMul::from_arc(Arc::clone(&q)).unwrap().forward(&x).unwrap();
            // 7 rows of 256 a slab: 43 slabs, the last of 6 rows.
            let expanded = expanded_in_slabs(&q, rows_as, &x, 7 * 256).unwrap();
            assert_eq!(expanded.dims(), &[40, 300]);
            let max_abs = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let (scale, diff) = (max_abs(&quantized), max_abs(&(expanded - &quantized).unwrap()));
            assert!(diff < 1e-5 * scale, "{dtype:?}: {diff} of {scale}");
        }
    }
}
