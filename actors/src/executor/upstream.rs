//! An existing engine as the executor: braid renders and tokenizes the prompt, sends it
//! to an upstream OpenAI-compatible server's `/v1/completions` with `stream: true`, and
//! feeds what comes back into the pipeline where the engine's output would go — so the
//! splitter, extractor, metrics and NATS subjects work unchanged in front of vLLM,
//! SGLang or llama.cpp serving models braid's own engine could not hold.
//!
//! Prompts go as token ids (vLLM, SGLang and llama.cpp accept them) or as text. The
//! upstream's text is tokenized again by braid's tokenizer for the detokenizer stage
//! (decoding gives the same text back); usage comes from the upstream when it reports
//! it. Several upstreams take requests in turn; one that cannot be reached is left out
//! for [`RETRY_AFTER`]. Cancelling a request drops its HTTP stream, which cancels it
//! upstream.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_bus::{Failure, FailureKind, Finish, Prefill, RequestId, Stage, Usage};
use braid_engine::Tokenizer;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{ExecOutput, Executor};
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

enum Event {
    Text(RequestId, String),
    Done(RequestId, Finish, Option<Usage>),
}

/// One request's text this step, and its end if it came.
type Gathered = (String, Option<(Finish, Option<Usage>)>);

/// The upstream executor.
pub struct UpstreamExecutor {
    spec: Arc<UpstreamSpec>,
    tokenizer: Arc<Tokenizer>,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    events: std_mpsc::Receiver<Event>,
    sender: std_mpsc::Sender<Event>,
    live: HashMap<RequestId, tokio::task::JoinHandle<()>>,
    down: Arc<Mutex<Vec<Option<Instant>>>>,
    turn: usize,
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("braid-upstream")
            .enable_all()
            .build()
            .map_err(|e| StageError::Start(format!("upstream runtime: {e}")))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| StageError::Start(format!("upstream HTTP client: {e}")))?;
        let (sender, events) = std_mpsc::channel();
        let n = spec.urls.len();
        Ok(UpstreamExecutor {
            spec: Arc::new(spec),
            tokenizer,
            runtime,
            client,
            events,
            sender,
            live: HashMap::new(),
            down: Arc::new(Mutex::new(vec![None; n])),
            turn: 0,
        })
    }

    /// The next upstream in turn that is not left out (or, if all are, the next one).
    fn pick(&mut self) -> usize {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let n = down.len();
        for k in 0..n {
            let i = (self.turn + k) % n;
            if down[i].is_none_or(|at| at.elapsed() > RETRY_AFTER) {
                self.turn = i + 1;
                return i;
            }
        }
        self.turn += 1;
        (self.turn - 1) % n
    }
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
    if let Some(m) = &spec.model {
        b["model"] = json!(m);
    }
    b
}

/// Streams one request from the first upstream of `candidates` that can be reached,
/// sending its text and end to `events`. Only a failed connection moves on to the next
/// upstream (nothing was generated, so that retry is safe); any later failure ends the
/// request with an error.
async fn stream(
    client: reqwest::Client,
    spec: Arc<UpstreamSpec>,
    candidates: Vec<(usize, String)>,
    id: RequestId,
    request: Value,
    events: std_mpsc::Sender<Event>,
    down: Arc<Mutex<Vec<Option<Instant>>>>,
) {
    let end = |finish: Finish, usage: Option<Usage>| {
        let _ = events.send(Event::Done(id, finish, usage));
    };
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
            Ok(Err(e)) => return end(failed(format!("the upstream {url} failed: {e}")), None),
            Err(_) => {
                return end(
                    failed(format!(
                        "the upstream {url} did not answer within {:?}",
                        spec.timeout
                    )),
                    None,
                )
            }
        }
    }
    let Some((url, resp)) = answered else {
        return end(
            failed(format!(
                "no upstream can be reached (tried {})",
                unreachable.join(", ")
            )),
            None,
        );
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
        return end(
            Finish::Failed(Failure::new(
                kind,
                Stage::Executor,
                format!("the upstream {url} answered {status}: {message}"),
            )),
            None,
        );
    }
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let (mut finish, mut usage): (Option<Finish>, Option<Usage>) = (None, None);
    loop {
        let piece = match tokio::time::timeout(spec.timeout, body.next()).await {
            Ok(Some(Ok(p))) => p,
            Ok(Some(Err(e))) => return end(failed(format!("the upstream {url} stream broke: {e}")), None),
            Ok(None) => break,
            Err(_) => {
                return end(
                    failed(format!("the upstream {url} went silent for {:?}", spec.timeout)),
                    None,
                )
            }
        };
        buf.push_str(&String::from_utf8_lossy(&piece));
        while let Some(at) = buf.find('\n') {
            let line: String = buf.drain(..=at).collect();
            let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                let f = finish.take().unwrap_or(Finish::Stop);
                return end(f, usage);
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(e) = v.get("error") {
                let m = e["message"].as_str().unwrap_or("error").to_owned();
                return end(failed(format!("the upstream {url} failed: {m}")), None);
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
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
            if let Some(choice) = v["choices"].get(0) {
                if let Some(t) = choice["text"].as_str().filter(|t| !t.is_empty()) {
                    let _ = events.send(Event::Text(id, t.to_owned()));
                }
                match choice["finish_reason"].as_str() {
                    Some("length") => finish = Some(Finish::Length),
                    Some(_) => finish = Some(Finish::Stop),
                    None => {}
                }
            }
        }
    }
    match finish {
        Some(f) => end(f, usage),
        None => end(
            failed(format!("the upstream {url} ended the stream before finishing")),
            None,
        ),
    }
}

impl Executor for UpstreamExecutor {
    fn add(&mut self, id: RequestId, prefill: &Prefill) -> Result<(), StageError> {
        if prefill.sampling.max_tokens == 0 {
            return Err(StageError::Refused("max_tokens must be at least 1".into()));
        }
        super::refuse_constraints(&prefill.sampling, "upstream")?;
        let text = match self.spec.prompt_as {
            PromptAs::Tokens => None,
            PromptAs::Text => Some(self.tokenizer.decode_lossy(&prefill.prompt, false)),
        };
        let request = body(&self.spec, prefill, text);
        let first = self.pick();
        let n = self.spec.urls.len();
        let candidates = (0..n)
            .map(|k| (first + k) % n)
            .map(|i| (i, self.spec.urls[i].trim_end_matches('/').to_owned()))
            .collect();
        let task = self.runtime.spawn(stream(
            self.client.clone(),
            Arc::clone(&self.spec),
            candidates,
            id,
            request,
            self.sender.clone(),
            Arc::clone(&self.down),
        ));
        self.live.insert(id, task);
        Ok(())
    }

    fn abort(&mut self, id: RequestId) {
        if let Some(task) = self.live.remove(&id) {
            task.abort();
        }
    }

    fn has_work(&self) -> bool {
        !self.live.is_empty()
    }

    fn step(&mut self, out: &mut Vec<ExecOutput>) -> Result<(), StageError> {
        // Wait briefly for the first event, then take everything that has arrived: one
        // output per request per step, however many upstream chunks it holds.
        let first = self.events.recv_timeout(Duration::from_millis(20)).ok();
        let mut by_id: HashMap<RequestId, Gathered> = HashMap::new();
        let mut order = Vec::new();
        for event in first
            .into_iter()
            .chain(std::iter::from_fn(|| self.events.try_recv().ok()))
        {
            let id = match &event {
                Event::Text(id, _) | Event::Done(id, _, _) => *id,
            };
            if !self.live.contains_key(&id) {
                continue;
            }
            let entry = by_id.entry(id).or_insert_with(|| {
                order.push(id);
                (String::new(), None)
            });
            match event {
                Event::Text(_, t) => entry.0.push_str(&t),
                Event::Done(_, f, u) => entry.1 = Some((f, u)),
            }
        }
        for id in order {
            let Some((text, end)) = by_id.remove(&id) else {
                continue;
            };
            let tokens = if text.is_empty() {
                Vec::new()
            } else {
                self.tokenizer.encode(&text)?
            };
            let (finish, reported) = match end {
                Some((f, u)) => {
                    self.live.remove(&id);
                    (Some(f), u)
                }
                None => (None, None),
            };
            out.push(ExecOutput {
                id,
                tokens,
                finish,
                reported,
            });
        }
        Ok(())
    }
}
