//! The plumbing every stage shares: one ractor actor type that feeds bus messages to a
//! stage's [`Logic`] and publishes what it produces, bounded delivery (backpressure),
//! and the per-request bookkeeping of the stateful stages ([`Stateful`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use braid_bus::{
    decode, encode, now_ns, subject, Bus, Cancel, Chunk, Envelope, Failure, FailureKind, Finish, Header,
    InstanceId, Message, RequestId, Setup, Stage, Subscription,
};
use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::StageError;
use braid_bus::{count_bad_message, Members};

/// Messages a stage replica may hold unhandled before its bus subscriptions stop reading
/// (and, in-process, before publishers wait): its bounded mailbox.
pub const MAILBOX: usize = 4096;

/// How often stateful stages look for requests whose ingress died.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// What one replica is: its bus, its stage and id, what it has heard, how busy it is.
#[derive(Clone)]
pub struct StageCtx {
    /// The bus it talks on.
    pub bus: Bus,
    /// Its stage.
    pub stage: Stage,
    /// Its id (its input subject is `braid.<stage>.<instance>`).
    pub instance: InstanceId,
    /// The replicas it has heard from.
    pub members: Members,
    /// Requests it holds now (reported in its heartbeat).
    pub load: Arc<AtomicU32>,
    /// Its mailbox slots ([`MAILBOX`] permits; those taken are its queue depth).
    pub queue: Arc<Semaphore>,
}

/// Messages produced while handling one input, published in order after it.
#[derive(Default)]
pub(crate) struct Outbox {
    items: Vec<(Arc<str>, Bytes)>,
    /// When the input was sent (for the stage latency histogram).
    pub(crate) sent_ns: Option<u64>,
}

impl Outbox {
    /// Queues an encoded envelope for `subject`.
    pub(crate) fn send<B: Serialize>(&mut self, subject: &Arc<str>, header: Header, body: &B) {
        #[derive(Serialize)]
        struct Ref<'a, B> {
            header: Header,
            body: &'a B,
        }
        self.items
            .push((Arc::clone(subject), encode(&Ref { header, body })));
    }

    /// Queues a message that belongs to no request (no envelope), such as a report.
    pub(crate) fn announce<B: Serialize>(&mut self, subject: &Arc<str>, body: &B) {
        self.items.push((Arc::clone(subject), encode(body)));
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes the queued messages, in order.
    pub(crate) fn take(&mut self) -> std::vec::Drain<'_, (Arc<str>, Bytes)> {
        self.items.drain(..)
    }

    /// Ends a request at its client: a terminal chunk carrying `failure`, straight to
    /// `braid.out.<id>`, whatever stage we are.
    pub(crate) fn fail(&mut self, id: RequestId, stage: Stage, kind: FailureKind, message: String) {
        let chunk = Chunk {
            deltas: Vec::new(),
            finish: Some(Finish::Failed(Failure::new(kind, stage, message))),
            usage: None,
        };
        self.send(
            &Arc::from(subject::out(id)),
            Header::new(id, u32::MAX, true),
            &chunk,
        );
    }
}

/// A stage's behaviour: turns one bus message into outgoing ones. Synchronous and free
/// of I/O, so it is tested without a runtime; the actor does the publishing.
pub(crate) trait Logic: Send + 'static {
    /// Handles a message from the stage's input subject. An `Err` is a message that does
    /// not decode: it is logged and counted, and nothing else happens.
    fn handle(&mut self, msg: &Message, out: &mut Outbox) -> Result<(), braid_bus::Error>;
    /// Drops a request (client gone, or a replica on its route died).
    fn cancel(&mut self, _id: RequestId, _out: &mut Outbox) {}
    /// Drops requests whose ingress is no longer alive.
    fn sweep(&mut self, _members: &Members, _out: &mut Outbox) {}
    /// Requests held now.
    fn load(&self) -> u32;
}

/// Builds a stage's logic; called again for every restart.
pub(crate) type MakeLogic = Arc<dyn Fn() -> Result<Box<dyn Logic>, StageError> + Send + Sync>;

/// The one message type of a stage actor.
pub enum StageMsg {
    /// A message from the stage's input subject, holding a mailbox slot until handled.
    Deliver(Message, OwnedSemaphorePermit),
    /// A message from `braid.cancel`.
    Cancel(Message),
    /// Time to look for orphaned requests.
    Sweep,
    /// Fault drill: panic while handling this, so the supervisor restarts the stage.
    Panic,
}

/// The actor every stage runs as. Its state is the stage's [`Logic`]; a restart builds
/// fresh logic (in-flight requests of the old one end with an error at their clients).
pub struct StageActor;

/// What a stage actor starts from.
pub struct StageArgs {
    pub(crate) ctx: StageCtx,
    pub(crate) make: MakeLogic,
}

/// A stage actor's state.
pub struct StageState {
    ctx: StageCtx,
    logic: Box<dyn Logic>,
    out: Outbox,
    latency: metrics::Histogram,
    handled: metrics::Counter,
    sent: metrics::Counter,
    sent_bytes: metrics::Counter,
    depth: metrics::Gauge,
}

impl Actor for StageActor {
    type Msg = StageMsg;
    type State = StageState;
    type Arguments = StageArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<StageMsg>,
        args: StageArgs,
    ) -> Result<StageState, ActorProcessingErr> {
        let logic = (args.make)()?;
        let stage = args.ctx.stage.as_str();
        Ok(StageState {
            latency: metrics::histogram!("braid_stage_latency_seconds", "stage" => stage),
            handled: metrics::counter!("braid_bus_messages_total", "stage" => stage, "direction" => "in"),
            sent: metrics::counter!("braid_bus_messages_total", "stage" => stage, "direction" => "out"),
            sent_bytes: metrics::counter!("braid_bus_bytes_total", "stage" => stage, "direction" => "out"),
            depth: metrics::gauge!("braid_stage_queue_depth", "stage" => stage),
            ctx: args.ctx,
            logic,
            out: Outbox::default(),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<StageMsg>,
        msg: StageMsg,
        st: &mut StageState,
    ) -> Result<(), ActorProcessingErr> {
        st.out.sent_ns = None;
        match msg {
            StageMsg::Deliver(m, _permit) => {
                st.handled.increment(1);
                if let Err(e) = st.logic.handle(&m, &mut st.out) {
                    count_bad_message(st.ctx.stage, &e);
                }
            }
            StageMsg::Cancel(m) => match decode::<Envelope<Cancel>>(&m.subject, &m.payload) {
                Ok(c) => st.logic.cancel(c.header.id, &mut st.out),
                Err(e) => count_bad_message(st.ctx.stage, &e),
            },
            StageMsg::Sweep => st.logic.sweep(&st.ctx.members, &mut st.out),
            StageMsg::Panic => panic!(
                "fault drill: {} {} panics on purpose",
                st.ctx.stage, st.ctx.instance
            ),
        }
        for (subject, payload) in st.out.items.drain(..) {
            st.sent.increment(1);
            st.sent_bytes.increment(payload.len() as u64);
            if let Err(e) = st.ctx.bus.publish(&subject, payload).await {
                tracing::warn!("{}: {e}", st.ctx.stage);
            }
        }
        if let Some(sent) = st.out.sent_ns {
            st.latency.record(now_ns().saturating_sub(sent) as f64 * 1e-9);
        }
        st.ctx.load.store(st.logic.load(), Ordering::Relaxed);
        st.depth
            .set(MAILBOX.saturating_sub(st.ctx.queue.available_permits()) as f64);
        Ok(())
    }
}

/// Where a stage actor is now: replaced by its supervisor on restart.
pub(crate) type Slot = Arc<RwLock<Option<ActorRef<StageMsg>>>>;

/// Moves messages from a subscription into the stage actor in `slot`, one mailbox
/// permit each: when the actor lags, this stops reading and the bus pushes back.
pub(crate) fn pump(
    mut sub: Subscription,
    slot: Slot,
    permits: Option<Arc<Semaphore>>,
    stage: Stage,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let mut msg = match &permits {
                Some(p) => match Arc::clone(p).acquire_owned().await {
                    Ok(permit) => StageMsg::Deliver(m, permit),
                    Err(_) => return,
                },
                None => StageMsg::Cancel(m),
            };
            // The actor may be restarting: wait for its successor a little while.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let target = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
                if let Some(actor) = target {
                    match actor.cast(msg) {
                        Ok(()) => break,
                        Err(ractor::MessagingErr::SendErr(back)) => msg = back,
                        Err(_) => break,
                    }
                }
                if Instant::now() > deadline {
                    tracing::error!("{stage}: no actor to deliver to; message dropped");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
}

/// Sends [`StageMsg::Sweep`] to the actor in `slot` now and then.
pub(crate) fn sweeper(slot: Slot) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let target = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(a) = target {
                let _ = a.cast(StageMsg::Sweep);
            }
        }
    })
}

/// Ids of requests that ended here lately: late messages for them are ignored, not
/// mistaken for a lost request.
pub(crate) struct Recent {
    order: VecDeque<RequestId>,
    set: HashSet<RequestId>,
}

impl Recent {
    const CAPACITY: usize = 16_384;

    pub(crate) fn new() -> Recent {
        Recent {
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    pub(crate) fn insert(&mut self, id: RequestId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub(crate) fn contains(&self, id: RequestId) -> bool {
        self.set.contains(&id)
    }
}

/// An input message of a stateful stage: it may carry the request's setup (first
/// message) and a finish (last).
pub(crate) trait Incoming: DeserializeOwned {
    /// Takes the setup out, if this is the first message.
    fn take_setup(&mut self) -> Option<Box<Setup>>;
    /// Whether this is the request's last message.
    fn is_last(&self) -> bool;
}

/// Every hop after the executor carries `setup` on its first message and `finish` on its
/// last.
macro_rules! incoming {
    ($($message:ty),*) => {$(
        impl Incoming for $message {
            fn take_setup(&mut self) -> Option<Box<Setup>> {
                self.setup.take()
            }
            fn is_last(&self) -> bool {
                self.finish.is_some()
            }
        }
    )*};
}

incoming!(braid_bus::Step, braid_bus::Text, braid_bus::Split);

/// One stateful stage: per-request state opened from the setup, then one input message
/// in, at most one output message out.
pub(crate) trait Stateful: Send + 'static {
    /// What comes in.
    type In: Incoming;
    /// What goes out.
    type Out: Serialize;
    /// Per-request state.
    type State: Send;
    /// Which stage this is.
    const STAGE: Stage;
    /// Opens a request's state; an `Err` ends the request with that message.
    fn open(&self, id: RequestId, setup: &Setup) -> Self::State;
    /// Handles one input: returns the output, if one is due, and whether it is the
    /// request's last. `setup` is `Some` on the first message and must be passed on, so
    /// an output is due whenever it is `Some` or the input is last. `out` takes extra
    /// messages (a stop string's cancel).
    fn on(
        &self,
        id: RequestId,
        state: &mut Self::State,
        input: Self::In,
        setup: Option<Box<Setup>>,
        out: &mut Outbox,
    ) -> Option<(Self::Out, bool)>;
}

struct Entry<S> {
    next: Arc<str>,
    origin: InstanceId,
    seq: u32,
    state: S,
}

/// The [`Logic`] of a stateful stage: keeps each request's state and output subject,
/// numbers outputs, and ends requests it cannot serve with an error at their clients.
pub(crate) struct StatefulLogic<T: Stateful> {
    stage: T,
    requests: HashMap<RequestId, Entry<T::State>>,
    recent: Recent,
}

impl<T: Stateful> StatefulLogic<T> {
    pub(crate) fn new(stage: T) -> Self {
        StatefulLogic {
            stage,
            requests: HashMap::new(),
            recent: Recent::new(),
        }
    }
}

impl<T: Stateful> Logic for StatefulLogic<T> {
    fn handle(&mut self, msg: &Message, out: &mut Outbox) -> Result<(), braid_bus::Error> {
        let mut env: Envelope<T::In> = decode(&msg.subject, &msg.payload)?;
        let id = env.header.id;
        out.sent_ns = Some(env.header.sent_ns);
        let setup = env.body.take_setup();
        if let Some(setup) = &setup {
            let Some(route) = setup.route else {
                out.fail(
                    id,
                    T::STAGE,
                    FailureKind::Internal,
                    "request arrived without a route".into(),
                );
                return Ok(());
            };
            let next: Arc<str> = match T::STAGE.next_pinned().and_then(|s| route.of(s).map(|i| (s, i))) {
                Some((stage, inst)) => Arc::from(subject::instance(stage, inst)),
                None => Arc::from(subject::out(id)),
            };
            let state = self.stage.open(id, setup);
            self.requests.insert(
                id,
                Entry {
                    next,
                    origin: route.ingress,
                    seq: 0,
                    state,
                },
            );
        }
        let Some(entry) = self.requests.get_mut(&id) else {
            if !self.recent.contains(id) {
                self.recent.insert(id);
                out.fail(
                    id,
                    T::STAGE,
                    FailureKind::Unavailable,
                    format!(
                        "the {} replica lost this request's state (it restarted)",
                        T::STAGE
                    ),
                );
            }
            return Ok(());
        };
        let mut last = env.body.is_last();
        if let Some((body, ends)) = self.stage.on(id, &mut entry.state, env.body, setup, out) {
            last |= ends;
            let header = Header::new(id, entry.seq, last);
            entry.seq += 1;
            out.send(&entry.next, header, &body);
        }
        if last {
            self.requests.remove(&id);
            self.recent.insert(id);
        }
        Ok(())
    }

    fn cancel(&mut self, id: RequestId, _out: &mut Outbox) {
        self.requests.remove(&id);
        self.recent.insert(id);
    }

    fn sweep(&mut self, members: &Members, out: &mut Outbox) {
        let orphans: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, e)| members.gone(e.origin))
            .map(|(id, _)| *id)
            .collect();
        for id in orphans {
            tracing::info!("{}: dropping request {id}: its ingress is gone", T::STAGE);
            self.cancel(id, out);
        }
    }

    fn load(&self) -> u32 {
        self.requests.len() as u32
    }
}
