//! An existing engine as the executor: braid renders and tokenizes the prompt, sends it
//! to an upstream OpenAI-compatible server's `/v1/completions` with `stream: true`, and
//! feeds what comes back into the pipeline where the engine's output would go — so the
//! splitter, extractor, metrics and NATS subjects work unchanged in front of vLLM,
//! SGLang or llama.cpp serving models braid's own engine could not hold.
//!
//! Each request runs on its own task on the process's runtime, which publishes a [`Step`]
//! to the request's detokenizer for every read of the upstream's stream: no executor
//! thread and no batching wait sit between the upstream and the bus.
//!
//! Prompts go as token ids (vLLM, SGLang and llama.cpp accept them) or as text. The
//! upstream's text travels as text ([`braid_bus::StepText`]): the detokenizer takes it as
//! decoded (skipping special tokens when the request does), so nothing is tokenized
//! again. Each event of the upstream's stream counts as one token until the upstream's
//! own usage, which it reports at the end, replaces the count. Several upstreams take
//! requests in turn; one that cannot be reached is left out for [`RETRY_AFTER`].
//! Cancelling a request drops its HTTP stream, which cancels it upstream.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_bus::{
    decode, encode, subject, Bus, Envelope, Failure, FailureKind, Finish, Header, InstanceId, Members,
    Message, Prefill, RequestId, Setup, Stage, Step, StepText, Usage,
};
use braid_engine::Tokenizer;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::stage::{Logic, Outbox};
use crate::StageError;

/// How long an upstream that could not be reached is left out of the rotation.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How the prompt is sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptAs {
    /// Token ids (`"prompt": [ids]`).
    Tokens,
    /// The rendered text.
    Text,
}

/// Where the upstreams are and how to talk to them.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// Base URLs (`http://host:port`), taken in turn.
    pub urls: Vec<String>,
    /// `Authorization: Bearer KEY` upstream.
    pub api_key: Option<String>,
    /// The model name to send (default: the upstream's first from `/v1/models`, else
    /// none).
    pub model: Option<String>,
    /// Token ids or text.
    pub prompt_as: PromptAs,
    /// Longest wait for the upstream's next bytes.
    pub timeout: Duration,
}

/// The upstream executor: what every request's task needs. Cheap to clone (it is
/// shared), so a restarted stage starts from the same rotation.
#[derive(Clone)]
pub struct UpstreamExecutor {
    spec: Arc<UpstreamSpec>,
    tokenizer: Arc<Tokenizer>,
    client: reqwest::Client,
    down: Arc<Mutex<Vec<Option<Instant>>>>,
    turn: Arc<AtomicUsize>,
}

impl std::fmt::Debug for UpstreamExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamExecutor")
            .field("urls", &self.spec.urls)
            .finish_non_exhaustive()
    }
}

fn failed(message: String) -> Finish {
    Finish::Failed(Failure::new(FailureKind::Unavailable, Stage::Executor, message))
}

impl UpstreamExecutor {
    /// An executor over `spec`'s upstreams.
    pub fn new(spec: UpstreamSpec, tokenizer: Arc<Tokenizer>) -> Result<Self, StageError> {
        if spec.urls.is_empty() {
            return Err(StageError::Config(
                "give at least one --executor upstream:URL".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| StageError::Start(format!("upstream HTTP client: {e}")))?;
        let n = spec.urls.len();
        Ok(UpstreamExecutor {
            spec: Arc::new(spec),
            tokenizer,
            client,
            down: Arc::new(Mutex::new(vec![None; n])),
            turn: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next upstream in turn that is not left out (or, if all are, the next one).
    fn pick(&self) -> usize {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let n = down.len();
        let turn = self.turn.load(Ordering::Relaxed);
        let i = (0..n)
            .map(|k| (turn + k) % n)
            .find(|&i| down[i].is_none_or(|at| at.elapsed() > RETRY_AFTER))
            .unwrap_or(turn % n);
        self.turn.store(i + 1, Ordering::Relaxed);
        i
    }

    /// Starts a request on its own task, which publishes its steps to `to`; an `Err` says
    /// what is wrong with the request.
    fn start(
        &self,
        bus: &Bus,
        id: RequestId,
        prefill: Prefill,
        to: Arc<str>,
    ) -> Result<JoinHandle<()>, StageError> {
        if prefill.sampling.max_tokens == 0 {
            return Err(StageError::Refused("max_tokens must be at least 1".into()));
        }
        super::refuse_constraints(&prefill.sampling, "upstream")?;
        let text = match self.spec.prompt_as {
            PromptAs::Tokens => None,
            PromptAs::Text => Some(self.tokenizer.decode_lossy(&prefill.prompt, false)),
        };
        let request = body(&self.spec, &prefill, text);
        let first = self.pick();
        let n = self.spec.urls.len();
        let candidates = (0..n)
            .map(|k| (first + k) % n)
            .map(|i| (i, self.spec.urls[i].trim_end_matches('/').to_owned()))
            .collect();
        let steps = Steps {
            bus: bus.clone(),
            id,
            to,
            seq: 0,
            setup: Some(Box::new(prefill.setup)),
        };
        Ok(tokio::spawn(stream(
            self.client.clone(),
            Arc::clone(&self.spec),
            candidates,
            request,
            steps,
            Arc::clone(&self.down),
        )))
    }
}

/// Publishes one request's steps to its detokenizer, in order.
struct Steps {
    bus: Bus,
    id: RequestId,
    to: Arc<str>,
    seq: u32,
    /// Rides on the first step.
    setup: Option<Box<Setup>>,
}

impl Steps {
    /// A step of the upstream's text, made of `tokens` tokens.
    async fn text(&mut self, text: String, tokens: u32) {
        self.send(Some(StepText { text, tokens }), None, None).await;
    }

    /// The request's last step.
    async fn end(mut self, finish: Finish, usage: Option<Usage>) {
        self.send(None, Some(finish), usage).await;
    }

    async fn send(&mut self, text: Option<StepText>, finish: Option<Finish>, reported: Option<Usage>) {
        let last = finish.is_some();
        let env = Envelope {
            header: Header::new(self.id, self.seq, last),
            body: Step {
                tokens: Vec::new(),
                text,
                finish,
                setup: self.setup.take(),
                reported,
            },
        };
        self.seq += 1;
        let payload = encode(&env);
        metrics::counter!("braid_bus_messages_total", "stage" => "executor", "direction" => "out")
            .increment(1);
        metrics::counter!("braid_bus_bytes_total", "stage" => "executor", "direction" => "out")
            .increment(payload.len() as u64);
        if let Err(e) = self.bus.publish(&self.to, payload).await {
            tracing::warn!("executor: {e}");
        }
    }
}

/// One event of the upstream's stream: the fields braid reads (text borrowed from the
/// line where it has no escapes).
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceEvent<'a>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// A choice of an [`Event`].
#[derive(Deserialize)]
struct ChoiceEvent<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// The request body upstream.
fn body(spec: &UpstreamSpec, prefill: &Prefill, text: Option<String>) -> Value {
    let s = &prefill.sampling;
    let prompt = match text {
        Some(t) => json!(t),
        None => json!(prefill.prompt),
    };
    let mut b = json!({
        "prompt": prompt, "stream": true, "stream_options": {"include_usage": true},
        "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p,
        "presence_penalty": s.presence_penalty, "frequency_penalty": s.frequency_penalty,
        // Markers the parsers need may be special tokens; braid's detokenizer applies the
        // client's choice on braid's side.
        "skip_special_tokens": false,
    });
    if s.top_k > 0 {
        b["top_k"] = json!(s.top_k);
    }
    if s.min_p > 0.0 {
        b["min_p"] = json!(s.min_p);
    }
    if s.repetition_penalty != 1.0 {
        b["repetition_penalty"] = json!(s.repetition_penalty);
    }
    if let Some(seed) = s.seed {
        b["seed"] = json!(seed);
    }
    if s.ignore_eos {
        b["ignore_eos"] = json!(true);
    }
    if !s.stop_token_ids.is_empty() {
        b["stop_token_ids"] = json!(s.stop_token_ids);
    }
    if !s.logit_bias.is_empty() {
        let bias: serde_json::Map<String, Value> = s
            .logit_bias
            .iter()
            .map(|(t, b)| (t.to_string(), json!(b)))
            .collect();
        b["logit_bias"] = Value::Object(bias);
    }
    if let Some(m) = &spec.model {
        b["model"] = json!(m);
    }
    b
}

/// Streams one request from the first upstream of `candidates` that can be reached,
/// publishing a step per read of its stream and a last one with its end. Only a failed
/// connection moves on to the next upstream (nothing was generated, so that retry is
/// safe); any later failure ends the request with an error.
async fn stream(
    client: reqwest::Client,
    spec: Arc<UpstreamSpec>,
    candidates: Vec<(usize, String)>,
    request: Value,
    mut steps: Steps,
    down: Arc<Mutex<Vec<Option<Instant>>>>,
) {
    let body = request.to_string();
    let mut unreachable = Vec::new();
    let mut answered = None;
    for (index, url) in candidates {
        let mut req = client
            .post(format!("{url}/v1/completions"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(k) = &spec.api_key {
            req = req.bearer_auth(k);
        }
        match tokio::time::timeout(spec.timeout, req.send()).await {
            Ok(Ok(r)) => {
                down.lock().unwrap_or_else(|p| p.into_inner())[index] = None;
                answered = Some((url, r));
                break;
            }
            Ok(Err(e)) if e.is_connect() => {
                down.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(Instant::now());
                tracing::warn!("upstream {url} cannot be reached ({e}); out of rotation for {RETRY_AFTER:?}");
                unreachable.push(url);
            }
            Ok(Err(e)) => {
                return steps
                    .end(failed(format!("the upstream {url} failed: {e}")), None)
                    .await
            }
            Err(_) => {
                return steps
                    .end(
                        failed(format!(
                            "the upstream {url} did not answer within {:?}",
                            spec.timeout
                        )),
                        None,
                    )
                    .await
            }
        }
    }
    let Some((url, resp)) = answered else {
        return steps
            .end(
                failed(format!(
                    "no upstream can be reached (tried {})",
                    unreachable.join(", ")
                )),
                None,
            )
            .await;
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(300).collect());
        let kind = if status.is_client_error() {
            FailureKind::BadRequest
        } else {
            FailureKind::Unavailable
        };
        return steps
            .end(
                Finish::Failed(Failure::new(
                    kind,
                    Stage::Executor,
                    format!("the upstream {url} answered {status}: {message}"),
                )),
                None,
            )
            .await;
    }
    let mut body = resp.bytes_stream();
    // Bytes, not text: a read may end inside a character.
    let mut buf: Vec<u8> = Vec::new();
    let mut text = String::new();
    let mut events = 0u32;
    let (mut finish, mut usage): (Option<Finish>, Option<Usage>) = (None, None);
    loop {
        let piece = match tokio::time::timeout(spec.timeout, body.next()).await {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => {
                return steps
                    .end(failed(format!("the upstream {url} stream broke: {e}")), None)
                    .await
            }
            Ok(None) => break,
            Err(_) => {
                return steps
                    .end(
                        failed(format!("the upstream {url} went silent for {:?}", spec.timeout)),
                        None,
                    )
                    .await
            }
        };
        buf.extend_from_slice(&piece);
        let mut done = false;
        let mut used = 0;
        while let Some(at) = memchr::memchr(b'\n', &buf[used..]) {
            let line = buf[used..used + at].trim_ascii();
            used += at + 1;
            let Some(data) = line.strip_prefix(b"data:").map(<[u8]>::trim_ascii) else {
                continue;
            };
            if data == b"[DONE]" {
                done = true;
                break;
            }
            let Ok(event) = serde_json::from_slice::<Event>(data) else {
                continue;
            };
            if let Some(e) = event.error {
                let m = e["message"].as_str().or(e.as_str()).unwrap_or("error").to_owned();
                return steps
                    .end(failed(format!("the upstream {url} failed: {m}")), None)
                    .await;
            }
            if let Some(u) = event.usage.filter(Value::is_object) {
                usage = Some(Usage {
                    prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0) as u32,
                    completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0) as u32,
                    reasoning_tokens: 0,
                    // vLLM's and SGLang's report of the upstream's own prefix cache.
                    cached_tokens: u
                        .pointer("/prompt_tokens_details/cached_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(0) as u32,
                });
            }
            if let Some(choice) = event.choices.first() {
                if let Some(t) = choice.text.as_deref().filter(|t| !t.is_empty()) {
                    text.push_str(t);
                    events += 1;
                }
                match choice.finish_reason.as_deref() {
                    Some("length") => finish = Some(Finish::Length),
                    Some(_) => finish = Some(Finish::Stop),
                    None => {}
                }
            }
        }
        buf.drain(..used);
        // One step per read: what this read brought, as soon as it came.
        if !text.is_empty() {
            steps
                .text(std::mem::take(&mut text), std::mem::take(&mut events))
                .await;
        }
        if done {
            return steps.end(finish.unwrap_or(Finish::Stop), usage).await;
        }
    }
    match finish {
        Some(f) => steps.end(f, usage).await,
        None => {
            steps
                .end(
                    failed(format!("the upstream {url} ended the stream before finishing")),
                    None,
                )
                .await
        }
    }
}

/// The requests an upstream executor replica runs: each one's task and its ingress.
/// Shared by every incarnation of the replica's logic, so requests outlive a restart of
/// the stage and can still be cancelled.
pub(crate) type Running = Arc<Mutex<Requests>>;

/// What an upstream executor replica knows of its requests.
#[derive(Default)]
pub(crate) struct Requests {
    live: HashMap<RequestId, (JoinHandle<()>, InstanceId)>,
    cancelled: super::Tombstones,
}

/// The upstream executor's stage logic: starts each request's task, stops it on cancel,
/// and drops requests whose ingress is gone.
pub(crate) struct UpstreamLogic {
    exec: UpstreamExecutor,
    bus: Bus,
    live: Running,
}

impl UpstreamLogic {
    pub(crate) fn new(exec: UpstreamExecutor, bus: Bus, live: Running) -> Self {
        UpstreamLogic { exec, bus, live }
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Forgets finished requests and updates the running gauge.
fn prune(live: &mut HashMap<RequestId, (JoinHandle<()>, InstanceId)>) {
    live.retain(|_, (task, _)| !task.is_finished());
    metrics::gauge!("braid_num_requests_running").set(live.len() as f64);
}

impl Logic for UpstreamLogic {
    fn handle(&mut self, msg: &Message, out: &mut Outbox) -> Result<(), braid_bus::Error> {
        let env: Envelope<Prefill> = decode(&msg.subject, &msg.payload)?;
        out.sent_ns = Some(env.header.sent_ns);
        let id = env.header.id;
        let Some(route) = env.body.setup.route else {
            out.fail(
                id,
                Stage::Executor,
                FailureKind::Internal,
                "request arrived without a route".into(),
            );
            return Ok(());
        };
        if self.requests().cancelled.take(id) {
            tracing::debug!("executor: {id} was cancelled before it arrived");
            return Ok(());
        }
        let to = Arc::from(subject::instance(Stage::Detokenizer, route.detokenizer));
        match self.exec.start(&self.bus, id, env.body, to) {
            Ok(task) => {
                let mut requests = self.requests();
                requests.live.insert(id, (task, route.ingress));
                prune(&mut requests.live);
            }
            Err(e) => out.fail(id, Stage::Executor, e.failure_kind(), e.to_string()),
        }
        Ok(())
    }

    fn cancel(&mut self, id: RequestId, _out: &mut Outbox) {
        let mut requests = self.requests();
        match requests.live.remove(&id) {
            Some((task, _)) => task.abort(),
            None => requests.cancelled.bury(id),
        }
    }

    fn sweep(&mut self, members: &Members, _out: &mut Outbox) {
        let mut requests = self.requests();
        let live = &mut requests.live;
        live.retain(|id, (task, origin)| {
            if members.gone(*origin) {
                tracing::info!("executor: aborting {id}: its ingress is gone");
                task.abort();
                return false;
            }
            true
        });
        prune(live);
    }

    fn load(&self) -> u32 {
        let requests = self.requests();
        requests
            .live
            .values()
            .filter(|(task, _)| !task.is_finished())
            .count() as u32
    }
}
