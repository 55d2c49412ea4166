//! The Responses API's `instructions`, `input` items and `tools` decoded into the bus's
//! typed conversation: the one place their JSON is read. Errors name the item and field
//! (`input[5].call_id`).
//!
//! Choices where the Responses shape and a chat template's differ:
//! - `instructions`, then every `system` or `developer` message (Codex sends its system
//!   prompt as two `developer` messages) become one system prompt, in order, at the top:
//!   most templates render no `developer` role, and take a system message only first.
//! - Consecutive `reasoning`, `function_call` and assistant `message` items are one
//!   assistant turn; `function_call_output` items are tool messages.
//! - A reasoning item's `encrypted_content` is braid's seal of its reasoning
//!   ([`crate::seal`]): when it opens, the sealed text is what the template sees (so a
//!   `store: false` conversation keeps its reasoning); when it does not, the item's
//!   `reasoning_text` is used as sent and the miss counted, or refused under
//!   `--strict-signatures`. The `summary` is a copy and is not rendered.

use std::collections::HashSet;

use braid_bus::{ChatMessage, Role, ToolCall, ToolSpec};
use serde_json::Value;

use crate::conversation::Declared;
use crate::error::ApiError;
use crate::seal::Signatures;
use crate::structured::ToolChoice;

fn invalid(message: String) -> ApiError {
    ApiError::invalid("input", message)
}

/// A required string field of an item.
fn string<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str, ApiError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.{key} must be a string")))
}

/// A message's or output's text: a string, or text parts.
fn text(content: Option<&Value>, at: &str) -> Result<String, ApiError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(invalid(format!(
                "{at} must be a string or a list of content parts"
            )))
        }
    };
    let mut out = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let at = format!("{at}[{j}]");
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => out.push(string(p, "text", &at)?),
            Some("refusal") => out.push(string(p, "refusal", &at)?),
            Some(kind @ ("input_image" | "input_file" | "input_audio")) => {
                return Err(invalid(format!(
                    "{at}: {kind} parts are not supported: this server's models read text"
                )))
            }
            other => {
                return Err(invalid(format!(
                    "{at}: content parts of type {:?} are not supported here",
                    other.unwrap_or("(none)")
                )))
            }
        }
    }
    Ok(out.join("\n"))
}

/// The conversation so far, built item by item.
struct Turns {
    instructions: Vec<String>,
    out: Vec<ChatMessage>,
    /// The assistant turn being gathered (reasoning, calls, text).
    assistant: Option<ChatMessage>,
    /// Call ids of the function calls seen so far.
    called: HashSet<String>,
}

impl Turns {
    fn flush(&mut self) {
        if let Some(turn) = self.assistant.take() {
            self.out.push(turn);
        }
    }

    fn assistant(&mut self) -> &mut ChatMessage {
        self.assistant.get_or_insert_with(|| ChatMessage {
            content: None,
            ..ChatMessage::text(Role::Assistant, "")
        })
    }
}

/// The earlier conversation (`before`, from `previous_response_id`) and `input`, as chat
/// messages: every `system` and `developer` message joined into one system message first.
pub(crate) fn messages(
    before: Vec<ChatMessage>,
    input: &Value,
    signatures: &Signatures<'_>,
) -> Result<Vec<ChatMessage>, ApiError> {
    let mut turns = Turns {
        instructions: Vec::new(),
        out: Vec::new(),
        assistant: None,
        called: HashSet::new(),
    };
    for m in before {
        if let Some(calls) = &m.tool_calls {
            turns.called.extend(calls.iter().map(|c| c.id.clone()));
        }
        match m.role {
            Role::System | Role::Developer => turns.instructions.extend(m.content),
            _ => turns.out.push(m),
        }
    }
    let items = match input {
        Value::String(s) => vec![serde_json::json!({"role": "user", "content": s})],
        Value::Array(items) => items.clone(),
        _ => return Err(invalid("input must be a string or a list of items".into())),
    };
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        item_into(item, &at, signatures, &mut turns)?;
    }
    turns.flush();
    if turns.out.is_empty() {
        return Err(invalid("input holds no message".into()));
    }
    if !turns.instructions.is_empty() {
        turns.out.insert(
            0,
            ChatMessage::text(Role::System, turns.instructions.join("\n\n")),
        );
    }
    Ok(turns.out)
}

/// The conversation as rendered: `instructions` (this request's only; a stored
/// conversation does not keep them) ahead of the system message, if any.
pub(crate) fn instructed(instructions: Option<&str>, history: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out = history.to_vec();
    let Some(instructions) = instructions.filter(|i| !i.is_empty()) else {
        return out;
    };
    match out.first_mut() {
        Some(first) if first.role == Role::System => {
            let rest = first.content.take().unwrap_or_default();
            first.content = Some(format!("{instructions}\n\n{rest}"));
        }
        _ => out.insert(0, ChatMessage::text(Role::System, instructions)),
    }
    out
}

fn item_into(item: &Value, at: &str, signatures: &Signatures<'_>, turns: &mut Turns) -> Result<(), ApiError> {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = item.get("role").and_then(Value::as_str);
            let content = text(item.get("content"), &format!("{at}.content"))?;
            match role {
                Some("system" | "developer") => {
                    turns.flush();
                    turns.instructions.push(content);
                }
                Some("user") => {
                    turns.flush();
                    turns.out.push(ChatMessage::text(Role::User, content));
                }
                Some("assistant") => {
                    let turn = turns.assistant();
                    let joined = match turn.content.take() {
                        Some(before) if !before.is_empty() => format!("{before}{content}"),
                        _ => content,
                    };
                    turn.content = Some(joined);
                }
                other => {
                    return Err(invalid(format!(
                        "{at}.role {:?} is not user, assistant, system or developer",
                        other.unwrap_or("(none)")
                    )))
                }
            }
        }
        "reasoning" => {
            let shown = match item.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                Some(_) => return Err(invalid(format!("{at}.content must be a list of reasoning_text parts or null"))),
            };
            let reasoning = match item.get("encrypted_content").and_then(Value::as_str) {
                Some(sealed) => signatures.restore(&shown, Some(sealed), "encrypted_content", &format!("{at}.encrypted_content"))?,
                None => shown,
            };
            if !reasoning.is_empty() {
                let turn = turns.assistant();
                turn.reasoning = Some(match turn.reasoning.take() {
                    Some(before) => format!("{before}\n\n{reasoning}"),
                    None => reasoning,
                });
            }
        }
        "function_call" => {
            let id = string(item, "call_id", at)?.to_owned();
            let name = string(item, "name", at)?.to_owned();
            let arguments = string(item, "arguments", at)?.to_owned();
            let parsed = serde_json::from_str::<Value>(&arguments).ok().filter(Value::is_object);
            turns.called.insert(id.clone());
            turns.assistant().tool_calls.get_or_insert_with(Vec::new).push(ToolCall {
                id,
                name,
                arguments,
                parsed,
            });
        }
        "function_call_output" => {
            turns.flush();
            let id = string(item, "call_id", at)?;
            if !turns.called.contains(id) {
                return Err(invalid(format!(
                    "{at}.call_id {id:?} answers no function_call before it"
                )));
            }
            let output = text(item.get("output"), &format!("{at}.output"))?;
            turns.out.push(ChatMessage {
                tool_call_id: Some(id.to_owned()),
                ..ChatMessage::text(Role::Tool, output)
            });
        }
        other => {
            return Err(invalid(format!(
                "{at}: items of type {other:?} are not supported (message, reasoning, function_call and function_call_output are)"
            )))
        }
    }
    Ok(())
}

/// The Responses `tools`: function tools are checked and kept; tools braid cannot run
/// (`web_search`, `namespace`, `file_search`, …) are skipped, and the second value says
/// whether any was.
pub(crate) fn tools(list: &[Value]) -> Result<(Vec<ToolSpec>, bool), ApiError> {
    let mut out: Vec<ToolSpec> = Vec::new();
    let mut skipped = false;
    for (i, t) in list.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            skipped = true;
            continue;
        }
        let declared = Declared {
            name: t.get("name"),
            description: t.get("description"),
            schema: t.get("parameters"),
            schema_key: "parameters",
            strict: t.get("strict"),
        };
        let spec = declared.check(&format!("tools[{i}]"), &out)?;
        out.push(spec);
    }
    Ok((out, skipped))
}

/// The Responses `tool_choice`: `none`, `auto`, `required`, or `{"type": "function",
/// "name": …}`.
pub(crate) fn tool_choice(v: Option<&Value>, tools: &[ToolSpec]) -> Result<ToolChoice, ApiError> {
    let bad = |why: String| ApiError::invalid("tool_choice", why);
    let choice = match v.filter(|v| !v.is_null()) {
        None => return Ok(ToolChoice::unset(tools)),
        Some(Value::String(s)) => match ToolChoice::from_openai_name(s) {
            Some(choice) => choice,
            None => {
                return Err(bad(format!(
                    "tool_choice {s:?} is not none, auto, required or a function"
                )));
            }
        },
        Some(obj) => match (
            obj.get("type").and_then(Value::as_str),
            obj.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => ToolChoice::Named(name.to_owned()),
            _ => {
                return Err(bad(
                    "a named tool_choice is {\"type\": \"function\", \"name\": …}".into(),
                ))
            }
        },
    };
    choice.checked(tools)
}
