//! Choosing the next token from logits: one seeded processor per sequence.
//!
//! Order, as vLLM applies it: logit bias → penalties (repetition over prompt and output,
//! frequency and presence over output) → temperature → top-k → top-p → min-p → draw. Temperature 0 (or
//! top-k 1) is greedy. Logprobs are of the model's raw distribution. Stop *token* ids end
//! a sequence here; stop *strings* are matched on text by the detokenizer stage.

use std::collections::{HashMap, HashSet};

use crate::rng::SplitMix;

/// A request's sampling settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches this (1 = off).
    pub top_p: f32,
    /// Keep this many most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off).
    pub min_p: f32,
    /// Seed of the draw; the same seed gives the same tokens.
    pub seed: Option<u64>,
    /// Subtracted once from every token already in the output (OpenAI).
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the output (OpenAI).
    pub frequency_penalty: f32,
    /// Divides positive (multiplies negative) logits of tokens in prompt or output (HF).
    pub repetition_penalty: f32,
    /// Added to these tokens' logits first (OpenAI's `logit_bias`), sorted by token.
    pub logit_bias: Vec<(u32, f32)>,
    /// How many alternatives to report with each token's logprob (`None` = no logprobs).
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
            logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks ranges; the message names the field, as the API reports it.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |x: f32| x.is_finite();
        if !finite(self.temperature) || self.temperature < 0.0 {
            return Err(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !finite(self.top_p) || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !finite(self.min_p) || !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !finite(v) || !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        if !finite(self.repetition_penalty) || self.repetition_penalty <= 0.0 {
            return Err(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        if let Some((t, b)) = self.logit_bias.iter().find(|(_, b)| !finite(*b)) {
            return Err(format!(
                "logit_bias for token {t} must be a finite number, got {b}"
            ));
        }
        if self.logprobs.is_some_and(|n| n > 20) {
            return Err("top_logprobs must be at most 20".into());
        }
        Ok(())
    }

    /// Whether the row changes before the draw (bias or penalties).
    fn changes_logits(&self) -> bool {
        !self.logit_bias.is_empty()
            || self.repetition_penalty != 1.0
            || self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
    }

    fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }
}

/// One chosen token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The token.
    pub token: u32,
    /// Its log-probability under the raw model distribution (when logprobs were asked).
    pub logprob: Option<f32>,
    /// The most likely alternatives, best first (when logprobs were asked).
    pub top_logprobs: Vec<(u32, f32)>,
}

/// The per-sequence sampler: settings, a seeded generator, and token counts.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix,
    output_counts: HashMap<u32, u32>,
    seen: HashSet<u32>,
    scratch: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler for one sequence. Without a seed, `fallback_seed` (e.g. from the request
    /// id) is used, so every draw is still reproducible from the logs.
    pub fn new(params: SamplingParams, prompt: &[u32], fallback_seed: u64) -> Sampler {
        let seed = params.seed.unwrap_or(fallback_seed);
        Sampler {
            rng: SplitMix::new(seed ^ 0x2545_F491_4F6C_DD1D),
            seen: prompt.iter().copied().collect(),
            params,
            output_counts: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Chooses the next token from a row of logits and records it.
    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        let (top_logprobs, raw) = match self.params.logprobs {
            Some(n) => {
                let lse = log_sum_exp(logits);
                (Some((n, lse)), Some(lse))
            }
            None => (None, None),
        };
        // The row is copied only when a bias or a penalty changes it.
        let penalised;
        let work: &[f32] = if self.params.changes_logits() {
            let mut w = logits.to_vec();
            self.apply_bias_and_penalties(&mut w);
            penalised = w;
            &penalised
        } else {
            logits
        };
        let token = if self.params.is_greedy() {
            argmax(work)
        } else {
            self.draw(work)
        };
        *self.output_counts.entry(token).or_insert(0) += 1;
        self.seen.insert(token);
        let logprob = raw.map(|lse| logits[token as usize] - lse);
        let top_logprobs = match top_logprobs {
            Some((n, lse)) if n > 0 => top_n(logits, n).into_iter().map(|(t, l)| (t, l - lse)).collect(),
            _ => Vec::new(),
        };
        Sampled {
            token,
            logprob,
            top_logprobs,
        }
    }

    /// Records a token chosen for the model (a forced marker) as if it had been drawn.
    pub fn force(&mut self, token: u32) -> Sampled {
        *self.output_counts.entry(token).or_insert(0) += 1;
        self.seen.insert(token);
        Sampled {
            token,
            logprob: None,
            top_logprobs: Vec::new(),
        }
    }

    fn apply_bias_and_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        for &(t, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += bias;
            }
        }
        if p.repetition_penalty != 1.0 {
            for &t in &self.seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            for (&t, &n) in &self.output_counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.frequency_penalty * n as f32 + p.presence_penalty;
                }
            }
        }
    }

    /// Draws from the tempered, truncated distribution.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = self.params.clone();
        let inv_t = 1.0 / p.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Candidates: top-k if set, else every token; probabilities unnormalised.
        let mut cands = std::mem::take(&mut self.scratch);
        cands.clear();
        cands.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp())),
        );
        if p.top_k > 0 && p.top_k < cands.len() {
            cands.select_nth_unstable_by(p.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            cands.truncate(p.top_k);
        }
        if p.min_p > 0.0 {
            // The most likely token has weight 1 after the max shift.
            cands.retain(|c| c.1 >= p.min_p);
        }
        if p.top_p < 1.0 {
            cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
            let total: f32 = cands.iter().map(|c| c.1).sum();
            let mut acc = 0.0;
            let keep = cands
                .iter()
                .position(|c| {
                    acc += c.1;
                    acc >= p.top_p * total
                })
                .map_or(cands.len(), |i| i + 1);
            cands.truncate(keep);
        }
        let total: f32 = cands.iter().map(|c| c.1).sum();
        let mut target = self.rng.next_f32() * total;
        let mut chosen = cands.last().map_or(0, |c| c.0);
        for &(t, w) in &cands {
            if target < w {
                chosen = t;
                break;
            }
            target -= w;
        }
        self.scratch = cands;
        chosen
    }
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln()
}

/// The `n` largest logits with their ids, best first.
fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    let n = n.min(all.len());
    if n < all.len() {
        all.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        all.truncate(n);
    }
    all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 5] = [1.0, 3.0, 2.0, 0.5, 2.9];

    fn run(params: SamplingParams, n: usize) -> Vec<u32> {
        let mut s = Sampler::new(params, &[], 7);
        (0..n).map(|_| s.sample(&LOGITS).token).collect()
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        assert_eq!(run(SamplingParams::greedy(), 3), vec![1, 1, 1]);
        assert_eq!(
            run(
                SamplingParams {
                    top_k: 1,
                    ..Default::default()
                },
                3
            ),
            vec![1, 1, 1]
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let p = |seed| SamplingParams {
            seed: Some(seed),
            ..Default::default()
        };
        assert_eq!(run(p(1), 50), run(p(1), 50));
        assert_ne!(run(p(1), 50), run(p(2), 50));
    }

    #[test]
    fn draws_follow_the_softmax() {
        let n = 40_000;
        let tokens = run(
            SamplingParams {
                seed: Some(3),
                ..Default::default()
            },
            n,
        );
        let lse = log_sum_exp(&LOGITS);
        for (t, &l) in LOGITS.iter().enumerate() {
            let expected = (l - lse).exp();
            let seen = tokens.iter().filter(|&&x| x as usize == t).count() as f32 / n as f32;
            assert!((seen - expected).abs() < 0.01, "token {t}: {seen} vs {expected}");
        }
    }

    #[test]
    fn truncation_keeps_only_the_allowed_tokens() {
        let only = |p: SamplingParams| {
            let mut v = run(SamplingParams { seed: Some(5), ..p }, 2000);
            v.sort_unstable();
            v.dedup();
            v
        };
        assert_eq!(
            only(SamplingParams {
                top_k: 2,
                ..Default::default()
            }),
            vec![1, 4]
        );
        // exp(-0.1) ≈ 0.905 of the best: token 4 stays, token 2 (exp(-1)) goes.
        assert_eq!(
            only(SamplingParams {
                min_p: 0.5,
                ..Default::default()
            }),
            vec![1, 4]
        );
        // softmax: 1 → 0.37, 4 → 0.34, 2 → 0.14: top_p 0.6 keeps two tokens.
        assert_eq!(
            only(SamplingParams {
                top_p: 0.6,
                ..Default::default()
            }),
            vec![1, 4]
        );
        assert_eq!(
            only(SamplingParams {
                temperature: 0.01,
                ..Default::default()
            }),
            vec![1]
        );
    }

    #[test]
    fn penalties_move_choices_away_from_repeats() {
        // Token 1 is the greedy choice; once emitted, a presence penalty hands the next
        // step to token 4.
        let mut s = Sampler::new(
            SamplingParams {
                presence_penalty: 0.5,
                ..SamplingParams::greedy()
            },
            &[],
            0,
        );
        assert_eq!([s.sample(&LOGITS).token, s.sample(&LOGITS).token], [1, 4]);
        let mut s = Sampler::new(
            SamplingParams {
                frequency_penalty: 0.05,
                ..SamplingParams::greedy()
            },
            &[],
            0,
        );
        let v: Vec<u32> = (0..4).map(|_| s.sample(&LOGITS).token).collect();
        assert_eq!(v, vec![1, 1, 1, 4]);
        // A prompt token is penalised by the repetition penalty from the start.
        let mut s = Sampler::new(
            SamplingParams {
                repetition_penalty: 1.2,
                ..SamplingParams::greedy()
            },
            &[1],
            0,
        );
        assert_eq!(s.sample(&LOGITS).token, 4);
    }

    #[test]
    fn logit_bias_moves_greedy_and_sampled_choices() {
        // +100 on token 3 makes it the only choice; -100 on the argmax hands greedy to the
        // runner-up; a bias does not change the reported (raw) logprob.
        let favour = |bias| SamplingParams {
            logit_bias: vec![(3, bias)],
            ..Default::default()
        };
        assert_eq!(run(favour(100.0), 50), vec![3; 50]);
        assert!(!run(favour(-100.0), 200).contains(&3));
        let ban_best = SamplingParams {
            logit_bias: vec![(1, -100.0), (9999, 5.0)],
            ..SamplingParams::greedy()
        };
        assert_eq!(run(ban_best, 2), vec![4, 4]);
        let mut s = Sampler::new(
            SamplingParams {
                logprobs: Some(0),
                ..favour(100.0)
            },
            &[],
            0,
        );
        let out = s.sample(&LOGITS);
        assert!((out.logprob.unwrap_or(0.0) - (0.5 - log_sum_exp(&LOGITS))).abs() < 1e-6);
    }

    #[test]
    fn logprobs_are_of_the_raw_distribution() {
        let mut s = Sampler::new(
            SamplingParams {
                logprobs: Some(3),
                ..SamplingParams::greedy()
            },
            &[],
            0,
        );
        let out = s.sample(&LOGITS);
        let lse = log_sum_exp(&LOGITS);
        assert!((out.logprob.unwrap_or(0.0) - (3.0 - lse)).abs() < 1e-6);
        let ids: Vec<u32> = out.top_logprobs.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![1, 4, 2]);
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let bad = [
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                min_p: 2.0,
                ..Default::default()
            },
            SamplingParams {
                presence_penalty: 3.0,
                ..Default::default()
            },
            SamplingParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            SamplingParams {
                logprobs: Some(21),
                ..Default::default()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert!(SamplingParams::default().validate().is_ok());
    }
}
