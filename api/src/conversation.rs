//! OpenAI Chat's `messages` and `tools` decoded into the bus's typed conversation: the
//! one place their JSON is read. Errors name the message and field.

use braid_bus::{ChatMessage, Role, ToolCall, ToolSpec};
use serde_json::Value;

use crate::error::ApiError;

fn invalid(message: String) -> ApiError {
    ApiError::invalid("messages", message)
}

/// A string field, or null/absent.
fn opt_str(m: &Value, key: &str, at: &str) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{at}.{key} must be a string"))),
    }
}

/// `content` as text and thinking: a string, or parts (`text`; `thinking` and
/// `redacted_thinking` blocks, Anthropic-style, whose text is reasoning).
fn content(m: &Value, at: &str) -> Result<(Option<String>, String), ApiError> {
    match m.get("content") {
        None | Some(Value::Null) => Ok((None, String::new())),
        Some(Value::String(s)) => Ok((Some(s.clone()), String::new())),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            let mut thinking = String::new();
            for (j, part) in parts.iter().enumerate() {
                let text = |key: &str| {
                    part.get(key)
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid(format!("{at}.content[{j}].{key} must be a string")))
                };
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(text("text")?),
                    Some("thinking") => thinking.push_str(text("thinking")?),
                    Some("redacted_thinking") => {}
                    other => {
                        return Err(invalid(format!(
                            "{at}.content[{j}]: content parts of type {} are not supported (text and thinking are)",
                            other.unwrap_or("(none)")
                        )))
                    }
                }
            }
            Ok((Some(texts.join("\n")), thinking))
        }
        Some(_) => Err(invalid(format!(
            "{at}.content must be a string, an array of parts, or null"
        ))),
    }
}

/// An assistant turn's `tool_calls`; arguments are kept as sent and, when they are a
/// JSON object, decoded once. Streamed fragments sent back as they came (entries with an
/// `index`, only the first of each carrying the id and name, the rest argument pieces, as
/// clients that collect `delta.tool_calls` do) are merged by `index` first.
fn tool_calls(m: &Value, at: &str) -> Result<Option<Vec<ToolCall>>, ApiError> {
    let calls = match m.get("tool_calls") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(invalid(format!("{at}.tool_calls must be a list"))),
    };
    let shape = || {
        invalid(format!(
            "{at}.tool_calls must be a list of {{\"function\": {{\"name\", \"arguments\"}}}}"
        ))
    };
    // (index, id, name, argument pieces), in order of first appearance.
    let mut merged: Vec<(Option<u64>, String, String, Vec<&Value>)> = Vec::new();
    for c in calls {
        let index = c.get("index").and_then(Value::as_u64);
        let id = match c.get("id") {
            None | Some(Value::Null) => "",
            Some(Value::String(id)) => id.as_str(),
            Some(_) => return Err(invalid(format!("{at}.tool_calls: a call's id must be a string"))),
        };
        let name = match c.pointer("/function/name") {
            None | Some(Value::Null) if index.is_some() => "",
            Some(Value::String(n)) => n.as_str(),
            _ => return Err(shape()),
        };
        let args = c.pointer("/function/arguments").filter(|a| !a.is_null());
        match merged.iter_mut().find(|e| index.is_some() && e.0 == index) {
            Some(entry) => {
                if !name.is_empty() && !entry.2.is_empty() && entry.2 != name {
                    return Err(invalid(format!(
                        "{at}.tool_calls: two fragments at index {} name different functions ({:?}, {name:?})",
                        index.unwrap_or_default(),
                        entry.2
                    )));
                }
                if entry.1.is_empty() {
                    entry.1 = id.to_owned();
                }
                if entry.2.is_empty() {
                    entry.2 = name.to_owned();
                }
                entry.3.extend(args);
            }
            None => merged.push((index, id.to_owned(), name.to_owned(), args.into_iter().collect())),
        }
    }
    merged
        .into_iter()
        .map(|(index, id, name, pieces)| {
            if name.is_empty() {
                return Err(invalid(format!(
                    "{at}.tool_calls: the call at index {} has no function name in any of its fragments",
                    index.unwrap_or_default()
                )));
            }
            let (arguments, parsed) = match pieces.as_slice() {
                [] => (String::new(), None),
                [obj @ Value::Object(_)] => (obj.to_string(), Some((*obj).clone())),
                _ => {
                    let mut text = String::new();
                    for piece in &pieces {
                        match piece {
                            Value::String(s) => text.push_str(s),
                            _ => {
                                return Err(invalid(format!(
                                    "{at}.tool_calls: arguments must be a string (or, for a whole call, an object)"
                                )))
                            }
                        }
                    }
                    let parsed = serde_json::from_str::<Value>(&text).ok().filter(Value::is_object);
                    (text, parsed)
                }
            };
            Ok(ToolCall {
                id,
                name,
                arguments,
                parsed,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// OpenAI's `messages`.
pub fn messages(messages: &Value) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(list) = messages.as_array() else {
        return Err(invalid("messages must be an array".into()));
    };
    if list.is_empty() {
        return Err(invalid("messages must not be empty".into()));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let at = format!("messages[{i}]");
            if !m.is_object() {
                return Err(invalid(format!("{at} must be an object")));
            }
            let role = match m.get("role").and_then(Value::as_str) {
                Some(r) => Role::from_name(r).ok_or_else(|| {
                    let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                    invalid(format!("{at}.role {r:?} is not one of {}", names.join(", ")))
                })?,
                None => return Err(invalid(format!("{at}.role must be a string"))),
            };
            let (content, thinking) = content(m, &at)?;
            let reasoning = match (
                opt_str(m, "reasoning_content", &at)?,
                opt_str(m, "reasoning", &at)?,
            ) {
                (Some(r), _) | (None, Some(r)) => Some(r),
                (None, None) if !thinking.is_empty() => Some(thinking),
                _ => None,
            };
            Ok(ChatMessage {
                role,
                content,
                reasoning,
                tool_calls: tool_calls(m, &at)?,
                tool_call_id: opt_str(m, "tool_call_id", &at)?,
                name: opt_str(m, "name", &at)?,
            })
        })
        .collect()
}

/// OpenAI's `tools`; errors name the tool and field.
pub fn tools(tools: &Value) -> Result<Vec<ToolSpec>, ApiError> {
    let Some(list) = tools.as_array() else {
        return Err(ApiError::invalid("tools", "tools must be an array"));
    };
    let mut out: Vec<ToolSpec> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid(
                "tools",
                format!("{at}: type must be \"function\""),
            ));
        }
        let Some(f) = t.get("function").and_then(Value::as_object) else {
            return Err(ApiError::invalid(
                "tools",
                format!("{at}: function must be an object"),
            ));
        };
        let declared = Declared {
            name: f.get("name"),
            description: f.get("description"),
            schema: f.get("parameters"),
            schema_key: "parameters",
            strict: f.get("strict"),
        };
        let spec = declared.check(&format!("{at}.function"), &out)?;
        out.push(spec);
    }
    Ok(out)
}

/// A tool as some protocol declares it, before it is checked: the same rules hold for
/// OpenAI's `function` and Anthropic's `input_schema` tools.
pub(crate) struct Declared<'a> {
    pub(crate) name: Option<&'a Value>,
    pub(crate) description: Option<&'a Value>,
    pub(crate) schema: Option<&'a Value>,
    /// The schema's field name in this protocol (`parameters`, `input_schema`).
    pub(crate) schema_key: &'static str,
    pub(crate) strict: Option<&'a Value>,
}

impl Declared<'_> {
    /// The checked tool; errors name `at` (`tools[2].function`) and the field. `earlier`
    /// are the tools declared before it (a name may not repeat).
    pub(crate) fn check(&self, at: &str, earlier: &[ToolSpec]) -> Result<ToolSpec, ApiError> {
        let bad = |why: &str| ApiError::invalid("tools", format!("{at}.{why}"));
        let name = self.name.and_then(Value::as_str).unwrap_or_default();
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
        if !valid {
            return Err(bad("name must be 1-128 characters of a-z, A-Z, 0-9, _ - . :"));
        }
        let parameters = match self.schema {
            None | Some(Value::Null) => None,
            Some(p) => {
                let Some(schema) = p.as_object() else {
                    return Err(bad(&format!("{} must be a JSON Schema object", self.schema_key)));
                };
                if schema
                    .get("type")
                    .is_some_and(|t| !(t.is_string() || t.is_array()))
                {
                    return Err(bad(&format!("{}.type must be a string", self.schema_key)));
                }
                if schema.get("properties").is_some_and(|p| !p.is_object()) {
                    return Err(bad(&format!("{}.properties must be an object", self.schema_key)));
                }
                if schema
                    .get("required")
                    .is_some_and(|r| !r.as_array().is_some_and(|r| r.iter().all(Value::is_string)))
                {
                    return Err(bad(&format!(
                        "{}.required must be a list of names",
                        self.schema_key
                    )));
                }
                Some(p.clone())
            }
        };
        if earlier.iter().any(|t| t.name == name) {
            return Err(ApiError::invalid(
                "tools",
                format!("{at}: the tool {name:?} is declared twice"),
            ));
        }
        Ok(ToolSpec {
            name: name.to_owned(),
            description: self.description.and_then(Value::as_str).map(str::to_owned),
            parameters,
            strict: self.strict.and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_typed_once_with_reasoning_and_arguments_decoded() {
        let m = messages(&json!([
            {"role": "assistant", "reasoning": "  kept as is \n", "content": "a"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "from a block"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "{\"k\": [1, 2]}"}}]},
            {"role": "tool", "tool_call_id": "x", "content": "42"}
        ]))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m[0].reasoning.as_deref(), Some("  kept as is \n"));
        assert_eq!(m[1].reasoning.as_deref(), Some("from a block"));
        assert_eq!(m[1].content.as_deref(), Some("b"));
        let calls = m[2].tool_calls.as_deref().unwrap_or_default();
        assert_eq!(calls[0].arguments, "{\"k\": [1, 2]}");
        assert_eq!(calls[0].parsed, Some(json!({"k": [1, 2]})));
        assert_eq!(m[2].content, None);
        assert_eq!(m[3].role, Role::Tool);
        let bad = messages(&json!([{"role": "user", "content": [{"type": "image_url"}]}]));
        assert!(bad.is_err_and(|e| e.message.contains("image_url") && e.param.as_deref() == Some("messages")));
        let bad = messages(&json!([{"role": "robot", "content": "hi"}]));
        assert!(bad.is_err_and(|e| e.message.contains("messages[0].role")));
    }

    #[test]
    fn streamed_tool_call_fragments_sent_back_are_merged_by_index() {
        let fragments = json!([{"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
            {"index": 0, "function": {"arguments": "{\"city\": "}},
            {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            {"index": 0, "function": {"arguments": "\"Paris\"}"}}
        ]}]);
        let whole = json!([{"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        ]}]);
        let merged = messages(&fragments).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(merged, messages(&whole).unwrap_or_else(|e| panic!("{e:?}")));
        assert_eq!(merged[0].tool_calls.as_ref().map(Vec::len), Some(2));
        let nameless =
            json!([{"role": "assistant", "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}]);
        assert!(messages(&nameless).is_err_and(|e| e.message.contains("no function name")));
        let clash = json!([{"role": "assistant", "tool_calls": [
            {"index": 0, "function": {"name": "a", "arguments": "{"}},
            {"index": 0, "function": {"name": "b", "arguments": "}"}}]}]);
        assert!(messages(&clash).is_err_and(|e| e.message.contains("name different functions")));
    }
}
