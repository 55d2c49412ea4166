//! The pipeline client: how an HTTP edge (or any Rust program) hands requests to braid
//! and reads their output, over either transport. It admits a request (or refuses it at
//! once when too much is in flight), pins it to one live replica of every stateful stage,
//! sends it to a tokenizer, and gives the caller the request's output stream. It watches
//! every request it admitted: when a replica on a request's route stops beating, the
//! request ends with a clear error and is cancelled everywhere.
//!
//! It lives in the bus crate, not with the stages, because it needs nothing but the bus:
//! an ingress-only process (and a program outside braid) runs it without the engine, the
//! tokenizer or ractor. [`Pipeline`] is the seam the HTTP handlers are written against,
//! so they are tested with a stub.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::codec::{count_bad_message, decode, encode};
use crate::members::Members;
use crate::message::{
    Admitted, Cancel, Chunk, Delta, Envelope, Failure, FailureKind, Finish, Header, Route, Submit,
    TokenizerAnswer, TokenizerCall, Usage,
};
use crate::{subject, Bus, InstanceId, RequestId, Stage, Subscription};

/// How often the client checks the routes of its requests.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// What an HTTP edge needs of the pipeline: the seam between the protocols and the bus.
pub trait Pipeline: Send + Sync + 'static {
    /// Admits a request and starts it. Refusals are immediate: overload, a stage with no
    /// live replica, or a request the tokenizer rejects.
    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Response, Failure>>;
    /// Asks a tokenizer for work that starts no generation.
    fn call(&self, call: TokenizerCall) -> BoxFuture<'_, Result<TokenizerAnswer, Failure>>;
    /// The stages a request needs that have no live replica now (empty: ready).
    fn missing(&self) -> Vec<Stage>;
    /// This edge's replica id (reported to clients as `x-braid-ingress`).
    fn instance(&self) -> InstanceId;
}

/// The stages every request passes through.
pub const NEEDED: [Stage; 5] = [
    Stage::Tokenizer,
    Stage::Executor,
    Stage::Detokenizer,
    Stage::Splitter,
    Stage::Extractor,
];

/// What the watch task is told.
enum Cmd {
    /// A request was admitted: where it runs, and how to end it from here.
    Register(RequestId, Route, oneshot::Sender<Failure>),
    /// A request's caller is done with it; cancel it everywhere when it ended early.
    Done(RequestId, bool),
    /// The tokenizer's router sent a request to another executor than its route named.
    Reroute(RequestId, InstanceId),
}

/// Keeps the table of requests in flight and ends those whose route lost a replica.
async fn watch(bus: Bus, members: Members, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let mut inflight: HashMap<RequestId, (Route, oneshot::Sender<Failure>)> = HashMap::new();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Register(id, route, fail)) => {
                    inflight.insert(id, (route, fail));
                }
                Some(Cmd::Reroute(id, executor)) => {
                    if let Some((route, _)) = inflight.get_mut(&id) {
                        route.executor = executor;
                    }
                }
                Some(Cmd::Done(id, cancel)) => {
                    inflight.remove(&id);
                    if cancel {
                        metrics::counter!("braid_requests_cancelled_total").increment(1);
                        broadcast_cancel(&bus, id, "client gone").await;
                    }
                }
                None => return,
            },
            _ = tick.tick() => {
                let lost: Vec<(RequestId, Stage, InstanceId)> = inflight
                    .iter()
                    .filter_map(|(id, (route, _))| {
                        Stage::PINNED
                            .into_iter()
                            .filter_map(|s| route.of(s).map(|i| (s, i)))
                            .find(|(_, i)| !members.alive(*i))
                            .map(|(s, i)| (*id, s, i))
                    })
                    .collect();
                for (id, stage, inst) in lost {
                    if let Some((_, fail)) = inflight.remove(&id) {
                        metrics::counter!("braid_requests_lost_total", "stage" => stage.as_str()).increment(1);
                        let _ = fail.send(Failure::new(
                            FailureKind::Unavailable,
                            stage,
                            format!(
                                "the {stage} replica {inst} serving this request stopped (no heartbeat for {} ms); \
                                 the request was cancelled",
                                crate::BEAT_TIMEOUT.as_millis()
                            ),
                        ));
                    }
                    broadcast_cancel(&bus, id, "replica lost").await;
                }
            }
        }
        metrics::gauge!("braid_requests_inflight").set(inflight.len() as f64);
    }
}

async fn broadcast_cancel(bus: &Bus, id: RequestId, reason: &str) {
    let cancel = Envelope {
        header: Header::new(id, 0, true),
        body: Cancel {
            reason: reason.into(),
        },
    };
    if let Err(e) = bus.publish(subject::CANCEL, encode(&cancel)).await {
        tracing::warn!("ingress: cancel of {id} not sent: {e}");
    }
}

/// A request between its registration and its response: dropped armed (the caller
/// went away while the tokenizer had it), it is cancelled everywhere.
struct Pending<'a> {
    cmds: &'a mpsc::UnboundedSender<Cmd>,
    id: RequestId,
    armed: bool,
}

impl Pending<'_> {
    /// Ends the request here: cancelled everywhere or not.
    fn settle(&mut self, cancel: bool) {
        if std::mem::take(&mut self.armed) {
            let _ = self.cmds.send(Cmd::Done(self.id, cancel));
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.settle(true);
    }
}

/// The pipeline client over the bus: submit a request, read its output.
#[derive(Clone)]
pub struct Client {
    bus: Bus,
    instance: InstanceId,
    members: Members,
    cmds: mpsc::UnboundedSender<Cmd>,
    admission: Arc<Semaphore>,
    turn: Arc<AtomicUsize>,
    timeout: Duration,
    max_inflight: usize,
}

/// One admitted request's output, chunk by chunk. Dropping it before the end cancels
/// the request everywhere.
pub struct Response {
    /// The request's id (its output subject is `braid.out.<id>`).
    pub id: RequestId,
    /// Prompt length in tokens.
    pub prompt_tokens: u32,
    /// The executor replica generating it (`None` for given chunks).
    pub executor: Option<InstanceId>,
    source: Source,
    state: End,
}

/// Where a response's chunks come from.
enum Source {
    /// The bus: the request's output subject, and the watchdog's verdict.
    Bus {
        sub: Subscription,
        fail: oneshot::Receiver<Failure>,
        cmds: mpsc::UnboundedSender<Cmd>,
        _permit: OwnedSemaphorePermit,
        timing: Box<Timing>,
    },
    /// Chunks given up front (stubs and tests).
    Given(VecDeque<Chunk>),
}

/// When a request's milestones happened, for the latency and reasoning metrics.
struct Timing {
    started: Instant,
    first_token: Option<Instant>,
    first_answer: Option<Instant>,
    tool_call: bool,
}

impl Timing {
    fn new() -> Timing {
        Timing {
            started: Instant::now(),
            first_token: None,
            first_answer: None,
            tool_call: false,
        }
    }

    fn saw(&mut self, chunk: &Chunk) {
        let now = Instant::now();
        for d in &chunk.deltas {
            self.first_token.get_or_insert(now);
            match d {
                Delta::Content { .. } | Delta::Fallback { content: true, .. } => {
                    self.first_answer.get_or_insert(now);
                }
                Delta::ToolCallStart { .. } => {
                    self.first_answer.get_or_insert(now);
                    self.tool_call = true;
                }
                _ => {}
            }
        }
    }

    /// Records the request's metrics (vLLM's names under `braid_`, and the reasoning
    /// figures nobody else exports).
    fn finished(&self, finish: &Finish, usage: Option<Usage>) {
        let now = Instant::now();
        let round_end = if self.tool_call { "tool_call" } else { "answer" };
        let reason = match finish {
            Finish::Stop | Finish::StopSequence(_) if self.tool_call => "tool_calls",
            Finish::Stop | Finish::StopSequence(_) => "stop",
            Finish::Length => "length",
            Finish::Abort => "abort",
            Finish::Failed(_) => "error",
        };
        metrics::counter!("braid_request_success_total", "finished_reason" => reason).increment(1);
        metrics::histogram!("braid_e2e_request_latency_seconds")
            .record(now.duration_since(self.started).as_secs_f64());
        if let Some(first) = self.first_token {
            metrics::histogram!("braid_time_to_first_token_seconds")
                .record(first.duration_since(self.started).as_secs_f64());
        }
        if let Some(answer) = self.first_answer {
            metrics::histogram!("braid_time_to_answer_seconds", "round_end" => round_end)
                .record(answer.duration_since(self.started).as_secs_f64());
        }
        let Some(u) = usage else { return };
        metrics::counter!("braid_prompt_tokens_total").increment(u64::from(u.prompt_tokens));
        metrics::counter!("braid_generation_tokens_total").increment(u64::from(u.completion_tokens));
        metrics::counter!("braid_reasoning_tokens_total").increment(u64::from(u.reasoning_tokens));
        metrics::histogram!("braid_request_generation_tokens").record(f64::from(u.completion_tokens));
        metrics::histogram!("braid_reasoning_tokens", "round_end" => round_end)
            .record(f64::from(u.reasoning_tokens));
        let answer_tokens = u.completion_tokens.saturating_sub(u.reasoning_tokens);
        if answer_tokens > 0 {
            metrics::histogram!("braid_reasoning_answer_ratio")
                .record(f64::from(u.reasoning_tokens) / f64::from(answer_tokens));
        }
        if let (Some(first), true) = (self.first_token, u.completion_tokens > 1) {
            let per_token = now.duration_since(first).as_secs_f64() / f64::from(u.completion_tokens - 1);
            metrics::histogram!("braid_inter_token_latency_seconds").record(per_token);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Finished,
    Failed,
}

fn failure(kind: FailureKind, message: String) -> Failure {
    Failure::new(kind, Stage::Ingress, message)
}

impl Client {
    /// Starts the client and its route watchdog (on the current tokio runtime). At most
    /// `max_inflight` requests are admitted at once; a tokenizer must answer within
    /// `timeout`.
    pub fn start(
        bus: &Bus,
        instance: InstanceId,
        members: &Members,
        max_inflight: usize,
        timeout: Duration,
    ) -> Client {
        let (cmds, rx) = mpsc::unbounded_channel();
        tokio::spawn(watch(bus.clone(), members.clone(), rx));
        Client {
            bus: bus.clone(),
            instance,
            members: members.clone(),
            cmds,
            admission: Arc::new(Semaphore::new(max_inflight)),
            turn: Arc::new(AtomicUsize::new(0)),
            timeout,
            max_inflight,
        }
    }

    /// This ingress's replica id.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> usize {
        self.max_inflight - self.admission.available_permits()
    }

    /// A live replica of every pinned stage, taken in turn.
    fn route(&self) -> Result<Route, Failure> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let pick = |stage: Stage| -> Result<InstanceId, Failure> {
            let live = self.members.live(stage);
            if live.is_empty() {
                return Err(failure(
                    FailureKind::Unavailable,
                    format!("no {stage} replica is running"),
                ));
            }
            Ok(live[turn % live.len()].0)
        };
        Ok(Route {
            ingress: self.instance,
            executor: pick(Stage::Executor)?,
            detokenizer: pick(Stage::Detokenizer)?,
            splitter: pick(Stage::Splitter)?,
            extractor: pick(Stage::Extractor)?,
        })
    }

    /// Sends `payload` to a tokenizer on `subject` and waits for its reply.
    async fn ask(&self, subject: &str, payload: bytes::Bytes) -> Result<crate::Message, Failure> {
        self.bus
            .request(subject, payload, self.timeout)
            .await
            .map_err(|e| {
                let message = match e {
                    crate::Error::NoResponders { .. } => "no tokenizer replica is running".to_owned(),
                    crate::Error::Timeout { .. } => format!(
                        "no tokenizer took the request within {} ms",
                        self.timeout.as_millis()
                    ),
                    other => other.to_string(),
                };
                failure(FailureKind::Unavailable, message)
            })
    }

    /// Admits a request and starts it. Refusals are immediate: overload, a stage with no
    /// live replica, or a request the tokenizer rejects.
    pub async fn submit(&self, mut submit: Submit) -> Result<Response, Failure> {
        let permit = Arc::clone(&self.admission).try_acquire_owned().map_err(|_| {
            metrics::counter!("braid_requests_refused_total", "reason" => "overloaded").increment(1);
            failure(
                FailureKind::Overloaded,
                "the server is at capacity (too many requests in flight); retry later".into(),
            )
        })?;
        let route = self.route()?;
        submit.setup.route = Some(route);
        let id = RequestId::random();
        let sub = self
            .bus
            .subscribe(&subject::out(id))
            .await
            .map_err(|e| failure(FailureKind::Internal, e.to_string()))?;
        let (fail_tx, fail_rx) = oneshot::channel();
        let gone = || failure(FailureKind::Internal, "the ingress watchdog is gone".into());
        self.cmds
            .send(Cmd::Register(id, route, fail_tx))
            .map_err(|_| gone())?;
        // From here the request may be running: if the caller goes away before it has the
        // response (its client hung up during admission), the request is cancelled.
        let mut pending = Pending {
            cmds: &self.cmds,
            id,
            armed: true,
        };
        let mut done = |cancel: bool| pending.settle(cancel);
        let payload = encode(&Envelope {
            header: Header::new(id, 0, true),
            body: submit,
        });
        let reply = match self.ask(subject::TOKENIZER_IN, payload).await {
            Ok(m) => m,
            Err(f) => {
                done(true);
                return Err(f);
            }
        };
        match decode::<Envelope<Admitted>>(&reply.subject, &reply.payload) {
            Ok(Envelope {
                body:
                    Admitted::Accepted {
                        prompt_tokens,
                        executor,
                    },
                ..
            }) => {
                if executor != route.executor {
                    let _ = self.cmds.send(Cmd::Reroute(id, executor));
                }
                // The response cancels the request when it is dropped before the end.
                pending.armed = false;
                Ok(Response {
                    id,
                    prompt_tokens,
                    executor: Some(executor),
                    source: Source::Bus {
                        sub,
                        fail: fail_rx,
                        cmds: self.cmds.clone(),
                        _permit: permit,
                        timing: Box::new(Timing::new()),
                    },
                    state: End::Open,
                })
            }
            Ok(Envelope {
                body: Admitted::Refused(f),
                ..
            }) => {
                metrics::counter!("braid_requests_refused_total", "reason" => "invalid").increment(1);
                done(false);
                Err(f)
            }
            Err(e) => {
                count_bad_message(Stage::Ingress, &e);
                done(true);
                Err(failure(
                    FailureKind::Internal,
                    format!("unreadable tokenizer reply: {e}"),
                ))
            }
        }
    }

    /// Asks a tokenizer for work that starts no generation (`/tokenize`, `/detokenize`).
    pub async fn call(&self, call: TokenizerCall) -> Result<TokenizerAnswer, Failure> {
        let payload = encode(&Envelope {
            header: Header::new(RequestId::random(), 0, true),
            body: call,
        });
        let reply = self.ask(subject::TOKENIZER_CALL, payload).await?;
        match decode::<Envelope<TokenizerAnswer>>(&reply.subject, &reply.payload) {
            Ok(env) => Ok(env.body),
            Err(e) => {
                count_bad_message(Stage::Ingress, &e);
                Err(failure(
                    FailureKind::Internal,
                    format!("unreadable tokenizer reply: {e}"),
                ))
            }
        }
    }
}

impl Pipeline for Client {
    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Response, Failure>> {
        Box::pin(Client::submit(self, submit))
    }

    fn call(&self, call: TokenizerCall) -> BoxFuture<'_, Result<TokenizerAnswer, Failure>> {
        Box::pin(Client::call(self, call))
    }

    fn missing(&self) -> Vec<Stage> {
        NEEDED
            .into_iter()
            .filter(|&s| self.members.live(s).is_empty())
            .collect()
    }

    fn instance(&self) -> InstanceId {
        self.instance
    }
}

impl Response {
    /// A response that yields `chunks` (for stub pipelines and tests).
    pub fn from_chunks(id: RequestId, prompt_tokens: u32, chunks: Vec<Chunk>) -> Response {
        Response {
            id,
            prompt_tokens,
            executor: None,
            source: Source::Given(chunks.into()),
            state: End::Open,
        }
    }

    /// The next chunk; the last one has `finish` set (a failure is a chunk too, with
    /// [`Finish::Failed`]). `None` after the last.
    pub async fn next(&mut self) -> Option<Chunk> {
        if self.state != End::Open {
            return None;
        }
        let chunk = match &mut self.source {
            Source::Given(chunks) => chunks
                .pop_front()
                .unwrap_or_else(|| failed(failure(FailureKind::Internal, "the stream ended early".into()))),
            Source::Bus {
                sub, fail, timing, ..
            } => {
                let chunk = loop {
                    break tokio::select! {
                        m = sub.next() => match m {
                            Some(m) => match decode::<Envelope<Chunk>>(&m.subject, &m.payload) {
                                Ok(env) => env.body,
                                Err(e) => {
                                    count_bad_message(Stage::Ingress, &e);
                                    continue;
                                }
                            },
                            None => failed(failure(FailureKind::Unavailable, "the bus connection closed".into())),
                        },
                        f = &mut *fail => match f {
                            Ok(f) => failed(f),
                            Err(_) => failed(failure(FailureKind::Internal, "the ingress watchdog is gone".into())),
                        },
                    };
                };
                timing.saw(&chunk);
                if let Some(finish) = &chunk.finish {
                    timing.finished(finish, chunk.usage);
                }
                chunk
            }
        };
        self.state = match &chunk.finish {
            None => End::Open,
            Some(Finish::Failed(_)) => End::Failed,
            Some(_) => End::Finished,
        };
        Some(chunk)
    }
}

fn failed(f: Failure) -> Chunk {
    Chunk {
        deltas: Vec::new(),
        finish: Some(Finish::Failed(f)),
        usage: None,
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        if let Source::Bus { cmds, .. } = &self.source {
            let _ = cmds.send(Cmd::Done(self.id, self.state != End::Finished));
        }
    }
}
