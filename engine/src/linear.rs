//! A linear layer that picks its product by shape: small-batch f32 products on the CPU go
//! through [`MatVec`] (memory-bandwidth matrix-vector, bit-identical whatever the batch),
//! the rest through candle's matmul.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::error::Result;
use crate::matvec::{MatVec, MAX_ROWS};

/// A linear layer (`x · Wᵀ + b`).
#[derive(Debug)]
pub(crate) struct Proj(Linear);

impl Proj {
    /// Loads `PREFIX.weight` (`[out, in]`) and, when `bias`, `PREFIX.bias`.
    pub(crate) fn load(input: usize, output: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Proj> {
        Ok(Proj(candle_nn::linear_b(input, output, bias, vb)?))
    }

    /// Wraps an existing weight (a tied LM head).
    pub(crate) fn new(weight: Tensor) -> Proj {
        Proj(Linear::new(weight, None))
    }

    /// `x · Wᵀ + b` for `x` of `[rows, in]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.0.weight();
        if x.rank() == 2
            && x.dim(0)? <= MAX_ROWS
            && x.dtype() == DType::F32
            && x.device().is_cpu()
            && w.is_contiguous()
        {
            let y = x.contiguous()?.apply_op2_no_bwd(w, &MatVec)?;
            return Ok(match self.0.bias() {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            });
        }
        Ok(self.0.forward(x)?)
    }
}
