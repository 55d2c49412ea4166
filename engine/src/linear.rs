//! A linear layer that picks its product by how its weight is stored and the batch's
//! shape: quantized weights (a GGUF file's Q8_0, Q4_K, …) through candle's quantized
//! kernels; small-batch f32 products on the CPU through [`MatVec`] (memory-bandwidth
//! matrix-vector, bit-identical whatever the batch); the rest through candle's matmul.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use candle_nn::{Embedding, Linear};

use crate::error::Result;
use crate::matvec::{MatVec, MAX_ROWS};
use crate::weights::Source;

/// A linear layer (`x · Wᵀ + b`).
#[derive(Debug)]
pub(crate) enum Proj {
    /// A plain weight.
    Dense(Linear),
    /// A weight kept quantized as the file stores it.
    Quantized {
        /// `[out, in]`, quantized.
        weight: QMatMul,
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
            weight: QMatMul::from_qtensor(w)?,
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
            Embed::Quantized { table, .. } => Proj::Quantized {
                weight: QMatMul::from_arc(Arc::clone(table))?,
                bias: None,
            },
        })
    }

    /// `x · Wᵀ + b` for `x` of `[rows, in]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, bias) = match self {
            Proj::Quantized { weight, bias } => (weight, bias),
            Proj::Dense(linear) => {
                let w = linear.weight();
                if x.rank() == 2
                    && x.dim(0)? <= MAX_ROWS
                    && x.dtype() == DType::F32
                    && x.device().is_cpu()
                    && w.is_contiguous()
                {
                    let y = x.contiguous()?.apply_op2_no_bwd(w, &MatVec)?;
                    return Ok(match linear.bias() {
                        Some(b) => y.broadcast_add(b)?,
                        None => y,
                    });
                }
                return Ok(linear.forward(x)?);
            }
        };
        let y = match expanded(weight, x)? {
            Some((q, rows_as)) => {
                // The rows rounded to the blocks the quantized product would make of
                // them, so the result is that product's, summed in another order.
                let rows = QTensor::quantize(&x.to_dtype(DType::F32)?, rows_as)?.dequantize(x.device())?;
                let w = q.dequantize(x.device())?;
                rows.matmul(&w.t()?)?.to_dtype(x.dtype())?
            }
            None => weight.forward(&x.contiguous()?)?.to_dtype(x.dtype())?,
        };
        Ok(match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// For a prefill chunk (more than [`MAX_ROWS`] rows, on the CPU) against a weight whose
/// quantized product has no tiled kernel here (all but Q4_K and Q6_K; candle's generic one
/// runs a 512-token Q8_0 prefill at a quarter of llama.cpp's speed): the weight, to be
/// expanded once for a plain matmul, and the block type its product quantizes rows to.
fn expanded<'a>(weight: &'a QMatMul, x: &Tensor) -> Result<Option<(&'a QTensor, GgmlDType)>> {
    let QMatMul::QTensor(q) = weight else {
        return Ok(None);
    };
    if x.dim(0)? <= MAX_ROWS || !x.device().is_cpu() {
        return Ok(None);
    }
    Ok(match q.dtype() {
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => Some((q, GgmlDType::Q8_0)),
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q5K => Some((q, GgmlDType::Q8K)),
        _ => None,
    })
}

/// The token embedding: a plain table, or a quantized one whose rows are dequantized as
/// tokens look them up.
#[derive(Debug)]
pub(crate) enum Embed {
    /// A plain `[vocab, hidden]` table.
    Dense(Embedding),
    /// A quantized table; rows come out as `dtype`.
    Quantized {
        /// `[vocab, hidden]`, quantized.
        table: Arc<QTensor>,
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
                    table: Arc::new(t),
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
            Embed::Quantized { table, dtype } => table.embedding(ids)?.to_dtype(*dtype),
        }
    }
}
