//! How a family writes its tool calls: the writing half of a [`super::ToolFormat`],
//! kept in the same file as the markers its parser reads. The grammar writer
//! ([`super::grammar`]) enforces calls in this shape, and [`Markup::write`] writes them
//! (benchmarks, round-trip tests); a test reads every written call back with the family's
//! own parser, so the two halves cannot drift apart.

use serde_json::{json, Value};

/// How a call's name is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// As it is.
    Plain,
    /// Kimi-K2's `functions.NAME:INDEX`.
    KimiId,
    /// Inside the JSON body, beside the arguments (Hermes).
    InJson,
}

/// How tagged arguments are written.
#[derive(Debug, Clone, Copy)]
pub struct Tags {
    /// Opens a parameter; the key follows.
    pub open: &'static str,
    /// Between the key and a string value.
    pub key_end: &'static str,
    /// Between the key and any other value (DSML marks strings); `None`: as `key_end`.
    /// A `{type}` in it stands for the value's JSON type name (Kimi-K3's `type="number"`).
    pub key_end_typed: Option<&'static str>,
    /// After the value.
    pub close: &'static str,
}

/// How a call's arguments are written.
#[derive(Debug, Clone, Copy)]
pub enum Args {
    /// One JSON object.
    Json,
    /// Key/value tags.
    Tags(Tags),
    /// Elements named after the parameters, nested (see [`super::tag_tree`]).
    Elements(&'static super::tag_tree::TagTree),
}

/// How a family writes its tool calls.
#[derive(Debug, Clone, Copy)]
pub struct Markup {
    /// Before the first call.
    pub begin: &'static str,
    /// After the last call.
    pub end: &'static str,
    /// Between two calls.
    pub between: &'static str,
    /// Opens a call; the name follows.
    pub call_open: &'static str,
    /// How the name is written.
    pub name: Name,
    /// After the name, before the arguments.
    pub name_end: &'static str,
    /// How the arguments are written.
    pub args: Args,
    /// Closes a call.
    pub call_close: &'static str,
}

impl Markup {
    /// A family whose calls carry one JSON object after the name.
    pub const fn json_calls(
        begin: &'static str,
        end: &'static str,
        call_open: &'static str,
        name_end: &'static str,
        call_close: &'static str,
    ) -> Markup {
        Markup {
            begin,
            end,
            between: "",
            call_open,
            name: Name::Plain,
            name_end,
            args: Args::Json,
            call_close,
        }
    }

    /// Calls `(name, arguments object)` as the model writes them, section markers
    /// included; tagged values in the object's key order.
    pub fn write(&self, calls: &[(&str, &Value)]) -> String {
        let mut out = self.begin.to_owned();
        for (index, (name, args)) in calls.iter().enumerate() {
            if index > 0 {
                out.push_str(self.between);
            }
            self.write_call(&mut out, index, name, args);
        }
        out.push_str(self.end);
        out
    }

    fn write_call(&self, out: &mut String, index: usize, name: &str, args: &Value) {
        out.push_str(self.call_open);
        match self.name {
            Name::InJson => {
                out.push_str(&python_json(&json!({"name": name, "arguments": args})));
                out.push_str(self.call_close);
                return;
            }
            Name::KimiId => out.push_str(&format!("functions.{name}:{index}")),
            Name::Plain => out.push_str(name),
        }
        out.push_str(self.name_end);
        match self.args {
            Args::Json => out.push_str(&python_json(args)),
            Args::Tags(t) => {
                for (k, v) in args.as_object().into_iter().flatten() {
                    let (text, key_end) = match v {
                        Value::String(s) => (s.clone(), t.key_end.to_owned()),
                        other => (
                            python_json(other),
                            t.key_end_typed
                                .unwrap_or(t.key_end)
                                .replace("{type}", json_type(other)),
                        ),
                    };
                    out.push_str(&format!("{}{k}{key_end}{text}{}", t.open, t.close));
                }
            }
            Args::Elements(tree) => {
                for (k, v) in args.as_object().into_iter().flatten() {
                    write_element(out, tree, k, v);
                }
            }
        }
        out.push_str(self.call_close);
    }
}

/// JSON as models write it (Python's `json.dumps`: `", "` and `": "`), which is also the
/// layout the call grammars hold JSON to.
pub(crate) fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    match serde::Serialize::serialize(value, &mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => value.to_string(),
    }
}

/// Python's `", "` before every item of a list or object but the first.
fn item_separator<W: ?Sized + std::io::Write>(w: &mut W, first: bool) -> std::io::Result<()> {
    match first {
        true => Ok(()),
        false => w.write_all(b", "),
    }
}

/// serde_json's compact layout with Python's separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(w, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// The JSON type name of a value.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One parameter as nested elements: objects as child elements, lists as items.
fn write_element(out: &mut String, tree: &super::tag_tree::TagTree, key: &str, value: &Value) {
    out.push_str(&format!("{}<{key}>", tree.prefix));
    match value {
        Value::Object(members) => {
            for (k, v) in members {
                write_element(out, tree, k, v);
            }
        }
        Value::Array(items) => {
            for v in items {
                write_element(out, tree, tree.item, v);
            }
        }
        Value::String(s) => out.push_str(s),
        other => out.push_str(&python_json(other)),
    }
    out.push_str(&format!("{}</{key}>", tree.prefix));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn calls_written_by_each_markup_read_back_with_its_parser() {
        let tools_json = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "opts": {"type": "object"}}}}}]);
        let args = json!({"city": "Paris", "days": 3, "opts": {"unit": "C"}});
        let other = json!({"city": "Oslo", "days": 1, "opts": {}});
        for f in crate::tools::FORMATS {
            let text = f.markup.write(&[("get_weather", &args), ("get_weather", &other)]);
            let mut config = crate::OutputConfig::from_names(None, Some(f.name)).unwrap_or_default();
            config.schemas = std::sync::Arc::new(crate::ToolSchemas::from_tools(&tools_json));
            let out = crate::testkit::parse(&config, &text, crate::testkit::Chunking::Whole);
            assert_eq!(out.tool_calls.len(), 2, "{}: {text:?} -> {out:?}", f.name);
            assert_eq!(out.tool_calls[0].name, "get_weather", "{}", f.name);
            let got: serde_json::Value =
                serde_json::from_str(&out.tool_calls[0].arguments).unwrap_or_default();
            assert_eq!(got, args, "{}: {text:?}", f.name);
            assert!(out.content().is_none(), "{}: content {:?}", f.name, out.content());
            assert!(out.fallbacks.is_empty(), "{}: {:?}", f.name, out.fallbacks);
        }
    }
}
