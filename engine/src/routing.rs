//! Which experts a token goes to: the router's choice, from one token's router logits.
//!
//! Two published schemes, one function:
//! - **softmax** (Qwen3-MoE): probabilities over all experts, the top `k` kept,
//!   optionally renormalised to sum to one;
//! - **sigmoid** (DeepSeek-V3, GLM-4.5, MiniMax-M2): independent scores, chosen by score
//!   plus a learned correction bias (`e_score_correction_bias`, which steers the choice
//!   but not the weights), optionally only inside the best `topk_groups` of `groups`
//!   expert groups (a group scores the sum of its two best), renormalised, then scaled
//!   by `routed_scaling_factor`.
//!
//! Pure arithmetic on `f32` slices, so it is tested on its own against hand-computed
//! cases; the model calls it once per token per sparse layer.

/// How router logits become expert scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// Softmax over all experts.
    Softmax,
    /// An independent sigmoid per expert.
    Sigmoid,
}

/// A sparse layer's routing rule, read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// How logits become scores.
    pub scoring: Scoring,
    /// Experts per token (`num_experts_per_tok`).
    pub top_k: usize,
    /// Whether the chosen weights are renormalised to sum to one (`norm_topk_prob`).
    pub normalize: bool,
    /// Expert groups (`n_group`); 1 means no group limit.
    pub groups: usize,
    /// Groups a token may choose from (`topk_group`).
    pub topk_groups: usize,
    /// Factor on the final weights (`routed_scaling_factor`; 1 where absent).
    pub scale: f32,
}

/// Reusable buffers, so choosing allocates nothing per token.
#[derive(Debug, Default)]
pub struct Scratch {
    scores: Vec<f32>,
    choice: Vec<f32>,
    order: Vec<usize>,
    group_scores: Vec<f32>,
}

impl Routing {
    /// Picks one token's experts from its router `logits` (one per expert), writing
    /// `(expert, weight)` pairs, best first, into `out`. `bias` is the per-expert
    /// correction added for the choice only (sigmoid scoring).
    pub fn choose(
        &self,
        logits: &[f32],
        bias: Option<&[f32]>,
        scratch: &mut Scratch,
        out: &mut Vec<(usize, f32)>,
    ) {
        out.clear();
        let n = logits.len();
        let Scratch {
            scores,
            choice,
            order,
            group_scores,
        } = scratch;
        scores.clear();
        match self.scoring {
            Scoring::Softmax => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                scores.extend(logits.iter().map(|&l| (l - max).exp()));
                let sum: f32 = scores.iter().sum();
                scores.iter_mut().for_each(|s| *s /= sum);
            }
            Scoring::Sigmoid => scores.extend(logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp()))),
        }
        choice.clear();
        match bias {
            Some(b) if b.len() == n => choice.extend(scores.iter().zip(b).map(|(s, b)| s + b)),
            _ => choice.extend_from_slice(scores),
        }
        if self.groups > 1 && n.is_multiple_of(self.groups) && self.topk_groups < self.groups {
            self.keep_best_groups(choice, order, group_scores);
        }
        order.clear();
        order.extend(0..n);
        let k = self.top_k.min(n);
        let by_choice = |a: &usize, b: &usize| choice[*b].total_cmp(&choice[*a]).then(a.cmp(b));
        if k < n {
            order.select_nth_unstable_by(k, by_choice);
        }
        order.truncate(k);
        order.sort_unstable_by(by_choice);
        out.extend(order.iter().map(|&e| (e, scores[e])));
        let total: f32 = out.iter().map(|(_, w)| w).sum();
        let norm = if self.normalize {
            match self.scoring {
                Scoring::Softmax => total,
                // DeepSeek-V3 and GLM add a tiny epsilon against an all-zero sum.
                Scoring::Sigmoid => total + 1e-20,
            }
        } else {
            1.0
        };
        for (_, w) in out.iter_mut() {
            *w = *w / norm * self.scale;
        }
    }

    /// Rules out every expert outside the best `topk_groups` groups (a group scores the
    /// sum of its two best choice values) by setting its choice value to minus infinity,
    /// as DeepSeek's own inference code, vLLM and SGLang do (Hugging Face's modeling code
    /// fills 0.0, which differs only when a kept expert's biased score is negative).
    fn keep_best_groups(&self, choice: &mut [f32], order: &mut Vec<usize>, group_scores: &mut Vec<f32>) {
        let size = choice.len() / self.groups;
        let group_score = |g: usize| {
            let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
            for &c in &choice[g * size..(g + 1) * size] {
                if c > first {
                    (first, second) = (c, first);
                } else if c > second {
                    second = c;
                }
            }
            if size == 1 {
                first
            } else {
                first + second
            }
        };
        group_scores.clear();
        group_scores.extend((0..self.groups).map(group_score));
        order.clear();
        order.extend(0..self.groups);
        order.sort_unstable_by(|a, b| group_scores[*b].total_cmp(&group_scores[*a]).then(a.cmp(b)));
        for &g in &order[self.topk_groups..] {
            choice[g * size..(g + 1) * size].fill(f32::NEG_INFINITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(scoring: Scoring, top_k: usize, normalize: bool) -> Routing {
        Routing {
            scoring,
            top_k,
            normalize,
            groups: 1,
            topk_groups: 1,
            scale: 1.0,
        }
    }

    fn choose(r: &Routing, logits: &[f32], bias: Option<&[f32]>) -> Vec<(usize, f32)> {
        let mut out = Vec::new();
        r.choose(logits, bias, &mut Scratch::default(), &mut out);
        out
    }

    fn close(got: &[(usize, f32)], want: &[(usize, f32)]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for ((ge, gw), (we, ww)) in got.iter().zip(want) {
            assert_eq!(ge, we, "{got:?} vs {want:?}");
            assert!((gw - ww).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn softmax_keeps_the_top_k_probabilities_and_can_renormalise_them() {
        let logits = [0.0, 2.0, 1.0, (3f32).ln() + 2.0];
        let z = 1.0 + 2f32.exp() + 1f32.exp() + 3.0 * 2f32.exp();
        let (p1, p3) = (2f32.exp() / z, 3.0 * 2f32.exp() / z);
        close(
            &choose(&routing(Scoring::Softmax, 2, false), &logits, None),
            &[(3, p3), (1, p1)],
        );
        close(
            &choose(&routing(Scoring::Softmax, 2, true), &logits, None),
            &[(3, 0.75), (1, 0.25)],
        );
    }

    #[test]
    fn the_correction_bias_steers_the_choice_but_not_the_weights() {
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let logits = [1.0, 0.0, -1.0];
        let r = Routing {
            scale: 2.5,
            ..routing(Scoring::Sigmoid, 1, false)
        };
        close(&choose(&r, &logits, None), &[(0, 2.5 * sig(1.0))]);
        close(
            &choose(&r, &logits, Some(&[0.0, 0.0, 1.0])),
            &[(2, 2.5 * sig(-1.0))],
        );
        let r = Routing {
            top_k: 2,
            normalize: true,
            ..r
        };
        let (a, b) = (sig(1.0), sig(0.0));
        close(
            &choose(&r, &logits, None),
            &[(0, 2.5 * a / (a + b)), (1, 2.5 * b / (a + b))],
        );
    }

    #[test]
    fn only_the_best_groups_are_chosen_from() {
        // Four groups of two. Group 0 holds the single best expert but group 1 the best
        // pair; with one group allowed, both experts come from group 1.
        let logits = [5.0, -5.0, 3.0, 3.0, -0.5, -0.5, -1.0, -1.0];
        let r = Routing {
            groups: 4,
            topk_groups: 1,
            ..routing(Scoring::Sigmoid, 2, false)
        };
        let got: Vec<usize> = choose(&r, &logits, None).iter().map(|(e, _)| *e).collect();
        assert_eq!(got, [2, 3]);
        let r = Routing { topk_groups: 2, ..r };
        let got: Vec<usize> = choose(&r, &logits, None).iter().map(|(e, _)| *e).collect();
        assert_eq!(got, [0, 2]);
    }

    #[test]
    fn experts_of_unchosen_groups_are_never_chosen_even_over_negative_scores() {
        // Group 1 wins; its second expert's biased score is negative. With 0.0 as the mask
        // (Hugging Face's modeling code) expert 0 of the losing group would outrank it.
        let logits = [0.0, 0.0, 5.0, 0.0];
        let bias = [-0.4, -0.4, 0.0, -0.9];
        let r = Routing {
            groups: 2,
            topk_groups: 1,
            ..routing(Scoring::Sigmoid, 2, false)
        };
        let got: Vec<usize> = choose(&r, &logits, Some(&bias)).iter().map(|(e, _)| *e).collect();
        assert_eq!(got, [2, 3]);
    }

    #[test]
    fn nan_logits_neither_panic_nor_choose_more_than_k() {
        let r = routing(Scoring::Softmax, 2, true);
        assert_eq!(choose(&r, &[f32::NAN, 1.0, 0.0], None).len(), 2);
        let r = routing(Scoring::Sigmoid, 5, true);
        assert_eq!(choose(&r, &[f32::NAN, 1.0], None).len(), 2);
    }
}
