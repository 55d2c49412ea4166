//! A whole response from its chunks: what a non-streaming client gets, and what tests
//! compare.

use crate::message::{Chunk, Delta, Finish, Usage};

/// One tool call, assembled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectedCall {
    /// The call id.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments JSON string.
    pub arguments: String,
    /// `parsed`, `invalid_arguments` or `unknown_function` (empty while open).
    pub outcome: String,
}

/// A response assembled from chunks, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Collected {
    /// All reasoning text.
    pub reasoning: String,
    /// All answer text (content fallbacks included).
    pub content: String,
    /// Tool calls by index (withdrawn calls removed).
    pub tool_calls: Vec<CollectedCall>,
    /// Fallback reasons seen, in order.
    pub fallbacks: Vec<String>,
    /// How it ended.
    pub finish: Option<Finish>,
    /// Token counts.
    pub usage: Option<Usage>,
    /// Chunks received.
    pub chunks: usize,
}

impl Collected {
    /// Adds one chunk.
    pub fn push(&mut self, chunk: &Chunk) {
        self.chunks += 1;
        for d in &chunk.deltas {
            match d {
                Delta::Reasoning { text } => self.reasoning.push_str(text),
                Delta::Content { text } => self.content.push_str(text),
                Delta::ToolCallStart { index, id, name } => {
                    let i = *index as usize;
                    if self.tool_calls.len() <= i {
                        self.tool_calls.resize(i + 1, CollectedCall::default());
                    }
                    self.tool_calls[i].id.clone_from(id);
                    self.tool_calls[i].name.clone_from(name);
                }
                Delta::ToolCallArguments { index, fragment } => {
                    if let Some(c) = self.tool_calls.get_mut(*index as usize) {
                        c.arguments.push_str(fragment);
                    }
                }
                Delta::ToolCallEnd { index, outcome } => {
                    if let Some(c) = self.tool_calls.get_mut(*index as usize) {
                        c.outcome.clone_from(outcome);
                    }
                }
                Delta::ToolCallAborted { index } => {
                    if (*index as usize) < self.tool_calls.len() {
                        self.tool_calls.truncate(*index as usize);
                    }
                }
                Delta::Fallback {
                    reason,
                    text,
                    content,
                } => {
                    self.fallbacks.push(reason.clone());
                    if *content {
                        self.content.push_str(text);
                    }
                }
            }
        }
        if chunk.finish.is_some() {
            self.finish.clone_from(&chunk.finish);
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
    }
}
