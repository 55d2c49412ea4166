//! The model's output as Anthropic content blocks, in the order the model produced them:
//! reasoning becomes `thinking` blocks (each closed by a `signature_delta` that seals its
//! text), answer text `text` blocks, tool calls `tool_use` blocks. One state machine
//! turns the bus's deltas into Anthropic's stream events; a whole (non-streamed) message
//! is the same events folded into a content list, so both shapes agree by construction.

use std::sync::Arc;

use braid_bus::Delta;
use serde_json::{json, Value};

use crate::seal::Seal;
use crate::sse::Machine;

/// One stream event: its SSE `event:` name and its data.
pub(crate) type Event = (&'static str, Value);

/// The block being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    /// A tool call, by its index in the model's calls.
    Tool(u32),
}

/// Turns deltas into content-block events.
pub(crate) struct Blocks {
    seal: Arc<Seal>,
    /// `display: "omitted"`: thinking blocks carry only their signature.
    omitted: bool,
    /// Calls after the first are dropped (`disable_parallel_tool_use`).
    parallel: bool,
    open: Option<Open>,
    /// The open thinking block's text, for its signature.
    thinking: String,
    /// Blocks started so far (the next block's index).
    started: u32,
    /// Tool calls started so far.
    tools: u32,
}

impl Blocks {
    /// A machine sealing thinking with `seal`.
    pub(crate) fn new(seal: Arc<Seal>, omitted: bool, parallel: bool) -> Blocks {
        Blocks {
            seal,
            omitted,
            parallel,
            open: None,
            thinking: String::new(),
            started: 0,
            tools: 0,
        }
    }

    /// Tool-use blocks written so far.
    pub(crate) fn tool_uses(&self) -> u32 {
        self.tools
    }

    /// Opens a block of `kind` unless one is open already; the index of the open block.
    fn ensure(&mut self, kind: Open, block: impl FnOnce() -> Value, out: &mut Vec<Event>) -> u32 {
        if self.open != Some(kind) {
            self.close(out);
            out.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": self.started, "content_block": block()}),
            ));
            self.open = Some(kind);
            self.started += 1;
        }
        self.started - 1
    }
}

impl Machine for Blocks {
    type Event = Event;

    /// Closes the open block, if any.
    fn close(&mut self, out: &mut Vec<Event>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.started - 1;
        if open == Open::Thinking {
            let signature = self.seal.seal(&self.thinking);
            self.thinking.clear();
            out.push(delta(index, "signature_delta", "signature", &signature));
        }
        out.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }

    /// The events of one delta.
    fn push(&mut self, d: &Delta, out: &mut Vec<Event>) {
        match d {
            Delta::Reasoning { text } => {
                let i = self.ensure(
                    Open::Thinking,
                    || json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                );
                self.thinking.push_str(text);
                if !self.omitted {
                    out.push(delta(i, "thinking_delta", "thinking", text));
                }
            }
            Delta::Content { text }
            | Delta::Fallback {
                text, content: true, ..
            } => {
                // The whitespace a family's markup leaves between blocks (`</think>\n\n`)
                // would open text blocks of nothing: a text block starts at its first
                // visible character.
                let text = if self.open == Some(Open::Text) {
                    text.as_str()
                } else {
                    text.trim_start()
                };
                if text.is_empty() {
                    return;
                }
                let i = self.ensure(Open::Text, || json!({"type": "text", "text": ""}), out);
                out.push(delta(i, "text_delta", "text", text));
            }
            Delta::ToolCallStart { index, id, name } if self.parallel || *index == 0 => {
                self.tools += 1;
                self.ensure(
                    Open::Tool(*index),
                    || json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
            }
            Delta::ToolCallArguments { index, fragment } if self.open == Some(Open::Tool(*index)) => {
                let i = self.started - 1;
                out.push(delta(i, "input_json_delta", "partial_json", fragment));
            }
            Delta::ToolCallEnd { index, .. } | Delta::ToolCallAborted { index }
                if self.open == Some(Open::Tool(*index)) =>
            {
                self.close(out);
            }
            _ => {}
        }
    }
}

/// A `content_block_delta` event: a delta of type `kind` whose `key` is `value`.
fn delta(index: u32, kind: &str, key: &str, value: &str) -> Event {
    let mut d = serde_json::Map::new();
    d.insert("type".into(), kind.into());
    d.insert(key.into(), value.into());
    (
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": d}),
    )
}

/// The content list the events describe (a whole message's `content`). A tool call's
/// input is its argument text decoded; text that is not JSON is kept as a string rather
/// than lost.
pub(crate) fn fold(events: &[Event]) -> Vec<Value> {
    let mut content: Vec<Value> = Vec::new();
    let mut json_text = String::new();
    for (name, data) in events {
        match *name {
            "content_block_start" => {
                content.push(data["content_block"].clone());
                json_text.clear();
            }
            "content_block_delta" => {
                let Some(block) = content.last_mut() else { continue };
                let d = &data["delta"];
                // In place: a long answer's deltas are appended, never copied again.
                let append = |block: &mut Value, key: &str, more: &Value| {
                    if let (Value::String(text), Some(more)) = (&mut block[key], more.as_str()) {
                        text.push_str(more);
                    }
                };
                match d["type"].as_str() {
                    Some("thinking_delta") => append(block, "thinking", &d["thinking"]),
                    Some("text_delta") => append(block, "text", &d["text"]),
                    Some("signature_delta") => block["signature"] = d["signature"].clone(),
                    Some("input_json_delta") => {
                        json_text.push_str(d["partial_json"].as_str().unwrap_or_default())
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(block) = content.last_mut().filter(|b| b["type"] == "tool_use") {
                    if !json_text.is_empty() {
                        block["input"] = serde_json::from_str(&json_text)
                            .unwrap_or_else(|_| Value::String(std::mem::take(&mut json_text)));
                    }
                }
            }
            _ => {}
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(deltas: &[Delta], omitted: bool, parallel: bool) -> (Seal, Vec<Event>) {
        let seal = Seal::from_secret("test");
        let mut blocks = Blocks::new(Arc::new(seal.clone()), omitted, parallel);
        let mut out = Vec::new();
        for d in deltas {
            blocks.push(d, &mut out);
        }
        blocks.close(&mut out);
        (seal, out)
    }

    fn reasoning(t: &str) -> Delta {
        Delta::Reasoning { text: t.into() }
    }

    fn content(t: &str) -> Delta {
        Delta::Content { text: t.into() }
    }

    fn call(index: u32, name: &str, args: &[&str]) -> Vec<Delta> {
        let mut d = vec![Delta::ToolCallStart {
            index,
            id: format!("call_{index}"),
            name: name.into(),
        }];
        d.extend(args.iter().map(|a| Delta::ToolCallArguments {
            index,
            fragment: (*a).into(),
        }));
        d.push(Delta::ToolCallEnd {
            index,
            outcome: "parsed".into(),
        });
        d
    }

    #[test]
    fn blocks_follow_the_order_the_model_wrote_them_in() {
        let mut deltas = vec![reasoning("I should "), reasoning("look."), content("Looking.")];
        deltas.extend(call(0, "ls", &["{\"dir\"", ": \".\"}"]));
        deltas.push(reasoning("And the time."));
        deltas.extend(call(1, "now", &["{}"]));
        let (seal, events) = run(&deltas, false, true);
        let names: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert_eq!(names.iter().filter(|n| **n == "content_block_start").count(), 5);
        assert_eq!(names.iter().filter(|n| **n == "content_block_stop").count(), 5);
        let content = fold(&events);
        let types: Vec<&str> = content.iter().filter_map(|b| b["type"].as_str()).collect();
        assert_eq!(types, ["thinking", "text", "tool_use", "thinking", "tool_use"]);
        assert_eq!(content[0]["thinking"], "I should look.");
        assert_eq!(
            seal.open(content[0]["signature"].as_str().unwrap_or_default())
                .as_deref(),
            Some("I should look.")
        );
        assert_eq!(
            seal.open(content[3]["signature"].as_str().unwrap_or_default())
                .as_deref(),
            Some("And the time.")
        );
        assert_eq!(content[1]["text"], "Looking.");
        assert_eq!(content[2]["input"], json!({"dir": "."}));
        assert_eq!(content[4]["name"], "now");
        // The signature comes before its block's stop, as Anthropic sends it.
        let first_stop = events
            .iter()
            .position(|e| e.0 == "content_block_stop")
            .unwrap_or(0);
        assert_eq!(events[first_stop - 1].1["delta"]["type"], "signature_delta");
    }

    #[test]
    fn omitted_thinking_carries_its_text_in_the_signature_alone() {
        let (seal, events) = run(&[reasoning("secret plan"), content("ok")], true, true);
        assert!(!events.iter().any(|e| e.1["delta"]["type"] == "thinking_delta"));
        let content = fold(&events);
        assert_eq!(content[0]["thinking"], "");
        assert_eq!(
            seal.open(content[0]["signature"].as_str().unwrap_or_default())
                .as_deref(),
            Some("secret plan")
        );
    }

    #[test]
    fn whitespace_between_blocks_opens_no_text_block() {
        let mut deltas = vec![reasoning("think"), content("\n\n"), content(" ")];
        deltas.extend(call(0, "a", &["{}"]));
        deltas.extend([
            reasoning("again"),
            content("\n\n"),
            content("Answer"),
            content(" \n"),
        ]);
        let (_, events) = run(&deltas, false, true);
        let content = fold(&events);
        let types: Vec<&str> = content.iter().filter_map(|b| b["type"].as_str()).collect();
        assert_eq!(types, ["thinking", "tool_use", "thinking", "text"]);
        assert_eq!(content[3]["text"], "Answer \n");
    }

    #[test]
    fn without_parallel_calls_only_the_first_is_kept() {
        let mut deltas = call(0, "a", &["{}"]);
        deltas.extend(call(1, "b", &["{}"]));
        let (_, events) = run(&deltas, false, false);
        let content = fold(&events);
        assert_eq!(content.len(), 1);
        assert_eq!(content[0]["name"], "a");
    }

    #[test]
    fn arguments_that_are_not_json_are_kept_as_text() {
        let (_, events) = run(&call(0, "a", &["{\"x\": "]), false, true);
        assert_eq!(fold(&events)[0]["input"], json!("{\"x\": "));
    }
}
