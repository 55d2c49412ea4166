//! The ingress stage: where the API hands requests in. It admits a request (or refuses
//! it at once when too much is in flight), pins it to one live replica of every stateful
//! stage, sends it to a tokenizer, and gives the caller the request's output stream. It
//! watches every request it admitted: when a replica on a request's route stops beating,
//! the request ends with a clear error and is cancelled everywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_bus::{
    decode, encode, subject, Admitted, Bus, Cancel, Chunk, Delta, Envelope, Failure, FailureKind, Finish,
    Header, InstanceId, RequestId, Route, Stage, Submit, Subscription, Usage,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::membership::Members;
use crate::stage::count_bad_message;

/// How often the ingress checks the routes of its requests.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Messages of the ingress actor.
pub enum IngressMsg {
    /// A request was admitted.
    Register {
        /// The request.
        id: RequestId,
        /// Where it runs.
        route: Route,
        /// How to end it from here.
        fail: oneshot::Sender<Failure>,
    },
    /// A request's caller is done with it; `cancel` when it ended early.
    Done {
        /// The request.
        id: RequestId,
        /// Tell every stage to drop it.
        cancel: bool,
    },
    /// Check routes.
    Watch,
}

/// The ingress actor: the table of requests in flight, and the route watchdog.
pub struct IngressActor;

/// The ingress actor's state.
pub struct IngressState {
    bus: Bus,
    members: Members,
    inflight: HashMap<RequestId, (Route, Option<oneshot::Sender<Failure>>)>,
}

impl Actor for IngressActor {
    type Msg = IngressMsg;
    type State = IngressState;
    type Arguments = (Bus, Members);

    async fn pre_start(
        &self,
        _me: ActorRef<IngressMsg>,
        (bus, members): (Bus, Members),
    ) -> Result<IngressState, ActorProcessingErr> {
        Ok(IngressState {
            bus,
            members,
            inflight: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<IngressMsg>,
        msg: IngressMsg,
        st: &mut IngressState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IngressMsg::Register { id, route, fail } => {
                st.inflight.insert(id, (route, Some(fail)));
                metrics::gauge!("braid_requests_inflight").set(st.inflight.len() as f64);
            }
            IngressMsg::Done { id, cancel } => {
                st.inflight.remove(&id);
                metrics::gauge!("braid_requests_inflight").set(st.inflight.len() as f64);
                if cancel {
                    metrics::counter!("braid_requests_cancelled_total").increment(1);
                    broadcast_cancel(&st.bus, id, "client gone").await;
                }
            }
            IngressMsg::Watch => {
                let mut lost = Vec::new();
                for (id, (route, _)) in &st.inflight {
                    if let Some((stage, inst)) = Stage::PINNED
                        .into_iter()
                        .filter_map(|s| route.of(s).map(|i| (s, i)))
                        .find(|(_, i)| !st.members.alive(*i))
                    {
                        lost.push((*id, stage, inst));
                    }
                }
                for (id, stage, inst) in lost {
                    if let Some((_, Some(fail))) = st.inflight.remove(&id) {
                        metrics::counter!("braid_requests_lost_total", "stage" => stage.as_str())
                            .increment(1);
                        let _ = fail.send(Failure {
                            kind: FailureKind::Unavailable,
                            stage,
                            message: format!(
                                "the {stage} replica {inst} serving this request stopped (no heartbeat for {} ms); \
                                 the request was cancelled",
                                braid_bus::BEAT_TIMEOUT.as_millis()
                            ),
                        });
                    }
                    broadcast_cancel(&st.bus, id, "replica lost").await;
                }
            }
        }
        Ok(())
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

/// The API's handle on the pipeline: submit a request, read its output.
#[derive(Clone)]
pub struct Ingress {
    bus: Bus,
    instance: InstanceId,
    members: Members,
    actor: ActorRef<IngressMsg>,
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
    sub: Subscription,
    fail: oneshot::Receiver<Failure>,
    state: End,
    actor: ActorRef<IngressMsg>,
    _permit: OwnedSemaphorePermit,
    timing: Timing,
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
            Finish::Stop if self.tool_call => "tool_calls",
            Finish::Stop => "stop",
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
    Failure {
        kind,
        stage: Stage::Ingress,
        message,
    }
}

impl Ingress {
    /// Starts the ingress actor and its watchdog. At most `max_inflight` requests are
    /// admitted at once; a tokenizer must take a request within `timeout`.
    pub(crate) async fn start(
        bus: &Bus,
        instance: InstanceId,
        members: &Members,
        max_inflight: usize,
        timeout: Duration,
    ) -> Result<Ingress, crate::StageError> {
        let (actor, _) = Actor::spawn(None, IngressActor, (bus.clone(), members.clone()))
            .await
            .map_err(|e| crate::StageError::Start(format!("ingress: {e}")))?;
        let watched = actor.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                tick.tick().await;
                if watched.cast(IngressMsg::Watch).is_err() {
                    return;
                }
            }
        });
        Ok(Ingress {
            bus: bus.clone(),
            instance,
            members: members.clone(),
            actor,
            admission: Arc::new(Semaphore::new(max_inflight)),
            turn: Arc::new(AtomicUsize::new(0)),
            timeout,
            max_inflight,
        })
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
        let internal = |e: braid_bus::Error| failure(FailureKind::Internal, e.to_string());
        let sub = self.bus.subscribe(&subject::out(id)).await.map_err(internal)?;
        let (fail_tx, fail_rx) = oneshot::channel();
        self.actor
            .cast(IngressMsg::Register {
                id,
                route,
                fail: fail_tx,
            })
            .map_err(|_| failure(FailureKind::Internal, "the ingress actor is gone".into()))?;
        let done = |cancel: bool| {
            let _ = self.actor.cast(IngressMsg::Done { id, cancel });
        };
        let payload = encode(&Envelope {
            header: Header::new(id, 0, true),
            body: submit,
        });
        let reply = match self
            .bus
            .request(subject::TOKENIZER_IN, payload, self.timeout)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                done(true);
                let message = match e {
                    braid_bus::Error::NoResponders { .. } => "no tokenizer replica is running".to_owned(),
                    braid_bus::Error::Timeout { .. } => {
                        format!(
                            "no tokenizer took the request within {} ms",
                            self.timeout.as_millis()
                        )
                    }
                    other => other.to_string(),
                };
                return Err(failure(FailureKind::Unavailable, message));
            }
        };
        match decode::<Envelope<Admitted>>(&reply.subject, &reply.payload) {
            Ok(Envelope {
                body: Admitted::Accepted { prompt_tokens },
                ..
            }) => Ok(Response {
                id,
                prompt_tokens,
                sub,
                fail: fail_rx,
                state: End::Open,
                actor: self.actor.clone(),
                _permit: permit,
                timing: Timing::new(),
            }),
            Ok(Envelope {
                body: Admitted::Refused(f),
                ..
            }) => {
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
}

impl Response {
    /// The next chunk; the last one has `finish` set (a failure is a chunk too, with
    /// [`Finish::Failed`]). `None` after the last.
    pub async fn next(&mut self) -> Option<Chunk> {
        if self.state != End::Open {
            return None;
        }
        loop {
            let chunk = tokio::select! {
                m = self.sub.next() => match m {
                    Some(m) => match decode::<Envelope<Chunk>>(&m.subject, &m.payload) {
                        Ok(env) => env.body,
                        Err(e) => {
                            count_bad_message(Stage::Ingress, &e);
                            continue;
                        }
                    },
                    None => failed(failure(FailureKind::Unavailable, "the bus connection closed".into())),
                },
                f = &mut self.fail => match f {
                    Ok(f) => failed(f),
                    Err(_) => failed(failure(FailureKind::Internal, "the ingress actor is gone".into())),
                },
            };
            self.timing.saw(&chunk);
            self.state = match &chunk.finish {
                None => End::Open,
                Some(Finish::Failed(_)) => End::Failed,
                Some(_) => End::Finished,
            };
            if let Some(finish) = &chunk.finish {
                self.timing.finished(finish, chunk.usage);
            }
            return Some(chunk);
        }
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
        let _ = self.actor.cast(IngressMsg::Done {
            id: self.id,
            cancel: self.state != End::Finished,
        });
    }
}
