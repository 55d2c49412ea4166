//! DeepSeek-V3.2's prompt encoder, natively: the model ships Python
//! (`encoding_dsv32.py`, `encode_messages`) instead of a Jinja template. Ported line for
//! line (thinking and chat modes, `drop_thinking`, DSML tool calls, `<function_results>`);
//! the request's tools go on the first system message (an empty one is added when there
//! is none), as the reference renders them.

use serde_json::Value;

use super::pyjson::PyJson;
use crate::error::{Error, Result};

/// The begin-of-sentence token every DeepSeek prompt starts with.
pub(super) const BOS: &str = "<｜begin▁of▁sentence｜>";
/// Ends each assistant turn.
pub(super) const EOS: &str = "<｜end▁of▁sentence｜>";
/// Opens a user turn.
pub(super) const USER: &str = "<｜User｜>";
/// Opens an assistant turn.
pub(super) const ASSISTANT: &str = "<｜Assistant｜>";
/// Opens reasoning.
pub(super) const THINK_START: &str = "<think>";
/// Closes reasoning.
pub(super) const THINK_END: &str = "</think>";
/// The marker inside every DSML tag.
pub(super) const DSML: &str = "｜DSML｜";

/// JSON as Python's `json.dumps(ensure_ascii=False)` writes it.
pub(super) fn to_json(v: &Value) -> String {
    PyJson::default().dumps(v)
}

fn tools_block(tools: &[Value]) -> String {
    let schemas: Vec<String> = tools
        .iter()
        .map(|t| to_json(t.get("function").unwrap_or(t)))
        .collect();
    format!(
        "## Tools\n\nYou have access to a set of tools you can use to answer the user's question.\n\
You can invoke functions by writing a \"<{DSML}function_calls>\" block like the following as part of your reply to the user:\n\
<{DSML}function_calls>\n<{DSML}invoke name=\"$FUNCTION_NAME\">\n\
<{DSML}parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</{DSML}parameter>\n...\n</{DSML}invoke>\n\
<{DSML}invoke name=\"$FUNCTION_NAME2\">\n...\n</{DSML}invoke>\n</{DSML}function_calls>\n\n\
String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. \
The \"string\" attribute should be set to \"true\" for string type parameters and \"false\" for other types (numbers, booleans, arrays, objects).\n\n\
If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:\n\n\
<{DSML}function_calls>\n...\n</{DSML}function_calls>\n\n<function_results>\n...\n</function_results>\n\n\
{THINK_START}...thinking about results{THINK_END}\n\n\
Here are the functions available in JSONSchema format:\n<functions>\n{}\n</functions>\n",
        schemas.join("\n")
    )
}

/// A string field of a message.
pub(super) fn text<'a>(msg: &'a Value, key: &str) -> Option<&'a str> {
    msg.get(key).and_then(Value::as_str)
}

/// Python's `str.format` of an optional string: `None` prints as "None".
pub(super) fn py_str(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "None".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => to_json(other),
    }
}

fn dsml_arguments(call: &Value) -> Result<String> {
    let args = call.pointer("/function/arguments").unwrap_or(&Value::Null);
    // Arguments arrive decoded (the edge decodes a JSON-object string once).
    let Value::Object(map) = args else {
        return Err(Error::Render("tool call arguments must be a JSON object".into()));
    };
    let params: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            let (is_str, value) = match v {
                Value::String(s) => ("true", s.clone()),
                other => ("false", to_json(other)),
            };
            format!("<{DSML}parameter name=\"{k}\" string=\"{is_str}\">{value}</{DSML}parameter>")
        })
        .collect();
    Ok(params.join("\n"))
}

fn last_user_index(messages: &[Value]) -> Option<usize> {
    messages
        .iter()
        .rposition(|m| matches!(text(m, "role"), Some("user" | "developer")))
}

fn render_message(index: usize, messages: &[Value], thinking: bool) -> Result<String> {
    let msg = &messages[index];
    let last_user = last_user_index(messages);
    let after_last_user = |i: usize| last_user.is_none_or(|u| i >= u);
    let mut prompt = String::new();
    let role = text(msg, "role").unwrap_or_default();
    let content = msg.get("content");
    let tools = msg
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty());
    match role {
        "system" => {
            prompt.push_str(text(msg, "content").unwrap_or_default());
            if let Some(tools) = tools {
                prompt.push_str("\n\n");
                prompt.push_str(&tools_block(tools));
            }
        }
        "developer" => {
            let mut dev = String::new();
            if let Some(tools) = tools {
                dev.push_str("\n\n");
                dev.push_str(&tools_block(tools));
            }
            dev.push_str(&format!("\n\n# The user's message is: {}", py_str(content)));
            prompt.push_str(&format!("{USER}{dev}{ASSISTANT}"));
            prompt.push_str(if Some(index) == last_user && thinking {
                THINK_START
            } else {
                THINK_END
            });
        }
        "user" => {
            prompt.push_str(&format!("{USER}{}{ASSISTANT}", py_str(content)));
            prompt.push_str(if Some(index) == last_user && thinking {
                THINK_START
            } else {
                THINK_END
            });
        }
        "tool" => {
            let mut prev = index;
            while prev > 0 && text(&messages[prev - 1], "role") == Some("tool") {
                prev -= 1;
            }
            let assistant = prev.checked_sub(1).map(|i| &messages[i]);
            let calls = assistant
                .filter(|a| text(a, "role") == Some("assistant"))
                .and_then(|a| a.get("tool_calls"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let order = index - prev + 1;
            if calls < order {
                return Err(Error::Render(format!(
                    "messages[{index}]: a tool result without a matching tool call"
                )));
            }
            if order == 1 {
                prompt.push_str("\n\n<function_results>");
            }
            prompt.push_str(&format!("\n<result>{}</result>", py_str(content)));
            if order == calls {
                prompt.push_str("\n</function_results>");
                prompt.push_str("\n\n");
                prompt.push_str(if after_last_user(index) && thinking {
                    THINK_START
                } else {
                    THINK_END
                });
            }
        }
        "assistant" => {
            let mut calls_block = String::new();
            if let Some(calls) = msg
                .get("tool_calls")
                .and_then(Value::as_array)
                .filter(|c| !c.is_empty())
            {
                let rendered: Result<Vec<String>> = calls
                    .iter()
                    .map(|c| {
                        let name = c
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        Ok(format!(
                            "<{DSML}invoke name=\"{name}\">\n{}\n</{DSML}invoke>",
                            dsml_arguments(c)?
                        ))
                    })
                    .collect();
                calls_block = format!(
                    "\n\n<{DSML}function_calls>\n{}\n</{DSML}function_calls>",
                    rendered?.join("\n")
                );
            }
            let mut thinking_part = String::new();
            if thinking && last_user.is_none_or(|u| index > u) {
                thinking_part.push_str(text(msg, "reasoning_content").unwrap_or_default());
                thinking_part.push_str(THINK_END);
            }
            prompt.push_str(&format!(
                "{thinking_part}{}{calls_block}{EOS}",
                text(msg, "content").unwrap_or_default()
            ));
        }
        other => {
            return Err(Error::Render(format!(
                "messages[{index}]: unknown role {other:?}"
            )))
        }
    }
    Ok(prompt)
}

/// `encode_messages(messages, thinking_mode, drop_thinking=True)` with the request's
/// `tools` on the first system message.
pub fn encode(messages: &[Value], tools: Option<&Value>, thinking: bool) -> Result<String> {
    let mut full: Vec<Value> = messages.to_vec();
    if let Some(tools) = tools.filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        let at = match full.iter().position(|m| text(m, "role") == Some("system")) {
            Some(i) => i,
            None => {
                full.insert(0, serde_json::json!({"role": "system", "content": ""}));
                0
            }
        };
        if let Some(obj) = full[at].as_object_mut() {
            obj.insert("tools".into(), tools.clone());
        }
    }
    if thinking {
        let last_user = last_user_index(&full);
        for (i, m) in full.iter_mut().enumerate() {
            if text(m, "role") == Some("assistant") && last_user.is_some_and(|u| i < u) {
                if let Some(obj) = m.as_object_mut() {
                    obj.remove("reasoning_content");
                }
            }
        }
    }
    let mut prompt = BOS.to_owned();
    for i in 0..full.len() {
        prompt.push_str(&render_message(i, &full, thinking)?);
    }
    Ok(prompt)
}
