//! `braid serve` (every stage in one process) and `braid stage` (some stages, as their
//! own process on a shared NATS bus).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use braid_actors::{
    EngineExecutor, Executing, ExecutorFactory, GuideHandoff, Node, NodeConfig, Pace, PromptAs,
    ReplayExecutor, Routing, UpstreamExecutor, UpstreamSpec,
};
use braid_api::ReasoningField;
use braid_bus::{Bus, NatsOptions, SharedMap, Stage};
use braid_engine::{load_model, ChatRenderer, Engine, EngineConfig, Guides, KvCache, ModelConfig, Tokenizer};
use braid_parsers::{ReasoningParser, ToolParser};
use candle_core::{DType, Device};
use clap::Args;

/// Options shared by `serve` and `stage`: the model, the executor, the bus.
#[derive(Debug, Args)]
pub(crate) struct PipelineArgs {
    /// Read flags from a file (`name = value` lines; see ops/deploy/braid.toml); flags
    /// given on the command line win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Tokenizer folder, when it is not the model folder (e.g. for `--executor replay:…`).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// `engine` (the model folder, on braid's engine), `replay:FILE` (recorded outputs,
    /// JSONL), or `upstream:URL` (an OpenAI-compatible server such as vLLM, SGLang or
    /// llama.cpp; repeat it for several upstream replicas).
    #[arg(long, default_value = "engine")]
    executor: Vec<ExecutorSpec>,
    /// Upstream: `Authorization: Bearer KEY` sent to the upstreams.
    #[arg(long, env = "BRAID_UPSTREAM_API_KEY", hide_env_values = true)]
    upstream_api_key: Option<String>,
    /// Upstream: the model name to send.
    #[arg(long)]
    upstream_model: Option<String>,
    /// Upstream: send prompts as `tokens` (vLLM, SGLang, llama.cpp) or `text`.
    #[arg(long, value_enum, default_value_t = UpstreamPrompt::Tokens)]
    upstream_prompt: UpstreamPrompt,
    /// Upstream: seconds to wait for an upstream's next bytes.
    #[arg(long, default_value_t = 60)]
    upstream_timeout: u64,
    /// Replay: tokens each request gets per step.
    #[arg(long, default_value_t = 1)]
    replay_tokens_per_step: usize,
    /// Replay: milliseconds between steps.
    #[arg(long, default_value_t = 10)]
    replay_interval_ms: u64,
    /// Weight dtype.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// KV cache size in MiB.
    #[arg(long, default_value_t = 1024)]
    kv_cache_mib: usize,
    /// Sequences in one step, at most.
    #[arg(long, default_value_t = 256)]
    max_num_seqs: usize,
    /// Tokens in one step, at most.
    #[arg(long, default_value_t = 2048)]
    max_num_batched_tokens: usize,
    /// Prompt plus output, at most (default: the model's, capped by the cache).
    #[arg(long)]
    max_model_len: Option<usize>,
    /// The bus: `inproc`, `nats://[user:pass@|token@]HOST:PORT` or `tls://HOST:PORT`.
    #[arg(long, default_value = "inproc", value_parser = bus_url)]
    bus: String,
    /// NATS credentials file (JWT + NKey).
    #[arg(long)]
    nats_creds: Option<PathBuf>,
    /// PEM root certificates for `tls://`.
    #[arg(long)]
    nats_ca: Option<PathBuf>,
    /// Requests one ingress admits at once; more get 429.
    #[arg(long, default_value_t = 1024)]
    max_inflight: usize,
    /// The model name clients use (default: the model folder's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Reasoning parser: vLLM's names (deepseek_r1, qwen3, kimi_k2, minimax_m2, glm45,
    /// deepseek_v3, …) or a format file (`FILE.toml`, see ops/examples/formats). Without
    /// either parser flag braid chooses both from the model folder.
    #[arg(long, value_parser = crate::formats::reasoning)]
    reasoning_parser: Option<ReasoningParser>,
    /// Tool-call parser: vLLM's names (hermes, qwen3_coder, kimi_k2, deepseek_v31,
    /// deepseek_v32, minimax_m2, glm45, glm47, …) or a format file (`FILE.toml`).
    #[arg(long, alias = "tool-parser", value_parser = crate::formats::tools)]
    tool_call_parser: Option<ToolParser>,
    /// A Jinja chat template file, instead of the model folder's.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// `chat_template_kwargs` every request starts from (a JSON object).
    #[arg(long, value_parser = json_object)]
    default_chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// Where responses carry reasoning: `reasoning_content`, or `both` (adds `reasoning`).
    #[arg(long, value_enum, default_value_t = ReasoningField::ReasoningContent)]
    reasoning_field: ReasoningField,
    /// `thinking_token_budget` for requests that set none: reasoning tokens at most (the
    /// close marker included), then the family's close marker is forced (engine only).
    #[arg(long)]
    thinking_token_budget: Option<u32>,
    /// Where conversation state (replayable reasoning) lives: `shared`, a JetStream
    /// key-value bucket every ingress on the NATS server reads (in memory with
    /// `--bus inproc`), or `memory` (this process only).
    #[arg(long, value_enum, default_value_t = StateStore::Shared)]
    state: StateStore,
    /// How the tokenizer stage picks each request's executor replica: `prefix`, the one
    /// whose prefix cache holds the longest start of the prompt (weighed against load), or
    /// `round-robin`, live replicas in turn.
    #[arg(long, value_enum, default_value_t = ExecutorRouting::Prefix)]
    executor_routing: ExecutorRouting,
    /// Assistant turns whose reasoning is kept for re-injection (0 turns it off).
    #[arg(long, default_value_t = 10_000)]
    reasoning_replay_size: usize,
    /// Seconds replayable reasoning is kept.
    #[arg(long, default_value_t = 3600)]
    reasoning_replay_ttl: u64,
    /// Responses-API responses kept for `previous_response_id` and `GET
    /// /v1/responses/{id}` (`store: true`, the API's default; 0 keeps none).
    #[arg(long, default_value_t = 10_000)]
    responses_store_size: usize,
    /// Seconds a stored response is kept.
    #[arg(long, default_value_t = 86_400)]
    responses_store_ttl: u64,
    /// Require this key on /v1/*, as `Authorization: Bearer KEY` or `x-api-key: KEY`.
    #[arg(long, env = "BRAID_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The secret that seals reasoning handed to clients (Anthropic thinking signatures),
    /// so any replica can open it when it comes back: give every ingress the same one.
    /// Unset: a random key per process, and seals open only where they were made.
    #[arg(long, env = "BRAID_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    /// Refuse (400) a thinking block sent back whose signature this server did not make
    /// for its text; by default it is rendered as sent and counted.
    #[arg(long)]
    strict_signatures: bool,
    /// Request bodies over this many bytes get 413.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Serve `/metrics` on this port (for `braid stage` processes without an ingress,
    /// whose metrics would otherwise have no endpoint).
    #[arg(long)]
    metrics_port: Option<u16>,
    /// HTTP address of the ingress.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// HTTP port of the ingress.
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

/// `braid serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The model: a folder (config.json, *.safetensors, tokenizer.json) or a GGUF file.
    model: Option<PathBuf>,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

/// `braid stage`.
#[derive(Debug, Args)]
pub(crate) struct StageArgs {
    /// Stages to run, comma-separated: ingress, tokenizer, executor, detokenizer,
    /// splitter, extractor.
    stages: String,
    /// The model folder (for the tokenizer, detokenizer and executor stages).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Replicas of each stage in this process (the ingress always has one).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    run_node(args.model.as_deref(), NodeConfig::all_stages(), &args.pipeline)
}

pub(crate) fn stage(args: &StageArgs) -> anyhow::Result<ExitCode> {
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let mut stages = Vec::new();
    for name in args.stages.split(',').map(str::trim) {
        let Some(stage) = Stage::from_name(name) else {
            let known: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
            bail!("unknown stage {name:?}; known: {}", known.join(", "));
        };
        let n = if stage == Stage::Ingress { 1 } else { args.replicas };
        stages.push((stage, n));
    }
    if args.pipeline.bus == "inproc" && stages.len() < Stage::ALL.len() {
        bail!("`braid stage` runs part of the pipeline: give --bus nats://HOST:PORT so the other stages can reach it");
    }
    run_node(args.model.as_deref(), stages, &args.pipeline)
}

/// `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Dtype {
    /// 32-bit floats.
    F32,
    /// bfloat16.
    Bf16,
}

impl Dtype {
    fn candle(self) -> DType {
        match self {
            Dtype::F32 => DType::F32,
            Dtype::Bf16 => DType::BF16,
        }
    }
}

/// `--state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StateStore {
    /// Shared by every ingress (JetStream on NATS).
    Shared,
    /// This process only.
    Memory,
}

/// `--executor-routing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExecutorRouting {
    /// The replica with the longest cached prefix of the prompt.
    Prefix,
    /// Live replicas in turn.
    RoundRobin,
}

impl From<ExecutorRouting> for Routing {
    fn from(r: ExecutorRouting) -> Routing {
        match r {
            ExecutorRouting::Prefix => Routing::Prefix,
            ExecutorRouting::RoundRobin => Routing::RoundRobin,
        }
    }
}

/// `--upstream-prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum UpstreamPrompt {
    /// Token ids (vLLM, SGLang, llama.cpp).
    Tokens,
    /// Text.
    Text,
}

/// One `--executor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecutorSpec {
    /// braid's engine on the model folder.
    Engine,
    /// Recorded outputs.
    Replay(PathBuf),
    /// An OpenAI-compatible server.
    Upstream(String),
}

impl std::str::FromStr for ExecutorSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "engine" => Ok(ExecutorSpec::Engine),
            Some(("replay", file)) if !file.is_empty() => Ok(ExecutorSpec::Replay(PathBuf::from(file))),
            Some(("upstream", url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(ExecutorSpec::Upstream(url.to_owned()))
            }
            _ => Err(format!(
                "{s:?} is not an executor; use engine, replay:FILE or upstream:http(s)://HOST:PORT"
            )),
        }
    }
}

/// `--bus`: checked for its scheme before anything loads.
/// One kind of conversation state: the JetStream bucket `bucket` (or, with `--state
/// memory` or an in-process bus, a map in this process) of at most `size` entries kept
/// `ttl` seconds; `None` when `size` is 0.
async fn shared_map(
    bus: &Bus,
    state: StateStore,
    bucket: &str,
    size: usize,
    ttl: u64,
) -> anyhow::Result<Option<SharedMap>> {
    let ttl = Duration::from_secs(ttl);
    Ok(match (size, state) {
        (0, _) => None,
        (size, StateStore::Memory) => Some(SharedMap::memory(bucket, size, ttl)),
        (size, StateStore::Shared) => Some(SharedMap::jetstream(bus, bucket, size, ttl).await?),
    })
}

fn bus_url(s: &str) -> Result<String, String> {
    if s == "inproc" || s.starts_with("nats://") || s.starts_with("tls://") {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a bus; use inproc, nats://HOST:PORT or tls://HOST:PORT"
        ))
    }
}

/// A flag whose value is a JSON object.
fn json_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err("must be a JSON object".into()),
    }
}

fn device() -> anyhow::Result<Device> {
    #[cfg(feature = "cuda")]
    {
        return Ok(Device::new_cuda(0)?);
    }
    #[allow(unreachable_code)]
    Ok(Device::Cpu)
}

/// The executor factory the flags describe.
fn executor(
    model: Option<&Path>,
    tokenizer: Option<&Arc<Tokenizer>>,
    guides: Option<&Guides>,
    handoff: Option<&GuideHandoff>,
    p: &PipelineArgs,
) -> anyhow::Result<(ExecutorFactory, Option<u32>)> {
    let upstreams: Vec<String> = p
        .executor
        .iter()
        .filter_map(|e| match e {
            ExecutorSpec::Upstream(url) => Some(url.clone()),
            _ => None,
        })
        .collect();
    if !upstreams.is_empty() {
        if upstreams.len() != p.executor.len() {
            bail!("--executor upstream:URL can be repeated, but not mixed with engine or replay");
        }
        let tok = Arc::clone(
            tokenizer
                .context("--executor upstream needs a tokenizer: give --tokenizer DIR or a model folder")?,
        );
        let spec = UpstreamSpec {
            urls: upstreams,
            api_key: p.upstream_api_key.clone(),
            model: p.upstream_model.clone(),
            prompt_as: match p.upstream_prompt {
                UpstreamPrompt::Tokens => PromptAs::Tokens,
                UpstreamPrompt::Text => PromptAs::Text,
            },
            timeout: Duration::from_secs(p.upstream_timeout.max(1)),
        };
        let factory: ExecutorFactory = Arc::new(move || {
            Ok(Executing::Upstream(UpstreamExecutor::new(
                spec.clone(),
                Arc::clone(&tok),
            )?))
        });
        return Ok((factory, p.max_model_len.map(|m| m as u32)));
    }
    let [executor] = p.executor.as_slice() else {
        bail!("give one --executor (engine or replay:FILE), or one or more upstream:URL");
    };
    if let ExecutorSpec::Replay(file) = executor {
        let tok = Arc::clone(
            tokenizer
                .context("--executor replay needs a tokenizer: give --tokenizer DIR or a model folder")?,
        );
        let pace = Pace {
            tokens_per_step: p.replay_tokens_per_step,
            interval: Duration::from_millis(p.replay_interval_ms),
        };
        let file = file.clone();
        // Read it now, so a bad file is an error at startup.
        ReplayExecutor::load(&file, Arc::clone(&tok), pace)?;
        let factory: ExecutorFactory = Arc::new(move || {
            Ok(Executing::Stepped(Box::new(ReplayExecutor::load(
                &file,
                Arc::clone(&tok),
                pace,
            )?)))
        });
        return Ok((factory, p.max_model_len.map(|m| m as u32)));
    }
    let dir = model
        .context("the engine executor needs a model folder or a GGUF file")?
        .to_path_buf();
    let cfg = ModelConfig::from_dir(&dir)?;
    let dt = p.dtype.candle();
    let dev = device()?;
    let tok = tokenizer.map(Arc::clone);
    let guides = guides.cloned();
    let handoff = handoff.cloned();
    let block_size = 16;
    let num_blocks = KvCache::blocks_for_budget(&cfg, p.kv_cache_mib << 20, block_size, dt);
    if num_blocks == 0 {
        bail!("--kv-cache-mib {} holds no block of this model", p.kv_cache_mib);
    }
    let engine_cfg = EngineConfig {
        block_size,
        num_blocks,
        max_num_seqs: p.max_num_seqs,
        max_num_batched_tokens: p.max_num_batched_tokens,
        max_model_len: p
            .max_model_len
            .unwrap_or(cfg.max_position_embeddings)
            .min(num_blocks * block_size),
        enable_prefix_caching: true,
    };
    let max_model_len = engine_cfg.max_model_len as u32;
    let factory: ExecutorFactory = Arc::new(move || {
        let bar = crate::progress_bar(cfg.num_layers as u64, "loading model {bar:30} {pos}/{len} layers");
        let model = load_model(&dir, dt, &dev, &mut |done, _| bar.set_position(done as u64))
            .map_err(|e| braid_actors::StageError::Config(e.to_string()))?;
        bar.finish_and_clear();
        let eos = tok
            .as_ref()
            .map(|t| t.eos_token_ids().to_vec())
            .unwrap_or_default();
        let mut engine = Engine::new(model, eos, engine_cfg.clone())
            .map_err(|e| braid_actors::StageError::Config(e.to_string()))?;
        if let Some(g) = &guides {
            engine.set_guides(g.clone());
        }
        tracing::info!(
            "engine ready: {} KV blocks of {block_size}",
            engine_cfg.num_blocks
        );
        Ok(Executing::Stepped(Box::new(EngineExecutor::new(
            engine,
            tok.clone(),
            handoff.clone(),
        ))))
    });
    Ok((factory, Some(max_model_len)))
}

/// The chat settings the flags describe.
fn chat_settings(p: &PipelineArgs) -> braid_api::ChatSettings {
    braid_api::ChatSettings {
        reasoning_parser: p.reasoning_parser,
        tool_parser: p.tool_call_parser,
        default_kwargs: p.default_chat_template_kwargs.clone(),
        reasoning_field: p.reasoning_field,
        thinking_token_budget: p.thinking_token_budget,
    }
}

fn run_node(model: Option<&Path>, stages: Vec<(Stage, usize)>, p: &PipelineArgs) -> anyhow::Result<ExitCode> {
    crate::init_logging();
    let needs = |s: Stage| stages.iter().any(|(x, _)| *x == s);
    let tok_dir = p.tokenizer.as_deref().or(model);
    // Only the tokenizer, detokenizer and executor stages load the tokenizer (and the
    // tokenizer stage the chat template): an ingress-only process loads neither.
    let tokenizer = if needs(Stage::Tokenizer) || needs(Stage::Detokenizer) || needs(Stage::Executor) {
        match tok_dir {
            Some(dir) => {
                Some(Arc::new(Tokenizer::from_dir(dir).with_context(|| {
                    format!("loading the tokenizer of {}", dir.display())
                })?))
            }
            None if needs(Stage::Tokenizer) || needs(Stage::Detokenizer) => {
                bail!("the tokenizer and detokenizer stages need a model folder or --tokenizer DIR")
            }
            None => None,
        }
    } else {
        None
    };
    // One vocabulary index for structured outputs serves the tokenizer stage's grammar
    // checks and the engine's masks (and engine restarts); it is built only where one of
    // them runs.
    let engine_here = needs(Stage::Executor) && p.executor.contains(&ExecutorSpec::Engine);
    let guides = match &tokenizer {
        Some(t) if needs(Stage::Tokenizer) || engine_here => {
            let started = std::time::Instant::now();
            match Guides::new(t) {
                Ok(g) => {
                    tracing::info!(
                        "structured outputs ready ({:.0?} to index the vocabulary)",
                        started.elapsed()
                    );
                    Some(g)
                }
                Err(e) => {
                    tracing::warn!("structured outputs are off: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    // Guides compiled by this process's tokenizer stage go straight to its engine.
    let handoff = (needs(Stage::Tokenizer) && engine_here).then(GuideHandoff::default);
    let (executor, engine_len) = if needs(Stage::Executor) {
        let (factory, len) = executor(model, tokenizer.as_ref(), guides.as_ref(), handoff.as_ref(), p)?;
        (Some(factory), len)
    } else {
        (None, None)
    };
    let max_model_len = engine_len.or(p.max_model_len.map(|m| m as u32));
    let mut chat = chat_settings(p);
    let renderer = if needs(Stage::Tokenizer) {
        match (tok_dir, &p.chat_template) {
            (Some(dir), template) => match ChatRenderer::from_dir(dir, template.as_deref()) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) if template.is_some() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!("no chat template ({e}); /v1/chat/completions will refuse requests");
                    None
                }
            },
            (None, Some(file)) => Some(Arc::new(ChatRenderer::from_dir(Path::new("."), Some(file))?)),
            (None, None) => None,
        }
    } else {
        None
    };
    // No parser flags: choose a family the template proves (explicit flags always win).
    if let (Some(r), None, None, Some(dir)) = (&renderer, chat.reasoning_parser, chat.tool_parser, tok_dir) {
        match crate::detect::choose(dir, r) {
            Ok(c) => {
                tracing::info!(
                    "parsers: {} (reasoning {}, tools {}), chosen from the model folder and proved against its chat template",
                    c.family.name,
                    c.reasoning.map_or("none", |r| r.name()),
                    c.tools
                );
                chat.reasoning_parser = c.reasoning;
                chat.tool_parser = Some(c.tools);
            }
            Err(e) => tracing::warn!("{e}; serving without reasoning or tool-call parsing"),
        }
    }
    if let (Some(r), Some(t)) = (&renderer, chat.tool_parser) {
        let ok = match crate::detect::self_test(r, t) {
            Ok(()) => {
                tracing::info!("self-test: the chat template's tool calls read back with the {t} parser");
                1.0
            }
            Err(e) => {
                tracing::warn!(
                    "SELF-TEST FAILED: {e}; check --tool-call-parser against the model's template"
                );
                0.0
            }
        };
        metrics::gauge!("braid_template_selftest_ok").set(ok);
    }
    let model_name = p.served_model_name.clone().unwrap_or_else(|| {
        model
            .and_then(|m| m.file_name())
            .map_or_else(|| "braid".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    let config = NodeConfig {
        stages,
        tokenizer,
        executor,
        chat: renderer,
        max_model_len,
        guides,
        handoff,
        max_inflight: p.max_inflight,
        submit_timeout: Duration::from_secs(30),
        routing: p.executor_routing.into(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let metrics = crate::metrics::install()?;
        let options = NatsOptions {
            creds: p.nats_creds.clone(),
            ca: p.nats_ca.clone(),
            name: Some(format!("braid-{}", std::process::id())),
        };
        let bus = Bus::connect(&p.bus, &options).await?;
        let node = Node::start(bus, config).await?;
        let server = match node.ingress.clone() {
            Some(ingress) => {
                let replay = shared_map(&node.bus, p.state, "braid_reasoning", p.reasoning_replay_size, p.reasoning_replay_ttl)
                    .await?
                    .map(|map| Arc::new(braid_api::ReasoningCache::new(map)));
                let responses = shared_map(&node.bus, p.state, "braid_responses", p.responses_store_size, p.responses_store_ttl)
                    .await?
                    .map(|map| Arc::new(braid_api::ResponseStore::new(map)));
                let state = braid_api::AppState {
                    pipeline: Arc::new(ingress),
                    model: model_name,
                    chat,
                    replay,
                    responses,
                    max_model_len,
                    api_key: p.api_key.clone(),
                    max_body_bytes: p.max_body_bytes,
                    seal: Arc::new(match &p.signing_key {
                        Some(secret) => braid_api::Seal::from_secret(secret),
                        None => {
                            tracing::warn!("no --signing-key: thinking signatures are sealed under a random key and open only in this process");
                            braid_api::Seal::random()
                        }
                    }),
                    strict_signatures: p.strict_signatures,
                };
                let app = braid_api::router(state).route(
                    "/metrics",
                    axum::routing::get(move || std::future::ready(metrics.render())),
                );
                let addr = format!("{}:{}", p.host, p.port);
                let listener = listen(&addr).await?;
                tracing::info!("serving on http://{}", listener.local_addr()?);
                if !node.wait_ready(Duration::from_secs(10)).await {
                    tracing::warn!("not every stage is up yet; /health says which are missing");
                }
                Some(tokio::spawn(async move { axum::serve(listener, app).await }))
            }
            None => match p.metrics_port {
                Some(port) => {
                    let app = axum::Router::new().route(
                        "/metrics",
                        axum::routing::get(move || std::future::ready(metrics.render())),
                    );
                    let addr = format!("{}:{port}", p.host);
                    let listener = listen(&addr).await?;
                    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
                    Some(tokio::spawn(async move { axum::serve(listener, app).await }))
                }
                None => None,
            },
        };
        let stages: Vec<String> = node.replicas().iter().map(|(s, i)| format!("{s} {i}")).collect();
        tracing::info!("running: {}", stages.join(", "));
        shutdown_signal().await;
        tracing::info!("shutting down");
        if let Some(s) = server {
            s.abort();
        }
        node.shutdown().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Connections the kernel may hold for braid before it accepts them (the kernel caps it
/// at `net.core.somaxconn`): a burst of thousands of clients waits instead of being reset,
/// as tokio's default of 1024 lets happen.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` (`host:port`) with [`LISTEN_BACKLOG`].
async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let at = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let socket = if at.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(at)
        .and_then(|()| socket.listen(LISTEN_BACKLOG))
        .with_context(|| format!("cannot listen on {addr}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
