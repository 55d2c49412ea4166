//! Reasoning splitters: one state machine, driven by a per-format table, that separates
//! reasoning from the answer.
//!
//! Where the output starts (inside reasoning, in the answer, or undecided until a marker
//! shows which) comes from the rendered prompt when the server knows it, else from the
//! format's default. Several `<think>` blocks in one output each go to reasoning, in
//! order. A switched-off thinking mode (`enable_thinking: false`, `thinking: false`)
//! makes the splitter pass everything through as content, markers included.

pub mod deepseek_r1;
pub mod deepseek_v3;
pub mod glm45;
pub mod kimi_k2;
pub mod minimax_m2;
pub mod minimax_m2_append_think;
pub mod qwen3;

use crate::event::{Event, FallbackReason, Sink, StreamParser};
use crate::scan::{Feeder, MarkerMachine, Step};

/// Where output begins when nothing says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartState {
    /// Inside reasoning: the template opened the block in the prompt.
    Reasoning,
    /// In the answer: reasoning begins only at the open marker.
    Content,
    /// Undecided: text before any marker is reasoning if a close marker follows, content
    /// if an open marker follows or the output ends. It is held until then.
    Undecided,
}

/// The chat-template switch that turns thinking off, and its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkingSwitch {
    /// The `chat_template_kwargs` key (`enable_thinking`, `thinking`).
    pub key: &'static str,
    /// Whether thinking is on when the key is absent.
    pub default_on: bool,
}

/// Where reasoning text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningPlacement {
    /// Into `reasoning_content`, markers removed.
    Separate,
    /// Into `content`, wrapped in the open and close markers, as MiniMax asks clients to
    /// replay it (`minimax_m2_append_think`).
    InlineTags,
}

/// A reasoning format: its markers and defaults.
#[derive(Debug)]
pub struct ReasoningFormat {
    /// The parser name, as vLLM names it.
    pub name: &'static str,
    /// Opens a reasoning block.
    pub open: &'static str,
    /// Closes a reasoning block.
    pub close: &'static str,
    /// Markers that end reasoning without a close marker and begin the answer (they stay
    /// in the answer, for the tool parser).
    pub implicit_close: &'static [&'static str],
    /// Markers watched inside reasoning: close, open, then `implicit_close`.
    pub reasoning_markers: &'static [&'static str],
    /// Markers watched in the answer and while undecided: open, then close.
    pub content_markers: &'static [&'static str],
    /// Where output starts by default.
    pub start: StartState,
    /// The thinking switch, if the family has one.
    pub switch: Option<ThinkingSwitch>,
    /// Where reasoning text goes.
    pub placement: ReasoningPlacement,
}

/// Every reasoning format braid knows, by name.
pub const FORMATS: &[&ReasoningFormat] = &[
    &deepseek_r1::FORMAT,
    &qwen3::FORMAT,
    &kimi_k2::FORMAT,
    &minimax_m2::FORMAT,
    &minimax_m2_append_think::FORMAT,
    &glm45::FORMAT,
    &deepseek_v3::FORMAT,
];

/// How the caller fixes the start state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartOverride {
    /// Use the format's default.
    #[default]
    FormatDefault,
    /// The prompt ended inside an open reasoning block.
    InReasoning,
    /// The prompt closed reasoning (thinking switched off by the template).
    InContent,
}

impl ReasoningFormat {
    /// Whether thinking is on for these `chat_template_kwargs` (a JSON object or null).
    pub fn thinking_enabled(&self, kwargs: Option<&serde_json::Value>) -> bool {
        match self.switch {
            None => true,
            Some(sw) => kwargs
                .and_then(|k| k.get(sw.key))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(sw.default_on),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Reasoning,
    Content,
    Undecided,
    PassThrough,
}

/// The splitter state machine (everything but the held partial marker).
#[derive(Debug)]
struct Split {
    format: &'static ReasoningFormat,
    mode: Mode,
    /// Inline placement: whether the open tag of the current block was written.
    open_written: bool,
    /// Undecided text, waiting for a marker or the end.
    pending: String,
}

impl Split {
    fn reasoning(&mut self, text: &str, sink: &mut dyn Sink) {
        if self.format.placement == ReasoningPlacement::InlineTags && !self.open_written {
            self.open_written = true;
            sink.event(Event::Reasoning(self.format.open));
        }
        if !text.is_empty() {
            sink.event(Event::Reasoning(text));
        }
    }

    fn end_block(&mut self, sink: &mut dyn Sink) {
        if self.format.placement == ReasoningPlacement::InlineTags {
            self.reasoning("", sink);
            sink.event(Event::Reasoning(self.format.close));
        }
        self.mode = Mode::Content;
    }
}

impl MarkerMachine for Split {
    fn markers(&self) -> &'static [&'static str] {
        match self.mode {
            Mode::Reasoning => self.format.reasoning_markers,
            Mode::Content | Mode::Undecided => self.format.content_markers,
            Mode::PassThrough => &[],
        }
    }

    fn text(&mut self, text: &str, sink: &mut dyn Sink) {
        if text.is_empty() {
            return;
        }
        match self.mode {
            Mode::Reasoning => self.reasoning(text, sink),
            Mode::Content | Mode::PassThrough => sink.event(Event::Content(text)),
            Mode::Undecided => self.pending.push_str(text),
        }
    }

    fn marker(&mut self, which: usize, sink: &mut dyn Sink) -> Step {
        let marker = self.markers()[which];
        let f = self.format;
        match self.mode {
            Mode::Reasoning if marker == f.close => self.end_block(sink),
            // A repeated open marker inside reasoning (the template's own `<think>` echoed
            // by the model) is markup, not reasoning text.
            Mode::Reasoning if marker == f.open => {}
            Mode::Reasoning => {
                // An implicit close: the marker begins the answer.
                self.end_block(sink);
                return Step::Rescan;
            }
            Mode::Content if marker == f.open => self.open_block(sink),
            Mode::Content => sink.event(Event::Fallback {
                reason: FallbackReason::StrayEndMarker,
                text: marker,
            }),
            Mode::Undecided => {
                let pending = std::mem::take(&mut self.pending);
                if marker == f.open {
                    if !pending.is_empty() {
                        sink.event(Event::Content(&pending));
                    }
                    self.open_block(sink);
                } else {
                    self.mode = Mode::Reasoning;
                    self.reasoning(&pending, sink);
                    self.end_block(sink);
                }
                self.pending = pending;
                self.pending.clear();
            }
            Mode::PassThrough => {}
        }
        Step::Consume
    }
}

impl Split {
    fn open_block(&mut self, sink: &mut dyn Sink) {
        self.mode = Mode::Reasoning;
        self.open_written = false;
        if self.format.placement == ReasoningPlacement::InlineTags {
            self.reasoning("", sink);
        }
    }
}

/// Splits model output into reasoning and content, incrementally.
#[derive(Debug)]
pub struct ReasoningSplitter {
    feeder: Feeder,
    split: Split,
}

impl ReasoningSplitter {
    /// A splitter for one output. `thinking_enabled` comes from the request's template
    /// kwargs ([`ReasoningFormat::thinking_enabled`]); `start` from the rendered prompt.
    pub fn new(format: &'static ReasoningFormat, thinking_enabled: bool, start: StartOverride) -> Self {
        let mode = if !thinking_enabled {
            Mode::PassThrough
        } else {
            match (start, format.start) {
                (StartOverride::InReasoning, _) | (StartOverride::FormatDefault, StartState::Reasoning) => {
                    Mode::Reasoning
                }
                (StartOverride::InContent, _) | (StartOverride::FormatDefault, StartState::Content) => {
                    Mode::Content
                }
                (StartOverride::FormatDefault, StartState::Undecided) => Mode::Undecided,
            }
        };
        ReasoningSplitter {
            feeder: Feeder::default(),
            split: Split {
                format,
                mode,
                open_written: false,
                pending: String::new(),
            },
        }
    }

    /// Whether the splitter is inside reasoning now (structured output waits for this to
    /// turn false).
    pub fn in_reasoning(&self) -> bool {
        self.split.mode == Mode::Reasoning
    }
}

impl StreamParser for ReasoningSplitter {
    fn push(&mut self, text: &str, sink: &mut dyn Sink) {
        self.feeder.push(&mut self.split, text, sink);
    }

    fn finish(&mut self, sink: &mut dyn Sink) {
        self.feeder.flush(&mut self.split, sink);
        if self.split.mode == Mode::Undecided && !self.split.pending.is_empty() {
            let pending = std::mem::take(&mut self.split.pending);
            sink.event(Event::Content(&pending));
        }
    }
}
