//! The messages of every hop, one type per arrow:
//!
//! ```text
//! ingress ─Submit→ tokenizer ─Prefill→ executor ─Step→ detokenizer ─Text→
//!   splitter ─Split→ extractor ─Chunk→ braid.out.<request>
//! ```
//!
//! Every message travels in an [`Envelope`] whose [`Header`] carries the schema version,
//! the request id, a per-request sequence number and the terminal flag. The first message
//! of each hop also carries the request's [`Setup`]; later ones do not repeat it.
//! On the wire an envelope is MessagePack (`rmp-serde`, structs as arrays).

use serde::{Deserialize, Serialize};

use braid_parsers::{ReasoningParser, ToolParser};

use crate::conversation::{Constraint, Conversation, ToolSpec};
use crate::id::{InstanceId, RequestId, Stage};

/// The wire schema version. A message of another version is refused by [`crate::decode`]
/// with [`crate::Error::Version`], so mixed deployments fail loudly, not subtly.
pub const SCHEMA_VERSION: u16 = 8;

/// What every message starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`SCHEMA_VERSION`] of the sender.
    pub version: u16,
    /// The request.
    pub id: RequestId,
    /// Counts this hop's messages for the request from 0.
    pub seq: u32,
    /// Set on the request's last message of this hop.
    pub last: bool,
    /// Wall-clock send time, nanoseconds since the Unix epoch (for per-stage latency).
    pub sent_ns: u64,
}

impl Header {
    /// A header for message `seq` of request `id`, stamped now.
    pub fn new(id: RequestId, seq: u32, last: bool) -> Header {
        Header {
            version: SCHEMA_VERSION,
            id,
            seq,
            last,
            sent_ns: now_ns(),
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A message with its header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// Version, request, sequence.
    pub header: Header,
    /// The hop's message.
    pub body: B,
}

/// The replicas a request is pinned to, chosen by its ingress at admission. Stateful
/// stages keep per-request state, so all of a request's messages must reach the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The ingress that admitted the request (and listens on its output).
    pub ingress: InstanceId,
    /// The executor replica.
    pub executor: InstanceId,
    /// The detokenizer replica.
    pub detokenizer: InstanceId,
    /// The reasoning-splitter replica.
    pub splitter: InstanceId,
    /// The tool-extractor replica.
    pub extractor: InstanceId,
}

impl Route {
    /// The replica of a pinned stage (`None` for the tokenizer, which is not pinned).
    pub fn of(&self, stage: Stage) -> Option<InstanceId> {
        match stage {
            Stage::Ingress => Some(self.ingress),
            Stage::Executor => Some(self.executor),
            Stage::Detokenizer => Some(self.detokenizer),
            Stage::Splitter => Some(self.splitter),
            Stage::Extractor => Some(self.extractor),
            Stage::Tokenizer => None,
        }
    }
}

/// What the prompt is, before the tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Prompt {
    /// Text, tokenized as is (special tokens recognised).
    Text(String),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
    /// A conversation, rendered by the tokenizer stage through the model's chat template.
    Chat(Conversation),
}

/// Sampling and length settings (validated by the API; checked again by the executor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Output tokens, at most; 0 means up to the model's length (the tokenizer sets it).
    pub max_tokens: u32,
    /// 0 is greedy.
    pub temperature: f32,
    /// Nucleus mass (1 = off).
    pub top_p: f32,
    /// Most likely tokens kept (0 = off).
    pub top_k: u32,
    /// Relative probability floor (0 = off).
    pub min_p: f32,
    /// Seed of the draw.
    pub seed: Option<u64>,
    /// OpenAI presence penalty.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty.
    pub frequency_penalty: f32,
    /// Hugging Face repetition penalty (1 = off).
    pub repetition_penalty: f32,
    /// Extra token ids that end generation.
    pub stop_token_ids: Vec<u32>,
    /// Keep going past EOS.
    pub ignore_eos: bool,
    /// Added to these tokens' logits before penalties and sampling (OpenAI's
    /// `logit_bias`, each bias within ±100), sorted by token with no token twice.
    pub logit_bias: Vec<(u32, f32)>,
    /// A Lark grammar (llguidance's dialect) the answer must match: structured outputs and
    /// enforced tool calls. Reasoning is never constrained. Written by the tokenizer stage
    /// from [`Submit::constraint`] (whatever a submitter puts here is replaced).
    pub guide: Option<String>,
    /// The request field the guide came from, named when it cannot be enforced further.
    pub guide_param: Option<String>,
    /// Reasoning tokens at most (close marker included); then the marker is forced.
    pub thinking_token_budget: Option<u32>,
    /// A `max_tokens` over what the context leaves after the prompt is lowered to fit
    /// (Anthropic's Messages), rather than refused with a 400 (OpenAI's).
    pub fit_max_tokens: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            max_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            logit_bias: Vec::new(),
            guide: None,
            guide_param: None,
            thinking_token_budget: None,
            fit_max_tokens: false,
        }
    }
}

/// Where output starts, as the tokenizer stage reads it from the rendered prompt (the
/// parsers' type, so the splitter and the reasoning gate read the same value).
pub use braid_parsers::StartOverride as Start;

/// How the text after the engine is processed: what the detokenizer, splitter and
/// extractor need, fixed at admission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// The replicas the request is pinned to.
    pub route: Option<Route>,
    /// Stop strings, ended on by the detokenizer.
    pub stop: Vec<String>,
    /// Keep the matched stop string in the output.
    pub include_stop_str: bool,
    /// Leave special tokens out of the text.
    pub skip_special_tokens: bool,
    /// The reasoning parser, if any.
    pub reasoning_parser: Option<ReasoningParser>,
    /// Whether thinking is on (the family's template switch, read from the request's
    /// `chat_template_kwargs` by the edge); off, the splitter passes everything through.
    pub thinking: bool,
    /// The tool-call parser, if tool calls are parsed.
    pub tool_parser: Option<ToolParser>,
    /// The declared tools (their schemas type the extracted arguments).
    pub tools: Vec<ToolSpec>,
    /// Where output starts.
    pub start: Start,
    /// Prompt length in tokens (set by the tokenizer).
    pub prompt_tokens: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            route: None,
            stop: Vec::new(),
            include_stop_str: false,
            skip_special_tokens: true,
            reasoning_parser: None,
            thinking: true,
            tool_parser: None,
            tools: Vec::new(),
            start: Start::FormatDefault,
            prompt_tokens: 0,
        }
    }
}

/// ingress → tokenizer: a validated request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submit {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling.
    pub sampling: Sampling,
    /// What the answer must match, if anything (checked by the tokenizer stage).
    pub constraint: Option<Constraint>,
    /// Everything after the engine (route included).
    pub setup: Setup,
}

/// tokenizer → executor: prompt token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prefill {
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// Sampling.
    pub sampling: Sampling,
    /// Passed on with the first [`Step`].
    pub setup: Setup,
}

/// Why a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finish {
    /// EOS or a stop token.
    Stop,
    /// One of the request's stop strings (the one named) matched.
    StopSequence(String),
    /// `max_tokens` or the model length.
    Length,
    /// Cancelled (client gone).
    Abort,
    /// A stage could not go on; the request ends with this error.
    Failed(Failure),
}

/// Why a request failed, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure (maps to an HTTP status).
    pub kind: FailureKind,
    /// The stage that reported it.
    pub stage: Stage,
    /// What happened, for the client.
    pub message: String,
    /// The request field at fault, when one is (a 400 names it).
    pub param: Option<String>,
}

impl Failure {
    /// A failure of `kind` reported by `stage`.
    pub fn new(kind: FailureKind, stage: Stage, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            stage,
            message: message.into(),
            param: None,
        }
    }

    /// The same failure, naming the request field at fault.
    pub fn with_param(self, param: impl Into<String>) -> Failure {
        Failure {
            param: Some(param.into()),
            ..self
        }
    }
}

/// Failure classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The request itself is unusable (400).
    BadRequest,
    /// Too much work in flight (429).
    Overloaded,
    /// A stage needed by the request is gone or restarted (503).
    Unavailable,
    /// Anything else (500).
    Internal,
}

/// executor → detokenizer: every token one engine step produced for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The step's token ids (possibly none, e.g. on abort, or when `text` carries the
    /// step).
    pub tokens: Vec<u32>,
    /// The step as text, from an executor that has text rather than ids (an upstream
    /// engine streams text): the detokenizer takes it as decoded, without tokenizing it
    /// again. `tokens` is then empty.
    #[serde(default)]
    pub text: Option<StepText>,
    /// Set on the last step.
    pub finish: Option<Finish>,
    /// On the first step only.
    pub setup: Option<Box<Setup>>,
    /// Token counts the executor reports itself (an upstream engine's `usage`), on the
    /// last step; they replace braid's own count of prompt and completion tokens.
    #[serde(default)]
    pub reported: Option<Usage>,
}

/// A step's output as text ([`Step::text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepText {
    /// The text, special tokens included as the executor wrote them.
    pub text: String,
    /// How many tokens made it, as the executor counts them.
    pub tokens: u32,
}

/// detokenizer → splitter: text that is safe to emit (whole UTF-8, stop strings applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    /// The new text.
    pub text: String,
    /// Tokens consumed to make it (some may have been held for whole UTF-8 earlier).
    pub tokens: u32,
    /// Set on the last message.
    pub finish: Option<Finish>,
    /// On the first message only.
    pub setup: Option<Box<Setup>>,
    /// Passed on from [`Step::reported`].
    #[serde(default)]
    pub reported: Option<Usage>,
}

/// Which side of the reasoning split a piece of text is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegmentKind {
    /// Reasoning (`reasoning_content`).
    Reasoning,
    /// Reasoning that the format keeps inline in the answer (tags and all).
    InlineReasoning,
    /// Answer text.
    Content,
    /// A stray end-of-reasoning marker the splitter removed (reported, not content).
    StrayEndMarker,
    /// A message header the output ended inside (gpt-oss Harmony; reported, not content).
    UnfinishedHeader,
}

/// An ordered piece of split text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The side.
    pub kind: SegmentKind,
    /// The text.
    pub text: String,
}

/// splitter → extractor: text split into reasoning and answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// The pieces, in order.
    pub segments: Vec<Segment>,
    /// Tokens behind this message.
    pub tokens: u32,
    /// Of those, tokens counted as reasoning.
    pub reasoning_tokens: u32,
    /// Set on the last message.
    pub finish: Option<Finish>,
    /// On the first message only.
    pub setup: Option<Box<Setup>>,
    /// Passed on from [`Step::reported`].
    #[serde(default)]
    pub reported: Option<Usage>,
}

/// One OpenAI-shaped change to the response.
///
/// On the wire each delta is a one-key map from its snake_case name to its fields, e.g.
/// `{"content": {"text": "Hi"}}` (serde's external tagging: decodes without buffering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delta {
    /// More `reasoning_content`.
    Reasoning {
        /// The text.
        text: String,
    },
    /// More `content`.
    Content {
        /// The text.
        text: String,
    },
    /// A tool call begins.
    ToolCallStart {
        /// Its position in `tool_calls`.
        index: u32,
        /// Its id.
        id: String,
        /// The function name.
        name: String,
    },
    /// More of a call's `arguments` string.
    ToolCallArguments {
        /// The call.
        index: u32,
        /// The next bytes.
        fragment: String,
    },
    /// A call is complete.
    ToolCallEnd {
        /// The call.
        index: u32,
        /// `parsed`, `invalid_arguments` or `unknown_function`.
        outcome: String,
    },
    /// A started call is withdrawn (output ended inside it); its raw text follows as a
    /// fallback that belongs to content.
    ToolCallAborted {
        /// The call.
        index: u32,
    },
    /// Model output that is not well-formed markup, kept verbatim.
    Fallback {
        /// Why (the parsers' `FallbackReason` names).
        reason: String,
        /// The raw text.
        text: String,
        /// Whether the text belongs to `content` (else it is reported only).
        content: bool,
    },
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Generated tokens that were reasoning.
    pub reasoning_tokens: u32,
    /// Prompt tokens served from the prefix cache (0 where the executor has none).
    pub cached_tokens: u32,
}

/// extractor → `braid.out.<request>`: what a client sees, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// The changes, in order.
    pub deltas: Vec<Delta>,
    /// Set on the last chunk.
    pub finish: Option<Finish>,
    /// On the last chunk.
    pub usage: Option<Usage>,
}

/// ingress (or a detokenizer that hit a stop string) → every stateful replica: drop the
/// request named in the header (client gone, stop string, or a replica on its route died).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// Why, for logs.
    pub reason: String,
}

/// tokenizer → ingress: the reply to a [`Submit`] request: taken, or refused and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admitted {
    /// Tokenized and sent to the executor.
    Accepted {
        /// Prompt length in tokens.
        prompt_tokens: u32,
        /// The executor replica it was sent to (the router may have chosen another than
        /// the route's: the ingress watches this one).
        executor: InstanceId,
    },
    /// Refused.
    Refused(Failure),
}

/// ingress → any tokenizer (`braid.tokenizer.call`, request/reply): work that needs the
/// tokenizer or the chat template but starts no generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TokenizerCall {
    /// A prompt to token ids, rendered exactly as a generation request would be.
    Tokenize(Prompt),
    /// Token ids to text.
    Detokenize(Vec<u32>),
}

/// tokenizer → ingress: the reply to a [`TokenizerCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TokenizerAnswer {
    /// The prompt's token ids, and the model's length limit when the tokenizer knows it.
    Tokens {
        /// The ids.
        tokens: Vec<u32>,
        /// Prompt plus output, at most.
        max_model_len: Option<u32>,
    },
    /// The ids' text.
    Text(String),
    /// Refused, and why.
    Refused(Failure),
}

/// executor → every router (`braid.cache`): what its prefix cache holds, as the chain
/// hashes of full blocks (`braid_engine::chain_hashes`). Sent when the cache changed, at
/// most every [`crate::CACHE_NEWS_EVERY`], and whole every [`crate::CACHE_NEWS_FULL_EVERY`]
/// (so a router that started late, or missed one, is right again soon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheNews {
    /// [`SCHEMA_VERSION`] of the sender.
    pub version: u16,
    /// The executor replica.
    pub instance: InstanceId,
    /// Counts this replica's news from 0: a router that sees a gap waits for a whole one.
    pub seq: u64,
    /// Tokens per block (the hashes are over blocks of this size).
    pub block_size: u32,
    /// `stored` is everything the cache holds now; forget what was known.
    pub full: bool,
    /// Blocks now cached.
    pub stored: Vec<u64>,
    /// Blocks no longer cached.
    pub removed: Vec<u64>,
    /// Cache blocks not held by any request (cached-but-unused ones count as free).
    pub free_blocks: u32,
}

/// Every replica, every [`crate::BEAT_INTERVAL`]: I am alive, and this busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// [`SCHEMA_VERSION`] of the sender.
    pub version: u16,
    /// The replica.
    pub instance: InstanceId,
    /// Its stage.
    pub stage: Stage,
    /// Requests it holds now.
    pub load: u32,
    /// Set in the last beat of a replica that is shutting down cleanly.
    pub leaving: bool,
}
