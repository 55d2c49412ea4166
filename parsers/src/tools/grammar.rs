//! Tool calls as grammars: how each family writes a call, so that `tool_choice`
//! (`required`, a named function) and `strict` tools can make the model write calls the
//! extractor reads back, with arguments valid against each tool's schema.
//!
//! Each family's [`Markup`] (in its format file, beside the markers its parser reads)
//! says where the calls begin and end, how a call opens, how the name is written, and
//! whether the arguments are one JSON value or key/value tags.
//! JSON arguments are an embedded schema (`%json`); tagged values are typed by their
//! parameter's schema: strings are free text that cannot contain the close tag (bounded by
//! `minLength`/`maxLength`), enums are their literals, anything else is JSON.

use serde_json::{json, Value};

use crate::grammar::{json_lexeme, literal, regex_literal, Specials};

use super::markup::{Args, Markup, Name};
use super::tag_tree::TagTree;
use super::ToolFormat;

/// A declared tool: what the chat template, the tool extractor and the grammar writer
/// read of it. The API decodes each protocol's tool list into these once.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    /// The function name.
    pub name: String,
    /// What the function does, for the model.
    #[serde(default)]
    pub description: Option<String>,
    /// Its parameters' JSON schema, as declared (`None`: any object).
    #[serde(default)]
    pub parameters: Option<Value>,
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
                    description: f.get("description").and_then(Value::as_str).map(str::to_owned),
                    parameters: f.get("parameters").filter(|p| p.is_object()).cloned(),
                    strict: f.get("strict").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect()
    }
}

/// Which calls the grammar asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// The grammar for `pick` among `tools`, in the markup of tool parser `format`.
pub fn calls_grammar(
    format: &ToolFormat,
    tools: &[ToolSpec],
    pick: &Pick,
    specials: &Specials,
) -> Result<String, String> {
    let m = format.markup;
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
        let any = json!({"type": "object"});
        let params = match &tool.parameters {
            Some(declared) if !free_args => closed(declared),
            _ => any,
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
            let (body, rules) = tagged_params(i, params, specials, &mut |key, schema, is_text| {
                let key_end = match (is_text, tags.key_end_typed) {
                    (false, Some(typed)) => typed.replace("{type}", declared_type(schema)),
                    _ => tags.key_end.to_owned(),
                };
                let open = format!(
                    "{} {} {}",
                    specials.expr(tags.open),
                    literal(key),
                    specials.expr(&key_end)
                );
                (open, tags.close.to_owned())
            });
            Ok(format!(
                "call_{i}: {open} {name} {name_end} {body} {close}\n{rules}"
            ))
        }
        (Name::Plain, Args::Elements(tree)) => {
            let mut rules = String::new();
            let body = elements(&format!("{i}"), params, tree, specials, &mut rules);
            Ok(format!(
                "call_{i}: {open} {name} {name_end} {body} {close}\n{rules}"
            ))
        }
    }
}

/// The members of an object schema as nested elements (see [`super::tag_tree`]): each
/// declared property one element, required ones required. Rules the values need are
/// appended to `rules`, named after `path`.
fn elements(path: &str, schema: &Value, tree: &TagTree, specials: &Specials, rules: &mut String) -> String {
    members(schema, |j, key, sub| {
        let rule = format!("e_{path}_{j}");
        let value = element(&format!("{path}_{j}"), key, sub, tree, specials, rules);
        rules.push_str(&format!("{rule}: {value}\n"));
        rule
    })
}

/// The members of an object schema in order, each as the rule `member` writes for it
/// (given its index, key and schema), required ones required and the rest optional;
/// `""` when it declares none.
fn members(schema: &Value, mut member: impl FnMut(usize, &str, &Value) -> String) -> String {
    let props = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let seq: Vec<String> = props
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(j, (key, sub))| {
            let rule = member(j, key, sub);
            match required.contains(&key.as_str()) {
                true => rule,
                false => format!("{rule}?"),
            }
        })
        .collect();
    if seq.is_empty() {
        "\"\"".to_owned()
    } else {
        seq.join(" ")
    }
}

/// One element `key` holding a value of `schema`: text and fixed values as such, objects
/// with declared properties as child elements, lists of them as `item`s, anything else
/// as JSON (which the reader types by the schema).
fn element(
    path: &str,
    key: &str,
    schema: &Value,
    tree: &TagTree,
    specials: &Specials,
    rules: &mut String,
) -> String {
    let open = specials.expr(&format!("{}<{key}>", tree.prefix));
    let after = format!("{}</{key}>", tree.prefix);
    let ty = schema.get("type").and_then(Value::as_str);
    let value = if let Some(fixed) = tag_value(schema) {
        format!("{fixed} {}", specials.expr(&after))
    } else if is_text(schema) {
        free_text(&format!("V_{path}"), schema, &after, specials, rules)
    } else if ty == Some("object") && schema.get("properties").is_some_and(Value::is_object) {
        format!(
            "{} {}",
            elements(path, schema, tree, specials, rules),
            specials.expr(&after)
        )
    } else if let (Some("array"), Some(items)) = (ty, schema.get("items")) {
        let item = element(&format!("{path}_i"), tree.item, items, tree, specials, rules);
        rules.push_str(&format!("i_{path}: {item}\n"));
        format!("i_{path}* {}", specials.expr(&after))
    } else {
        format!("{} {}", json_lexeme(schema), specials.expr(&after))
    };
    format!("{open} {value}")
}

/// The JSON value type a parameter schema declares, for markup that names it (as
/// [`super::markup`] names a value's: an integer is a `number`; `object` where the schema
/// names none or several).
fn declared_type(schema: &Value) -> &str {
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => "number",
        Some(t) => t,
        None => "object",
    }
}

/// The arguments of call `i` as a sequence of tagged parameters (required ones
/// required), and the rules the values need. `tag` gives, for a key, its schema and
/// whether its value is text, the expression before the value and the text after it.
fn tagged_params(
    i: usize,
    params: &Value,
    specials: &Specials,
    tag: &mut dyn FnMut(&str, &Value, bool) -> (String, String),
) -> (String, String) {
    let mut rules = String::new();
    let body = members(params, |j, key, schema| {
        let rule = format!("p_{i}_{j}");
        let is_text = is_text(schema);
        let (before, after) = tag(key, schema, is_text);
        let value = match (tag_value(schema), is_text) {
            (Some(fixed), _) => format!("{fixed} {}", specials.expr(&after)),
            (None, false) => format!("{} {}", json_lexeme(schema), specials.expr(&after)),
            (None, true) => free_text(&format!("V_{i}_{j}"), schema, &after, specials, &mut rules),
        };
        rules.push_str(&format!("{rule}: {before} {value}\n"));
        rule
    });
    (body, rules)
}

/// Whether a tagged value is written as text (a string, or an enum of strings).
fn is_text(schema: &Value) -> bool {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options.iter().all(Value::is_string);
    }
    schema.get("const").is_some_and(Value::is_string)
        || matches!(schema.get("type"), Some(Value::String(t)) if t == "string")
}

/// The expression of a value with a fixed set of spellings (an enum, a string const).
fn tag_value(schema: &Value) -> Option<String> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let alts: Vec<String> = options
            .iter()
            .map(|v| match v {
                Value::String(s) => literal(s),
                other => literal(&other.to_string()),
            })
            .collect();
        return Some(format!("({})", alts.join(" | ")));
    }
    match schema.get("const") {
        Some(Value::String(s)) => Some(literal(s)),
        _ => None,
    }
}

/// A free-text value (bounded by `minLength`/`maxLength`) and the text `after` it, as the
/// terminal `terminal` appended to `rules`. Where `after` is plain text the terminal
/// takes it in, ending at its first occurrence: a text lexeme followed by a separate
/// close would otherwise swallow the close's first bytes (llguidance's lexer is greedy)
/// and leave no way to finish it. A close that holds a special token ends the text by
/// itself.
fn free_text(terminal: &str, schema: &Value, after: &str, specials: &Specials, rules: &mut String) -> String {
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = schema.get("maxLength").and_then(Value::as_u64);
    let bound = match max {
        Some(max) => format!("(?s:.{{{min},{max}}})"),
        None if min > 0 => format!("(?s:.{{{min},}})"),
        None => String::new(),
    };
    if specials.any_in(after) {
        let close: String = after
            .trim_start_matches('\n')
            .chars()
            .take_while(|c| *c != '\n')
            .collect();
        let len = if bound.is_empty() {
            String::new()
        } else {
            format!(" & /{bound}/")
        };
        rules.push_str(&format!(
            "{terminal}: /(?s:.*)/ & ~/(?s:.*){}(?s:.*)/{len}\n",
            regex_literal(&close)
        ));
        return format!("{terminal} {}", specials.expr(after));
    }
    let stop = regex_literal(after);
    let len = if bound.is_empty() {
        String::new()
    } else {
        format!(" & /{bound}{stop}/")
    };
    rules.push_str(&format!(
        "{terminal}: /(?s:.*){stop}/ & ~/(?s:.*){stop}(?s:.+)/{len}\n"
    ));
    terminal.to_owned()
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
        assert_eq!(t[1].parameters, None);
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
                let g = calls_grammar(f, &tools(), &pick, &Specials::default());
                assert!(g.is_ok_and(|g| g.starts_with("start: ")), "{} {pick:?}", f.name);
            }
        }
        let hermes = &crate::tools::hermes::FORMAT;
        assert!(calls_grammar(hermes, &tools(), &Pick::Named("x".into()), &Specials::default()).is_err());
    }

    #[test]
    fn named_calls_name_the_function_and_type_each_value() {
        let g = calls_grammar(
            &crate::tools::qwen3_coder::FORMAT,
            &tools(),
            &Pick::Named("get_weather".into()),
            &Specials::default(),
        )
        .unwrap_or_default();
        assert!(g.contains(r#""get_weather""#), "{g}");
        assert!(!g.contains("noop"), "{g}");
        // city is required text bounded by maxLength; days is optional JSON.
        assert!(g.contains("p_0_0 p_0_1?"), "{g}");
        // The text ends at its close tag, which it takes in.
        assert!(
            g.contains(r"V_0_0: /(?s:.*)\n<\/parameter>\n/ & ~/(?s:.*)\n<\/parameter>\n(?s:.+)/ & /(?s:.{0,12})\n<\/parameter>\n/"),
            "{g}"
        );
        assert!(g.contains(r#"%json {"type":"integer""#), "{g}");
    }
}
