//! Chat templates: a conversation (OpenAI-shaped messages, tools, template kwargs) to the
//! prompt text the model was trained on, byte for byte as Hugging Face renders it.
//!
//! Jinja templates run on minijinja configured as transformers configures jinja2:
//! `trim_blocks`, `lstrip_blocks`, loop controls, Python string and dict methods
//! (minijinja-contrib's pycompat), `raise_exception`, `strftime_now`, and a `tojson` that
//! writes what Python's `json.dumps` writes. DeepSeek-V3.2, which ships a Python encoder
//! instead of a template, has its own renderer ([`deepseek_v32`]).
//!
//! The messages arrive as the template's view of braid's typed conversation (built by the
//! tokenizer stage): earlier turns' reasoning under both `reasoning_content` and
//! `reasoning`, verbatim; tool-call `arguments` as objects, or as the client's JSON string
//! for templates that concatenate them ([`ChatRenderer::arguments_as`]); the model's own
//! tool-call ids. Here only what depends on the template is done: `null` content as ""
//! where the template needs it, and objects dumped for templates that want strings.

pub mod deepseek_v32;
pub mod deepseek_v4;
pub mod pyjson;

use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, ErrorKind, Value as JValue};
use serde_json::{Map, Value};

use crate::config::read_json;
use crate::error::{Error, Result};
use pyjson::PyJson;

/// How a template wants tool-call arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgumentsAs {
    /// A mapping (templates that iterate or `tojson` it: Qwen3, MiniMax, GLM, Kimi).
    Object,
    /// The JSON string as sent (templates that concatenate it: DeepSeek V3.1, R1).
    String,
}

/// One conversation to render.
#[derive(Debug, Clone, Copy)]
pub struct Conversation<'a> {
    /// The `messages` array.
    pub messages: &'a Value,
    /// The `tools` array, if any.
    pub tools: Option<&'a Value>,
    /// `chat_template_kwargs` (an object), if any.
    pub kwargs: Option<&'a Value>,
    /// End with the assistant's turn opened.
    pub add_generation_prompt: bool,
}

/// A model's prompt renderer.
#[derive(Debug)]
pub enum ChatRenderer {
    /// A Jinja chat template.
    Jinja(Box<JinjaTemplate>),
    /// DeepSeek-V3.2's encoder.
    DeepseekV32,
    /// DeepSeek-V4 or V4.1's encoder.
    DeepseekV4(deepseek_v4::Release),
}

/// A compiled Jinja chat template and the special-token variables it may read.
pub struct JinjaTemplate {
    env: Environment<'static>,
    specials: Map<String, Value>,
    arguments_as: ArgumentsAs,
    name: String,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate")
            .field("name", &self.name)
            .field("arguments_as", &self.arguments_as)
            .finish_non_exhaustive()
    }
}

/// Special-token variables (`bos_token`, `eos_token`, …) from `tokenizer_config.json`.
fn special_tokens(config: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(obj) = config.as_object() {
        for (k, v) in obj {
            if !k.ends_with("_token") {
                continue;
            }
            let text = match v {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            if let Some(t) = text {
                out.insert(k.clone(), Value::String(t));
            }
        }
    }
    out
}

/// Whether a template concatenates `arguments` as text (`… + tool['function']['arguments']`).
fn arguments_as(source: &str) -> ArgumentsAs {
    let squeezed: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let concatenated = ["['arguments']+", "[\"arguments\"]+", ".arguments+"]
        .iter()
        .any(|p| squeezed.contains(p));
    if concatenated {
        ArgumentsAs::String
    } else {
        ArgumentsAs::Object
    }
}

impl ChatRenderer {
    /// The renderer of a model folder: `template` if given, else `chat_template.jinja`,
    /// else `tokenizer_config.json`'s `chat_template`, else DeepSeek's own encoder when
    /// `config.json` says `model_type` `deepseek_v32`, `deepseek_v4` or `deepseek_v41`.
    /// For a GGUF file: `template` if given, else the file's `tokenizer.chat_template`.
    pub fn from_dir(dir: &Path, template: Option<&Path>) -> Result<ChatRenderer> {
        if crate::gguf::is_gguf(dir) {
            let file = crate::gguf::Gguf::open(dir)?;
            let (source, name) = match template {
                Some(t) => (read_text(t)?, t.display().to_string()),
                None => (
                    file.chat_template().ok_or_else(|| Error::Template {
                        source_name: dir.display().to_string(),
                        problem: "the GGUF file has no tokenizer.chat_template; give --chat-template FILE"
                            .into(),
                    })?,
                    format!("{} (tokenizer.chat_template)", dir.display()),
                ),
            };
            return JinjaTemplate::new(source, file.special_tokens(), &name)
                .map(|t| ChatRenderer::Jinja(Box::new(t)));
        }
        let tc_path = dir.join("tokenizer_config.json");
        let tc = if tc_path.exists() {
            read_json(&tc_path)?
        } else {
            Value::Null
        };
        let specials = special_tokens(&tc);
        if let Some(file) = template {
            let source = read_text(file)?;
            return JinjaTemplate::new(source, specials, &file.display().to_string())
                .map(|t| ChatRenderer::Jinja(Box::new(t)));
        }
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            let source = read_text(&jinja)?;
            return JinjaTemplate::new(source, specials, &jinja.display().to_string())
                .map(|t| ChatRenderer::Jinja(Box::new(t)));
        }
        let from_config = match tc.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| named.first())
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(str::to_owned),
            _ => None,
        };
        if let Some(source) = from_config {
            return JinjaTemplate::new(source, specials, &tc_path.display().to_string())
                .map(|t| ChatRenderer::Jinja(Box::new(t)));
        }
        let config = dir.join("config.json");
        if config.exists() {
            match read_json(&config)?.get("model_type").and_then(Value::as_str) {
                Some("deepseek_v32") => return Ok(ChatRenderer::DeepseekV32),
                Some("deepseek_v4") => return Ok(ChatRenderer::DeepseekV4(deepseek_v4::Release::V4)),
                Some("deepseek_v41") => return Ok(ChatRenderer::DeepseekV4(deepseek_v4::Release::V41)),
                _ => {}
            }
        }
        Err(Error::Template {
            source_name: dir.display().to_string(),
            problem: "the model folder has no chat template (chat_template.jinja or tokenizer_config.json); give --chat-template FILE".into(),
        })
    }

    /// How this renderer wants tool-call arguments (DeepSeek's encoders take them as
    /// objects).
    pub fn arguments_as(&self) -> ArgumentsAs {
        match self {
            ChatRenderer::Jinja(t) => t.arguments_as(),
            ChatRenderer::DeepseekV32 | ChatRenderer::DeepseekV4(_) => ArgumentsAs::Object,
        }
    }

    /// The prompt for a conversation.
    pub fn render(&self, conv: &Conversation<'_>) -> Result<String> {
        match self {
            ChatRenderer::Jinja(t) => t.render(conv),
            ChatRenderer::DeepseekV32 => {
                let messages = prepare(conv.messages, ArgumentsAs::Object)?;
                // `thinking`, the `deepseek_v3` reasoning parser's switch: prompt and
                // parser read the same key.
                let thinking = conv
                    .kwargs
                    .and_then(|k| k.get("thinking"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                deepseek_v32::encode(
                    messages.as_array().map_or(&[], Vec::as_slice),
                    conv.tools,
                    thinking,
                )
            }
            ChatRenderer::DeepseekV4(release) => {
                let messages = prepare(conv.messages, ArgumentsAs::Object)?;
                deepseek_v4::encode(
                    messages.as_array().map_or(&[], Vec::as_slice),
                    conv.tools,
                    conv.kwargs.and_then(Value::as_object),
                    *release,
                )
            }
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: PathBuf::from(path),
        source,
    })
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// sort_keys=False)`.
#[allow(clippy::needless_pass_by_value)] // minijinja hands filters their kwargs by value
fn tojson(value: &JValue, kwargs: Kwargs) -> std::result::Result<JValue, minijinja::Error> {
    let opts = PyJson {
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        indent: kwargs.get::<Option<usize>>("indent")?,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    let _ = kwargs.get::<Option<JValue>>("separators")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(JValue::from(opts.dumps(&json)))
}

fn raise_exception(message: String) -> std::result::Result<JValue, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC time, for the directives templates use.
/// `SOURCE_DATE_EPOCH` (seconds), the reproducible-builds convention, pins it, so that a
/// template's dated prompt can be compared byte for byte.
fn strftime_now(format: &str) -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    strftime(secs, format)
}

/// Formats `secs` since the Unix epoch (UTC) with the `strftime` directives templates use.
fn strftime(secs: i64, format: &str) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(month - 1) as usize];
    const WEEKDAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('B') => out.push_str(name),
            Some('b') => out.push_str(&name[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl JinjaTemplate {
    /// Compiles a template; `specials` are the special-token variables.
    pub fn new(source: String, specials: Map<String, Value>, name: &str) -> Result<JinjaTemplate> {
        let bad = |e: minijinja::Error| Error::Template {
            source_name: name.to_owned(),
            problem: e.to_string(),
        };
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(bad)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        let arguments_as = arguments_as(&source);
        env.add_template_owned("chat_template", source).map_err(bad)?;
        Ok(JinjaTemplate {
            env,
            specials,
            arguments_as,
            name: name.to_owned(),
        })
    }

    /// How this template wants tool-call arguments.
    pub fn arguments_as(&self) -> ArgumentsAs {
        self.arguments_as
    }

    /// Renders a conversation. OpenAI clients send `null` content on tool-call turns;
    /// some templates read that (DeepSeek-R1 renders the calls only then), others fail on
    /// it (Qwen3 tests it with `in`). The conversation is rendered as sent first, and
    /// with `null` content as "" (what vLLM always does) if that fails.
    pub fn render(&self, conv: &Conversation<'_>) -> Result<String> {
        match self.render_with(conv, false) {
            Err(Error::Render(first)) => self.render_with(conv, true).map_err(|_| Error::Render(first)),
            other => other,
        }
    }

    fn render_with(&self, conv: &Conversation<'_>, null_as_empty: bool) -> Result<String> {
        let mut ctx = self.specials.clone();
        ctx.insert(
            "messages".into(),
            prepare_with(conv.messages, self.arguments_as, null_as_empty)?,
        );
        ctx.insert("tools".into(), conv.tools.cloned().unwrap_or(Value::Null));
        ctx.insert("documents".into(), Value::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(conv.add_generation_prompt),
        );
        if let Some(Value::Object(kwargs)) = conv.kwargs {
            for (k, v) in kwargs {
                ctx.insert(k.clone(), v.clone());
            }
        }
        let template = self
            .env
            .get_template("chat_template")
            .map_err(|e| Error::Render(e.to_string()))?;
        template
            .render(JValue::from(Serde(&Value::Object(ctx))))
            .map_err(|e| Error::Render(render_error(&e)))
    }
}

/// A render error in one line: the template's own message (from `raise_exception`) or
/// minijinja's, with where it happened.
fn render_error(e: &minijinja::Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_owned(),
        _ => e.to_string(),
    }
}

/// The messages as the template should see them (see the module doc). Errors name the
/// message and field.
pub fn prepare(messages: &Value, arguments_as: ArgumentsAs) -> Result<Value> {
    prepare_with(messages, arguments_as, false)
}

/// [`prepare`], with `null` content turned into "" when `null_as_empty`.
fn prepare_with(messages: &Value, arguments_as: ArgumentsAs, null_as_empty: bool) -> Result<Value> {
    let Some(list) = messages.as_array() else {
        return Err(Error::Render("messages must be an array".into()));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            return Err(Error::Render(format!("messages[{i}] must be an object")));
        };
        let mut msg = obj.clone();
        if null_as_empty && msg.get("content").is_some_and(Value::is_null) {
            msg.insert("content".into(), Value::String(String::new()));
        }
        if let Some(Value::Array(calls)) = msg.get_mut("tool_calls") {
            for call in calls.iter_mut() {
                let Some(args) = call.get_mut("function").and_then(|f| f.get_mut("arguments")) else {
                    continue;
                };
                // A template that concatenates arguments gets Python's `json.dumps` of an
                // object (strings pass as sent).
                if let (ArgumentsAs::String, Value::Object(_)) = (arguments_as, &*args) {
                    *args = Value::String(PyJson::default().dumps(args));
                }
            }
        }
        out.push(Value::Object(msg));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strftime_writes_dates_weekdays_and_times() {
        // 2026-11-30 12:00:00 UTC, a Monday; and the epoch, a Thursday.
        assert_eq!(
            strftime(1_796_040_000, "%Y-%m-%d %H:%M:%S %A %a %B %b %%"),
            "2026-11-30 12:00:00 Monday Mon November Nov %"
        );
        assert_eq!(strftime(0, "%A %d %b %Y"), "Thursday 01 Jan 1970");
    }

    #[test]
    fn objects_are_dumped_only_for_templates_that_concatenate_arguments() {
        let messages = json!([
            {"role": "assistant", "content": null, "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": {"k": [1, 2]}}}]}
        ]);
        let out = prepare(&messages, ArgumentsAs::Object).unwrap();
        assert_eq!(
            out[0]["tool_calls"][0]["function"]["arguments"],
            json!({"k": [1, 2]})
        );
        assert_eq!(out[0]["content"], Value::Null);
        let as_text = prepare_with(&messages, ArgumentsAs::String, true).unwrap();
        assert_eq!(
            as_text[0]["tool_calls"][0]["function"]["arguments"],
            "{\"k\": [1, 2]}"
        );
        assert_eq!(as_text[0]["content"], "");
        assert_eq!(
            arguments_as("{{ '<x>' + tool['function']['arguments'] + '</x>' }}"),
            ArgumentsAs::String
        );
        assert_eq!(
            arguments_as("{{ tool.function.arguments | tojson }}"),
            ArgumentsAs::Object
        );
    }
}
