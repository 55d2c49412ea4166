//! Tool-call extractors: one state machine, driven by a per-format table, that reads
//! tool calls out of the answer text and streams them in OpenAI's delta shape.
//!
//! Every format has the same skeleton: answer text, then tool markup made of optional
//! sections that hold calls; a call has a header (name, maybe an id) and a body (the
//! arguments, as JSON or as key/value tags). The [`ToolFormat`] table names the markers
//! and picks a [`Header`] and [`Body`] shape; [`ToolExtractor`] does the rest.
//!
//! Outcomes of bad output (see `FallbackReason` and `CallOutcome`): text before the first
//! call is content; text after or between calls is reported as trailing text; a section
//! with no call, or a call the output ends inside before its body is complete, goes back
//! to content; a body that is complete JSON ends its call even without the close marker;
//! invalid JSON arguments and undeclared functions are returned and reported.

pub mod deepseek_v3;
pub mod deepseek_v31;
pub mod deepseek_v32;
pub mod deepseek_v4;
pub mod deepseek_v41;
mod dsml;
pub mod glm45;
pub mod glm47;
pub mod grammar;
pub mod granite;
pub mod hermes;
pub mod hunyuan_a13b;
mod json_args;
pub mod kimi_k2;
pub mod kimi_k3;
pub mod markup;
pub mod minimax_m2;
pub mod minimax_m3;
pub mod openai;
pub mod qwen3_coder;
pub mod tag_tree;
pub mod xml_params;

use std::sync::Arc;

use crate::event::{CallOutcome, Event, FallbackReason, Sink, StreamParser};
use crate::scan::{Feeder, MarkerMachine, Step};
use crate::schema::ToolSchemas;
use json_args::{HermesBody, JsonBody};
use tag_tree::{TagTree, TreeBody};
use xml_params::{ParamsBody, XmlParams};

/// How a call's header gives its name.
#[derive(Debug)]
pub enum Header {
    /// No header: the name is inside the JSON body (Hermes).
    InBody,
    /// The name, up to the first of `ends`. Terminators listed in `kept` belong to the
    /// body and are not consumed. Whitespace and quotes around the name are dropped.
    Name {
        /// Markers that end the name.
        ends: &'static [&'static str],
        /// Terminators that are scanned again as body markup.
        kept: &'static [&'static str],
    },
    /// `TYPE<sep>NAME` up to the first of `ends` (DeepSeek-V3's `function<｜tool▁sep｜>f`).
    TypedName {
        /// Separates the call type from the name.
        sep: &'static str,
        /// Markers that end the header.
        ends: &'static [&'static str],
    },
    /// The header's first word ([`first_word`]: up to whitespace or `<`), the header
    /// running to the first of `ends` (gpt-oss's `get_weather <|constrain|>json`).
    FirstWord {
        /// Markers that end the header.
        ends: &'static [&'static str],
    },
    /// Attributes up to the first of `ends`; the name is attribute `attr`'s value
    /// (Kimi-K3's ` tool="NAME" index="1"`), with `&amp;` and `&quot;` unescaped.
    Attribute {
        /// The attribute that holds the name.
        attr: &'static str,
        /// Markers that end the header.
        ends: &'static [&'static str],
    },
    /// Kimi-K2's id `functions.NAME:INDEX`, kept as the call id; a bare counter (`0`)
    /// names no function, which is then inferred from the declared tools.
    KimiId {
        /// Markers that end the id.
        ends: &'static [&'static str],
    },
}

/// How a call's body carries the arguments.
#[derive(Debug)]
pub enum Body {
    /// One JSON value, streamed as it arrives.
    Json,
    /// Hermes' `{"name": …, "arguments": …}` object.
    HermesObject,
    /// A Hermes object that is one item of a JSON list of calls (Granite, Hunyuan): the
    /// call opens at the item's `{` and ends at the `}` that completes it.
    HermesItem,
    /// Key/value tags, typed by the tool schema.
    Params(&'static XmlParams),
    /// Elements named after the parameters, nested, read when the call closes.
    TagTree(&'static TagTree),
}

/// A tool-call format: its markers and shapes.
#[derive(Debug)]
pub struct ToolFormat {
    /// The parser name, as vLLM names it.
    pub name: &'static str,
    /// Watched in the answer and after calls: section openers and the call openers that
    /// may stand outside a section.
    pub opens: &'static [&'static str],
    /// Which of `opens` open a section.
    pub section_open: &'static [&'static str],
    /// Watched inside a section between calls: call openers and section closers.
    pub in_section: &'static [&'static str],
    /// Which markers close a section.
    pub section_close: &'static [&'static str],
    /// Punctuation between calls in a section that is markup (a JSON list's `[`, `,`
    /// and `]`); also in `in_section`.
    pub separators: &'static [&'static str],
    /// The call header shape.
    pub header: Header,
    /// The call body shape.
    pub body: Body,
    /// Watched in a JSON body or a skipped call: call closers, then section closers
    /// (which end an open call too).
    pub call_close: &'static [&'static str],
    /// How the family writes calls (for enforced calls and benchmarks).
    pub markup: markup::Markup,
}

/// Every tool format braid knows, by name.
pub const FORMATS: &[&ToolFormat] = &[
    &hermes::FORMAT,
    &qwen3_coder::FORMAT,
    &deepseek_v3::FORMAT,
    &deepseek_v31::FORMAT,
    &deepseek_v32::FORMAT,
    &deepseek_v4::FORMAT,
    &deepseek_v41::FORMAT,
    &kimi_k2::FORMAT,
    &kimi_k3::FORMAT,
    &minimax_m2::FORMAT,
    &minimax_m3::FORMAT,
    &glm45::FORMAT,
    &glm47::FORMAT,
    &granite::FORMAT,
    &hunyuan_a13b::FORMAT,
    &openai::FORMAT,
];

/// The call being read.
#[derive(Debug, Default)]
pub(crate) struct Call {
    index: usize,
    id: String,
    name: String,
    args: String,
    started: bool,
}

impl Call {
    /// Appends argument bytes; streams them once the call has started.
    pub(crate) fn arguments(&mut self, fragment: &str, sink: &mut dyn Sink) {
        if fragment.is_empty() {
            return;
        }
        self.args.push_str(fragment);
        if self.started {
            sink.event(Event::ToolCallArguments {
                index: self.index,
                fragment,
            });
        }
    }

    /// Names the call (Hermes reads the name from the body).
    pub(crate) fn set_name(&mut self, name: &str) {
        if self.name.is_empty() {
            self.name.push_str(name);
        }
    }

    pub(crate) fn args_empty(&self) -> bool {
        self.args.is_empty()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug)]
enum BodyState {
    None,
    Json(JsonBody),
    Hermes(HermesBody),
    Params(ParamsBody),
    Tree(TreeBody),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No tool markup yet: text is content.
    Answer,
    /// Inside a section, between calls.
    Section,
    /// Reading a call header.
    Header,
    /// Reading a call body.
    Body,
    /// Skipping a call whose header could not be read.
    Skip,
    /// After tool markup, outside a section: text is trailing.
    After,
}

#[derive(Debug)]
struct Extract {
    format: &'static ToolFormat,
    schemas: Arc<ToolSchemas>,
    id_prefix: String,
    phase: Phase,
    in_section: bool,
    /// Call openers seen in the current section.
    section_calls: usize,
    /// Calls started so far (the next call's index).
    started: usize,
    /// Raw text of the markup not yet settled (returned as content if it never is).
    raw: String,
    /// Text between calls, judged when the next marker or the end comes.
    between: String,
    header: String,
    call: Call,
    body: BodyState,
}

impl Extract {
    fn flush_between(&mut self, sink: &mut dyn Sink) {
        if self.between.chars().any(|c| !c.is_whitespace()) {
            sink.event(Event::Fallback {
                reason: FallbackReason::TrailingText,
                text: &self.between,
            });
        }
        self.between.clear();
    }

    fn open_call(&mut self, marker: &str, sink: &mut dyn Sink) {
        self.flush_between(sink);
        if self.section_calls == 0 && !self.in_section {
            self.raw.clear();
        }
        self.raw.push_str(marker);
        self.section_calls += 1;
        self.call = Call::default();
        self.header.clear();
        match self.format.header {
            Header::InBody => self.begin_body(sink),
            _ => self.phase = Phase::Header,
        }
    }

    fn begin_body(&mut self, sink: &mut dyn Sink) {
        self.phase = Phase::Body;
        self.body = match self.format.body {
            Body::Json => BodyState::Json(JsonBody::default()),
            Body::HermesObject | Body::HermesItem => BodyState::Hermes(HermesBody::new()),
            Body::Params(p) => BodyState::Params(ParamsBody::new(p)),
            Body::TagTree(t) => BodyState::Tree(TreeBody::new(t)),
        };
        if !self.call.name.is_empty() {
            self.start_call(sink);
        }
    }

    fn start_call(&mut self, sink: &mut dyn Sink) {
        let call = &mut self.call;
        call.index = self.started;
        self.started += 1;
        call.started = true;
        if call.id.is_empty() {
            call.id = format!("{}{}", self.id_prefix, call.index);
        }
        sink.event(Event::ToolCallStart {
            index: call.index,
            id: &call.id,
            name: &call.name,
        });
        if !call.args.is_empty() {
            sink.event(Event::ToolCallArguments {
                index: call.index,
                fragment: &call.args,
            });
        }
    }

    /// Reads the finished header; a call without a readable name is skipped.
    fn end_header(&mut self, sink: &mut dyn Sink) {
        let text = self.header.trim();
        let named = match self.format.header {
            Header::Attribute { attr, .. } => {
                xml_params::attribute(text, attr).map(|n| xml_params::unescape_entities(n).into_owned())
            }
            _ => None,
        };
        let name = match self.format.header {
            Header::InBody => None,
            Header::Name { .. } => Some(text.trim_matches('"')),
            Header::TypedName { sep, .. } => Some(text.rsplit(sep).next().unwrap_or(text).trim()),
            Header::Attribute { .. } => named.as_deref(),
            Header::FirstWord { .. } => Some(first_word(text)),
            Header::KimiId { .. } => {
                self.call.id = text.to_owned();
                kimi_k2::name_from_id(text)
            }
        };
        // A bare Kimi counter names no function yet; it is inferred when the call ends.
        let counter_only = name == Some("") && matches!(self.format.header, Header::KimiId { .. });
        match name.map(|n| n.trim().trim_matches('"')) {
            Some(n) if counter_only || is_function_name(n) => {
                self.call.name = n.to_owned();
                self.begin_body(sink);
            }
            _ => self.phase = Phase::Skip,
        }
    }

    /// Ends the call: closes its arguments and reports its outcome.
    fn end_call(&mut self, sink: &mut dyn Sink) {
        let mut body = std::mem::replace(&mut self.body, BodyState::None);
        match &mut body {
            BodyState::Json(b) => b.close(&mut self.call, sink),
            BodyState::Hermes(b) => b.close(&mut self.call, sink),
            BodyState::Params(b) => b.close(&mut self.call, sink),
            BodyState::Tree(b) => b.close(&mut self.call, &self.schemas, sink),
            BodyState::None => {}
        }
        if !self.call.started {
            // A Kimi counter id names no function: use the one declared tool whose
            // parameters fit the arguments. A call still without a name is skipped.
            if self.call.name.is_empty() && matches!(self.format.header, Header::KimiId { .. }) {
                // Arguments that are not a JSON object cannot be matched: then only a
                // request with a single tool says which function was meant.
                let keys = arguments_keys(&self.call.args);
                let inferred = match &keys {
                    Some(keys) => self
                        .schemas
                        .infer_name(&keys.iter().map(String::as_str).collect::<Vec<_>>()),
                    None => self.schemas.only_tool(),
                };
                if let Some(name) = inferred.map(str::to_owned) {
                    self.call.name = name;
                }
            }
            match self.call.name.is_empty() {
                false => self.start_call(sink),
                true => {
                    sink.event(Event::Fallback {
                        reason: FallbackReason::UnreadableCall,
                        text: &self.raw,
                    });
                    self.settle();
                    return;
                }
            }
        }
        let outcome = if !self.schemas.is_empty() && self.schemas.get(&self.call.name).is_none() {
            CallOutcome::UnknownFunction
        } else if serde_json::from_str::<serde::de::IgnoredAny>(&self.call.args).is_err() {
            CallOutcome::InvalidArguments
        } else {
            CallOutcome::Parsed
        };
        sink.event(Event::ToolCallEnd {
            index: self.call.index,
            outcome,
        });
        self.settle();
    }

    /// After a call ended or was skipped: back between calls.
    fn settle(&mut self) {
        self.raw.clear();
        self.phase = if self.in_section {
            Phase::Section
        } else {
            Phase::After
        };
    }

    fn close_section(&mut self, marker: &str, sink: &mut dyn Sink) {
        self.in_section = false;
        if self.section_calls == 0 {
            self.raw.push_str(marker);
            self.between.clear();
            sink.event(Event::Fallback {
                reason: FallbackReason::NoCallInSection,
                text: &self.raw,
            });
            self.raw.clear();
            self.phase = if self.started == 0 {
                Phase::Answer
            } else {
                Phase::After
            };
        } else {
            self.flush_between(sink);
            self.raw.clear();
            self.phase = Phase::After;
        }
    }

    fn body_text(&mut self, text: &str, sink: &mut dyn Sink) {
        match &mut self.body {
            BodyState::Json(b) => b.text(text, &mut self.call, sink),
            BodyState::Hermes(b) => b.text(text, &mut self.call, sink),
            BodyState::Params(b) => b.text(text, &mut self.call, sink),
            BodyState::Tree(b) => b.text(text),
            BodyState::None => {}
        }
        if !self.call.started && !self.call.name.is_empty() && matches!(self.body, BodyState::Hermes(_)) {
            self.start_call(sink);
        }
    }

    fn finish(&mut self, sink: &mut dyn Sink) {
        match self.phase {
            Phase::Answer => {}
            Phase::Section if self.section_calls == 0 => {
                sink.event(Event::Fallback {
                    reason: FallbackReason::NoCallInSection,
                    text: &self.raw,
                });
            }
            Phase::Section | Phase::After => self.flush_between(sink),
            Phase::Header => self.unfinished(sink),
            Phase::Body => {
                let complete = match &self.body {
                    BodyState::Json(b) => b.complete(),
                    BodyState::Hermes(b) => b.complete(),
                    BodyState::Params(_) | BodyState::Tree(_) | BodyState::None => false,
                };
                if complete {
                    self.end_call(sink);
                } else {
                    self.unfinished(sink);
                }
            }
            Phase::Skip => sink.event(Event::Fallback {
                reason: FallbackReason::UnreadableCall,
                text: &self.raw,
            }),
        }
        self.raw.clear();
    }

    fn unfinished(&mut self, sink: &mut dyn Sink) {
        if self.call.started {
            sink.event(Event::ToolCallAborted {
                index: self.call.index,
            });
        }
        sink.event(Event::Fallback {
            reason: FallbackReason::UnfinishedToolCall,
            text: &self.raw,
        });
    }
}

/// The first word of `text`: up to whitespace or the next markup (`<`).
pub(crate) fn first_word(text: &str) -> &str {
    let end = text
        .find(|c: char| c.is_whitespace() || c == '<')
        .unwrap_or(text.len());
    &text[..end]
}

/// Whether a header gave a usable function name: not empty, no whitespace or markup.
fn is_function_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
}

/// The keys of a JSON object argument string.
fn arguments_keys(args: &str) -> Option<Vec<String>> {
    match serde_json::from_str::<serde_json::Value>(args).ok()? {
        serde_json::Value::Object(map) => Some(map.keys().cloned().collect()),
        _ => None,
    }
}

impl MarkerMachine for Extract {
    fn markers(&self) -> &'static [&'static str] {
        let f = self.format;
        match self.phase {
            Phase::Answer | Phase::After => f.opens,
            Phase::Section => f.in_section,
            Phase::Header => match f.header {
                Header::InBody => &[],
                Header::Name { ends, .. }
                | Header::TypedName { ends, .. }
                | Header::Attribute { ends, .. }
                | Header::FirstWord { ends }
                | Header::KimiId { ends } => ends,
            },
            Phase::Body => match &self.body {
                BodyState::Params(b) => b.markers(),
                _ => f.call_close,
            },
            Phase::Skip => f.call_close,
        }
    }

    fn text(&mut self, text: &str, sink: &mut dyn Sink) {
        if text.is_empty() {
            return;
        }
        match self.phase {
            Phase::Answer => sink.event(Event::Content(text)),
            Phase::After => self.between.push_str(text),
            Phase::Section => {
                self.raw.push_str(text);
                self.between.push_str(text);
            }
            Phase::Header => {
                self.raw.push_str(text);
                self.header.push_str(text);
            }
            Phase::Body => {
                self.raw.push_str(text);
                self.body_text(text, sink);
            }
            Phase::Skip => self.raw.push_str(text),
        }
    }

    fn marker(&mut self, which: usize, sink: &mut dyn Sink) -> Step {
        let marker = self.markers()[which];
        let f = self.format;
        match self.phase {
            Phase::Answer | Phase::After => {
                if f.section_open.contains(&marker) {
                    self.flush_between(sink);
                    self.raw.clear();
                    self.raw.push_str(marker);
                    self.in_section = true;
                    self.section_calls = 0;
                    self.phase = Phase::Section;
                } else {
                    self.in_section = false;
                    self.section_calls = 0;
                    self.open_call(marker, sink);
                }
            }
            Phase::Section => {
                if f.section_close.contains(&marker) {
                    self.close_section(marker, sink);
                } else if f.separators.contains(&marker) {
                    self.raw.push_str(marker);
                } else {
                    self.open_call(marker, sink);
                    if matches!(f.body, Body::HermesItem) {
                        // The item's `{` is the first byte of its body.
                        self.body_text(marker, sink);
                    }
                }
            }
            Phase::Header if self.header.trim().is_empty() && !self.header_kept(marker) => {
                // Whitespace before the name (`<tool_call>\nname\n`): keep reading.
                self.raw.push_str(marker);
                self.header.push_str(marker);
            }
            Phase::Header => {
                let kept = self.header_kept(marker);
                if !kept {
                    self.raw.push_str(marker);
                }
                self.end_header(sink);
                if kept {
                    return Step::Rescan;
                }
            }
            Phase::Body if matches!(f.body, Body::HermesItem) && !f.section_close.contains(&marker) => {
                // A `}`: the item's end if it completes the object, else arguments.
                self.raw.push_str(marker);
                self.body_text(marker, sink);
                if matches!(&self.body, BodyState::Hermes(b) if b.complete()) {
                    self.end_call(sink);
                }
            }
            Phase::Body => {
                if let BodyState::Params(b) = &mut self.body {
                    if let Some(step) = b.marker(which, &mut self.call, &self.schemas, sink) {
                        if step == Step::Consume {
                            self.raw.push_str(marker);
                        }
                        if let BodyState::Params(b) = &mut self.body {
                            if let Some(json) = b.json_body() {
                                self.body = BodyState::Json(JsonBody::opened(&mut self.call, json, sink));
                            }
                        }
                        return step;
                    }
                }
                return self.close_call_marker(marker, sink);
            }
            Phase::Skip => {
                self.raw.push_str(marker);
                sink.event(Event::Fallback {
                    reason: FallbackReason::UnreadableCall,
                    text: &self.raw,
                });
                self.settle();
                if f.section_close.contains(&marker) {
                    self.close_section(marker, sink);
                }
            }
        }
        Step::Consume
    }
}

impl Extract {
    /// Whether a header terminator belongs to the body (scanned again there).
    fn header_kept(&self, marker: &str) -> bool {
        matches!(self.format.header, Header::Name { kept, .. } if kept.contains(&marker))
    }

    /// A call-close or section-close marker in a body.
    fn close_call_marker(&mut self, marker: &'static str, sink: &mut dyn Sink) -> Step {
        let section = self.format.section_close.contains(&marker);
        if !section {
            self.raw.push_str(marker);
        }
        self.end_call(sink);
        if section {
            if !self.in_section {
                // A section closer with no section open: the call's own closer (glm45,
                // hermes use one marker for both).
                return Step::Consume;
            }
            return Step::Rescan;
        }
        Step::Consume
    }
}

/// Extracts tool calls from answer text, incrementally.
#[derive(Debug)]
pub struct ToolExtractor {
    feeder: Feeder,
    extract: Extract,
}

impl ToolExtractor {
    /// An extractor for one output. `schemas` are the request's tools; `id_prefix` starts
    /// every generated call id (the call index follows it).
    pub fn new(format: &'static ToolFormat, schemas: Arc<ToolSchemas>, id_prefix: &str) -> Self {
        ToolExtractor {
            feeder: Feeder::default(),
            extract: Extract {
                format,
                schemas,
                id_prefix: id_prefix.to_owned(),
                phase: Phase::Answer,
                in_section: false,
                section_calls: 0,
                started: 0,
                raw: String::new(),
                between: String::new(),
                header: String::new(),
                call: Call::default(),
                body: BodyState::None,
            },
        }
    }

    /// Ends the current stretch of answer text: held bytes can no longer begin a marker
    /// (a reasoning block follows), so they are handed on as text.
    pub fn break_text(&mut self, sink: &mut dyn Sink) {
        self.feeder.flush(&mut self.extract, sink);
    }
}

impl StreamParser for ToolExtractor {
    fn push(&mut self, text: &str, sink: &mut dyn Sink) {
        self.feeder.push(&mut self.extract, text, sink);
    }

    fn finish(&mut self, sink: &mut dyn Sink) {
        self.feeder.flush(&mut self.extract, sink);
        self.extract.finish(sink);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use crate::event::{CallOutcome, FallbackReason};
    use crate::testkit::{checked, checked_with, chunks, config, Chunking};
    use crate::{ParsedOutput, ToolSchemas};

    fn calls(out: &ParsedOutput) -> Vec<(String, Value)> {
        out.tool_calls
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    serde_json::from_str(&c.arguments).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    fn with_tools(tools: &str, schema: &Value, text: &str) -> ParsedOutput {
        let mut cfg = config(None, Some(tools));
        cfg.schemas = Arc::new(ToolSchemas::from_tools(schema));
        checked_with(&cfg, text)
    }

    /// Raw (unmerged) events of `text` fed in 4-char chunks.
    fn raw_events(tools: &str, text: &str) -> Vec<String> {
        crate::testkit::raw_events(
            &config(None, Some(tools)),
            &chunks(text, Chunking::Chars(4)),
            true,
        )
    }

    #[test]
    fn hermes_arguments_stream_as_they_arrive() {
        let args = r#"{"path": "/tmp/a.txt", "content": "many words of file content here"}"#;
        let text = format!("<tool_call>\n{{\"name\": \"write\", \"arguments\": {args}}}\n</tool_call>");
        let events = raw_events("hermes", &text);
        let fragments = events
            .iter()
            .filter(|e| e.starts_with("ToolCallArguments"))
            .count();
        assert!(
            fragments > 5,
            "arguments came in {fragments} fragments: {events:?}"
        );
        let start = events.iter().position(|e| e.starts_with("ToolCallStart"));
        let first_args = events.iter().position(|e| e.starts_with("ToolCallArguments"));
        assert!(start < first_args);
        let out = checked(None, Some("hermes"), &text);
        assert_eq!(out.tool_calls[0].arguments, args);
        assert_eq!(out.tool_calls[0].outcome, Some(CallOutcome::Parsed));
    }

    #[test]
    fn hermes_reads_arguments_given_before_the_name() {
        let out = checked(
            None,
            Some("hermes"),
            r#"<tool_call>{"arguments": {"q": 1}, "name": "s"}</tool_call>"#,
        );
        assert_eq!(calls(&out), vec![("s".to_owned(), json!({"q": 1}))]);
    }

    #[test]
    fn undeclared_functions_are_returned_and_reported() {
        let schema = json!([{"type": "function", "function": {"name": "known"}}]);
        let mut cfg = config(None, Some("hermes"));
        cfg.schemas = Arc::new(ToolSchemas::from_tools(&schema));
        let out = checked_with(
            &cfg,
            r#"<tool_call>{"name": "other", "arguments": {}}</tool_call>"#,
        );
        assert_eq!(out.tool_calls[0].name, "other");
        assert_eq!(out.tool_calls[0].outcome, Some(CallOutcome::UnknownFunction));
    }

    #[test]
    fn an_unfinished_call_is_withdrawn_and_its_text_returned() {
        let text = "Let me look.<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": ";
        let out = checked(None, Some("hermes"), text);
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.content(), Some(text));
        assert_eq!(out.fallbacks[0].0, FallbackReason::UnfinishedToolCall);
        assert!(raw_events("hermes", text)
            .iter()
            .any(|e| e.starts_with("ToolCallAborted")));
    }

    #[test]
    fn trailing_text_is_reported_not_content() {
        let out = checked(None, Some("glm47"), "Hi.<tool_call>f</tool_call> imagined result");
        assert_eq!(out.content(), Some("Hi."));
        assert_eq!(
            out.fallbacks,
            vec![(FallbackReason::TrailingText, " imagined result".to_owned())]
        );
    }

    #[test]
    fn a_section_without_calls_is_content() {
        let text = "x<|tool_calls_section_begin|>nothing here<|tool_calls_section_end|>y";
        let out = checked(None, Some("kimi_k2"), text);
        assert_eq!(out.content(), Some(text));
        assert!(out.tool_calls.is_empty());
    }

    #[test]
    fn qwen3_coder_strings_stream_and_keep_inner_whitespace() {
        let schema = json!([{"name": "w", "parameters": {"properties": {"code": {"type": "string"}, "n": {"type": "integer"}}}}]);
        let text = "<tool_call>\n<function=w>\n<parameter=code>\n  a \"q\" \\\n\nb\n</parameter>\n<parameter=n>\n7\n</parameter>\n</function>\n</tool_call>";
        let out = with_tools("qwen3_coder", &schema, text);
        assert_eq!(
            calls(&out),
            vec![("w".to_owned(), json!({"code": "  a \"q\" \\\n\nb", "n": 7}))]
        );
        let fragments = raw_events("qwen3_coder", text)
            .iter()
            .filter(|e| e.starts_with("ToolCallArguments"))
            .count();
        assert!(fragments > 4);
    }

    #[test]
    fn kimi_keeps_the_models_call_id() {
        let text = "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:3 <|tool_call_argument_begin|>{\"city\": \"Oslo\"}<|tool_call_end|><|tool_calls_section_end|>";
        let out = checked(None, Some("kimi_k2"), text);
        assert_eq!(out.tool_calls[0].id, "functions.get_weather:3");
        assert_eq!(
            calls(&out),
            vec![("get_weather".to_owned(), json!({"city": "Oslo"}))]
        );
    }

    #[test]
    fn generated_ids_are_prefixed_and_indexed() {
        let mut cfg = config(None, Some("glm47"));
        cfg.id_prefix = "call_req7_".to_owned();
        let out = checked_with(&cfg, "<tool_call>a</tool_call><tool_call>b</tool_call>");
        let ids: Vec<&str> = out.tool_calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["call_req7_0", "call_req7_1"]);
    }

    #[test]
    fn deepseek_v3_reads_typed_headers_and_fenced_json() {
        let text = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>lookup\n```json\n{\"id\": [1, 2]}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        let out = checked(None, Some("deepseek_v3"), text);
        assert_eq!(calls(&out), vec![("lookup".to_owned(), json!({"id": [1, 2]}))]);
    }

    #[test]
    fn dsml_types_by_attribute_and_reads_json_bodies() {
        let text = "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"n\" string=\"false\">3</｜DSML｜parameter>\n<｜DSML｜parameter name=\"s\" string=\"true\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"g\">{\"k\": true}</｜DSML｜invoke>\n</｜DSML｜function_calls>";
        let out = checked(None, Some("deepseek_v32"), text);
        assert_eq!(
            calls(&out),
            vec![
                ("f".to_owned(), json!({"n": 3, "s": "3"})),
                ("g".to_owned(), json!({"k": true}))
            ]
        );
    }

    #[test]
    fn minimax_invokes_in_one_wrapper_get_successive_indexes() {
        let text = "<minimax:tool_call><invoke name=\"a\"></invoke><invoke name=\"b\"><parameter name=\"x\">1</parameter></invoke></minimax:tool_call>";
        let out = checked(None, Some("minimax_m2"), text);
        assert_eq!(
            calls(&out),
            vec![("a".to_owned(), json!({})), ("b".to_owned(), json!({"x": 1}))]
        );
    }

    #[test]
    fn tool_markup_inside_reasoning_is_not_a_call() {
        let out = checked(
            Some("glm45"),
            Some("glm45"),
            "<think>I could <tool_call>f</tool_call></think>No call.",
        );
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.reasoning_content(), Some("I could <tool_call>f</tool_call>"));
        assert_eq!(out.content(), Some("No call."));
    }

    #[test]
    fn invalid_json_arguments_are_kept_raw_and_reported() {
        let text = "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"a\": <|tool_call_end|><|tool_calls_section_end|>";
        let out = checked(None, Some("kimi_k2"), text);
        assert_eq!(out.tool_calls[0].arguments, "{\"a\": ");
        assert_eq!(out.tool_calls[0].outcome, Some(CallOutcome::InvalidArguments));
    }

    #[test]
    fn hermes_string_arguments_are_json_whatever_they_hold() {
        let out = checked(
            None,
            Some("hermes"),
            r#"<tool_call>{"name": "f", "arguments": "hi"}</tool_call>"#,
        );
        assert_eq!(out.tool_calls[0].arguments, "\"hi\"");
        let out = checked(
            None,
            Some("hermes"),
            r#"<tool_call>{"name": "f", "arguments": "{\"a\": 1}"}</tool_call>"#,
        );
        assert_eq!(out.tool_calls[0].arguments, "{\"a\": 1}");
    }

    #[test]
    fn calls_without_a_readable_name_are_skipped_and_reported() {
        let kimi = "<|tool_calls_section_begin|><|tool_call_begin|>functions.bad.0<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_call_begin|>functions.ok:1<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>";
        let coder = "<tool_call>\n<function=broken\n</function>\n</tool_call>\n<tool_call>\n<function=ok>\n</function>\n</tool_call>";
        for (format, text) in [("kimi_k2", kimi), ("qwen3_coder", coder)] {
            let out = checked(None, Some(format), text);
            assert_eq!(calls(&out), vec![("ok".to_owned(), json!({}))], "{format}");
            assert_eq!(out.fallbacks[0].0, FallbackReason::UnreadableCall, "{format}");
        }
    }

    #[test]
    fn a_kimi_counter_with_one_declared_tool_names_that_tool() {
        let schema = json!([{"name": "only", "parameters": {"properties": {"a": {}}}}]);
        let text = "<|tool_calls_section_begin|><|tool_call_begin|>0<|tool_call_argument_begin|>{\"a\": <|tool_call_end|><|tool_calls_section_end|>";
        let out = with_tools("kimi_k2", &schema, text);
        assert_eq!(out.tool_calls[0].name, "only");
        assert_eq!(out.tool_calls[0].id, "0");
        assert_eq!(out.tool_calls[0].outcome, Some(CallOutcome::InvalidArguments));
    }

    #[test]
    fn glm_values_are_the_exact_text_between_their_tags() {
        let schema = json!([{"name": "edit", "parameters": {"properties": {"s": {"type": "string"}, "n": {"type": "integer"}}}}]);
        let text = "<tool_call>edit\n<arg_key>s</arg_key>\n<arg_value>  x <arg_key> y  </arg_value>\n<arg_key>n</arg_key><arg_value> 2 </arg_value>\n</tool_call>";
        let out = with_tools("glm45", &schema, text);
        assert_eq!(
            calls(&out),
            vec![("edit".to_owned(), json!({"s": "  x <arg_key> y  ", "n": 2}))]
        );
    }

    #[test]
    fn a_declared_type_outranks_dsml_string_attributes() {
        let schema = json!([{"name": "f", "parameters": {"properties": {
            "n": {"type": "integer"}, "s": {"type": "string"}, "o": {"type": ["string", "null"]}}}}]);
        let text = "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"n\" string=\"true\">42</｜DSML｜parameter>\n<｜DSML｜parameter name=\"s\" string=\"false\">null</｜DSML｜parameter>\n<｜DSML｜parameter name=\"o\" string=\"true\">null</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>";
        let out = with_tools("deepseek_v32", &schema, text);
        assert_eq!(
            calls(&out),
            vec![("f".to_owned(), json!({"n": 42, "s": "null", "o": null}))]
        );
    }
}
