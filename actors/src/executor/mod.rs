//! The executor stage: prompts in, one [`Step`] message per engine step per request out.
//!
//! The model runs on its own thread (it is CPU- or GPU-bound and must not stall the
//! async runtime). The actor only forwards prefills and cancels to that thread as
//! [`Command`]s; the thread steps the [`Executor`], and a publisher task sends what each
//! step produced. Two executors are stepped so: the candle engine ([`engine`]) and
//! recorded outputs ([`replay`]) for load and client tests without weights. The third,
//! another OpenAI-compatible server ([`upstream`]), only waits on the network: each of
//! its requests is a task that publishes its own steps, with no thread in between.

pub mod engine;
pub mod replay;
pub mod upstream;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_bus::{
    decode, subject, CacheNews, Envelope, FailureKind, Finish, Header, InstanceId, Message, Prefill,
    RequestId, Setup, Stage, Step,
};
use tokio::sync::mpsc;

use crate::stage::{Logic, Outbox, StageCtx};
use crate::StageError;
use braid_bus::Members;

/// What the executor thread produced for one request in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// The request.
    pub id: RequestId,
    /// Every token this step made for it.
    pub tokens: Vec<u32>,
    /// Set when it is done.
    pub finish: Option<Finish>,
    /// Token counts the executor reports (with `finish`), replacing braid's own count.
    pub reported: Option<braid_bus::Usage>,
}

/// Something that turns prompts into tokens, a step at a time, for many requests.
pub trait Executor: Send {
    /// Starts a request; an `Err` says what is wrong with it ([`StageError::Refused`] or
    /// an engine input error: the client's to fix) or that the executor failed.
    fn add(&mut self, id: RequestId, prefill: &Prefill) -> Result<(), StageError>;
    /// Stops a request (no output follows).
    fn abort(&mut self, id: RequestId);
    /// Whether any request is waiting or running.
    fn has_work(&self) -> bool;
    /// Runs one step, appending what each request got.
    fn step(&mut self, out: &mut Vec<ExecOutput>) -> Result<(), StageError>;
    /// Scheduler figures for metrics (none by default).
    fn stats(&self) -> ExecStats {
        ExecStats::default()
    }
    /// What the prefix cache gained and lost since the last call (all it holds when
    /// `full`), with its block size; `None` for executors without one (routers then
    /// weigh only their load).
    fn cache_changes(&mut self, _full: bool) -> Option<(usize, braid_engine::CacheChanges)> {
        None
    }
}

/// Publishes an executor's [`CacheNews`]: what changed, at most every
/// [`braid_bus::CACHE_NEWS_EVERY`] (at once when the executor falls idle, so a finished
/// round is known before the next one arrives), and everything every
/// [`braid_bus::CACHE_NEWS_FULL_EVERY`]. Nothing per step: one message per interval at
/// most, eight bytes per block stored or dropped.
struct CacheReporter {
    instance: InstanceId,
    seq: u64,
    last: Instant,
    last_full: Option<Instant>,
    subject: Arc<str>,
}

impl CacheReporter {
    fn new(instance: InstanceId) -> CacheReporter {
        CacheReporter {
            instance,
            seq: 0,
            last: Instant::now(),
            last_full: None,
            subject: Arc::from(subject::CACHE),
        }
    }

    /// Adds the news due now (if any) to `out`; `free_blocks` is the executor's figure
    /// from this step's stats.
    fn report(&mut self, exec: &mut dyn Executor, idle: bool, free_blocks: u32, out: &mut Outbox) {
        let full = self
            .last_full
            .is_none_or(|t| t.elapsed() >= braid_bus::CACHE_NEWS_FULL_EVERY);
        if !full && !idle && self.last.elapsed() < braid_bus::CACHE_NEWS_EVERY {
            return;
        }
        let Some((block_size, changes)) = exec.cache_changes(full) else {
            return;
        };
        self.last = Instant::now();
        if changes.full {
            self.last_full = Some(self.last);
        }
        if changes.is_empty() {
            return;
        }
        let news = CacheNews {
            version: braid_bus::SCHEMA_VERSION,
            instance: self.instance,
            seq: self.seq,
            block_size: block_size as u32,
            full: changes.full,
            stored: changes.stored,
            removed: changes.removed,
            free_blocks,
        };
        self.seq += 1;
        out.announce(&self.subject, &news);
    }
}

/// What an executor factory makes.
pub enum Executing {
    /// An executor the executor thread steps (the engine, replay).
    Stepped(Box<dyn Executor>),
    /// The upstream executor: each request on its own task, publishing its own steps.
    Upstream(upstream::UpstreamExecutor),
}

/// Refuses what only braid's engine can do (a grammar, a reasoning budget): an executor
/// that cannot constrain its output must say so rather than answer unconstrained.
pub(crate) fn refuse_constraints(sampling: &braid_bus::Sampling, executor: &str) -> Result<(), StageError> {
    if sampling.guide.is_some() {
        return Err(StageError::Refused(format!(
            "the {executor} executor cannot enforce structured outputs or tool_choice; serve the model with --executor engine"
        )));
    }
    if sampling.thinking_token_budget.is_some() {
        return Err(StageError::Refused(format!(
            "the {executor} executor cannot enforce thinking_token_budget; serve the model with --executor engine"
        )));
    }
    Ok(())
}

/// An executor's scheduler figures, published as metrics after every step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExecStats {
    /// Requests waiting to be scheduled.
    pub waiting: usize,
    /// Fraction of the KV cache in use.
    pub kv_usage: f64,
    /// Prompt tokens looked up in the prefix cache, so far.
    pub prefix_queries: u64,
    /// Prompt tokens served from it, so far.
    pub prefix_hits: u64,
    /// Sequences preempted, so far.
    pub preemptions: u64,
    /// Structured-output token masks computed, so far.
    pub masks: u64,
    /// Microseconds spent computing them (beside the forward pass), so far.
    pub mask_us: u64,
    /// Microseconds steps waited for masks after their forward pass, so far.
    pub mask_wait_us: u64,
    /// Cache blocks not held by any request.
    pub free_blocks: u32,
}

/// Requests cancelled before they arrived. A cancel is broadcast on its own subject and
/// can overtake its request (still at the tokenizer, or behind others in this replica's
/// mailbox), so it is remembered for [`Tombstones::TTL`] and the request, when it comes,
/// is dropped unstarted. Every replica hears every cancel; the set is bounded.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    at: HashMap<RequestId, Instant>,
    order: std::collections::VecDeque<(RequestId, Instant)>,
}

impl Tombstones {
    /// How long a cancel waits for its request.
    const TTL: Duration = Duration::from_secs(60);
    /// Cancels remembered at most.
    const CAP: usize = 100_000;

    /// Remembers that `id` was cancelled before it arrived.
    pub(crate) fn bury(&mut self, id: RequestId) {
        let now = Instant::now();
        while let Some(&(old, at)) = self.order.front() {
            if now.duration_since(at) < Self::TTL && self.order.len() < Self::CAP {
                break;
            }
            self.order.pop_front();
            if self.at.get(&old) == Some(&at) {
                self.at.remove(&old);
            }
        }
        self.at.insert(id, now);
        self.order.push_back((id, now));
    }

    /// Whether `id` was cancelled before it arrived (forgetting it: it is handled now).
    pub(crate) fn take(&mut self, id: RequestId) -> bool {
        self.at.remove(&id).is_some_and(|at| at.elapsed() < Self::TTL)
    }
}

/// What the executor actor tells its thread.
pub(crate) enum Command {
    /// Start a request.
    Add(RequestId, Box<Prefill>),
    /// Stop a request.
    Abort(RequestId),
}

/// The executor actor's logic: decode, forward to the thread.
pub(crate) struct ExecutorLogic {
    commands: std_mpsc::Sender<Command>,
    load: Arc<AtomicU32>,
}

impl Logic for ExecutorLogic {
    fn handle(&mut self, msg: &Message, out: &mut Outbox) -> Result<(), braid_bus::Error> {
        let env: Envelope<Prefill> = decode(&msg.subject, &msg.payload)?;
        out.sent_ns = Some(env.header.sent_ns);
        let id = env.header.id;
        if self.commands.send(Command::Add(id, Box::new(env.body))).is_err() {
            out.fail(
                id,
                Stage::Executor,
                FailureKind::Unavailable,
                "the executor thread has stopped".into(),
            );
        }
        Ok(())
    }

    fn cancel(&mut self, id: RequestId, _out: &mut Outbox) {
        let _ = self.commands.send(Command::Abort(id));
    }

    fn load(&self) -> u32 {
        self.load.load(Ordering::Relaxed)
    }
}

/// A request the thread is running: where its steps go.
struct Live {
    next: Arc<str>,
    origin: InstanceId,
    seq: u32,
    setup: Option<Box<Setup>>,
}

/// Starts the executor thread and its publisher; returns the actor logic's maker.
pub(crate) fn start(ctx: &StageCtx, executor: Box<dyn Executor>) -> impl Fn() -> ExecutorLogic + Send + Sync {
    let (commands, rx) = std_mpsc::channel();
    let (tx, mut published) = mpsc::channel::<Outbox>(64);
    let bus = ctx.bus.clone();
    tokio::spawn(async move {
        let sent = metrics::counter!("braid_bus_messages_total", "stage" => "executor", "direction" => "out");
        let bytes = metrics::counter!("braid_bus_bytes_total", "stage" => "executor", "direction" => "out");
        while let Some(mut outbox) = published.recv().await {
            for (subject, payload) in outbox.take() {
                sent.increment(1);
                bytes.increment(payload.len() as u64);
                if let Err(e) = bus.publish(&subject, payload).await {
                    tracing::warn!("executor: {e}");
                }
            }
        }
    });
    let (members, load) = (ctx.members.clone(), Arc::clone(&ctx.load));
    let thread_load = Arc::clone(&load);
    let reporter = CacheReporter::new(ctx.instance);
    let spawned = std::thread::Builder::new()
        .name("braid-executor".into())
        .spawn(move || run(executor, &rx, &tx, &members, &thread_load, reporter));
    if let Err(e) = spawned {
        tracing::error!("cannot start the executor thread: {e}");
    }
    let commands = std::sync::Mutex::new(commands);
    move || ExecutorLogic {
        commands: commands.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        load: Arc::clone(&load),
    }
}

/// The executor thread: apply commands, step, hand each step's messages to the
/// publisher (waiting when it is behind: backpressure reaches the model).
fn run(
    mut exec: Box<dyn Executor>,
    commands: &std_mpsc::Receiver<Command>,
    publish: &mpsc::Sender<Outbox>,
    members: &Members,
    load: &AtomicU32,
    mut reporter: CacheReporter,
) {
    let mut live: HashMap<RequestId, Live> = HashMap::new();
    let mut cancelled = Tombstones::default();
    let running = metrics::gauge!("braid_num_requests_running");
    let waiting = metrics::gauge!("braid_num_requests_waiting");
    let kv_usage = metrics::gauge!("braid_kv_cache_usage_perc");
    let prefix_queries = metrics::counter!("braid_prefix_cache_queries_total");
    let prefix_hits = metrics::counter!("braid_prefix_cache_hits_total");
    let preemptions = metrics::counter!("braid_num_preemptions_total");
    let masks = metrics::counter!("braid_guide_masks_total");
    let mask_us = metrics::counter!("braid_guide_mask_microseconds_total");
    let mask_wait = metrics::counter!("braid_guide_mask_wait_microseconds_total");
    let mut outputs = Vec::new();
    let mut last_sweep = Instant::now();
    // Routers hear of this replica's cache before its first request.
    let mut first = Outbox::default();
    let free_blocks = exec.stats().free_blocks;
    reporter.report(&mut *exec, true, free_blocks, &mut first);
    if !first.is_empty() && publish.blocking_send(first).is_err() {
        return;
    }
    loop {
        let mut out = Outbox::default();
        // Wait for work when idle (waking for the cache's whole report); otherwise take
        // what has arrived and step.
        let first = if exec.has_work() {
            commands.try_recv().ok()
        } else {
            match commands.recv_timeout(braid_bus::CACHE_NEWS_FULL_EVERY) {
                Ok(c) => Some(c),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        for cmd in first
            .into_iter()
            .chain(std::iter::from_fn(|| commands.try_recv().ok()))
        {
            match cmd {
                Command::Add(id, _) if cancelled.take(id) => {
                    tracing::debug!("executor: {id} was cancelled before it arrived");
                }
                Command::Add(id, prefill) => add(&mut *exec, &mut live, id, *prefill, &mut out),
                Command::Abort(id) => {
                    if live.remove(&id).is_some() {
                        exec.abort(id);
                    } else {
                        cancelled.bury(id);
                    }
                }
            }
        }
        // The load the heartbeat reports counts new requests at once, not after the step
        // (a long prefill) that starts them.
        load.store(live.len() as u32, Ordering::Relaxed);
        if last_sweep.elapsed() > Duration::from_millis(500) {
            last_sweep = Instant::now();
            let orphans: Vec<RequestId> = live
                .iter()
                .filter(|(_, l)| members.gone(l.origin))
                .map(|(id, _)| *id)
                .collect();
            for id in orphans {
                tracing::info!("executor: aborting {id}: its ingress is gone");
                live.remove(&id);
                exec.abort(id);
            }
        }
        if exec.has_work() {
            outputs.clear();
            match std::panic::catch_unwind(AssertUnwindSafe(|| exec.step(&mut outputs))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => fail_all(&mut *exec, &mut live, &mut out, &e.to_string()),
                Err(_) => fail_all(&mut *exec, &mut live, &mut out, "the executor panicked"),
            }
            for o in outputs.drain(..) {
                let Some(l) = live.get_mut(&o.id) else { continue };
                let last = o.finish.is_some();
                let step = Step {
                    tokens: o.tokens,
                    text: None,
                    finish: o.finish,
                    setup: l.setup.take(),
                    reported: o.reported,
                };
                out.send(&l.next, Header::new(o.id, l.seq, last), &step);
                l.seq += 1;
                if last {
                    live.remove(&o.id);
                }
            }
        }
        load.store(live.len() as u32, Ordering::Relaxed);
        running.set(live.len() as f64);
        let stats = exec.stats();
        waiting.set(stats.waiting as f64);
        kv_usage.set(stats.kv_usage);
        prefix_queries.absolute(stats.prefix_queries);
        prefix_hits.absolute(stats.prefix_hits);
        preemptions.absolute(stats.preemptions);
        masks.absolute(stats.masks);
        mask_us.absolute(stats.mask_us);
        mask_wait.absolute(stats.mask_wait_us);
        let idle = !exec.has_work();
        reporter.report(&mut *exec, idle, stats.free_blocks, &mut out);
        if !out.is_empty() && publish.blocking_send(out).is_err() {
            return;
        }
    }
}

fn add(
    exec: &mut dyn Executor,
    live: &mut HashMap<RequestId, Live>,
    id: RequestId,
    prefill: Prefill,
    out: &mut Outbox,
) {
    let Some(route) = prefill.setup.route else {
        out.fail(
            id,
            Stage::Executor,
            FailureKind::Internal,
            "request arrived without a route".into(),
        );
        return;
    };
    if let Err(e) = exec.add(id, &prefill) {
        out.fail(id, Stage::Executor, e.failure_kind(), e.to_string());
        return;
    }
    live.insert(
        id,
        Live {
            next: Arc::from(subject::instance(Stage::Detokenizer, route.detokenizer)),
            origin: route.ingress,
            seq: 0,
            setup: Some(Box::new(prefill.setup)),
        },
    );
}

/// Ends every live request with an error (the executor failed under them).
fn fail_all(exec: &mut dyn Executor, live: &mut HashMap<RequestId, Live>, out: &mut Outbox, message: &str) {
    tracing::error!("executor step failed: {message}");
    for (id, _) in live.drain() {
        exec.abort(id);
        out.fail(id, Stage::Executor, FailureKind::Internal, message.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_that_overtook_its_request_is_remembered_once() {
        let mut t = Tombstones::default();
        let (a, b) = (RequestId(1), RequestId(2));
        t.bury(a);
        assert!(!t.take(b));
        assert!(t.take(a), "the request that arrives after its cancel is dropped");
        assert!(!t.take(a), "and forgotten");
        for i in 0..(Tombstones::CAP as u64 + 10) {
            t.bury(RequestId(100 + i));
        }
        assert!(t.at.len() <= Tombstones::CAP, "bounded");
        assert!(!t.take(RequestId(100)), "the oldest went first");
    }
}
