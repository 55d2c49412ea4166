//! The model's output as Responses output items, in the order the model produced them:
//! `reasoning` (its text as `reasoning_text` content, a `summary` when asked for, and
//! `encrypted_content`, braid's seal of the text, when asked for), `message`
//! (`output_text`) and `function_call`. One state machine turns the bus's deltas into
//! the Responses stream events; a whole response's `output` is the items of its
//! `response.output_item.done` events, so both shapes agree by construction.

use std::sync::Arc;

use braid_bus::Delta;
use serde_json::{json, Value};

use crate::seal::Seal;
use crate::sse::Machine;

/// What the request asked the reasoning items to carry.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Asked {
    /// `reasoning.summary` was set: braid has no summariser, so the summary is the
    /// reasoning itself (Codex shows users only the summary).
    pub(crate) summary: bool,
    /// `include: ["reasoning.encrypted_content"]`.
    pub(crate) encrypted: bool,
    /// `parallel_tool_calls`: else calls after the first are dropped.
    pub(crate) parallel: bool,
}

/// The item being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning,
    Message,
    /// A function call, by its index in the model's calls.
    Call(u32),
}

/// Turns deltas into Responses events (each a JSON object with its `type`; the
/// `sequence_number` is set when it is sent).
pub(crate) struct Items {
    seal: Arc<Seal>,
    asked: Asked,
    /// Item ids are `{prefix}_{response}_{n}`.
    response: String,
    open: Option<Open>,
    /// The open item, as `output_item.done` will show it.
    item: Value,
    /// The open item's text (reasoning, message text or arguments).
    text: String,
    /// Items started (the next item's `output_index`).
    started: u32,
    /// Function calls started.
    calls: u32,
}

impl Items {
    /// A machine for the response `response` (its id without `resp_`).
    pub(crate) fn new(seal: Arc<Seal>, asked: Asked, response: String) -> Items {
        Items {
            seal,
            asked,
            response,
            open: None,
            item: Value::Null,
            text: String::new(),
            started: 0,
            calls: 0,
        }
    }

    /// Function calls written so far.
    pub(crate) fn calls(&self) -> u32 {
        self.calls
    }

    fn index(&self) -> u32 {
        self.started.saturating_sub(1)
    }

    /// An event about the open item.
    fn event(&self, kind: &str, mut fields: Value) -> Value {
        fields["type"] = json!(kind);
        fields["item_id"] = self.item["id"].clone();
        fields["output_index"] = json!(self.index());
        fields
    }

    /// Opens an item of `kind` unless one is open: closes the open one, announces the
    /// new one.
    fn ensure(&mut self, kind: Open, item: impl FnOnce(&str) -> Value, out: &mut Vec<Value>) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let prefix = match kind {
            Open::Reasoning => "rs",
            Open::Message => "msg",
            Open::Call(_) => "fc",
        };
        let id = format!("{prefix}_{}_{}", self.response, self.started);
        self.item = item(&id);
        out.push(
            json!({"type": "response.output_item.added", "output_index": self.started, "item": self.item}),
        );
        self.open = Some(kind);
        self.started += 1;
        match kind {
            Open::Reasoning if self.asked.summary => out.push(self.event(
                "response.reasoning_summary_part.added",
                json!({"summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
            )),
            Open::Message => out.push(self.event(
                "response.content_part.added",
                json!({"content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            )),
            _ => {}
        }
    }
}

impl Machine for Items {
    type Event = Value;

    /// Closes the open item, if any: its `.done` events, then `output_item.done`.
    fn close(&mut self, out: &mut Vec<Value>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let text = std::mem::take(&mut self.text);
        match open {
            Open::Reasoning => {
                if self.asked.summary {
                    out.push(self.event(
                        "response.reasoning_summary_text.done",
                        json!({"summary_index": 0, "text": text}),
                    ));
                    let part = json!({"type": "summary_text", "text": text});
                    out.push(self.event(
                        "response.reasoning_summary_part.done",
                        json!({"summary_index": 0, "part": part}),
                    ));
                    self.item["summary"] = json!([part]);
                }
                out.push(self.event(
                    "response.reasoning_text.done",
                    json!({"content_index": 0, "text": text}),
                ));
                self.item["content"] = json!([{"type": "reasoning_text", "text": text}]);
                if self.asked.encrypted {
                    self.item["encrypted_content"] = json!(self.seal.seal(&text));
                }
            }
            Open::Message => {
                out.push(self.event(
                    "response.output_text.done",
                    json!({"content_index": 0, "text": text}),
                ));
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                out.push(self.event(
                    "response.content_part.done",
                    json!({"content_index": 0, "part": part}),
                ));
                self.item["content"] = json!([part]);
                self.item["status"] = json!("completed");
            }
            Open::Call(_) => {
                out.push(self.event(
                    "response.function_call_arguments.done",
                    json!({"arguments": text}),
                ));
                self.item["arguments"] = json!(text);
                self.item["status"] = json!("completed");
            }
        }
        out.push(
            json!({"type": "response.output_item.done", "output_index": self.index(), "item": self.item}),
        );
    }

    /// The events of one delta.
    fn push(&mut self, d: &Delta, out: &mut Vec<Value>) {
        match d {
            Delta::Reasoning { text } => {
                self.ensure(
                    Open::Reasoning,
                    |id| json!({"type": "reasoning", "id": id, "summary": [], "content": [], "encrypted_content": null}),
                    out,
                );
                self.text.push_str(text);
                if self.asked.summary {
                    out.push(self.event(
                        "response.reasoning_summary_text.delta",
                        json!({"summary_index": 0, "delta": text}),
                    ));
                }
                out.push(self.event(
                    "response.reasoning_text.delta",
                    json!({"content_index": 0, "delta": text}),
                ));
            }
            Delta::Content { text }
            | Delta::Fallback {
                text, content: true, ..
            } => {
                // A message starts at its first visible character (the whitespace a
                // family's markup leaves between items opens none).
                let text = if self.open == Some(Open::Message) {
                    text.as_str()
                } else {
                    text.trim_start()
                };
                if text.is_empty() {
                    return;
                }
                self.ensure(
                    Open::Message,
                    |id| json!({"type": "message", "id": id, "role": "assistant", "status": "in_progress", "content": []}),
                    out,
                );
                self.text.push_str(text);
                out.push(self.event(
                    "response.output_text.delta",
                    json!({"content_index": 0, "delta": text}),
                ));
            }
            Delta::ToolCallStart { index, id, name } if self.asked.parallel || *index == 0 => {
                self.calls += 1;
                self.ensure(
                    Open::Call(*index),
                    |item| json!({"type": "function_call", "id": item, "call_id": id, "name": name, "arguments": "", "status": "in_progress"}),
                    out,
                );
            }
            Delta::ToolCallArguments { index, fragment } if self.open == Some(Open::Call(*index)) => {
                self.text.push_str(fragment);
                out.push(self.event(
                    "response.function_call_arguments.delta",
                    json!({"delta": fragment}),
                ));
            }
            Delta::ToolCallEnd { index, .. } | Delta::ToolCallAborted { index }
                if self.open == Some(Open::Call(*index)) =>
            {
                self.close(out);
            }
            _ => {}
        }
    }
}

/// The output items the events describe (a whole response's `output`).
pub(crate) fn fold(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| e["item"].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(deltas: &[Delta], asked: Asked) -> (Seal, Vec<Value>) {
        let seal = Seal::from_secret("test");
        let mut items = Items::new(Arc::new(seal.clone()), asked, "r1".into());
        let mut out = Vec::new();
        for d in deltas {
            items.push(d, &mut out);
        }
        items.close(&mut out);
        (seal, out)
    }

    fn loop_round() -> Vec<Delta> {
        vec![
            Delta::Reasoning {
                text: "I should ".into(),
            },
            Delta::Reasoning { text: "look.".into() },
            Delta::Content { text: "\n\n".into() },
            Delta::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "exec_command".into(),
            },
            Delta::ToolCallArguments {
                index: 0,
                fragment: "{\"cmd\": ".into(),
            },
            Delta::ToolCallArguments {
                index: 0,
                fragment: "\"ls\"}".into(),
            },
            Delta::ToolCallEnd {
                index: 0,
                outcome: "parsed".into(),
            },
            Delta::Content { text: "Done.".into() },
        ]
    }

    #[test]
    fn items_follow_the_model_with_summary_and_sealed_reasoning_when_asked() {
        let asked = Asked {
            summary: true,
            encrypted: true,
            parallel: true,
        };
        let (seal, events) = run(&loop_round(), asked);
        let output = fold(&events);
        let types: Vec<&str> = output.iter().filter_map(|i| i["type"].as_str()).collect();
        assert_eq!(types, ["reasoning", "function_call", "message"]);
        let reasoning = &output[0];
        assert_eq!(reasoning["id"], "rs_r1_0");
        assert_eq!(
            reasoning["content"],
            json!([{"type": "reasoning_text", "text": "I should look."}])
        );
        assert_eq!(
            reasoning["summary"],
            json!([{"type": "summary_text", "text": "I should look."}])
        );
        let sealed = reasoning["encrypted_content"].as_str().unwrap_or_default();
        assert_eq!(seal.open(sealed).as_deref(), Some("I should look."));
        assert_eq!(output[1]["call_id"], "call_a");
        assert_eq!(output[1]["arguments"], "{\"cmd\": \"ls\"}");
        assert_eq!(output[1]["status"], "completed");
        assert_eq!(output[2]["content"][0]["text"], "Done.");
        // Every item is announced before its deltas and done after them.
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or(usize::MAX);
        assert!(at("response.output_item.added") < at("response.reasoning_text.delta"));
        assert!(at("response.reasoning_summary_text.done") < at("response.output_item.done"));
        assert!(at("response.function_call_arguments.done") < at("response.output_text.delta"));
    }

    #[test]
    fn without_asking_the_reasoning_item_has_no_summary_or_seal() {
        let (_, events) = run(
            &loop_round(),
            Asked {
                parallel: true,
                ..Asked::default()
            },
        );
        let output = fold(&events);
        assert_eq!(output[0]["summary"], json!([]));
        assert_eq!(output[0]["encrypted_content"], Value::Null);
        assert!(!events
            .iter()
            .any(|e| e["type"] == "response.reasoning_summary_text.delta"));
    }
}
