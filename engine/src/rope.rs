//! Rotary position tables: plain RoPE, or YaRN-scaled (`rope_scaling` of type `yarn`, as
//! DeepSeek-V3, Kimi-K2 and long-context Qwen3 configs set it).

use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;

/// YaRN: each rotated pair's frequency is blended between the original one and the one
/// interpolated by `factor`, over a ramp of dimensions set by `beta_fast`/`beta_slow`
/// rotations within the original context; cos and sin are scaled by an attention factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Yarn {
    /// How much longer the context is than the original one.
    pub factor: f64,
    /// The context the model was trained with.
    pub original_max_position_embeddings: usize,
    /// Rotations below which dimensions are interpolated (default 32).
    pub beta_fast: f64,
    /// Rotations above which dimensions keep their frequency (default 1).
    pub beta_slow: f64,
    /// DeepSeek's `mscale`.
    pub mscale: Option<f64>,
    /// DeepSeek's `mscale_all_dim` (it also scales latent attention's softmax).
    pub mscale_all_dim: Option<f64>,
    /// An explicit factor on cos and sin.
    pub attention_factor: Option<f64>,
    /// Whether the ramp's ends are rounded outwards to whole dimensions (default true).
    pub truncate: bool,
}

/// YaRN's magnitude correction for a context `scale` times longer.
fn magnitude(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl Yarn {
    /// The factor on cos and sin.
    pub fn cos_sin_factor(&self) -> f64 {
        if let Some(f) = self.attention_factor {
            return f;
        }
        match (self.mscale, self.mscale_all_dim) {
            (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                magnitude(self.factor, m) / magnitude(self.factor, all)
            }
            _ => magnitude(self.factor, 1.0),
        }
    }

    /// The factor on latent attention's softmax scale: DeepSeek squares the magnitude
    /// correction of `mscale_all_dim`.
    pub fn softmax_factor(&self) -> f64 {
        match self.mscale_all_dim {
            Some(all) if all != 0.0 => magnitude(self.factor, all).powi(2),
            _ => 1.0,
        }
    }

    /// The blended inverse frequencies of `dim` rotated dimensions (`dim / 2` pairs).
    pub fn inv_freq(&self, base: f64, dim: usize) -> Vec<f64> {
        let d = dim as f64;
        // The dimension whose wavelength fits `rotations` times in the original context.
        let dimension = |rotations: f64| {
            d * (self.original_max_position_embeddings as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let (mut low, mut high) = (dimension(self.beta_fast), dimension(self.beta_slow));
        if self.truncate {
            (low, high) = (low.floor(), high.ceil());
        }
        let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
        if low == high {
            high += 0.001;
        }
        (0..dim / 2)
            .map(|i| {
                let original = 1.0 / base.powf((2 * i) as f64 / d);
                let keep = 1.0 - ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                original / self.factor * (1.0 - keep) + original * keep
            })
            .collect()
    }
}

/// RoPE cosine and sine tables, `[max_position_embeddings, rotary_dim / 2]`.
pub(crate) fn tables(
    cfg: &ModelConfig,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let dim = cfg.rotary_dim;
    let (inv_freq, factor): (Vec<f32>, f64) = match &cfg.rope_scaling {
        Some(yarn) => (
            yarn.inv_freq(cfg.rope_theta, dim)
                .into_iter()
                .map(|f| f as f32)
                .collect(),
            yarn.cos_sin_factor(),
        ),
        None => (
            (0..dim)
                .step_by(2)
                .map(|i| 1f32 / cfg.rope_theta.powf(i as f64 / dim as f64) as f32)
                .collect(),
            1.0,
        ),
    };
    let inv = Tensor::from_vec(inv_freq, (1, dim / 2), device)?;
    let t = Tensor::arange(0u32, cfg.max_position_embeddings as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((cfg.max_position_embeddings, 1))?;
    let freqs = t.matmul(&inv)?;
    let (cos, sin) = (freqs.cos()?, freqs.sin()?);
    let (cos, sin) = if factor == 1.0 {
        (cos, sin)
    } else {
        ((cos * factor)?, (sin * factor)?)
    };
    Ok((cos.to_dtype(dtype)?, sin.to_dtype(dtype)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yarn(factor: f64) -> Yarn {
        Yarn {
            factor,
            original_max_position_embeddings: 4096,
            beta_fast: 32.0,
            beta_slow: 1.0,
            mscale: Some(1.0),
            mscale_all_dim: Some(1.0),
            attention_factor: None,
            truncate: true,
        }
    }

    #[test]
    fn high_frequencies_keep_their_value_and_low_ones_are_interpolated() {
        // DeepSeek-V3's settings: 64 rotated dimensions, base 10000, factor 40.
        let y = yarn(40.0);
        let f = y.inv_freq(10_000.0, 64);
        let plain = |i: usize| 1.0 / 10_000f64.powf((2 * i) as f64 / 64.0);
        assert_eq!(f.len(), 32);
        assert!(
            (f[0] - plain(0)).abs() < 1e-12,
            "the fastest pair keeps its frequency"
        );
        assert!(
            (f[31] - plain(31) / 40.0).abs() < 1e-12,
            "the slowest pair is interpolated"
        );
        assert!(f.windows(2).all(|w| w[1] < w[0]), "frequencies still fall");
        // mscale = mscale_all_dim: cos/sin unscaled, the softmax scaled by (0.1 ln 40 + 1)².
        assert_eq!(y.cos_sin_factor(), 1.0);
        assert!((y.softmax_factor() - (0.1 * 40f64.ln() + 1.0).powi(2)).abs() < 1e-12);
        // Without DeepSeek's mscales (Qwen3's long-context YaRN): cos/sin carry 0.1 ln 4 + 1.
        let q = Yarn {
            mscale: None,
            mscale_all_dim: None,
            ..yarn(4.0)
        };
        assert!((q.cos_sin_factor() - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
        assert_eq!(q.softmax_factor(), 1.0);
    }
}
