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
pub mod deepseek_v4;
pub mod glm45;
pub mod granite;
pub mod harmony;
pub mod hunyuan_a13b;
pub mod kimi_k2;
pub mod kimi_k3;
pub mod minimax_m2;
pub mod minimax_m2_append_think;
pub mod minimax_m3;
pub mod qwen3;

use crate::event::{Event, FallbackReason, Sink, StreamParser};
use crate::scan::{Feeder, MarkerMachine, Step};

/// Where output begins: a format's default, and (resolved from a [`StartOverride`], the
/// format and the thinking switch) where the engine's reasoning gate starts.
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

/// What a close marker found in the answer (no block open) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrayClose {
    /// Markup: removed, and reported as a stray marker.
    Removed,
    /// Text, unless it is the first thing in the output, where the template's own
    /// "no reasoning" spelling puts it (MiniMax-M3's bare `</mm:think>`): then it is
    /// removed silently.
    TextUnlessLeading,
}

/// The state machine a format runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// The marker table of [`ReasoningFormat`].
    Markers,
    /// gpt-oss's Harmony messages ([`harmony`]); the table's markers are unused.
    Harmony,
}

/// A reasoning format: its markers and defaults.
#[derive(Debug)]
pub struct ReasoningFormat {
    /// The parser name, as vLLM names it.
    pub name: &'static str,
    /// Opens a reasoning block (the spelling templates write; the engine's reasoning gate
    /// and the start state read from the prompt use it).
    pub open: &'static str,
    /// Closes a reasoning block (as `open`).
    pub close: &'static str,
    /// Other spellings that open a block (Granite's `Here's my thought process:`,
    /// Hunyuan's `<think>\n` whose newline is markup).
    pub other_opens: &'static [&'static str],
    /// Other spellings that close a block.
    pub other_closes: &'static [&'static str],
    /// Markers that end reasoning without a close marker and begin the answer (they stay
    /// in the answer, for the tool parser).
    pub implicit_close: &'static [&'static str],
    /// Markers that wrap the answer and are no part of it (Hunyuan's `<answer>`, Granite
    /// 3.3's `<response>`, Kimi-K3's `response` channel): removed wherever the answer
    /// holds them, with thinking on or off.
    pub answer_wrap: &'static [&'static str],
    /// Markers watched inside reasoning: the closes, the opens, then `implicit_close`.
    pub reasoning_markers: &'static [&'static str],
    /// Markers watched in the answer and while undecided: the opens, the closes, then
    /// `answer_wrap`, and any implicit closes that should end an undecided start (Kimi-K3
    /// lists its `tools` and `response` openers; Qwen3 leaves `<tool_call>` out, so text
    /// before it stays undecided).
    pub content_markers: &'static [&'static str],
    /// Where output starts by default.
    pub start: StartState,
    /// Where output starts when the prompt ends with the open marker: inside reasoning,
    /// or (Kimi-K3, whose model may answer at once and close the `response` channel
    /// instead) undecided until a marker says which.
    pub prompt_open: StartState,
    /// What a close marker in the answer is.
    pub stray_close: StrayClose,
    /// The thinking switch, if the family has one.
    pub switch: Option<ThinkingSwitch>,
    /// Where reasoning text goes.
    pub placement: ReasoningPlacement,
    /// The template kwarg that, set to `false`, keeps every earlier turn's reasoning in
    /// the prompt (GLM-4.7's `clear_thinking`; its template otherwise keeps only the
    /// turns after the last user message). `None`: the template decides alone.
    pub clear_thinking: Option<&'static str>,
    /// The state machine that reads it.
    pub machine: Machine,
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
    &deepseek_v4::FORMAT,
    &granite::FORMAT,
    &hunyuan_a13b::FORMAT,
    &kimi_k3::FORMAT,
    &minimax_m3::FORMAT,
    &harmony::FORMAT,
];

/// What the rendered prompt says about where output starts (read once, by the tokenizer
/// stage, and carried on the bus to the splitter and the engine's reasoning gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
    fn opens(&self, marker: &str) -> bool {
        marker == self.open || self.other_opens.contains(&marker)
    }

    fn closes(&self, marker: &str) -> bool {
        marker == self.close || self.other_closes.contains(&marker)
    }

    /// Every spelling of the open marker, the main one first.
    pub fn all_opens(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.open).chain(self.other_opens.iter().copied())
    }

    /// Every spelling of the close marker, the main one first.
    pub fn all_closes(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.close).chain(self.other_closes.iter().copied())
    }

    /// Whether the format's markers are special tokens (`<|…|>`: Harmony's channels,
    /// Kimi's sections and XTML), which decoding with `skip_special_tokens` would remove
    /// before the splitter sees them.
    pub fn markers_are_special(&self) -> bool {
        self.all_opens()
            .chain(self.all_closes())
            .chain(self.implicit_close.iter().copied())
            .any(|m| m.contains("<|") && m.contains("|>"))
    }

    /// Where output starts, read from the end of the rendered prompt: a prompt that ends
    /// with the open marker (trailing whitespace aside) leaves the model inside reasoning;
    /// one that ends with the close marker (thinking switched off) starts in the answer;
    /// anything else leaves it to the format. Earlier turns' markers do not count.
    pub fn start_from_prompt(&self, prompt: &str) -> StartOverride {
        let tail = prompt.trim_end();
        if !self.open.is_empty() && tail.ends_with(self.open) {
            StartOverride::InReasoning
        } else if !self.close.is_empty() && tail.ends_with(self.close) {
            StartOverride::InContent
        } else {
            StartOverride::FormatDefault
        }
    }

    /// Whether thinking is on for these `chat_template_kwargs`.
    pub fn thinking_enabled(&self, kwargs: Option<&serde_json::Map<String, serde_json::Value>>) -> bool {
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
    /// Whitespace at the very start of the output, held until the next thing shows
    /// whether it is formatting before an open marker (dropped) or text (kept).
    lead: String,
    /// Whether anything other than leading whitespace has been seen.
    begun: bool,
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
            Mode::PassThrough => self.format.answer_wrap,
        }
    }

    fn text(&mut self, text: &str, sink: &mut dyn Sink) {
        if text.is_empty() {
            return;
        }
        if !self.begun {
            if text.trim_start().is_empty() {
                self.lead.push_str(text);
                return;
            }
            self.begin(sink);
        }
        self.text_in_mode(text, sink);
    }

    fn marker(&mut self, which: usize, sink: &mut dyn Sink) -> Step {
        let leading = !self.begun;
        if leading {
            if self.format.opens(self.markers()[which]) {
                // `\n<think>`: the whitespace is formatting before the block.
                self.lead.clear();
                self.begun = true;
            } else {
                self.begin(sink);
            }
        }
        self.marker_in_mode(which, leading, sink)
    }
}

impl Split {
    /// The output has begun: leading whitespace held so far is text after all.
    fn begin(&mut self, sink: &mut dyn Sink) {
        self.begun = true;
        let lead = std::mem::take(&mut self.lead);
        if !lead.is_empty() {
            self.text_in_mode(&lead, sink);
        }
    }

    fn text_in_mode(&mut self, text: &str, sink: &mut dyn Sink) {
        match self.mode {
            Mode::Reasoning => self.reasoning(text, sink),
            Mode::Content | Mode::PassThrough => sink.event(Event::Content(text)),
            Mode::Undecided => self.pending.push_str(text),
        }
    }

    fn marker_in_mode(&mut self, which: usize, leading: bool, sink: &mut dyn Sink) -> Step {
        let marker = self.markers()[which];
        let f = self.format;
        // An implicit close that is also a wrapper (Kimi-K3's `response` opener) ends
        // reasoning first when the start is undecided; it is removed once rescanned.
        let ends_reasoning = self.mode == Mode::Undecided && f.implicit_close.contains(&marker);
        if self.mode != Mode::Reasoning && !ends_reasoning && f.answer_wrap.contains(&marker) {
            // The answer's wrapper: it says the answer has begun, and is not part of it.
            if self.mode == Mode::Undecided {
                self.settle_pending_as_content(sink);
            }
            return Step::Consume;
        }
        match self.mode {
            Mode::Reasoning if f.closes(marker) => self.end_block(sink),
            // A repeated open marker inside reasoning (the template's own `<think>` echoed
            // by the model) is markup, not reasoning text.
            Mode::Reasoning if f.opens(marker) => {}
            Mode::Reasoning => {
                // An implicit close: the marker begins the answer.
                self.end_block(sink);
                return Step::Rescan;
            }
            Mode::Content if f.opens(marker) => self.open_block(sink),
            Mode::Content if f.closes(marker) => match (f.stray_close, leading) {
                (StrayClose::Removed, _) => sink.event(Event::Fallback {
                    reason: FallbackReason::StrayEndMarker,
                    text: marker,
                }),
                (StrayClose::TextUnlessLeading, true) => {}
                (StrayClose::TextUnlessLeading, false) => sink.event(Event::Content(marker)),
            },
            // An implicit close in the answer belongs to the tool parser.
            Mode::Content => sink.event(Event::Content(marker)),
            Mode::Undecided if f.opens(marker) => {
                self.settle_pending_as_content(sink);
                self.open_block(sink);
            }
            Mode::Undecided => {
                // A close, or an implicit one: what came before was reasoning.
                let pending = std::mem::take(&mut self.pending);
                self.mode = Mode::Reasoning;
                self.reasoning(&pending, sink);
                self.end_block(sink);
                self.pending = pending;
                self.pending.clear();
                if !f.closes(marker) {
                    return Step::Rescan;
                }
            }
            Mode::PassThrough => {}
        }
        Step::Consume
    }

    /// Undecided text turned out to be answer.
    fn settle_pending_as_content(&mut self, sink: &mut dyn Sink) {
        if !self.pending.is_empty() {
            sink.event(Event::Content(&self.pending));
            self.pending.clear();
        }
        self.mode = Mode::Content;
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
    machine: Splitting,
}

/// The machine a splitter runs.
#[derive(Debug)]
enum Splitting {
    Table(Split),
    Harmony(harmony::Harmony),
}

impl MarkerMachine for Splitting {
    fn markers(&self) -> &'static [&'static str] {
        match self {
            Splitting::Table(m) => m.markers(),
            Splitting::Harmony(m) => m.markers(),
        }
    }

    fn text(&mut self, text: &str, sink: &mut dyn Sink) {
        match self {
            Splitting::Table(m) => m.text(text, sink),
            Splitting::Harmony(m) => m.text(text, sink),
        }
    }

    fn marker(&mut self, which: usize, sink: &mut dyn Sink) -> Step {
        match self {
            Splitting::Table(m) => m.marker(which, sink),
            Splitting::Harmony(m) => m.marker(which, sink),
        }
    }
}

impl ReasoningSplitter {
    /// A splitter for one output. `thinking_enabled` comes from the request's template
    /// kwargs ([`ReasoningFormat::thinking_enabled`]); `start` from the rendered prompt.
    pub fn new(format: &'static ReasoningFormat, thinking_enabled: bool, start: StartOverride) -> Self {
        let mode = if !thinking_enabled {
            Mode::PassThrough
        } else {
            let state = match start {
                StartOverride::InReasoning => format.prompt_open,
                StartOverride::InContent => StartState::Content,
                StartOverride::FormatDefault => format.start,
            };
            match state {
                StartState::Reasoning => Mode::Reasoning,
                StartState::Content => Mode::Content,
                StartState::Undecided => Mode::Undecided,
            }
        };
        let machine = match format.machine {
            Machine::Harmony => Splitting::Harmony(harmony::Harmony::default()),
            Machine::Markers => Splitting::Table(Split {
                format,
                mode,
                open_written: false,
                pending: String::new(),
                lead: String::new(),
                begun: false,
            }),
        };
        ReasoningSplitter {
            feeder: Feeder::default(),
            machine,
        }
    }

    /// Whether the splitter is inside reasoning now (structured output waits for this to
    /// turn false).
    pub fn in_reasoning(&self) -> bool {
        match &self.machine {
            Splitting::Table(split) => split.mode == Mode::Reasoning,
            Splitting::Harmony(harmony) => harmony.in_reasoning(),
        }
    }
}

impl StreamParser for ReasoningSplitter {
    fn push(&mut self, text: &str, sink: &mut dyn Sink) {
        self.feeder.push(&mut self.machine, text, sink);
    }

    fn finish(&mut self, sink: &mut dyn Sink) {
        self.feeder.flush(&mut self.machine, sink);
        match &mut self.machine {
            Splitting::Harmony(harmony) => harmony.finish(sink),
            Splitting::Table(split) => {
                if !split.begun {
                    split.begin(sink);
                }
                if split.mode == Mode::Undecided && !split.pending.is_empty() {
                    let pending = std::mem::take(&mut split.pending);
                    sink.event(Event::Content(&pending));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::event::FallbackReason;
    use crate::testkit::{checked, checked_with, config, raw_events};
    use crate::StartOverride;

    fn split(r: &str, text: &str) -> (Option<String>, Option<String>) {
        let out = checked(Some(r), None, text);
        (
            out.reasoning_content().map(str::to_owned),
            out.content().map(str::to_owned),
        )
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_owned())
    }

    #[test]
    fn start_is_read_from_the_end_of_the_prompt_only() {
        let f = crate::reasoning_format("qwen3").unwrap_or_else(|e| panic!("{e}"));
        let history = "<|im_start|>assistant\n<think>\nx\n</think>\n\nhi<|im_end|>\n";
        assert_eq!(
            f.start_from_prompt("u<|im_start|>assistant\n<think>\n"),
            StartOverride::InReasoning
        );
        assert_eq!(
            f.start_from_prompt("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
            StartOverride::InContent
        );
        let fresh = format!("{history}<|im_start|>assistant\n");
        assert_eq!(f.start_from_prompt(&fresh), StartOverride::FormatDefault);
    }

    #[test]
    fn close_marker_split_after_text_is_found() {
        assert_eq!(split("deepseek_r1", "abc</think>def"), (s("abc"), s("def")));
        assert_eq!(
            split("deepseek_r1", "<think>\nabc</think>def"),
            (s("\nabc"), s("def"))
        );
    }

    #[test]
    fn whitespace_before_the_first_open_marker_is_formatting() {
        // vLLM's non-streaming R1 result for this output (its streaming one differs).
        assert_eq!(
            split("deepseek_r1", "\n<think>abc</think>\ndef"),
            (s("abc"), s("\ndef"))
        );
        assert_eq!(split("qwen3", "\n\n<think>abc</think>def"), (s("abc"), s("def")));
        // Anywhere else whitespace is text.
        assert_eq!(split("deepseek_r1", "\nabc</think>def"), (s("\nabc"), s("def")));
        assert_eq!(
            split("glm45", "x\n<think>abc</think>def"),
            (s("abc"), s("x\ndef"))
        );
    }

    #[test]
    fn several_blocks_go_to_reasoning_in_order() {
        assert_eq!(
            split("qwen3", "<think>a</think>b<think>c</think>d"),
            (s("ac"), s("bd"))
        );
    }

    #[test]
    fn qwen3_undecided_text_is_settled_by_the_first_marker() {
        assert_eq!(split("qwen3", "just an answer"), (None, s("just an answer")));
        assert_eq!(
            split("qwen3", "thought</think>answer"),
            (s("thought"), s("answer"))
        );
        assert_eq!(
            split("qwen3", "pre<think>thought</think>answer"),
            (s("thought"), s("preanswer"))
        );
    }

    #[test]
    fn thinking_off_passes_everything_through() {
        let mut cfg = config(Some("qwen3"), None);
        cfg.chat_template_kwargs = Some(serde_json::json!({"enable_thinking": false}));
        let out = checked_with(&cfg, "<think>x</think>y");
        assert_eq!(out.reasoning_content(), None);
        assert_eq!(out.content(), Some("<think>x</think>y"));
    }

    #[test]
    fn deepseek_v3_reasons_only_when_thinking_is_on() {
        assert_eq!(split("deepseek_v3", "a</think>b"), (None, s("a</think>b")));
        let mut cfg = config(Some("deepseek_v3"), None);
        cfg.chat_template_kwargs = Some(serde_json::json!({"thinking": true}));
        let out = checked_with(&cfg, "a</think>b");
        assert_eq!((out.reasoning_content(), out.content()), (Some("a"), Some("b")));
    }

    #[test]
    fn the_prompt_decides_the_start_state() {
        let mut cfg = config(Some("deepseek_r1"), None);
        cfg.start = StartOverride::InContent;
        assert_eq!(checked_with(&cfg, "plain").content(), Some("plain"));
        let mut cfg = config(Some("glm45"), None);
        cfg.start = StartOverride::InReasoning;
        assert_eq!(
            checked_with(&cfg, "hmm</think>ok").reasoning_content(),
            Some("hmm")
        );
    }

    #[test]
    fn kimi_k3_settles_a_prompt_opened_think_channel_by_what_comes_next() {
        let mut cfg = config(Some("kimi_k3"), None);
        cfg.start = StartOverride::InReasoning;
        // The response channel opened from reasoning ends it; its opener is removed.
        let out = checked_with(&cfg, "step<|open|>response<|sep|>answer");
        assert_eq!(
            (out.reasoning_content(), out.content()),
            (Some("step"), Some("answer"))
        );
        // Closing the response channel says the text was the answer all along.
        let out = checked_with(&cfg, "42.<|close|>response<|sep|>");
        assert_eq!((out.reasoning_content(), out.content()), (None, Some("42.")));
    }

    #[test]
    fn kimi_tool_section_ends_reasoning_and_stays_in_the_answer() {
        let (r, c) = split("kimi_k2", "plan<|tool_calls_section_begin|>x");
        assert_eq!((r, c), (s("plan"), s("<|tool_calls_section_begin|>x")));
    }

    #[test]
    fn a_stray_close_marker_is_removed_and_reported() {
        let out = checked(Some("minimax_m2"), None, "r</think>a</think>b");
        assert_eq!(out.content(), Some("ab"));
        assert_eq!(
            out.fallbacks,
            vec![(FallbackReason::StrayEndMarker, "</think>".to_owned())]
        );
    }

    #[test]
    fn append_think_keeps_tags_in_content_and_never_reads_calls_from_reasoning() {
        let text = "maybe <minimax:tool_call><invoke name=\"f\"></invoke></minimax:tool_call></think>done";
        let out = checked(Some("minimax_m2_append_think"), Some("minimax_m2"), text);
        assert_eq!(out.reasoning_content(), None);
        assert_eq!(out.content(), Some(&*format!("<think>{text}")));
        assert!(out.tool_calls.is_empty());
    }

    #[test]
    fn reasoning_streams_without_waiting_for_the_close_marker() {
        let events = raw_events(
            &config(Some("deepseek_r1"), None),
            &["Let me ", "think</th"],
            false,
        );
        // Everything but the possible start of `</think>` is out already.
        assert_eq!(events, ["Reasoning(\"Let me \")", "Reasoning(\"think\")"]);
    }
}
