//! The candle engine as an executor: continuous batching, one token per request per step.

use braid_bus::{Finish, Prefill, RequestId};
use braid_engine::{Engine, FinishReason, Request, SamplingParams};

use super::{ExecOutput, ExecStats, Executor};

/// braid's own engine.
pub struct EngineExecutor {
    engine: Engine,
}

impl EngineExecutor {
    /// Wraps a loaded engine.
    pub fn new(engine: Engine) -> Self {
        EngineExecutor { engine }
    }
}

impl Executor for EngineExecutor {
    fn add(&mut self, id: RequestId, prefill: &Prefill) -> Result<(), String> {
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
                logprobs: None,
            },
            max_tokens: s.max_tokens as usize,
            stop_token_ids: s.stop_token_ids.clone(),
            ignore_eos: s.ignore_eos,
        };
        self.engine.add(request).map_err(|e| e.to_string())
    }

    fn abort(&mut self, id: RequestId) {
        self.engine.abort(id.0);
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
        }
    }

    fn step(&mut self, out: &mut Vec<ExecOutput>) -> Result<(), String> {
        let outputs = self.engine.step().map_err(|e| e.to_string())?;
        out.extend(outputs.into_iter().map(|o| ExecOutput {
            id: RequestId(o.id),
            tokens: o.token.map(|t| vec![t.token]).unwrap_or_default(),
            finish: o.finish.map(|f| match f {
                FinishReason::Stop => Finish::Stop,
                FinishReason::Length => Finish::Length,
                FinishReason::Abort => Finish::Abort,
            }),
            reported: None,
        }));
        Ok(())
    }
}
