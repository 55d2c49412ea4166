//! OpenAI gpt-oss's Harmony format (`openai_gptoss`): the output is a run of messages,
//! each a header, `<|message|>`, and a body ended by `<|end|>`, `<|call|>` or
//! `<|return|>`; later messages begin with `<|start|>ROLE`.
//!
//! ```text
//! <|channel|>analysis<|message|>Need weather.<|end|>
//! <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>
//! ```
//!
//! The header's channel says where the body goes: `analysis` to reasoning, `final` (and
//! `commentary` without a recipient, a preamble the user may see) to the answer. A
//! message with a recipient (`to=…`, in the role or the channel part of the header) is a
//! call: it is handed on to the tool parser (`openai`) as `to=RECIPIENT<|message|>BODY<|call|>`
//! in the answer. A message without a header (text before any `<|message|>`, ended by
//! an end marker) is answer, as the reference parser keeps it; a header the output ends
//! inside is dropped. The prompt ends with `<|start|>assistant`, so output starts in a
//! header. Source: OpenAI's `openai-harmony`, vLLM `reasoning/gptoss_reasoning_parser.py`.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose};
use crate::event::{Event, FallbackReason, Sink};
use crate::scan::{MarkerMachine, Step};
use crate::tools::first_word;

const MESSAGE: &str = "<|message|>";
const START: &str = "<|start|>";
const END: &str = "<|end|>";
const CALL: &str = "<|call|>";
const RETURN: &str = "<|return|>";
const CHANNEL: &str = "<|channel|>";
/// Opens reasoning (for the engine's reasoning gate).
const ANALYSIS: &str = "<|channel|>analysis<|message|>";

/// The `openai_gptoss` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "openai_gptoss",
    open: ANALYSIS,
    close: END,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[],
    answer_wrap: &[],
    reasoning_markers: &[],
    content_markers: &[],
    start: StartState::Undecided,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::Removed,
    switch: None,
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Harmony,
};

/// Where a message's body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Reasoning,
    Answer,
    Call,
}

/// The Harmony splitter state machine.
#[derive(Debug, Default)]
pub(crate) struct Harmony {
    /// In a body, and where it goes; `None`: in a header.
    body: Option<Body>,
    /// The header read so far.
    header: String,
    /// Whether a `<|start|>` began the current header (it is then surely a header).
    started: bool,
}

impl Harmony {
    /// Whether the current body is reasoning.
    pub(crate) fn in_reasoning(&self) -> bool {
        self.body == Some(Body::Reasoning)
    }

    /// Reads the header at `<|message|>` and starts its body.
    fn open_body(&mut self, sink: &mut dyn Sink) {
        let header = std::mem::take(&mut self.header);
        let channel = header.split_once(CHANNEL).map(|(_, rest)| first_word(rest));
        let recipient = header.split_once("to=").map(|(_, rest)| first_word(rest));
        self.body = Some(match (recipient, channel) {
            (Some(to), _) if !to.is_empty() => {
                sink.event(Event::Content("to="));
                sink.event(Event::Content(to));
                sink.event(Event::Content(MESSAGE));
                Body::Call
            }
            (_, Some("analysis")) => Body::Reasoning,
            _ => Body::Answer,
        });
        self.header = header;
        self.header.clear();
        self.started = false;
    }

    /// The end of a header that never reached `<|message|>`: a headerless message's text is
    /// answer; a begun header is dropped.
    fn end_header(&mut self, sink: &mut dyn Sink) {
        if !self.header.is_empty() {
            if self.started || self.header.contains(CHANNEL) {
                sink.event(Event::Fallback {
                    reason: FallbackReason::UnfinishedHeader,
                    text: &self.header,
                });
            } else {
                sink.event(Event::Content(&self.header));
            }
        }
        self.header.clear();
        self.started = false;
    }

    /// The output has ended.
    pub(crate) fn finish(&mut self, sink: &mut dyn Sink) {
        if self.body.is_none() {
            self.end_header(sink);
        }
    }
}

impl MarkerMachine for Harmony {
    fn markers(&self) -> &'static [&'static str] {
        match self.body {
            None => &[MESSAGE, START, END, CALL, RETURN],
            Some(_) => &[END, CALL, RETURN, START],
        }
    }

    fn text(&mut self, text: &str, sink: &mut dyn Sink) {
        match self.body {
            None => self.header.push_str(text),
            Some(Body::Reasoning) if !text.is_empty() => sink.event(Event::Reasoning(text)),
            Some(Body::Answer | Body::Call) if !text.is_empty() => sink.event(Event::Content(text)),
            Some(_) => {}
        }
    }

    fn marker(&mut self, which: usize, sink: &mut dyn Sink) -> Step {
        let marker = self.markers()[which];
        match (self.body, marker) {
            (None, MESSAGE) => self.open_body(sink),
            (None, START) => {
                self.end_header(sink);
                self.started = true;
            }
            (None, _) => self.end_header(sink),
            (Some(body), _) => {
                if body == Body::Call {
                    sink.event(Event::Content(CALL));
                }
                self.body = None;
                self.started = marker == START;
            }
        }
        Step::Consume
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::checked;

    #[test]
    fn analysis_is_reasoning_final_is_answer_and_calls_go_to_the_tool_parser() {
        let text = "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>";
        let out = checked(Some("openai_gptoss"), Some("openai"), text);
        assert_eq!(out.reasoning_content(), Some("Need weather."));
        assert_eq!(out.content(), None);
        assert_eq!(out.tool_calls.len(), 1);
        assert_eq!(out.tool_calls[0].name, "get_weather");
        assert_eq!(out.tool_calls[0].arguments, "{\"city\": \"Paris\"}");
    }

    #[test]
    fn arguments_that_are_not_json_are_kept_raw_and_reported() {
        let text = "<|channel|>commentary to=functions.f <|constrain|>json<|message|>foo<|call|><|start|>assistant<|channel|>commentary to=functions.g<|message|><|call|>";
        let out = checked(Some("openai_gptoss"), Some("openai"), text);
        let calls: Vec<_> = out
            .tool_calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.as_str(), c.outcome))
            .collect();
        assert_eq!(
            calls,
            [
                ("f", "foo", Some(crate::CallOutcome::InvalidArguments)),
                ("g", "{}", Some(crate::CallOutcome::Parsed))
            ]
        );
    }

    #[test]
    fn a_headerless_message_is_answer_and_a_cut_header_is_dropped() {
        let out = checked(
            Some("openai_gptoss"),
            None,
            "Sorry.<|end|><|start|>assistant<|channel|>fin",
        );
        assert_eq!(out.content(), Some("Sorry."));
        assert_eq!(out.reasoning_content(), None);
    }
}
