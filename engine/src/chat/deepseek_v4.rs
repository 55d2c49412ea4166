//! DeepSeek-V4 and V4.1's prompt encoder, natively: like V3.2 the models ship Python
//! (DeepSeek's `deepseek-recipe`: `DeepseekV4Encoding`, `DeepseekV41Encoding`), not a
//! Jinja template.
//!
//! Over V3.2: the DSML block is `tool_calls` (V4.1: ` calls`, ` invoke`, ` parameter`);
//! system messages and the tools become one system prompt; tool results join the user
//! turn they follow (`<tool_result>…</tool_result>`, consecutive user-side messages
//! separated by a blank line); thinking mode adds a reasoning-effort prefix (V4: a
//! paragraph for `high`, the default, and `max`; V4.1: a `Reasoning Effort: N` budget
//! line after `<｜System｜>`, which V4.1 always writes). Earlier turns keep their reasoning
//! when tools are declared or used, or with `drop_thinking: false`.

use serde_json::{Map, Value};

use super::deepseek_v32::{py_str, text, to_json, ASSISTANT, BOS, DSML, EOS, THINK_END, THINK_START, USER};
use crate::error::{Error, Result};

/// Opens V4.1's system turn.
const SYSTEM: &str = "<｜System｜>";

/// V4's prefix for `reasoning_effort: high` (the default in thinking mode).
const EFFORT_HIGH: &str = "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n\
You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.\n\
Explicitly write out your entire deliberation process, documenting every intermediate step, considered alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

/// V4's prefix for `reasoning_effort: max`.
const EFFORT_MAX: &str = "Reasoning Effort: Beyond maximum — exhaustive, relentless, and uncompromising.\n\
You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: exhaustively decompose the problem into its most fundamental components, trace every causal chain to its root, and resolve the underlying cause rather than any surface symptom.\n\
Do not stop reasoning until you have independently verified the solution from multiple angles and are certain that no assumption remains unchecked and no error remains undiscovered.\n\n";

/// Which release's encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// DeepSeek-V4 (`model_type: deepseek_v4`).
    V4,
    /// DeepSeek-V4.1 (`model_type: deepseek_v41`).
    V41,
}

impl Release {
    /// The DSML block, invoke and parameter tag names.
    fn tags(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Release::V4 => ("tool_calls", "invoke", "parameter"),
            Release::V41 => (" calls", " invoke", " parameter"),
        }
    }

    /// What thinking mode writes before the system prompt for this effort.
    fn effort_prefix(self, effort: &str) -> String {
        match self {
            Release::V4 => match effort {
                "high" => EFFORT_HIGH.to_owned(),
                "max" => EFFORT_MAX.to_owned(),
                _ => String::new(),
            },
            Release::V41 => {
                let budget = match effort {
                    "low" => 50,
                    "max" => 100,
                    _ => 75,
                };
                format!(
                    "Reasoning Effort: {budget} (range 1-100, the higher the value, the more thorough the reasoning)\n\n"
                )
            }
        }
    }
}

/// The kwargs the encoder reads: `thinking` (the `deepseek_v4` reasoning parser's switch,
/// so prompt and parser agree), `reasoning_effort`, `drop_thinking`.
struct Options {
    thinking: bool,
    effort: String,
    drop_thinking: bool,
}

impl Options {
    fn read(kwargs: Option<&Map<String, Value>>) -> Options {
        let get = |k: &str| kwargs.and_then(|m| m.get(k));
        let thinking = get("thinking").and_then(Value::as_bool).unwrap_or(false);
        Options {
            thinking,
            effort: get("reasoning_effort")
                .and_then(Value::as_str)
                .unwrap_or("high")
                .to_owned(),
            drop_thinking: get("drop_thinking").and_then(Value::as_bool).unwrap_or(true),
        }
    }
}

fn tools_block(tools: &[Value], release: Release) -> String {
    let (block, invoke, param) = release.tags();
    let mut schemas = String::new();
    for t in tools.iter().filter(|t| text(t, "type") == Some("function")) {
        schemas.push_str(&to_json(t.get("function").unwrap_or(&Value::Null)));
        schemas.push('\n');
    }
    format!(
        "## Tools\n\nYou have access to a set of tools to help answer the user's question. \
You can invoke tools by writing a \"<{DSML}{block}>\" block like the following:\n\n\
<{DSML}{block}>\n<{DSML}{invoke} name=\"$TOOL_NAME\">\n\
<{DSML}{param} name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</{DSML}{param}>\n...\n</{DSML}{invoke}>\n\
<{DSML}{invoke} name=\"$TOOL_NAME2\">\n...\n</{DSML}{invoke}>\n</{DSML}{block}>\n\n\
String parameters should be specified as is and set `string=\"true\"`. For all other types \
(numbers, booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n\
If thinking_mode is enabled (triggered by {THINK_START}), you MUST output your complete reasoning \
inside {THINK_START}...{THINK_END} BEFORE any tool calls or final response.\n\n\
Otherwise, output directly after {THINK_END} with tool calls or final response.\n\n\
### Available Tool Schemas\n\n{schemas}\n\
You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n"
    )
}

fn tool_calls_block(calls: &[Value], release: Release, out: &mut String) -> Result<()> {
    let (block, invoke, param) = release.tags();
    out.push_str(&format!("\n\n<{DSML}{block}>\n"));
    for (i, call) in calls.iter().enumerate() {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Arguments arrive decoded (the edge decodes a JSON-object string once).
        let Some(args) = call.pointer("/function/arguments").and_then(Value::as_object) else {
            return Err(Error::Render(format!(
                "tool call {i}: arguments must be a JSON object"
            )));
        };
        out.push_str(&format!("<{DSML}{invoke} name=\"{name}\">\n"));
        for (k, v) in args {
            let (is_str, value) = match v {
                Value::String(s) => ("true", s.clone()),
                other => ("false", to_json(other)),
            };
            out.push_str(&format!(
                "<{DSML}{param} name=\"{k}\" string=\"{is_str}\">{value}</{DSML}{param}>\n"
            ));
        }
        if args.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("</{DSML}{invoke}>\n"));
    }
    out.push_str(&format!("</{DSML}{block}>"));
    Ok(())
}

/// The prompt for `messages` (arguments decoded), the request's `tools` and kwargs, with
/// the generation prompt.
pub fn encode(
    messages: &[Value],
    tools: Option<&Value>,
    kwargs: Option<&Map<String, Value>>,
    release: Release,
) -> Result<String> {
    let opts = Options::read(kwargs);
    let tools = tools.and_then(Value::as_array).filter(|t| !t.is_empty());
    let mut system: Vec<&str> = Vec::new();
    for m in messages.iter().filter(|m| text(m, "role") == Some("system")) {
        system.push(text(m, "content").unwrap_or_default());
    }
    let mut out = BOS.to_owned();
    if release == Release::V41 {
        out.push_str(SYSTEM);
    }
    if opts.thinking {
        out.push_str(&release.effort_prefix(&opts.effort));
    }
    out.push_str(&system.join("\n\n"));
    if let Some(tools) = tools {
        out.push_str("\n\n");
        out.push_str(&tools_block(tools, release));
    }
    let user_side = |m: &Value| matches!(text(m, "role"), Some("user" | "developer" | "tool"));
    let last_user = messages.iter().rposition(user_side);
    let tools_used = messages.iter().any(|m| text(m, "role") == Some("tool"));
    let mut in_user = false;
    for (i, m) in messages.iter().enumerate() {
        match text(m, "role").unwrap_or_default() {
            "system" => {}
            role @ ("user" | "developer" | "tool") => {
                out.push_str(if in_user { "\n\n" } else { USER });
                in_user = true;
                let content = match m.get("content") {
                    None | Some(Value::Null) => String::new(),
                    content => py_str(content),
                };
                if role == "tool" {
                    out.push_str(&format!("<tool_result>{content}</tool_result>"));
                } else {
                    out.push_str(&content);
                }
            }
            "assistant" => {
                in_user = false;
                out.push_str(ASSISTANT);
                let after_last_user = last_user.is_none_or(|u| i > u);
                let keep = opts.thinking
                    && (!opts.drop_thinking || tools.is_some() || after_last_user || tools_used);
                if keep {
                    out.push_str(THINK_START);
                    out.push_str(text(m, "reasoning_content").unwrap_or_default());
                }
                out.push_str(THINK_END);
                out.push_str(text(m, "content").unwrap_or_default());
                if let Some(calls) = m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .filter(|c| !c.is_empty())
                {
                    tool_calls_block(calls, release, &mut out)?;
                }
                out.push_str(EOS);
            }
            other => return Err(Error::Render(format!("messages[{i}]: unknown role {other:?}"))),
        }
    }
    out.push_str(ASSISTANT);
    out.push_str(if opts.thinking { THINK_START } else { THINK_END });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_results_join_the_user_turn_and_v41_opens_a_system_turn() {
        let messages = json!([
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "reasoning_content": "call it",
             "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "tool", "content": "sunny"},
            {"role": "user", "content": "thanks"},
        ]);
        let messages = messages.as_array().map_or(&[][..], Vec::as_slice);
        let kwargs = json!({"thinking": true, "reasoning_effort": "low"});
        let v41 = encode(messages, None, kwargs.as_object(), Release::V41).unwrap_or_default();
        assert_eq!(
            v41,
            "<｜begin▁of▁sentence｜><｜System｜>Reasoning Effort: 50 (range 1-100, the higher the value, \
the more thorough the reasoning)\n\n<｜User｜>Weather?<｜Assistant｜><think>call it</think>\n\n\
<｜DSML｜ calls>\n<｜DSML｜ invoke name=\"f\">\n\n</｜DSML｜ invoke>\n</｜DSML｜ calls><｜end▁of▁sentence｜>\
<｜User｜><tool_result>sunny</tool_result>\n\nthanks<｜Assistant｜><think>"
        );
        // Chat mode (no kwargs): no effort prefix, no reasoning, `</think>` everywhere.
        let v4 = encode(messages, None, None, Release::V4).unwrap_or_default();
        assert!(
            v4.starts_with(
                "<｜begin▁of▁sentence｜><｜User｜>Weather?<｜Assistant｜></think>\n\n<｜DSML｜tool_calls>"
            ),
            "{v4}"
        );
        assert!(v4.ends_with("thanks<｜Assistant｜></think>"), "{v4}");
    }
}
