//! Tool calls as grammars: how each family writes a call, so that `tool_choice`
//! (`required`, a named function) and `strict` tools can make the model write calls the
//! extractor reads back, with arguments valid against each tool's schema.
//!
//! One [`Markup`] per family says where the calls begin and end, how a call opens, how
//! the name is written, and whether the arguments are one JSON value or key/value tags.
//! JSON arguments are an embedded schema (`%json`); tagged values are typed by their
//! parameter's schema: strings are free text that cannot contain the close tag (bounded by
//! `minLength`/`maxLength`), enums are their literals, anything else is JSON.

use serde_json::{json, Value};

use crate::grammar::{json_lexeme, literal, regex_literal, Specials};

/// How a call's name is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    /// As it is.
    Plain,
    /// Kimi-K2's `functions.NAME:INDEX`.
    KimiId,
    /// Inside the JSON body, beside the arguments (Hermes).
    InJson,
}

/// How tagged arguments are written.
#[derive(Debug, Clone, Copy)]
struct Tags {
    /// Opens a parameter; the key follows.
    open: &'static str,
    /// Between the key and a string value.
    key_end: &'static str,
    /// Between the key and any other value (DSML marks strings); `None`: as `key_end`.
    key_end_typed: Option<&'static str>,
    /// After the value.
    close: &'static str,
}

/// How a call's arguments are written.
#[derive(Debug, Clone, Copy)]
enum Args {
    /// One JSON object.
    Json,
    /// Key/value tags.
    Tags(Tags),
}

/// How a family writes its tool calls.
#[derive(Debug, Clone, Copy)]
struct Markup {
    /// Before the first call and after the last.
    begin: &'static str,
    end: &'static str,
    /// Between two calls.
    between: &'static str,
    /// Opens a call; the name follows.
    call_open: &'static str,
    name: Name,
    /// After the name, before the arguments.
    name_end: &'static str,
    args: Args,
    /// Closes a call.
    call_close: &'static str,
}

const QWEN3_CODER_TAGS: Tags = Tags {
    open: "<parameter=",
    key_end: ">\n",
    key_end_typed: None,
    close: "\n</parameter>\n",
};

const GLM_TAGS: Tags = Tags {
    open: "<arg_key>",
    key_end: "</arg_key>\n<arg_value>",
    key_end_typed: None,
    close: "</arg_value>\n",
};

/// The markup of a tool parser, by its name.
fn markup(format: &str) -> Option<Markup> {
    let json_call = |begin, end, call_open, name_end, call_close| Markup {
        begin,
        end,
        between: "",
        call_open,
        name: Name::Plain,
        name_end,
        args: Args::Json,
        call_close,
    };
    Some(match format {
        "hermes" => Markup {
            begin: "",
            end: "",
            between: "\n",
            call_open: "<tool_call>\n",
            name: Name::InJson,
            name_end: "",
            args: Args::Json,
            call_close: "\n</tool_call>",
        },
        "kimi_k2" => Markup {
            name: Name::KimiId,
            ..json_call(
                "<|tool_calls_section_begin|>",
                "<|tool_calls_section_end|>",
                "<|tool_call_begin|>",
                "<|tool_call_argument_begin|>",
                "<|tool_call_end|>",
            )
        },
        "qwen3_coder" => Markup {
            begin: "",
            end: "",
            between: "\n",
            call_open: "<tool_call>\n<function=",
            name: Name::Plain,
            name_end: ">\n",
            args: Args::Tags(QWEN3_CODER_TAGS),
            call_close: "</function>\n</tool_call>",
        },
        "deepseek_v3" => json_call(
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁calls▁end｜>",
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>",
            "\n```json\n",
            "\n```<｜tool▁call▁end｜>",
        ),
        "deepseek_v31" => json_call(
            "<｜tool▁calls▁begin｜>",
            "<｜tool▁calls▁end｜>",
            "<｜tool▁call▁begin｜>",
            "<｜tool▁sep｜>",
            "<｜tool▁call▁end｜>",
        ),
        "deepseek_v32" => Markup {
            begin: "<｜DSML｜function_calls>\n",
            end: "</｜DSML｜function_calls>",
            between: "",
            call_open: "<｜DSML｜invoke name=\"",
            name: Name::Plain,
            name_end: "\">\n",
            args: Args::Tags(Tags {
                open: "<｜DSML｜parameter name=\"",
                key_end: "\" string=\"true\">",
                key_end_typed: Some("\" string=\"false\">"),
                close: "</｜DSML｜parameter>\n",
            }),
            call_close: "</｜DSML｜invoke>\n",
        },
        "glm45" => Markup {
            begin: "",
            end: "",
            between: "\n",
            call_open: "<tool_call>",
            name: Name::Plain,
            name_end: "\n",
            args: Args::Tags(GLM_TAGS),
            call_close: "</tool_call>",
        },
        "glm47" => Markup {
            begin: "",
            end: "",
            between: "",
            call_open: "<tool_call>",
            name: Name::Plain,
            name_end: "",
            args: Args::Tags(Tags {
                key_end: "</arg_key><arg_value>",
                close: "</arg_value>",
                ..GLM_TAGS
            }),
            call_close: "</tool_call>",
        },
        "minimax_m2" => Markup {
            begin: "<minimax:tool_call>\n",
            end: "</minimax:tool_call>",
            between: "",
            call_open: "<invoke name=\"",
            name: Name::Plain,
            name_end: "\">\n",
            args: Args::Tags(Tags {
                open: "<parameter name=\"",
                key_end: "\">",
                key_end_typed: None,
                close: "</parameter>\n",
            }),
            call_close: "</invoke>\n",
        },
        _ => return None,
    })
}

/// A declared tool, as the grammar needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The function name.
    pub name: String,
    /// Its parameters' JSON schema (`{"type": "object"}` when none was given).
    pub parameters: Value,
    /// `function.strict`: arguments are held to the schema even under `auto`.
    pub strict: bool,
}

impl ToolSpec {
    /// The tools of an OpenAI `tools` array (entries that are not functions are skipped).
    pub fn list(tools: &Value) -> Vec<ToolSpec> {
        let Some(list) = tools.as_array() else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|t| t.get("function"))
            .filter_map(|f| {
                Some(ToolSpec {
                    name: f.get("name")?.as_str()?.to_owned(),
                    parameters: f
                        .get("parameters")
                        .filter(|p| p.is_object())
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object"})),
                    strict: f.get("strict").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect()
    }
}

/// Which calls the grammar asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// At least one call of any tool (more when `parallel`), and nothing else.
    Required {
        /// Several calls may follow each other.
        parallel: bool,
    },
    /// Exactly one call of this function, and nothing else.
    Named(String),
    /// Text, then optionally calls; strict tools' arguments follow their schemas.
    Auto {
        /// Several calls may follow each other.
        parallel: bool,
    },
}

/// Whether braid can write a grammar for this tool parser's calls.
pub fn supports(format: &str) -> bool {
    markup(format).is_some()
}

/// The grammar for `pick` among `tools`, in the markup of tool parser `format`.
pub fn calls_grammar(
    format: &str,
    tools: &[ToolSpec],
    pick: &Pick,
    specials: &Specials,
) -> Result<String, String> {
    let m = markup(format).ok_or_else(|| format!("no tool-call grammar for the {format:?} tool parser"))?;
    let chosen: Vec<&ToolSpec> = match pick {
        Pick::Named(n) => tools.iter().filter(|t| &t.name == n).collect(),
        _ => tools.iter().collect(),
    };
    if chosen.is_empty() {
        return Err("no tool to call".into());
    }
    let mut rules = Vec::new();
    let mut alts = Vec::new();
    for (i, tool) in chosen.iter().enumerate() {
        let free_args = matches!(pick, Pick::Auto { .. }) && !tool.strict;
        let params = if free_args {
            json!({"type": "object"})
        } else {
            closed(&tool.parameters)
        };
        rules.push(call_rule(&m, i, tool, &params, specials)?);
        alts.push(format!("call_{i}"));
    }
    let mut out = String::new();
    let parallel = match pick {
        Pick::Required { parallel } | Pick::Auto { parallel } => *parallel,
        Pick::Named(_) => false,
    };
    let calls = if parallel {
        format!(
            "{} call ({} call)* {}",
            specials.expr(m.begin),
            specials.expr(m.between),
            specials.expr(m.end)
        )
    } else {
        format!("{} call {}", specials.expr(m.begin), specials.expr(m.end))
    };
    match pick {
        Pick::Auto { .. } => {
            // Free text that does not start tool markup, then optionally the calls.
            let first = if m.begin.is_empty() { m.call_open } else { m.begin };
            let opener: String = first.chars().take_while(|c| *c != '\n').collect();
            out.push_str("start: TEXT | TEXT calls\n");
            if specials.any_in(&opener) {
                out.push_str("TEXT: /(?s:.*)/\n");
            } else {
                out.push_str(&format!(
                    "TEXT: /(?s:.*)/ & ~/(?s:.*){}(?s:.*)/\n",
                    regex_literal(&opener)
                ));
            }
        }
        _ => out.push_str("start: calls\n"),
    }
    out.push_str(&format!("calls: {calls}\n"));
    out.push_str(&format!("call: {}\n", alts.join(" | ")));
    for r in rules {
        out.push_str(&r);
    }
    Ok(out)
}

/// A tool's parameters with undeclared keys ruled out, unless the schema says otherwise
/// (as xgrammar's strict mode does): an enforced call writes the parameters declared.
fn closed(params: &Value) -> Value {
    let mut p = params.clone();
    if let Some(obj) = p.as_object_mut() {
        if obj.contains_key("properties") {
            obj.entry("additionalProperties").or_insert(Value::Bool(false));
        }
    }
    p
}

/// The rule `call_{i}`: one call of `tool` (plus any rules it needs, appended).
fn call_rule(
    m: &Markup,
    i: usize,
    tool: &ToolSpec,
    params: &Value,
    specials: &Specials,
) -> Result<String, String> {
    let open = specials.expr(m.call_open);
    let name_end = specials.expr(m.name_end);
    let close = specials.expr(m.call_close);
    let name = literal(&tool.name);
    match (m.name, m.args) {
        (Name::InJson, _) => {
            // `{"name": "NAME", "arguments": ARGS}` laid out as the embedded JSON is, with
            // the name as a literal: alternatives part at the name, not inside a JSON value.
            let head = literal(&format!(
                "{{\"name\": {}, \"arguments\": ",
                serde_json::Value::from(tool.name.as_str())
            ));
            Ok(format!(
                "call_{i}: {open} {head} {} \"}}\" {close}\n",
                json_lexeme(params)
            ))
        }
        (Name::KimiId, _) => Ok(format!(
            "call_{i}: {open} \"functions.\" {name} \":\" /[0-9]{{1,3}}/ {name_end} {} {close}\n",
            json_lexeme(params)
        )),
        (Name::Plain, Args::Json) => Ok(format!(
            "call_{i}: {open} {name} {name_end} {} {close}\n",
            json_lexeme(params)
        )),
        (Name::Plain, Args::Tags(tags)) => {
            let mut rules = String::new();
            let mut seq = Vec::new();
            let props = params.get("properties").and_then(Value::as_object);
            let required: Vec<&str> = params
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (j, (key, schema)) in props.into_iter().flatten().enumerate() {
                let rule = format!("p_{i}_{j}");
                let (value, is_text) = tag_value(&format!("V_{i}_{j}"), schema, &tags, &mut rules);
                let key_end = match (is_text, tags.key_end_typed) {
                    (false, Some(typed)) => typed,
                    _ => tags.key_end,
                };
                rules.push_str(&format!(
                    "{rule}: {} {} {} {value} {}\n",
                    specials.expr(tags.open),
                    literal(key),
                    specials.expr(key_end),
                    specials.expr(tags.close)
                ));
                seq.push(if required.contains(&key.as_str()) {
                    rule
                } else {
                    format!("{rule}?")
                });
            }
            let body = if seq.is_empty() {
                "\"\"".to_owned()
            } else {
                seq.join(" ")
            };
            Ok(format!(
                "call_{i}: {open} {name} {name_end} {body} {close}\n{rules}"
            ))
        }
    }
}

/// The expression for one tagged value, and whether it is free text (a string). Text
/// rules it needs are appended to `rules`.
fn tag_value(terminal: &str, schema: &Value, tags: &Tags, rules: &mut String) -> (String, bool) {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let alts: Vec<String> = options
            .iter()
            .map(|v| match v {
                Value::String(s) => literal(s),
                other => literal(&other.to_string()),
            })
            .collect();
        let all_strings = options.iter().all(Value::is_string);
        return (format!("({})", alts.join(" | ")), all_strings);
    }
    if let Some(Value::String(s)) = schema.get("const") {
        return (literal(s), true);
    }
    let is_string = match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        _ => false,
    };
    if !is_string {
        return (json_lexeme(schema), false);
    }
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let len = match schema.get("maxLength").and_then(Value::as_u64) {
        Some(max) => format!(" & /(?s:.{{{min},{max}}})/"),
        None if min > 0 => format!(" & /(?s:.{{{min},}})/"),
        None => String::new(),
    };
    let close = tags.close.trim_start_matches('\n');
    let close: String = close.chars().take_while(|c| *c != '\n').collect();
    rules.push_str(&format!(
        "{terminal}: /(?s:.*)/ & ~/(?s:.*){}(?s:.*)/{len}\n",
        regex_literal(&close)
    ));
    (terminal.to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<ToolSpec> {
        ToolSpec::list(&json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer"}},
                "required": ["city"]}}},
            {"type": "function", "function": {"name": "noop", "strict": true}},
        ]))
    }

    #[test]
    fn tool_specs_read_the_openai_shape() {
        let t = tools();
        assert_eq!(t[0].name, "get_weather");
        assert!(!t[0].strict);
        assert_eq!(t[1].parameters, json!({"type": "object"}));
        assert!(t[1].strict);
    }

    #[test]
    fn every_known_format_has_a_grammar() {
        for f in crate::tools::FORMATS {
            for pick in [
                Pick::Required { parallel: true },
                Pick::Named("get_weather".into()),
                Pick::Auto { parallel: false },
            ] {
                let g = calls_grammar(f.name, &tools(), &pick, &Specials::default());
                assert!(g.is_ok_and(|g| g.starts_with("start: ")), "{} {pick:?}", f.name);
            }
        }
        assert!(calls_grammar("nope", &tools(), &Pick::Named("x".into()), &Specials::default()).is_err());
        assert!(calls_grammar("hermes", &tools(), &Pick::Named("x".into()), &Specials::default()).is_err());
    }

    #[test]
    fn named_calls_name_the_function_and_type_each_value() {
        let g = calls_grammar(
            "qwen3_coder",
            &tools(),
            &Pick::Named("get_weather".into()),
            &Specials::default(),
        )
        .unwrap_or_default();
        assert!(g.contains(r#""get_weather""#), "{g}");
        assert!(!g.contains("noop"), "{g}");
        // city is required text bounded by maxLength; days is optional JSON.
        assert!(g.contains("p_0_0 p_0_1?"), "{g}");
        assert!(
            g.contains(r"& ~/(?s:.*)<\/parameter>(?s:.*)/ & /(?s:.{0,12})/"),
            "{g}"
        );
        assert!(g.contains(r#"%json {"type":"integer""#), "{g}");
    }

    /// A call written the way the grammar writes it (values in schema order).
    fn write_call(m: &Markup, index: usize, name: &str, args: &Value) -> String {
        let mut out = m.call_open.to_string();
        match m.name {
            Name::InJson => {
                out.push_str(&json!({"name": name, "arguments": args}).to_string());
                out.push_str(m.call_close);
                return out;
            }
            Name::KimiId => out.push_str(&format!("functions.{name}:{index}")),
            Name::Plain => out.push_str(name),
        }
        out.push_str(m.name_end);
        match m.args {
            Args::Json => out.push_str(&args.to_string()),
            Args::Tags(t) => {
                for (k, v) in args.as_object().into_iter().flatten() {
                    let (text, key_end) = match v {
                        Value::String(s) => (s.clone(), t.key_end),
                        other => (other.to_string(), t.key_end_typed.unwrap_or(t.key_end)),
                    };
                    out.push_str(&format!("{}{k}{key_end}{text}{}", t.open, t.close));
                }
            }
        }
        out.push_str(m.call_close);
        out
    }

    #[test]
    fn calls_written_by_the_markup_read_back_with_each_parser() {
        let tools_json = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "opts": {"type": "object"}}}}}]);
        let args = json!({"city": "Paris", "days": 3, "opts": {"unit": "C"}});
        for f in crate::tools::FORMATS {
            let m = markup(f.name).unwrap_or_else(|| panic!("{}", f.name));
            let text = format!(
                "{}{}{}{}{}",
                m.begin,
                write_call(&m, 0, "get_weather", &args),
                m.between,
                write_call(
                    &m,
                    1,
                    "get_weather",
                    &json!({"city": "Oslo", "days": 1, "opts": {}})
                ),
                m.end
            );
            let mut config = crate::OutputConfig::from_names(None, Some(f.name)).unwrap_or_default();
            config.schemas = std::sync::Arc::new(crate::ToolSchemas::from_tools(&tools_json));
            let out = crate::testkit::parse(&config, &text, crate::testkit::Chunking::Whole);
            assert_eq!(out.tool_calls.len(), 2, "{}: {text:?} -> {out:?}", f.name);
            assert_eq!(out.tool_calls[0].name, "get_weather", "{}", f.name);
            let got: Value = serde_json::from_str(&out.tool_calls[0].arguments).unwrap_or_default();
            assert_eq!(got, args, "{}: {text:?}", f.name);
            assert!(out.content().is_none(), "{}: content {:?}", f.name, out.content());
            assert!(out.fallbacks.is_empty(), "{}: {:?}", f.name, out.fallbacks);
        }
    }
}
