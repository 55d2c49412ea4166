//! The feed-forward half of a decoder layer: a dense SwiGLU MLP, or a mixture of experts
//! where each token runs through the few experts its router picks.
//!
//! Experts run grouped: the tokens routed to an expert are gathered and go through it in
//! one product per weight, so a batched step reads each active expert's weights once,
//! never once per token. The weighted outputs are scattered back with one `index_add`.

use candle_core::{DType, Tensor};

use crate::config::MoeConfig;
use crate::error::Result;
use crate::linear::Proj;
use crate::routing::{Routing, Scratch};
use crate::weights::Source;

/// A SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
#[derive(Debug)]
pub(crate) struct Mlp {
    gate: Proj,
    up: Proj,
    down: Proj,
}

impl Mlp {
    /// Loads the gate, up and down projections, named `names` in that order, under `src`.
    pub(crate) fn load(
        hidden: usize,
        intermediate: usize,
        src: &Source,
        [gate, up, down]: [&str; 3],
    ) -> candle_core::Result<Mlp> {
        Ok(Mlp {
            gate: Proj::load(hidden, intermediate, false, &src.pp(gate))?,
            up: Proj::load(hidden, intermediate, false, &src.pp(up))?,
            down: Proj::load(intermediate, hidden, false, &src.pp(down))?,
        })
    }

    /// `down(silu(gate(x)) * up(x))` for `x` of `[tokens, hidden]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (gate, up) = match Proj::fused(&[&self.gate, &self.up], x)?.as_deref() {
            Some([gate, up]) => (gate.clone(), up.clone()),
            _ => (self.gate.forward(x)?, self.up.forward(x)?),
        };
        let h = (candle_nn::ops::silu(&gate)? * up)?;
        self.down.forward(&h)
    }
}

/// A mixture of experts: a router, the routed experts and an optional shared expert.
#[derive(Debug)]
pub(crate) struct Experts {
    /// `gate`: one logit per expert, in f32.
    router: Proj,
    correction_bias: Option<Vec<f32>>,
    experts: Vec<Mlp>,
    shared: Option<Mlp>,
    routing: Routing,
}

impl Experts {
    /// Loads `gate` (the router), `experts.N.*` and, where the config has them, the
    /// correction bias and `shared_experts.*` under `src` (the layer's sparse module), in
    /// the config's checkpoint names.
    pub(crate) fn load(hidden: usize, cfg: &MoeConfig, src: &Source) -> candle_core::Result<Experts> {
        // The router and its bias stay f32 whatever the weights' dtype, as the published
        // code keeps them: in bf16, near-equal experts could be chosen differently.
        let f32_src = src.set_dtype(DType::F32);
        let router = Proj::load(hidden, cfg.experts, false, &f32_src.pp("gate"))?;
        let correction_bias = if cfg.correction_bias {
            let b = f32_src.vb().get(cfg.experts, cfg.layout.correction_bias())?;
            Some(b.to_vec1::<f32>()?)
        } else {
            None
        };
        let names = cfg.layout.projections();
        let experts = (0..cfg.experts)
            .map(|e| {
                Mlp::load(
                    hidden,
                    cfg.expert_intermediate_size,
                    &src.pp("experts").pp(e),
                    names,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let shared = (cfg.shared_intermediate_size > 0)
            .then(|| {
                Mlp::load(
                    hidden,
                    cfg.shared_intermediate_size,
                    &src.pp("shared_experts"),
                    names,
                )
            })
            .transpose()?;
        Ok(Experts {
            router,
            correction_bias,
            experts,
            shared,
            routing: cfg.routing.clone(),
        })
    }

    /// Runs `x` (`[tokens, hidden]`) through each token's experts, weighted by its router.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.router.forward(&x.to_dtype(DType::F32)?)?.to_vec2::<f32>()?;
        // Per expert: the rows routed to it and their weights.
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.experts.len()];
        let mut weights: Vec<Vec<f32>> = vec![Vec::new(); self.experts.len()];
        let (mut scratch, mut chosen) = (Scratch::default(), Vec::with_capacity(self.routing.top_k));
        for (row, l) in logits.iter().enumerate() {
            self.routing
                .choose(l, self.correction_bias.as_deref(), &mut scratch, &mut chosen);
            for &(e, w) in &chosen {
                rows[e].push(row as u32);
                weights[e].push(w);
            }
        }
        let device = x.device();
        let mut outs = Vec::new();
        let mut targets = Vec::new();
        for ((expert, rows), weights) in self.experts.iter().zip(rows).zip(weights) {
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let index = Tensor::from_slice(&rows, n, device)?;
            let w = Tensor::from_vec(weights, (n, 1), device)?.to_dtype(x.dtype())?;
            outs.push(expert.forward(&x.index_select(&index, 0)?)?.broadcast_mul(&w)?);
            targets.extend(rows);
        }
        let n = targets.len();
        let routed =
            x.zeros_like()?
                .index_add(&Tensor::from_vec(targets, n, device)?, &Tensor::cat(&outs, 0)?, 0)?;
        Ok(match &self.shared {
            Some(shared) => (routed + shared.forward(x)?)?,
            None => routed,
        })
    }
}

/// A layer's feed-forward: dense or experts.
#[derive(Debug)]
pub(crate) enum FeedForward {
    /// One MLP for every token.
    Dense(Mlp),
    /// Each token's routed experts.
    Experts(Experts),
}

impl FeedForward {
    /// The feed-forward output of `x` (`[tokens, hidden]`).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Dense(m) => m.forward(x),
            FeedForward::Experts(e) => e.forward(x),
        }
    }
}
