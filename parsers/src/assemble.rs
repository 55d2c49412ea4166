//! The non-streaming view of an output: events gathered into `reasoning_content`,
//! `content` and `tool_calls`, as a chat completion message carries them.

use crate::event::{CallOutcome, Event, FallbackReason, Sink};

/// One assembled tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    /// The call id.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments JSON string.
    pub arguments: String,
    /// How it parsed (`None` until its end event).
    pub outcome: Option<CallOutcome>,
}

/// An output gathered from its events. Streaming and non-streaming parsing of the same
/// output assemble to equal values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedOutput {
    /// All reasoning text, in order.
    pub reasoning: String,
    /// All answer text, in order (including fallback text that belongs to it).
    pub content: String,
    /// Tool calls by index; withdrawn calls removed.
    pub tool_calls: Vec<ParsedCall>,
    /// Every fallback, in order.
    pub fallbacks: Vec<(FallbackReason, String)>,
    slots: Vec<Option<usize>>,
}

impl ParsedOutput {
    /// `reasoning_content`: `None` when empty or only whitespace.
    pub fn reasoning_content(&self) -> Option<&str> {
        non_blank(&self.reasoning)
    }

    /// `content`: `None` when empty or only whitespace.
    pub fn content(&self) -> Option<&str> {
        non_blank(&self.content)
    }

    fn call_mut(&mut self, index: usize) -> Option<&mut ParsedCall> {
        let slot = self.slots.get(index).copied().flatten()?;
        self.tool_calls.get_mut(slot)
    }
}

fn non_blank(s: &str) -> Option<&str> {
    if s.trim().is_empty() {
        None
    } else {
        Some(s)
    }
}

impl Sink for ParsedOutput {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Reasoning(t) => self.reasoning.push_str(t),
            Event::Content(t) => self.content.push_str(t),
            Event::ToolCallStart { index, id, name } => {
                if self.slots.len() <= index {
                    self.slots.resize(index + 1, None);
                }
                self.slots[index] = Some(self.tool_calls.len());
                self.tool_calls.push(ParsedCall {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    arguments: String::new(),
                    outcome: None,
                });
            }
            Event::ToolCallArguments { index, fragment } => {
                if let Some(call) = self.call_mut(index) {
                    call.arguments.push_str(fragment);
                }
            }
            Event::ToolCallEnd { index, outcome } => {
                if let Some(call) = self.call_mut(index) {
                    call.outcome = Some(outcome);
                }
            }
            Event::ToolCallAborted { index } => {
                if let Some(slot) = self.slots.get_mut(index).and_then(Option::take) {
                    self.tool_calls.remove(slot);
                    for s in self.slots.iter_mut().flatten() {
                        if *s > slot {
                            *s -= 1;
                        }
                    }
                }
            }
            Event::Fallback { reason, text } => {
                if reason.text_is_content() {
                    self.content.push_str(text);
                }
                self.fallbacks.push((reason, text.to_owned()));
            }
        }
    }
}
