//! Structured outputs and enforced tool calls: the request fields that constrain the
//! answer (`response_format`, vLLM's `structured_outputs`, `tool_choice` and strict
//! tools) become one typed [`Constraint`] naming its field. The tokenizer stage writes
//! and compiles its grammar before the request is admitted, so a bad schema is a 400 that
//! names the field, never a failure mid-stream or silently unconstrained output.

use braid_bus::{CollectedCall, Constrain, Constraint, Pick, ToolSpec};
use serde_json::{json, Value};

use crate::error::ApiError;

/// What `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

impl ToolChoice {
    /// What a request that sets no `tool_choice` gets: `auto` with tools, else `none`.
    pub(crate) fn unset(tools: &[ToolSpec]) -> ToolChoice {
        if tools.is_empty() {
            ToolChoice::None
        } else {
            ToolChoice::Auto
        }
    }

    /// OpenAI's string choices: `none`, `auto`, `required`.
    pub(crate) fn from_openai_name(name: &str) -> Option<ToolChoice> {
        match name {
            "none" => Some(ToolChoice::None),
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
            _ => None,
        }
    }

    /// The choice, if the declared `tools` can honour it: a required call needs tools, and
    /// a named one must be among them. Every protocol's `tool_choice` ends here.
    pub(crate) fn checked(self, tools: &[ToolSpec]) -> Result<ToolChoice, ApiError> {
        match &self {
            ToolChoice::Required if tools.is_empty() => Err(ApiError::invalid(
                "tool_choice",
                "a tool_choice that requires a call needs tools",
            )),
            ToolChoice::Named(n) if !tools.iter().any(|t| &t.name == n) => Err(ApiError::invalid(
                "tool_choice",
                format!("tool_choice names {n:?}, which is not among the tools"),
            )),
            _ => Ok(self),
        }
    }

    /// Whether the answer's `calls` honour this choice; else a 422 naming `tool_choice`
    /// (`finish` says how the output ended, for the message).
    pub(crate) fn honoured(&self, calls: &[CollectedCall], finish: &str) -> Result<(), ApiError> {
        let unmet = match self {
            ToolChoice::Required if calls.is_empty() => {
                "tool_choice asks for a tool call but the model answered without one".to_owned()
            }
            ToolChoice::Named(n) if !calls.iter().any(|c| &c.name == n) => {
                format!("tool_choice names {n:?} but the model did not call it")
            }
            _ => return Ok(()),
        };
        Err(ApiError {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            message: format!(
                "{unmet} (it ended with {finish}; a call cut short by max_tokens is not a call)"
            ),
            param: Some("tool_choice".into()),
        })
    }
}

/// The request's constraining fields.
pub(crate) struct Asked<'a> {
    pub(crate) response_format: Option<&'a Value>,
    pub(crate) structured_outputs: Option<&'a Value>,
    pub(crate) tools: &'a [ToolSpec],
    pub(crate) choice: &'a ToolChoice,
    pub(crate) parallel: bool,
}

/// What the answer must match, if the request asks for anything. The shape is checked
/// here; the tokenizer stage writes and compiles the grammar (and refuses a bad one,
/// naming the field).
pub(crate) fn constraint(asked: &Asked<'_>) -> Result<Option<Constraint>, ApiError> {
    let from_format = response_format(asked.response_format)?;
    let from_vllm = structured_outputs(asked.structured_outputs)?;
    let from_tools = tool_calls(asked);
    let mut found: Vec<(&'static str, Constrain)> = [from_format, from_vllm, from_tools]
        .into_iter()
        .flatten()
        .collect();
    if found.len() > 1 {
        return Err(ApiError::invalid(
            found[1].0,
            format!(
                "{} and {} both constrain the answer; ask for one",
                found[0].0, found[1].0
            ),
        ));
    }
    Ok(found.pop().map(|(param, kind)| Constraint {
        param: param.to_owned(),
        kind,
    }))
}

/// OpenAI's `response_format`: `text`, `json_object` or `json_schema`.
fn response_format(v: Option<&Value>) -> Result<Option<(&'static str, Constrain)>, ApiError> {
    const P: &str = "response_format";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let kind = match kind {
        "text" => return Ok(None),
        "json_object" => Constrain::Json(json!({"type": "object"})),
        "json_schema" => {
            let Some(js) = v.get("json_schema").and_then(Value::as_object) else {
                return Err(ApiError::invalid(
                    P,
                    "response_format.json_schema must be an object with a schema",
                ));
            };
            match js.get("schema") {
                Some(s @ (Value::Object(_) | Value::Bool(true))) => Constrain::Json(s.clone()),
                Some(_) => {
                    return Err(ApiError::invalid(
                        P,
                        "response_format.json_schema.schema must be a JSON Schema object",
                    ))
                }
                None => {
                    return Err(ApiError::invalid(
                        P,
                        "response_format.json_schema.schema is required",
                    ))
                }
            }
        }
        other => {
            return Err(ApiError::invalid(
                P,
                format!("response_format.type {other:?} is not text, json_object or json_schema"),
            ))
        }
    };
    Ok(Some((P, kind)))
}

/// vLLM's `structured_outputs`: exactly one of `json`, `regex`, `choice`, `grammar`,
/// `json_object`.
fn structured_outputs(v: Option<&Value>) -> Result<Option<(&'static str, Constrain)>, ApiError> {
    const P: &str = "structured_outputs";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(P, "structured_outputs must be an object"));
    };
    let mut asked = Vec::new();
    for (key, val) in obj {
        let bad = |why: &str| ApiError::invalid(P, format!("structured_outputs.{key}: {why}"));
        match (key.as_str(), val) {
            (_, Value::Null) => {}
            ("json", Value::String(s)) => {
                let schema: Value = serde_json::from_str(s).map_err(|e| bad(&format!("not JSON: {e}")))?;
                asked.push(Constrain::Json(schema));
            }
            ("json", s @ Value::Object(_)) => asked.push(Constrain::Json(s.clone())),
            ("json", _) => return Err(bad("must be a JSON Schema (object or string)")),
            ("regex", Value::String(rx)) => asked.push(Constrain::Regex(rx.clone())),
            ("regex", _) => return Err(bad("must be a string")),
            ("choice", Value::Array(items)) => {
                let options: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_owned)).collect();
                match options {
                    Some(o) if !o.is_empty() => asked.push(Constrain::Choice(o)),
                    _ => return Err(bad("must be a non-empty list of strings")),
                }
            }
            ("choice", _) => return Err(bad("must be a non-empty list of strings")),
            ("grammar", Value::String(g)) => asked.push(Constrain::Grammar(g.clone())),
            ("grammar", _) => return Err(bad("must be a string (Lark, llguidance's dialect)")),
            ("json_object", Value::Bool(true)) => asked.push(Constrain::Json(json!({"type": "object"}))),
            ("json_object", Value::Bool(false)) => {}
            ("json_object", _) => return Err(bad("must be a boolean")),
            _ => {
                return Err(ApiError::invalid(
                    P,
                    format!("structured_outputs.{key} is not supported; use json, regex, choice, grammar or json_object"),
                ))
            }
        }
    }
    match asked.len() {
        0 => Ok(None),
        1 => Ok(asked.pop().map(|k| (P, k))),
        _ => Err(ApiError::invalid(
            P,
            "structured_outputs takes one of json, regex, choice, grammar or json_object",
        )),
    }
}

/// The calls `tool_choice` (or strict tools under `auto`) asks for.
fn tool_calls(asked: &Asked<'_>) -> Option<(&'static str, Constrain)> {
    let pick = match asked.choice {
        ToolChoice::None => return None,
        ToolChoice::Auto if !asked.tools.iter().any(|t| t.strict) => return None,
        ToolChoice::Auto => Pick::Auto {
            parallel: asked.parallel,
        },
        ToolChoice::Required => Pick::Required {
            parallel: asked.parallel,
        },
        ToolChoice::Named(n) => Pick::Named(n.clone()),
    };
    let param = if matches!(pick, Pick::Auto { .. }) {
        "tools"
    } else {
        "tool_choice"
    };
    Some((param, Constrain::Calls { pick }))
}
