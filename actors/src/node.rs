//! One braid process: the stage replicas it runs, on one bus. `braid serve` runs every
//! stage; `braid stage NAME` runs one; tests and benchmarks start nodes directly.

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use braid_bus::{listen, subject, Bus, Client, Heart, InstanceId, Members, Stage};
use braid_engine::{ChatRenderer, Guides, Tokenizer};
use ractor::{Actor, ActorRef};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::constraints::{Grammars, GuideHandoff};
use crate::detokenizer::Detokenizer;
use crate::executor::upstream::{Running, UpstreamLogic};
use crate::executor::{self, Executing};
use crate::extractor::Extractor;
use crate::router::{self, Router, Routing};
use crate::splitter::Splitter;
use crate::stage::{self, Logic, MakeLogic, Slot, StageCtx, StageMsg, StatefulLogic};
use crate::supervisor::{SupervisorActor, SupervisorArgs};
use crate::tokenizer::{PromptConfig, TokenizerLogic};
use crate::StageError;

/// Makes one executor (called once per executor replica, on a blocking thread).
pub type ExecutorFactory = Arc<dyn Fn() -> Result<Executing, StageError> + Send + Sync>;

/// What a node runs.
#[derive(Clone)]
pub struct NodeConfig {
    /// Stages and how many replicas of each.
    pub stages: Vec<(Stage, usize)>,
    /// The model's tokenizer (the tokenizer and detokenizer stages need it).
    pub tokenizer: Option<Arc<Tokenizer>>,
    /// The model's chat template (the tokenizer stage renders chat requests with it).
    pub chat: Option<Arc<ChatRenderer>>,
    /// Prompt plus output, at most (the tokenizer stage refuses longer requests).
    pub max_model_len: Option<u32>,
    /// The vocabulary index for structured outputs (the tokenizer stage compiles
    /// constraints with it; `None`: constraints are refused).
    pub guides: Option<Guides>,
    /// Compiled guides from this process's tokenizer stage to its engine executor.
    pub handoff: Option<GuideHandoff>,
    /// Makes executors (the executor stage needs it).
    pub executor: Option<ExecutorFactory>,
    /// Requests one ingress admits at once; more are refused as overload.
    pub max_inflight: usize,
    /// How long a tokenizer may take to accept a request.
    pub submit_timeout: Duration,
    /// How the tokenizer stage chooses each request's executor replica.
    pub routing: Routing,
}

impl NodeConfig {
    /// Every stage, one replica each.
    pub fn all_stages() -> Vec<(Stage, usize)> {
        Stage::ALL.into_iter().map(|s| (s, 1)).collect()
    }
}

struct Replica {
    stage: Stage,
    instance: InstanceId,
    slot: Slot,
    supervisor: ActorRef<()>,
    heart: Heart,
    tasks: Vec<JoinHandle<()>>,
}

/// A running process's stages.
pub struct Node {
    /// The bus.
    pub bus: Bus,
    /// What this process has heard.
    pub members: Members,
    /// The ingress (the pipeline client the HTTP edge uses), when this node runs one.
    pub ingress: Option<Client>,
    ingress_heart: Option<Heart>,
    replicas: Vec<Replica>,
    listener: JoinHandle<()>,
    /// The executors' caches as this process's tokenizers see them, and the task that
    /// listens for their news (started with the first tokenizer, under prefix routing).
    router: Option<(Arc<Router>, JoinHandle<()>)>,
}

impl Node {
    /// Starts the configured stages.
    pub async fn start(bus: Bus, config: NodeConfig) -> Result<Node, StageError> {
        let members = Members::default();
        let listener = listen(&bus, members.clone()).await?;
        let mut node = Node {
            bus,
            members,
            ingress: None,
            ingress_heart: None,
            replicas: Vec::new(),
            listener,
            router: None,
        };
        for &(stage, count) in &config.stages {
            for _ in 0..count {
                if stage == Stage::Ingress {
                    if node.ingress.is_some() {
                        return Err(StageError::Config("one ingress per process".into()));
                    }
                    let instance = InstanceId::random();
                    node.ingress = Some(Client::start(
                        &node.bus,
                        instance,
                        &node.members,
                        config.max_inflight,
                        config.submit_timeout,
                    ));
                    node.ingress_heart = Some(Heart::start(
                        &node.bus,
                        instance,
                        Stage::Ingress,
                        Arc::new(AtomicU32::new(0)),
                    ));
                } else {
                    let replica = node.start_replica(stage, &config).await?;
                    node.replicas.push(replica);
                }
            }
        }
        Ok(node)
    }

    async fn start_replica(&mut self, stage: Stage, config: &NodeConfig) -> Result<Replica, StageError> {
        let instance = InstanceId::random();
        let ctx = StageCtx {
            bus: self.bus.clone(),
            stage,
            instance,
            members: self.members.clone(),
            load: Arc::new(AtomicU32::new(0)),
            queue: Arc::new(Semaphore::new(stage::MAILBOX)),
        };
        let tokenizer = || {
            config.tokenizer.clone().ok_or_else(|| {
                StageError::Config(format!(
                    "the {stage} stage needs a tokenizer (--model or --tokenizer)"
                ))
            })
        };
        let make: MakeLogic = match stage {
            Stage::Tokenizer => {
                let tokenizer = tokenizer()?;
                let prompts = PromptConfig {
                    grammars: Grammars::new(config.guides.clone(), &tokenizer),
                    tokenizer,
                    chat: config.chat.clone(),
                    max_model_len: config.max_model_len,
                    handoff: config.handoff.clone(),
                };
                let router = match (config.routing, &self.router) {
                    (Routing::RoundRobin, _) => None,
                    (Routing::Prefix, Some((r, _))) => Some(Arc::clone(r)),
                    (Routing::Prefix, None) => {
                        let r = Arc::new(Router::default());
                        let task = router::listen(&self.bus, Arc::clone(&r)).await?;
                        self.router = Some((Arc::clone(&r), task));
                        Some(r)
                    }
                };
                let members = self.members.clone();
                Arc::new(move || {
                    let routing = router.clone().map(|r| (r, members.clone()));
                    Ok(Box::new(TokenizerLogic::new(prompts.clone(), routing)) as Box<dyn Logic>)
                })
            }
            Stage::Detokenizer => {
                let tok = tokenizer()?;
                Arc::new(move || {
                    Ok(Box::new(StatefulLogic::new(Detokenizer::new(Arc::clone(&tok)))) as Box<dyn Logic>)
                })
            }
            Stage::Splitter => Arc::new(|| Ok(Box::new(StatefulLogic::new(Splitter)) as Box<dyn Logic>)),
            Stage::Extractor => Arc::new(|| Ok(Box::new(StatefulLogic::new(Extractor)) as Box<dyn Logic>)),
            Stage::Executor => {
                let factory = config.executor.clone().ok_or_else(|| {
                    StageError::Config("the executor stage needs a model or --executor".into())
                })?;
                let exec = tokio::task::spawn_blocking(move || factory())
                    .await
                    .map_err(|e| StageError::Start(format!("executor: {e}")))??;
                match exec {
                    Executing::Stepped(exec) => {
                        let logic = executor::start(&ctx, exec);
                        Arc::new(move || Ok(Box::new(logic()) as Box<dyn Logic>))
                    }
                    Executing::Upstream(up) => {
                        let (bus, live) = (self.bus.clone(), Running::default());
                        Arc::new(move || {
                            let logic = UpstreamLogic::new(up.clone(), bus.clone(), Arc::clone(&live));
                            Ok(Box::new(logic) as Box<dyn Logic>)
                        })
                    }
                }
            }
            Stage::Ingress => return Err(StageError::Config("the ingress is not a replica".into())),
        };
        let slot: Slot = Arc::new(RwLock::new(None));
        let (supervisor, _) = Actor::spawn(
            None,
            SupervisorActor,
            SupervisorArgs {
                ctx: ctx.clone(),
                make,
                slot: Arc::clone(&slot),
            },
        )
        .await
        .map_err(|e| StageError::Start(format!("{stage}: {e}")))?;
        let permits = Some(Arc::clone(&ctx.queue));
        let mut tasks = Vec::new();
        let work = if stage == Stage::Tokenizer {
            self.bus
                .queue_subscribe(subject::TOKENIZER_IN, subject::TOKENIZER_GROUP)
                .await?
        } else {
            self.bus.subscribe(&subject::instance(stage, instance)).await?
        };
        tasks.push(stage::pump(work, Arc::clone(&slot), permits.clone(), stage));
        if stage == Stage::Tokenizer {
            let calls = self
                .bus
                .queue_subscribe(subject::TOKENIZER_CALL, subject::TOKENIZER_GROUP)
                .await?;
            tasks.push(stage::pump(calls, Arc::clone(&slot), permits, stage));
        }
        if stage != Stage::Tokenizer {
            let cancels = self.bus.subscribe(subject::CANCEL).await?;
            tasks.push(stage::pump(cancels, Arc::clone(&slot), None, stage));
            tasks.push(stage::sweeper(Arc::clone(&slot)));
        }
        if stage == Stage::Executor {
            let stops = self.bus.subscribe(&subject::stop(instance)).await?;
            tasks.push(stage::pump(stops, Arc::clone(&slot), None, stage));
        }
        let heart = Heart::start(&self.bus, instance, stage, Arc::clone(&ctx.load));
        tracing::info!("{stage} replica {instance} started");
        Ok(Replica {
            stage,
            instance,
            slot,
            supervisor,
            heart,
            tasks,
        })
    }

    /// Waits until this process has heard a live replica of every stage a request needs
    /// (so the ingress can route); false on timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if braid_bus::client::NEEDED
                .iter()
                .all(|&s| !self.members.live(s).is_empty())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// The replicas this node runs, as (stage, id).
    pub fn replicas(&self) -> Vec<(Stage, InstanceId)> {
        self.replicas.iter().map(|r| (r.stage, r.instance)).collect()
    }

    /// Fault drill: makes the first replica of `stage` panic, so its supervisor restarts
    /// it. Returns false if this node runs no such replica.
    pub fn panic_stage(&self, stage: Stage) -> bool {
        let Some(r) = self.replicas.iter().find(|r| r.stage == stage) else {
            return false;
        };
        let actor = r.slot.read().unwrap_or_else(|p| p.into_inner()).clone();
        actor.is_some_and(|a| a.cast(StageMsg::Panic).is_ok())
    }

    /// Stops every stage, saying goodbye on the bus so routes move away at once.
    pub async fn shutdown(self) {
        for r in self.replicas {
            r.heart.stop().await;
            for t in r.tasks {
                t.abort();
            }
            r.supervisor.stop(None);
        }
        if let Some(h) = self.ingress_heart {
            h.stop().await;
        }
        self.listener.abort();
        if let Some((_, task)) = self.router {
            task.abort();
        }
        let _ = self.bus.flush().await;
    }
}
