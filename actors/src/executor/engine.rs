//! The candle engine as an executor: continuous batching, one token per request per step.

use std::collections::HashMap;
use std::sync::Arc;

use braid_bus::{Failure, FailureKind, Finish, Prefill, RequestId, Setup};
use braid_engine::{Engine, FinishReason, ReasoningGate, Request, SamplingParams, Tokenizer};
use braid_parsers::reasoning::StartState;
use braid_parsers::StartOverride;

use super::{ExecOutput, ExecStats, Executor};
use crate::constraints::GuideHandoff;
use crate::splitter::ReasoningSetup;
use crate::StageError;

/// braid's own engine.
pub struct EngineExecutor {
    engine: Engine,
    tokenizer: Option<Arc<Tokenizer>>,
    handoff: Option<GuideHandoff>,
    /// The request field each guided request's grammar came from.
    guided: HashMap<RequestId, String>,
}

impl EngineExecutor {
    /// Wraps a loaded engine; with the model's tokenizer, reasoning budgets and guides
    /// (which need the family's markers as token ids) are available. Guides this
    /// process's tokenizer stage compiled are taken from `handoff`; others are compiled
    /// from their grammar text. The engine reports its prefix cache's changes (for the
    /// routers) from now on.
    pub fn new(mut engine: Engine, tokenizer: Option<Arc<Tokenizer>>, handoff: Option<GuideHandoff>) -> Self {
        engine.report_cache_changes();
        EngineExecutor {
            engine,
            tokenizer,
            handoff,
            guided: HashMap::new(),
        }
    }

    /// The reasoning gate for a request that needs one (a guide or a budget): where output
    /// starts and the family's markers, from the reasoning parser the request names.
    fn gate(&self, setup: &Setup, budget: Option<u32>) -> Result<Option<ReasoningGate>, StageError> {
        let Some(r) = ReasoningSetup::of(setup) else {
            return Ok(None);
        };
        let format = r.format;
        let tok = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| StageError::Refused("reasoning budgets need the model's tokenizer".into()))?;
        let start = if !r.thinking {
            StartState::Content
        } else {
            match r.start {
                StartOverride::InReasoning => StartState::Reasoning,
                StartOverride::InContent => StartState::Content,
                StartOverride::FormatDefault => match format.start {
                    // A format that answers first may still open with its marker: the
                    // first token decides.
                    StartState::Reasoning => StartState::Reasoning,
                    StartState::Content | StartState::Undecided => StartState::Undecided,
                },
            }
        };
        let encode = |s: &str| tok.encode(s).map_err(StageError::Engine);
        Ok(Some(ReasoningGate {
            start,
            open_tokens: encode(format.open)?,
            close: format.close.as_bytes().to_vec(),
            close_tokens: encode(format.close)?,
            budget: budget.map(|b| b as usize),
        }))
    }
}

impl Executor for EngineExecutor {
    fn add(&mut self, id: RequestId, prefill: &Prefill) -> Result<(), StageError> {
        let s = &prefill.sampling;
        let request = Request {
            id: id.0,
            prompt: prefill.prompt.clone(),
            sampling: SamplingParams {
                temperature: s.temperature,
                top_p: s.top_p,
                top_k: s.top_k as usize,
                min_p: s.min_p,
                seed: s.seed,
                presence_penalty: s.presence_penalty,
                frequency_penalty: s.frequency_penalty,
                repetition_penalty: s.repetition_penalty,
                logit_bias: s.logit_bias.clone(),
                logprobs: None,
            },
            max_tokens: s.max_tokens as usize,
            stop_token_ids: s.stop_token_ids.clone(),
            ignore_eos: s.ignore_eos,
            guide: s.guide.clone(),
            reasoning: if s.guide.is_some() || s.thinking_token_budget.is_some() {
                self.gate(&prefill.setup, s.thinking_token_budget)?
            } else {
                None
            },
        };
        let compiled = match (&request.guide, &self.handoff) {
            (Some(_), Some(h)) => h.take(id.0),
            _ => None,
        };
        if request.guide.is_some() && compiled.is_none() {
            metrics::counter!("braid_guide_compiles_total").increment(1);
        }
        self.engine.add_compiled(request, compiled)?;
        if let Some(param) = &s.guide_param {
            self.guided.insert(id, param.clone());
        }
        Ok(())
    }

    fn abort(&mut self, id: RequestId) {
        self.engine.abort(id.0);
        self.guided.remove(&id);
    }

    fn has_work(&self) -> bool {
        self.engine.has_work()
    }

    fn stats(&self) -> ExecStats {
        let s = self.engine.stats();
        ExecStats {
            waiting: self.engine.queue_lengths().0,
            kv_usage: self.engine.kv_usage(),
            prefix_queries: s.prefix_queried_tokens as u64,
            prefix_hits: s.prefix_hit_tokens as u64,
            preemptions: s.preemptions as u64,
            masks: s.masks as u64,
            mask_us: s.mask_ns / 1000,
            mask_wait_us: s.mask_wait_ns / 1000,
            free_blocks: self.engine.free_blocks() as u32,
        }
    }

    fn cache_changes(&mut self, full: bool) -> Option<(usize, braid_engine::CacheChanges)> {
        Some((self.engine.block_size(), self.engine.cache_changes(full)))
    }

    fn step(&mut self, out: &mut Vec<ExecOutput>) -> Result<(), StageError> {
        let outputs = self.engine.step()?;
        let guided = &mut self.guided;
        out.extend(outputs.into_iter().map(|o| ExecOutput {
            id: RequestId(o.id),
            tokens: o.token.map(|t| vec![t.token]).unwrap_or_default(),
            finish: o.finish.map(|f| match (f, guided.remove(&RequestId(o.id))) {
                (FinishReason::Stop, _) => Finish::Stop,
                (FinishReason::Length, _) => Finish::Length,
                (FinishReason::Abort, _) => Finish::Abort,
                // The request's own grammar stopped mid-way (llguidance's limits): the
                // client's to change, told in words, naming the field it came from.
                (FinishReason::Failed(message), param) => {
                    let failure = Failure::new(
                        FailureKind::BadRequest,
                        braid_bus::Stage::Executor,
                        format!("the structured output could not be enforced further: {message}"),
                    );
                    Finish::Failed(match param {
                        Some(p) => failure.with_param(p),
                        None => failure,
                    })
                }
            }),
            // The engine's own counts, with the prompt tokens its prefix cache served.
            reported: o.counts.map(|c| braid_bus::Usage {
                prompt_tokens: c.prompt as u32,
                completion_tokens: c.generated as u32,
                reasoning_tokens: 0,
                cached_tokens: c.cached as u32,
            }),
        }));
        Ok(())
    }
}
