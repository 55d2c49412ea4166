//! Structured outputs and enforced tool calls: the request fields that constrain the
//! answer (`response_format`, vLLM's `structured_outputs`, `tool_choice` and strict
//! tools) become one grammar, checked by compiling it before the request is admitted, so
//! a bad schema is a 400 that names the part, never a failure mid-stream or silently
//! unconstrained output.

use braid_engine::{Guides, Tokenizer};
use braid_parsers::grammar::{self, Specials};
use braid_parsers::tools::grammar::{calls_grammar, Pick, ToolSpec};
use serde_json::{json, Value};

use crate::error::ApiError;

/// What the server needs to build and check grammars: the vocabulary (compiled once) and
/// its special tokens (which tool markup must name as tokens).
#[derive(Debug)]
pub struct Constraints {
    guides: Guides,
    specials: Specials,
}

impl Constraints {
    /// Grammar checks with `guides` (the process's vocabulary index) and `tokenizer`'s
    /// special tokens.
    pub fn new(guides: Guides, tokenizer: &Tokenizer) -> Constraints {
        let specials = Specials::new(tokenizer.special_tokens());
        Constraints { guides, specials }
    }
}

/// What `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

/// The request's constraining fields.
pub(crate) struct Asked<'a> {
    pub(crate) response_format: Option<&'a Value>,
    pub(crate) structured_outputs: Option<&'a Value>,
    pub(crate) tools: Option<&'a Value>,
    pub(crate) choice: &'a ToolChoice,
    pub(crate) parallel: bool,
    pub(crate) tool_parser: Option<&'a str>,
}

/// The grammar the answer must match, if the request asks for one; checked.
pub(crate) fn guide(
    constraints: Option<&Constraints>,
    asked: &Asked<'_>,
) -> Result<Option<String>, ApiError> {
    let from_format = response_format(asked.response_format)?;
    let from_vllm = structured_outputs(asked.structured_outputs)?;
    let from_tools = tool_grammar(constraints, asked)?;
    let mut found: Vec<(&'static str, String)> = [from_format, from_vllm, from_tools]
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
    let Some((param, lark)) = found.pop() else {
        return Ok(None);
    };
    let Some(c) = constraints else {
        return Err(ApiError::invalid(
            param,
            "structured outputs are not available on this server (it has no byte-level BPE tokenizer)",
        ));
    };
    c.guides
        .compile(&lark)
        .map_err(|e| ApiError::invalid(param, format!("{param}: {}", readable(&e))))?;
    Ok(Some(lark))
}

/// llguidance's message on one line, without its position in braid's generated grammar
/// (`at 1(8): `), which means nothing to the client.
fn readable(e: &str) -> String {
    let one_line = e.split_whitespace().collect::<Vec<_>>().join(" ");
    let rest = one_line
        .strip_prefix("at ")
        .and_then(|r| r.split_once("): "))
        .filter(|(pos, _)| pos.chars().all(|c| c.is_ascii_digit() || c == '('))
        .map_or(one_line.as_str(), |(_, msg)| msg);
    rest.to_owned()
}

/// OpenAI's `response_format`: `text`, `json_object` or `json_schema`.
fn response_format(v: Option<&Value>) -> Result<Option<(&'static str, String)>, ApiError> {
    const P: &str = "response_format";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let lark = match kind {
        "text" => return Ok(None),
        "json_object" => grammar::json_schema(&json!({"type": "object"})),
        "json_schema" => {
            let Some(js) = v.get("json_schema").and_then(Value::as_object) else {
                return Err(ApiError::invalid(
                    P,
                    "response_format.json_schema must be an object with a schema",
                ));
            };
            match js.get("schema") {
                Some(s @ (Value::Object(_) | Value::Bool(true))) => grammar::json_schema(s),
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
    Ok(Some((P, lark)))
}

/// vLLM's `structured_outputs`: exactly one of `json`, `regex`, `choice`, `grammar`,
/// `json_object`.
fn structured_outputs(v: Option<&Value>) -> Result<Option<(&'static str, String)>, ApiError> {
    const P: &str = "structured_outputs";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(P, "structured_outputs must be an object"));
    };
    let mut lark = Vec::new();
    for (key, val) in obj {
        let bad = |why: &str| ApiError::invalid(P, format!("structured_outputs.{key}: {why}"));
        match (key.as_str(), val) {
            (_, Value::Null) => {}
            ("json", Value::String(s)) => {
                let schema: Value = serde_json::from_str(s).map_err(|e| bad(&format!("not JSON: {e}")))?;
                lark.push(grammar::json_schema(&schema));
            }
            ("json", s @ Value::Object(_)) => lark.push(grammar::json_schema(s)),
            ("json", _) => return Err(bad("must be a JSON Schema (object or string)")),
            ("regex", Value::String(rx)) => lark.push(grammar::regex(rx)),
            ("regex", _) => return Err(bad("must be a string")),
            ("choice", Value::Array(items)) => {
                let options: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_owned)).collect();
                match options {
                    Some(o) if !o.is_empty() => lark.push(grammar::choice(&o)),
                    _ => return Err(bad("must be a non-empty list of strings")),
                }
            }
            ("choice", _) => return Err(bad("must be a non-empty list of strings")),
            ("grammar", Value::String(g)) => lark.push(g.clone()),
            ("grammar", _) => return Err(bad("must be a string (Lark, llguidance's dialect)")),
            ("json_object", Value::Bool(true)) => lark.push(grammar::json_schema(&json!({"type": "object"}))),
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
    match lark.len() {
        0 => Ok(None),
        1 => Ok(lark.pop().map(|l| (P, l))),
        _ => Err(ApiError::invalid(
            P,
            "structured_outputs takes one of json, regex, choice, grammar or json_object",
        )),
    }
}

/// The tool-call grammar `tool_choice` (or strict tools under `auto`) asks for.
fn tool_grammar(
    constraints: Option<&Constraints>,
    asked: &Asked<'_>,
) -> Result<Option<(&'static str, String)>, ApiError> {
    let tools = asked.tools.map(ToolSpec::list).unwrap_or_default();
    let pick = match asked.choice {
        ToolChoice::None => return Ok(None),
        ToolChoice::Auto if !tools.iter().any(|t| t.strict) => return Ok(None),
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
    let Some(format) = asked.tool_parser else {
        return Err(ApiError::invalid(
            param,
            "enforcing tool calls needs a tool-call parser (start the server with --tool-call-parser)",
        ));
    };
    let specials = constraints.map(|c| c.specials.clone()).unwrap_or_default();
    calls_grammar(format, &tools, &pick, &specials)
        .map(|g| Some((param, g)))
        .map_err(|e| ApiError::invalid(param, e))
}
