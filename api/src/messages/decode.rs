//! Anthropic's `system`, `messages`, `tools`, `tool_choice` and `thinking` decoded into
//! the bus's typed conversation: the one place their JSON is read. Errors name the
//! message, block and field (`messages[2].content[0].tool_use_id`).
//!
//! Choices where Anthropic's shape and a chat template's differ:
//! - `system` blocks and `role: "system"` turns inside `messages` (Claude Code sends
//!   them; the public API does not allow them) become one system prompt, in order, at
//!   the top: templates accept a system message only there, and the prompt's prefix
//!   stays the same from one round to the next.
//! - Claude Code's first system block, `x-anthropic-billing-header: cc_version=…`,
//!   changes with every request and means nothing to the model: it is left out, so it
//!   cannot defeat the prefix cache.
//! - A user turn's `tool_result` blocks become tool messages, before the turn's text.
//! - A thinking block's `signature` is braid's seal of its reasoning
//!   ([`crate::seal`]): when it opens, the sealed reasoning is what the template sees
//!   (so `display: "omitted"` blocks, sent back with empty text, keep their reasoning);
//!   when it does not, the block is rendered as sent and counted, or refused under
//!   `--strict-signatures`.

use std::collections::HashSet;

use braid_bus::{ChatMessage, Role, ToolCall, ToolSpec};
use serde_json::Value;

use crate::conversation::Declared;
use crate::error::ApiError;
use crate::seal::Signatures;
use crate::structured::ToolChoice;

/// The prefix of Claude Code's per-request billing block.
const BILLING_HEADER: &str = "x-anthropic-billing-header:";

fn invalid(message: String) -> ApiError {
    ApiError::invalid("messages", message)
}

/// A required string field of a block.
fn string<'a>(b: &'a Value, key: &str, at: &str) -> Result<&'a str, ApiError> {
    b.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.{key} must be a string")))
}

/// Content as blocks: a string is one text block.
fn blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Some(Value::String(s)) => Ok(vec![serde_json::json!({"type": "text", "text": s})]),
        Some(Value::Array(list)) => Ok(list.clone()),
        _ => Err(invalid(format!(
            "{at}.content must be a string or a list of content blocks"
        ))),
    }
}

/// The 400 for a block braid does not take, naming it.
fn unsupported(kind: &str, at: &str) -> ApiError {
    let why = match kind {
        "image" | "document" => format!("{kind} blocks are not supported: this server's models read text"),
        _ => format!("content blocks of type {kind:?} are not supported here"),
    };
    invalid(format!("{at}: {why}"))
}

/// The texts of text blocks (`system`, a system turn, a tool result's content).
fn texts(content: &Value, at: &str, out: &mut Vec<String>) -> Result<(), ApiError> {
    let list = match content {
        Value::String(s) => {
            out.push(s.clone());
            return Ok(());
        }
        Value::Array(list) => list,
        _ => return Err(invalid(format!("{at} must be a string or a list of text blocks"))),
    };
    for (j, b) in list.iter().enumerate() {
        let at = format!("{at}[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => out.push(string(b, "text", &at)?.to_owned()),
            other => return Err(unsupported(other.unwrap_or("(none)"), &at)),
        }
    }
    Ok(())
}

/// `system` and `messages` as chat messages.
pub(crate) fn messages(
    system: Option<&Value>,
    messages: &[Value],
    signatures: &Signatures<'_>,
) -> Result<Vec<ChatMessage>, ApiError> {
    let mut instructions = Vec::new();
    if let Some(s) = system.filter(|s| !s.is_null()) {
        texts(s, "system", &mut instructions).map_err(|e| ApiError::invalid("system", e.message))?;
    }
    if messages.is_empty() {
        return Err(invalid("messages must not be empty".into()));
    }
    let mut out = Vec::new();
    let mut called: HashSet<String> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str);
        let content = blocks(m.get("content"), &at)?;
        match role {
            Some("system") => texts(
                &Value::Array(content),
                &format!("{at}.content"),
                &mut instructions,
            )?,
            Some("user") => user(&content, &at, &called, &mut out)?,
            Some("assistant") => out.push(assistant(&content, &at, signatures, &mut called)?),
            Some(other) => return Err(invalid(format!("{at}.role {other:?} is not user or assistant"))),
            None => return Err(invalid(format!("{at}.role must be a string"))),
        }
    }
    if out.last().is_some_and(|m| m.role == Role::Assistant) {
        return Err(invalid(format!(
            "messages[{}]: a final assistant turn (a prefill to continue) is not supported yet",
            messages.len() - 1
        )));
    }
    instructions.retain(|t| !t.starts_with(BILLING_HEADER));
    if !instructions.is_empty() {
        out.insert(0, ChatMessage::text(Role::System, instructions.join("\n\n")));
    }
    Ok(out)
}

/// A user turn: its tool results as tool messages, then its text.
fn user(
    content: &[Value],
    at: &str,
    called: &HashSet<String>,
    out: &mut Vec<ChatMessage>,
) -> Result<(), ApiError> {
    let mut text = Vec::new();
    for (j, b) in content.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push(string(b, "text", &at)?.to_owned()),
            Some("tool_result") => {
                let id = string(b, "tool_use_id", &at)?;
                if !called.contains(id) {
                    return Err(invalid(format!(
                        "{at}.tool_use_id {id:?} answers no tool_use block of an earlier assistant turn"
                    )));
                }
                let mut result = Vec::new();
                match b.get("content") {
                    None | Some(Value::Null) => {}
                    Some(c) => texts(c, &format!("{at}.content"), &mut result)?,
                }
                out.push(ChatMessage {
                    tool_call_id: Some(id.to_owned()),
                    ..ChatMessage::text(Role::Tool, result.join("\n"))
                });
            }
            other => return Err(unsupported(other.unwrap_or("(none)"), &at)),
        }
    }
    if !text.is_empty() {
        out.push(ChatMessage::text(Role::User, text.join("\n")));
    }
    Ok(())
}

/// An assistant turn: its thinking as reasoning, its text, its tool calls.
fn assistant(
    content: &[Value],
    at: &str,
    signatures: &Signatures<'_>,
    called: &mut HashSet<String>,
) -> Result<ChatMessage, ApiError> {
    let mut reasoning: Vec<String> = Vec::new();
    let mut text: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in content.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push(string(b, "text", &at)?),
            Some("thinking") => {
                let thinking = string(b, "thinking", &at)?;
                let signature = b.get("signature").and_then(Value::as_str);
                reasoning.push(signatures.restore(
                    thinking,
                    signature,
                    "thinking",
                    &format!("{at}.signature"),
                )?);
            }
            Some("redacted_thinking") => match signatures.seal.open(string(b, "data", &at)?) {
                Some(sealed) => reasoning.push(sealed),
                None => signatures.invalid("redacted_thinking", &format!("{at}.data"))?,
            },
            Some("tool_use") => {
                let id = string(b, "id", &at)?;
                let name = string(b, "name", &at)?;
                let input = match b.get("input") {
                    Some(v @ Value::Object(_)) => v.clone(),
                    _ => return Err(invalid(format!("{at}.input must be an object"))),
                };
                called.insert(id.to_owned());
                calls.push(ToolCall {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    arguments: input.to_string(),
                    parsed: Some(input),
                });
            }
            other => return Err(unsupported(other.unwrap_or("(none)"), &at)),
        }
    }
    reasoning.retain(|r| !r.is_empty());
    Ok(ChatMessage {
        reasoning: (!reasoning.is_empty()).then(|| reasoning.join("\n\n")),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..ChatMessage::text(Role::Assistant, text.concat())
    })
}

/// Anthropic's `tools`: client tools (`input_schema`) are checked and kept; server tools
/// (`web_search_…`, `bash_…` and the like, which only Anthropic runs) are skipped, and
/// the second value says whether any was.
pub(crate) fn tools(list: &[Value]) -> Result<(Vec<ToolSpec>, bool), ApiError> {
    let mut out: Vec<ToolSpec> = Vec::new();
    let mut skipped = false;
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(_) if t.get("input_schema").is_none() => {
                skipped = true;
                continue;
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    "tools",
                    format!("{at}.type {other:?} is not \"custom\""),
                ))
            }
        }
        if t.get("input_schema").is_none_or(Value::is_null) {
            return Err(ApiError::invalid(
                "tools",
                format!("{at}.input_schema is required"),
            ));
        }
        let declared = Declared {
            name: t.get("name"),
            description: t.get("description"),
            schema: t.get("input_schema"),
            schema_key: "input_schema",
            strict: t.get("strict"),
        };
        let spec = declared.check(&at, &out)?;
        out.push(spec);
    }
    Ok((out, skipped))
}

/// Anthropic's `tool_choice` as braid's, with whether parallel calls are allowed.
pub(crate) fn tool_choice(v: Option<&Value>, tools: &[ToolSpec]) -> Result<(ToolChoice, bool), ApiError> {
    let bad = |why: String| ApiError::invalid("tool_choice", why);
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok((ToolChoice::unset(tools), true));
    };
    let parallel = !v
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let choice = match v.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("none") => ToolChoice::None,
        Some("any") => ToolChoice::Required,
        Some("tool") => match v.get("name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => return Err(bad("tool_choice of type \"tool\" needs a name".into())),
        },
        other => {
            return Err(bad(format!(
                "tool_choice.type {:?} is not auto, any, tool or none",
                other.unwrap_or("(none)")
            )))
        }
    };
    Ok((choice.checked(tools)?, parallel))
}

/// What `thinking` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Thinking {
    /// The family's thinking switch (`None`: the family's default).
    pub(crate) on: Option<bool>,
    /// `budget_tokens`, as braid's thinking budget.
    pub(crate) budget: Option<u32>,
    /// `display: "omitted"`: thinking blocks carry only their signature.
    pub(crate) omitted: bool,
}

/// Anthropic's `thinking`: `enabled` (with `budget_tokens`), `adaptive` (on, no budget)
/// or `disabled`; `display` `summarized`, `updates` (the text is shown: braid has no
/// summariser) or `omitted`.
pub(crate) fn thinking(v: Option<&Value>) -> Result<Thinking, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Thinking::default());
    };
    let bad = |why: String| ApiError::invalid("thinking", why);
    let omitted = match v.get("display").and_then(Value::as_str) {
        None | Some("summarized" | "updates") => false,
        Some("omitted") => true,
        Some(other) => {
            return Err(bad(format!(
                "thinking.display {other:?} is not summarized, omitted or updates"
            )))
        }
    };
    let (on, budget) = match v.get("type").and_then(Value::as_str) {
        Some("enabled") => match v.get("budget_tokens").and_then(Value::as_u64) {
            Some(n) if n >= 1 => (true, Some(u32::try_from(n).unwrap_or(u32::MAX))),
            _ => return Err(bad("thinking.budget_tokens must be a positive integer".into())),
        },
        Some("adaptive") => (true, None),
        Some("disabled") => (false, None),
        other => {
            return Err(bad(format!(
                "thinking.type {:?} is not enabled, adaptive or disabled",
                other.unwrap_or("(none)")
            )))
        }
    };
    Ok(Thinking {
        on: Some(on),
        budget,
        omitted,
    })
}
