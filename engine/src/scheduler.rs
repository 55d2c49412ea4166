//! Continuous batching: requests join and leave between steps, long prompts are prefilled
//! in chunks beside running decodes, full blocks are shared between prompts with a common
//! prefix, and when the cache is full the newest sequence is preempted (its blocks freed,
//! its tokens recomputed later) so that no request fails because others hold memory.

use std::collections::{HashMap, VecDeque};

use candle_core::Tensor;
use llguidance::toktrie::SimpleVob;

use crate::error::{Error, Result};
use braid_parsers::reasoning::StartState;

use crate::guide::{apply_mask, Guide, Guides};
use crate::kv_cache::{BlockAllocator, KvCache};
use crate::model::{Model, SeqInput};
use crate::prefix::{block_hash, chain_hashes, CacheChanges, ChangeLog};
use crate::sampling::{Sampled, Sampler, SamplingParams};

/// Scheduler limits (vLLM's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Positions per cache block.
    pub block_size: usize,
    /// Cache blocks (from `--kv-cache-memory` via [`KvCache::blocks_for_budget`]).
    pub num_blocks: usize,
    /// Sequences in one step, at most.
    pub max_num_seqs: usize,
    /// Tokens in one step, at most (prefill chunks and decodes together).
    pub max_num_batched_tokens: usize,
    /// Prompt plus output, at most.
    pub max_model_len: usize,
    /// Reuse cached blocks of earlier prompts.
    pub enable_prefix_caching: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            block_size: 16,
            num_blocks: 1024,
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            max_model_len: 4096,
            enable_prefix_caching: true,
        }
    }
}

/// A generation request, validated by [`Engine::add`].
#[derive(Debug, Clone)]
pub struct Request {
    /// Caller's id, unique among live requests.
    pub id: u64,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Output tokens, at most.
    pub max_tokens: usize,
    /// Extra ids that end generation (the model's EOS ids always do, unless `ignore_eos`).
    pub stop_token_ids: Vec<u32>,
    /// Keep going past EOS.
    pub ignore_eos: bool,
    /// A Lark grammar (llguidance's dialect) the answer must match; compiled by
    /// [`Engine::add`] with the engine's [`Guides`].
    pub guide: Option<String>,
    /// Where reasoning starts and ends, for gating the guide and enforcing a budget.
    pub reasoning: Option<ReasoningGate>,
}

/// The family's reasoning markers, as the engine needs them: the guide applies only to
/// the answer, and a budget ends reasoning by forcing the close marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasoningGate {
    /// Where output starts: `Reasoning` (the prompt opened it), `Content` (thinking is
    /// off, or the prompt closed reasoning: the guide applies from the first token), or
    /// `Undecided` (the first token decides: the open marker starts reasoning, anything
    /// else is the answer, already under the guide).
    pub start: StartState,
    /// The open marker's token ids (`<think>`).
    pub open_tokens: Vec<u32>,
    /// The close marker's bytes; reasoning ends when they appear in the output.
    pub close: Vec<u8>,
    /// The close marker's token ids, forced when the budget is spent.
    pub close_tokens: Vec<u32>,
    /// Reasoning tokens at most, the close marker included.
    pub budget: Option<usize>,
}

/// Which part of its output a sequence is in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The first token may open reasoning or begin the answer.
    Either,
    /// Reasoning: tokens so far, and the last bytes, for spotting the close marker.
    Reasoning { tokens: usize, tail: Vec<u8> },
    /// Forcing a marker's tokens; `close` says which marker, `next` which token.
    Forcing { close: bool, next: usize },
    /// The answer: the guide, if any, applies.
    Answer,
}

/// Why a sequence ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS or stop token, or the guide's grammar is complete.
    Stop,
    /// `max_tokens` or the model length.
    Length,
    /// Cancelled by the caller.
    Abort,
    /// The guide could not go on (an llguidance error, in words).
    Failed(String),
}

/// What one step produced for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// The request.
    pub id: u64,
    /// The token sampled this step, if any.
    pub token: Option<Sampled>,
    /// Set when the request is done.
    pub finish: Option<FinishReason>,
    /// On the last output: the request's token counts.
    pub counts: Option<Counts>,
}

/// A finished request's token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Prompt tokens.
    pub prompt: usize,
    /// Tokens generated.
    pub generated: usize,
    /// Prompt tokens served from the prefix cache (at the last admission, if it was
    /// preempted).
    pub cached: usize,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_queried_tokens: usize,
    /// Prompt tokens served from the prefix cache.
    pub prefix_hit_tokens: usize,
    /// Sequences preempted for lack of cache.
    pub preemptions: usize,
    /// Forward steps run.
    pub steps: usize,
    /// Token masks computed for guided sequences.
    pub masks: usize,
    /// Time spent computing them, in nanoseconds (overlapped with the forward pass).
    pub mask_ns: u64,
    /// Time the step waited for masks after its forward pass was done, in nanoseconds.
    pub mask_wait_ns: u64,
}

#[derive(Debug)]
struct Seq {
    id: u64,
    arrival: u64,
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens whose keys and values are in the cache.
    computed: usize,
    /// Prompt tokens its last admission found in the prefix cache.
    cached: usize,
    blocks: Vec<u32>,
    /// Chain hashes of the full blocks registered in the prefix cache so far.
    hashes: Vec<u64>,
    sampler: Sampler,
    max_tokens: usize,
    stop_ids: Vec<u32>,
    guide: Option<Guide>,
    gate: Option<Box<ReasoningGate>>,
    phase: Phase,
}

impl Seq {
    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// The token this step must emit whatever the logits say (a marker being forced).
    fn forced(&self) -> Option<u32> {
        match (&self.phase, &self.gate) {
            (Phase::Forcing { close, next }, Some(g)) => {
                let marker = if *close { &g.close_tokens } else { &g.open_tokens };
                marker.get(*next).copied()
            }
            _ => None,
        }
    }

    /// Whether the guide's mask applies to this step's token.
    fn guided(&self) -> bool {
        self.guide.is_some() && matches!(self.phase, Phase::Either | Phase::Answer)
    }

    /// Moves the phase past `token` (with `bytes`, its text) and the guide with it.
    /// O(1) per token: the close marker is looked for in the last few bytes only.
    fn advance(&mut self, token: u32, bytes: &[u8]) -> Result<()> {
        let gate = self.gate.as_deref();
        let next = match (&mut self.phase, gate) {
            (Phase::Answer, _) | (_, None) => None,
            (Phase::Either, Some(g)) => {
                if g.open_tokens.first() == Some(&token) {
                    Some(if g.open_tokens.len() > 1 {
                        Phase::Forcing {
                            close: false,
                            next: 1,
                        }
                    } else {
                        reasoning(g)
                    })
                } else {
                    Some(Phase::Answer)
                }
            }
            (Phase::Reasoning { tokens, tail }, Some(g)) => {
                *tokens += 1;
                tail.extend_from_slice(bytes);
                if !g.close.is_empty() && memchr::memmem::find(tail, &g.close).is_some() {
                    Some(Phase::Answer)
                } else {
                    let keep = g.close.len().saturating_sub(1);
                    if tail.len() > keep {
                        tail.drain(..tail.len() - keep);
                    }
                    (!g.close_tokens.is_empty()
                        && g.budget.is_some_and(|b| *tokens + g.close_tokens.len() >= b))
                    .then_some(Phase::Forcing { close: true, next: 0 })
                }
            }
            (Phase::Forcing { close, next }, Some(g)) => {
                *next += 1;
                let marker = if *close { &g.close_tokens } else { &g.open_tokens };
                (*next >= marker.len()).then(|| if *close { Phase::Answer } else { reasoning(g) })
            }
        };
        let was_answer = self.phase == Phase::Answer;
        let guided = self.guided();
        if let Some(p) = next {
            self.phase = p;
        }
        // The guide sees every answer token: the first one in `Either` too, unless it
        // opened reasoning.
        if guided && (was_answer || self.phase == Phase::Answer) {
            if let Some(g) = &mut self.guide {
                g.advance(token)?;
            }
        }
        Ok(())
    }
}

/// The reasoning phase, or straight to forcing the close marker when the budget allows
/// no reasoning at all.
fn reasoning(g: &ReasoningGate) -> Phase {
    if !g.close_tokens.is_empty() && g.budget.is_some_and(|b| g.close_tokens.len() >= b) {
        Phase::Forcing { close: true, next: 0 }
    } else {
        Phase::Reasoning {
            tokens: 0,
            tail: Vec::new(),
        }
    }
}

/// Cache blocks and the prefix cache: which block holds which chain of full blocks.
#[derive(Debug)]
struct Blocks {
    alloc: BlockAllocator,
    block_size: usize,
    caching: bool,
    /// Full blocks by chain hash, and the hash each cached block holds.
    prefix: HashMap<u64, u32>,
    hash_of: Vec<Option<u64>>,
    /// What changed since routers last heard.
    log: ChangeLog,
}

impl Blocks {
    fn allocate(&mut self) -> Option<u32> {
        let b = self.alloc.allocate()?;
        // The block's old contents are gone: it no longer serves its prefix.
        if let Some(h) = self.hash_of[b as usize].take() {
            if self.prefix.get(&h) == Some(&b) {
                self.prefix.remove(&h);
                self.log.removed(h);
            }
        }
        Some(b)
    }

    /// Gives `seq` blocks for its next `n` tokens; false (nothing more held) if full.
    fn grow(&mut self, seq: &mut Seq, n: usize) -> bool {
        let need = (seq.computed + n).div_ceil(self.block_size);
        let mut got = Vec::new();
        while seq.blocks.len() + got.len() < need {
            match self.allocate() {
                Some(b) => got.push(b),
                None => {
                    for b in got {
                        self.alloc.release(b);
                    }
                    return false;
                }
            }
        }
        seq.blocks.extend(got);
        true
    }

    /// Lets go of a sequence's blocks; registered ones stay cached until reused.
    fn free(&mut self, seq: &mut Seq) {
        for b in seq.blocks.drain(..) {
            self.alloc.release(b);
        }
        seq.hashes.clear();
        seq.computed = 0;
    }

    /// Serves the longest cached run of a new sequence's full blocks; returns the tokens
    /// served. At least one token is always left to compute, for its logits.
    fn match_prefix(&mut self, seq: &mut Seq) -> usize {
        if !self.caching {
            return 0;
        }
        let bs = self.block_size;
        let full = (seq.tokens.len() - 1) / bs * bs;
        for h in chain_hashes(&seq.tokens[..full], bs) {
            let Some(&b) = self.prefix.get(&h) else { break };
            self.alloc.retain(b);
            seq.blocks.push(b);
            seq.hashes.push(h);
        }
        seq.computed = seq.blocks.len() * bs;
        seq.computed
    }

    /// Registers the sequence's newly completed full blocks.
    fn register(&mut self, seq: &mut Seq) {
        if !self.caching {
            return;
        }
        let bs = self.block_size;
        while seq.hashes.len() < seq.computed / bs {
            let i = seq.hashes.len();
            let prev = seq.hashes.last().copied().unwrap_or(0);
            let h = block_hash(prev, &seq.tokens[i * bs..(i + 1) * bs]);
            seq.hashes.push(h);
            let b = seq.blocks[i];
            if let std::collections::hash_map::Entry::Vacant(e) = self.prefix.entry(h) {
                e.insert(b);
                self.hash_of[b as usize] = Some(h);
                self.log.stored(h);
            }
        }
    }
}

/// The engine: a model, its paged cache, and the sequences being served.
#[derive(Debug)]
pub struct Engine {
    model: Model,
    cache: KvCache,
    blocks: Blocks,
    cfg: EngineConfig,
    eos: Vec<u32>,
    waiting: VecDeque<Seq>,
    /// Oldest first.
    running: Vec<Seq>,
    arrivals: u64,
    stats: EngineStats,
    guides: Option<Guides>,
}

impl Engine {
    /// An engine for `model`; `eos` are the ids that end generation.
    pub fn new(model: Model, eos: Vec<u32>, cfg: EngineConfig) -> Result<Engine> {
        if cfg.max_num_seqs == 0 || cfg.max_num_batched_tokens == 0 || cfg.max_model_len == 0 {
            return Err(Error::Input(
                "max_num_seqs, max_num_batched_tokens and max_model_len must be positive".into(),
            ));
        }
        let cache = KvCache::new(
            model.config(),
            cfg.num_blocks,
            cfg.block_size,
            model.dtype(),
            model.device(),
        )?;
        Ok(Engine {
            blocks: Blocks {
                alloc: BlockAllocator::new(cfg.num_blocks),
                block_size: cfg.block_size,
                caching: cfg.enable_prefix_caching,
                prefix: HashMap::new(),
                hash_of: vec![None; cfg.num_blocks],
                log: ChangeLog::default(),
            },
            cache,
            model,
            cfg,
            eos,
            waiting: VecDeque::new(),
            running: Vec::new(),
            arrivals: 0,
            stats: EngineStats::default(),
            guides: None,
        })
    }

    /// Enables structured outputs and reasoning gates: grammars are compiled with these.
    pub fn set_guides(&mut self, guides: Guides) {
        self.guides = Some(guides);
    }

    /// The model served.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Counters so far.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Cache blocks not held by any sequence.
    pub fn free_blocks(&self) -> usize {
        self.blocks.alloc.num_free()
    }

    /// Starts keeping the log [`Engine::cache_changes`] reports (off by default: nobody
    /// routes by this engine's cache).
    pub fn report_cache_changes(&mut self) {
        self.blocks.log.enable();
    }

    /// What the prefix cache gained and lost since the last call (everything it holds,
    /// when `full` or first asked); empty unless [`Engine::report_cache_changes`] was
    /// called.
    pub fn cache_changes(&mut self, full: bool) -> CacheChanges {
        let Blocks { log, prefix, .. } = &mut self.blocks;
        log.take(full, prefix.keys().copied())
    }

    /// Positions per cache block.
    pub fn block_size(&self) -> usize {
        self.cfg.block_size
    }

    /// Requests waiting to be scheduled (new or preempted) and running now.
    pub fn queue_lengths(&self) -> (usize, usize) {
        (self.waiting.len(), self.running.len())
    }

    /// The fraction of KV cache blocks in use (cached-but-free blocks count as free).
    pub fn kv_usage(&self) -> f64 {
        1.0 - self.free_blocks() as f64 / self.cfg.num_blocks.max(1) as f64
    }

    /// Whether any request is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Queues a request; errors name what is wrong with it. Its guide, if any, is
    /// compiled here.
    pub fn add(&mut self, req: Request) -> Result<()> {
        self.add_compiled(req, None)
    }

    /// Queues a request whose guide was already compiled (from `req.guide`, against
    /// this engine's vocabulary) when `compiled` is given; else as [`Engine::add`].
    pub fn add_compiled(&mut self, req: Request, compiled: Option<Guide>) -> Result<()> {
        let vocab = self.model.config().vocab_size;
        if req.prompt.is_empty() {
            return Err(Error::Input("the prompt is empty".into()));
        }
        if req.prompt.len() >= self.cfg.max_model_len {
            return Err(Error::Input(format!(
                "the prompt has {} tokens; the maximum model length is {}",
                req.prompt.len(),
                self.cfg.max_model_len
            )));
        }
        if req.prompt.len() + 1 > self.cfg.num_blocks * self.cfg.block_size {
            return Err(Error::Input(format!(
                "the prompt has {} tokens; the KV cache holds {} in all",
                req.prompt.len(),
                self.cfg.num_blocks * self.cfg.block_size
            )));
        }
        if let Some(bad) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        if req.max_tokens == 0 {
            return Err(Error::Input("max_tokens must be at least 1".into()));
        }
        req.sampling.validate().map_err(Error::Input)?;
        if self.waiting.iter().chain(&self.running).any(|s| s.id == req.id) {
            return Err(Error::Input(format!("request {} is already running", req.id)));
        }
        let needs_vocab = req.guide.is_some() || req.reasoning.is_some();
        let guides = match (&self.guides, needs_vocab) {
            (Some(g), _) => Some(g),
            (None, false) => None,
            (None, true) => {
                return Err(Error::Input(
                    "structured outputs and reasoning budgets are not available: the engine has no byte-level tokenizer".into(),
                ))
            }
        };
        let guide = match (&req.guide, guides) {
            (Some(_), Some(_)) if compiled.is_some() => compiled,
            (Some(lark), Some(g)) => Some(
                g.compile(lark)
                    .map_err(|e| Error::Input(format!("invalid grammar: {e}")))?,
            ),
            _ => None,
        };
        let phase = match &req.reasoning {
            None => Phase::Answer,
            Some(g) => match g.start {
                StartState::Content => Phase::Answer,
                StartState::Undecided if !g.open_tokens.is_empty() => Phase::Either,
                StartState::Undecided => Phase::Answer,
                StartState::Reasoning => reasoning(g),
            },
        };
        let mut stop_ids = req.stop_token_ids;
        if !req.ignore_eos {
            stop_ids.extend(&self.eos);
        }
        self.arrivals += 1;
        self.waiting.push_back(Seq {
            id: req.id,
            arrival: self.arrivals,
            sampler: Sampler::new(req.sampling, &req.prompt, req.id),
            prompt_len: req.prompt.len(),
            tokens: req.prompt,
            computed: 0,
            cached: 0,
            blocks: Vec::new(),
            hashes: Vec::new(),
            max_tokens: req.max_tokens,
            stop_ids,
            guide,
            gate: req.reasoning.map(Box::new),
            phase,
        });
        Ok(())
    }

    /// Cancels a request and frees its blocks; false if it is not live.
    pub fn abort(&mut self, id: u64) -> bool {
        let seq = match self.running.iter().position(|s| s.id == id) {
            Some(i) => Some(self.running.remove(i)),
            None => self
                .waiting
                .iter()
                .position(|s| s.id == id)
                .and_then(|i| self.waiting.remove(i)),
        };
        match seq {
            Some(mut seq) => {
                self.blocks.free(&mut seq);
                true
            }
            None => false,
        }
    }

    /// Sends `running[i]` back to the front of the queue, blocks freed: it is recomputed
    /// from its tokens (prompt and output so far), most likely from its cached prefix.
    fn preempt(&mut self, i: usize) {
        let mut seq = self.running.remove(i);
        self.blocks.free(&mut seq);
        self.stats.preemptions += 1;
        tracing::debug!(id = seq.id, "preempted: KV cache full");
        self.waiting.push_front(seq);
    }

    /// Runs one step: schedules, runs the model once, samples. Returns what each request
    /// that advanced (or finished) got.
    pub fn step(&mut self) -> Result<Vec<StepOutput>> {
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut plan: Vec<(usize, usize)> = Vec::new();
        // Requeued (preempted) sequences come back in arrival order.
        self.running.sort_by_key(|s| s.arrival);
        // Running sequences first, oldest first. When the cache is full the newest
        // running sequence gives way — the one being placed, if nothing is newer.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let seq = &mut self.running[i];
            let n = (seq.tokens.len() - seq.computed).min(budget);
            if self.blocks.grow(seq, n) {
                plan.push((i, n));
                budget -= n;
                i += 1;
            } else if self.running.len() > i + 1 {
                self.preempt(self.running.len() - 1);
            } else {
                self.preempt(i);
            }
        }
        // Then waiting sequences, in order, while there is room.
        while budget > 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            self.stats.prefix_queried_tokens += seq.tokens.len();
            seq.cached = self.blocks.match_prefix(&mut seq);
            self.stats.prefix_hit_tokens += seq.cached;
            let n = (seq.tokens.len() - seq.computed).min(budget);
            if !self.blocks.grow(&mut seq, n) {
                self.stats.prefix_queried_tokens -= seq.tokens.len();
                self.stats.prefix_hit_tokens -= seq.computed;
                self.blocks.free(&mut seq);
                self.waiting.push_front(seq);
                break;
            }
            self.running.push(seq);
            plan.push((self.running.len() - 1, n));
            budget -= n;
        }
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        // Guided sequences that sample this step lend their guides to a mask job that
        // runs beside the forward pass: a mask depends on the tokens so far, not on the
        // logits, so it need not wait for them.
        let mut lent: Vec<(usize, Guide)> = Vec::new();
        for (row, &(i, n)) in plan.iter().enumerate() {
            let s = &mut self.running[i];
            if s.computed + n == s.tokens.len() && s.guided() {
                if let Some(g) = s.guide.take() {
                    lent.push((row, g));
                }
            }
        }
        let inputs: Vec<SeqInput<'_>> = plan
            .iter()
            .map(|&(i, n)| {
                let s = &self.running[i];
                SeqInput {
                    tokens: &s.tokens[s.computed..s.computed + n],
                    start: s.computed,
                    blocks: &s.blocks,
                }
            })
            .collect();
        let (logits, masks) = if lent.is_empty() {
            (self.model.forward(&inputs, &self.cache), Vec::new())
        } else {
            let model = &self.model;
            let cache = &self.cache;
            let (fwd, (masks, mask_ns)) = rayon::join(
                || {
                    let out = model.forward(&inputs, cache);
                    (out, std::time::Instant::now())
                },
                || {
                    let t = std::time::Instant::now();
                    let masks: Vec<_> = lent.iter_mut().map(|(_, g)| g.mask()).collect();
                    (masks, (t.elapsed().as_nanos() as u64, std::time::Instant::now()))
                },
            );
            let (logits, forward_done) = fwd;
            let (ns, masks_done) = mask_ns;
            self.stats.masks += masks.len();
            self.stats.mask_ns += ns;
            self.stats.mask_wait_ns += masks_done.saturating_duration_since(forward_done).as_nanos() as u64;
            (logits, masks)
        };
        drop(inputs);
        let logits = logits?;
        let mut masks: HashMap<usize, Result<SimpleVob>> = masks
            .into_iter()
            .zip(&lent)
            .map(|(m, (row, _))| (*row, m))
            .collect();
        for (row, g) in lent {
            self.running[plan[row].0].guide = Some(g);
        }
        self.stats.steps += 1;
        let mut outputs = Vec::new();
        let mut done = Vec::new();
        for (row, &(i, n)) in plan.iter().enumerate() {
            let seq = &mut self.running[i];
            seq.computed += n;
            self.blocks.register(seq);
            if seq.computed < seq.tokens.len() {
                continue; // a prefill chunk: no token yet
            }
            let mut failure = None;
            let sampled = match seq.forced() {
                Some(token) => seq.sampler.force(token),
                None => {
                    let mut row_logits = row_of(&logits, row)?;
                    match masks.remove(&row) {
                        Some(Ok(mut mask)) => {
                            if seq.phase == Phase::Either {
                                if let Some(&open) = seq.gate.as_ref().and_then(|g| g.open_tokens.first()) {
                                    mask.allow_token(open);
                                }
                            }
                            apply_mask(&mut row_logits, &mask);
                        }
                        Some(Err(e)) => failure = Some(e),
                        None => {}
                    }
                    seq.sampler.sample(&row_logits)
                }
            };
            let token = sampled.token;
            seq.tokens.push(token);
            let stop = seq.stop_ids.contains(&token);
            if failure.is_none() && !stop {
                let bytes = self
                    .guides
                    .as_ref()
                    .map_or(&[][..], |g| g.token_bytes().get(token).0);
                failure = seq.advance(token, bytes).err();
            }
            let finish = if let Some(e) = failure {
                Some(FinishReason::Failed(e.to_string()))
            } else if stop || seq.guide.as_ref().is_some_and(Guide::is_done) {
                Some(FinishReason::Stop)
            } else if seq.generated() >= seq.max_tokens || seq.tokens.len() >= self.cfg.max_model_len {
                Some(FinishReason::Length)
            } else {
                None
            };
            if finish.is_some() {
                done.push(i);
            }
            let counts = finish.as_ref().map(|_| Counts {
                prompt: seq.prompt_len,
                generated: seq.generated(),
                cached: seq.cached.min(seq.prompt_len),
            });
            outputs.push(StepOutput {
                id: seq.id,
                token: Some(sampled),
                finish,
                counts,
            });
        }
        for i in done.into_iter().rev() {
            let mut seq = self.running.remove(i);
            self.blocks.free(&mut seq);
        }
        Ok(outputs)
    }
}

fn row_of(logits: &Tensor, row: usize) -> Result<Vec<f32>> {
    Ok(logits.get(row)?.to_vec1::<f32>()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};

    use super::*;
    use crate::fixture::ModelSpec;
    use crate::load_model;

    fn model() -> Model {
        let dir = std::env::temp_dir().join(format!("braid-sched-{}", std::process::id()));
        if !dir.join("model.safetensors").exists() {
            let tmp =
                dir.with_extension(format!("tmp{:?}", std::thread::current().id()).replace(['(', ')'], ""));
            ModelSpec::tiny(512).write(&tmp, &mut |_, _| {}).unwrap();
            let _ = std::fs::rename(&tmp, &dir);
        }
        load_model(&dir, DType::F32, &Device::Cpu, &mut |_, _| {}).unwrap()
    }

    fn prompts() -> Vec<Vec<u32>> {
        (0..8)
            .map(|i| {
                (0..(2 + i * 3))
                    .map(|j| ((i * 37 + j * 11 + 1) % 500) as u32)
                    .collect()
            })
            .collect()
    }

    fn request(id: u64, prompt: &[u32], max_tokens: usize) -> Request {
        Request {
            id,
            prompt: prompt.to_vec(),
            sampling: SamplingParams::greedy(),
            max_tokens,
            stop_token_ids: vec![],
            ignore_eos: false,
            guide: None,
            reasoning: None,
        }
    }

    /// Runs until idle; tokens and finish reason per request.
    fn drain(engine: &mut Engine) -> HashMap<u64, (Vec<u32>, FinishReason)> {
        let mut out: HashMap<u64, (Vec<u32>, FinishReason)> = HashMap::new();
        let mut guard = 0;
        while engine.has_work() {
            for o in engine.step().unwrap() {
                let e = out.entry(o.id).or_insert((Vec::new(), FinishReason::Abort));
                if let Some(t) = o.token {
                    e.0.push(t.token);
                }
                if let Some(f) = o.finish {
                    e.1 = f;
                }
            }
            guard += 1;
            assert!(guard < 10_000, "engine does not finish");
        }
        out
    }

    fn alone(prompt: &[u32], max_tokens: usize) -> Vec<u32> {
        let cfg = EngineConfig {
            enable_prefix_caching: false,
            num_blocks: 64,
            block_size: 4,
            ..Default::default()
        };
        let mut e = Engine::new(model(), vec![], cfg).unwrap();
        e.add(request(0, prompt, max_tokens)).unwrap();
        drain(&mut e).remove(&0).unwrap().0
    }

    fn engine(cfg: EngineConfig) -> Engine {
        Engine::new(model(), vec![], cfg).unwrap()
    }

    #[test]
    fn batched_requests_get_what_each_gets_alone() {
        let mut e = engine(EngineConfig {
            block_size: 4,
            num_blocks: 128,
            ..Default::default()
        });
        for (i, p) in prompts().iter().enumerate() {
            e.add(request(i as u64, p, 10)).unwrap();
        }
        let out = drain(&mut e);
        for (i, p) in prompts().iter().enumerate() {
            assert_eq!(out[&(i as u64)].0, alone(p, 10), "request {i}");
            assert_eq!(out[&(i as u64)].1, FinishReason::Length);
        }
        assert_eq!(e.free_blocks(), 128, "every block is returned");
    }

    #[test]
    fn a_tiny_cache_preempts_yet_completes_every_request_the_same() {
        // 12 blocks of 4 positions: the 8 sequences need up to 9 blocks each.
        let mut e = engine(EngineConfig {
            block_size: 4,
            num_blocks: 12,
            ..Default::default()
        });
        for (i, p) in prompts().iter().enumerate() {
            e.add(request(i as u64, p, 12)).unwrap();
        }
        let out = drain(&mut e);
        assert!(e.stats().preemptions > 0, "{:?}", e.stats());
        for (i, p) in prompts().iter().enumerate() {
            assert_eq!(out[&(i as u64)].0, alone(p, 12), "request {i}");
        }
    }

    #[test]
    fn the_cache_reports_the_chain_hashes_a_router_computes_and_what_it_evicts() {
        let mut e = engine(EngineConfig {
            block_size: 4,
            num_blocks: 12,
            ..Default::default()
        });
        e.report_cache_changes();
        assert!(e.cache_changes(false).full, "the first report is whole");
        let prompt: Vec<u32> = (0..20).map(|j| (j * 7 + 3) % 500).collect();
        e.add(request(1, &prompt, 2)).unwrap();
        drain(&mut e);
        let news = e.cache_changes(false);
        let hashes: Vec<u64> = crate::prefix::chain_hashes(&prompt, 4).collect();
        assert!(!news.full && news.removed.is_empty());
        assert_eq!(news.stored[..5], hashes[..], "the prompt's five blocks, in order");
        assert!(e.cache_changes(false).is_empty(), "reported once");
        // Another prompt that needs every block evicts the first one's.
        let other: Vec<u32> = (0..44).map(|j| (j * 11 + 5) % 500).collect();
        e.add(request(2, &other, 2)).unwrap();
        drain(&mut e);
        let news = e.cache_changes(false);
        assert!(hashes.iter().all(|h| news.removed.contains(h)), "{news:?}");
        let whole = e.cache_changes(true);
        assert!(whole.full && hashes.iter().all(|h| !whole.stored.contains(h)));
    }

    #[test]
    fn a_shared_prefix_reuses_cached_blocks() {
        let mut e = engine(EngineConfig {
            block_size: 4,
            num_blocks: 64,
            ..Default::default()
        });
        let first: Vec<u32> = (0..40).map(|j| (j * 7 + 3) % 500).collect();
        e.add(request(1, &first, 4)).unwrap();
        let counts = |e: &mut Engine| {
            let mut last = None;
            while e.has_work() {
                last = e.step().unwrap().into_iter().find_map(|o| o.counts).or(last);
            }
            last
        };
        let cold = counts(&mut e);
        assert_eq!(
            cold,
            Some(Counts {
                prompt: 40,
                generated: 4,
                cached: 0
            })
        );
        let before = e.stats();
        let second: Vec<u32> = first.iter().copied().chain([9, 8, 7]).collect();
        e.add(request(2, &second, 6)).unwrap();
        // The request's own counts say what its prompt found cached.
        assert_eq!(
            counts(&mut e),
            Some(Counts {
                prompt: 43,
                generated: 6,
                cached: 40
            })
        );
        let hits = e.stats().prefix_hit_tokens - before.prefix_hit_tokens;
        assert_eq!(hits, 40, "{:?}", e.stats());
        e.add(request(3, &second, 6)).unwrap();
        let out = drain(&mut e);
        assert_eq!(out[&3].0, alone(&second, 6));
    }

    #[test]
    fn long_prompts_prefill_in_chunks_with_the_same_result() {
        let p: Vec<u32> = (0..23).map(|j| (j * 13 + 5) % 500).collect();
        let mut e = engine(EngineConfig {
            block_size: 4,
            num_blocks: 32,
            max_num_batched_tokens: 5,
            ..Default::default()
        });
        e.add(request(3, &p, 5)).unwrap();
        e.add(request(4, &p[..7], 5)).unwrap();
        let out = drain(&mut e);
        assert!(e.stats().steps >= 23 / 5 + 4);
        assert_eq!(out[&3].0, alone(&p, 5));
        assert_eq!(out[&4].0, alone(&p[..7], 5));
    }

    #[test]
    fn cancelling_frees_blocks() {
        let mut e = engine(EngineConfig {
            block_size: 4,
            num_blocks: 32,
            enable_prefix_caching: false,
            ..Default::default()
        });
        let p = prompts();
        e.add(request(1, &p[5], 50)).unwrap();
        e.add(request(2, &p[6], 3)).unwrap();
        e.step().unwrap();
        e.step().unwrap();
        let held = 32 - e.free_blocks();
        assert!(held > 0);
        assert!(e.abort(1));
        assert!(!e.abort(1));
        assert!(32 - e.free_blocks() < held);
        drain(&mut e);
        assert_eq!(e.free_blocks(), 32);
    }

    #[test]
    fn stop_ids_end_a_request() {
        let p = &prompts()[2];
        let free_run = alone(p, 6);
        let mut e = Engine::new(
            model(),
            vec![free_run[3]],
            EngineConfig {
                block_size: 4,
                ..Default::default()
            },
        )
        .unwrap();
        e.add(request(1, p, 6)).unwrap();
        let first_stop = free_run.iter().position(|&t| t == free_run[3]).unwrap_or(3);
        let out = drain(&mut e);
        assert_eq!(out[&1], (free_run[..=first_stop].to_vec(), FinishReason::Stop));
    }

    #[test]
    fn seeded_sampling_is_the_same_batched_or_alone() {
        let sampled = |batch: bool| {
            let mut e = engine(EngineConfig {
                block_size: 4,
                num_blocks: 128,
                ..Default::default()
            });
            let ps = prompts();
            for (i, p) in ps.iter().enumerate() {
                if batch || i == 3 {
                    let mut r = request(i as u64, p, 12);
                    r.sampling = SamplingParams {
                        temperature: 0.9,
                        top_p: 0.95,
                        seed: Some(42 + i as u64),
                        ..Default::default()
                    };
                    e.add(r).unwrap();
                }
            }
            drain(&mut e).remove(&3).unwrap().0
        };
        assert_eq!(sampled(true), sampled(false));
    }

    #[test]
    fn bad_requests_are_refused_with_reasons() {
        let mut e = engine(EngineConfig {
            block_size: 4,
            num_blocks: 8,
            max_model_len: 20,
            ..Default::default()
        });
        let cases = [
            (request(1, &[], 4), "empty"),
            (request(2, &[1; 25], 4), "maximum model length"),
            (request(3, &[600], 4), "outside the vocabulary"),
            (request(4, &[1], 0), "max_tokens"),
            (
                Request {
                    sampling: SamplingParams {
                        top_p: 2.0,
                        ..Default::default()
                    },
                    ..request(5, &[1], 4)
                },
                "top_p",
            ),
        ];
        for (req, needle) in cases {
            let err = e.add(req).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        e.add(request(6, &[1], 4)).unwrap();
        assert!(e
            .add(request(6, &[1], 4))
            .unwrap_err()
            .to_string()
            .contains("already"));
    }
}
