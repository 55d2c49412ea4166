//! Formats as data: a reasoning or tool-call format described in a TOML file, for a
//! model whose markup fits braid's tables, without rebuilding braid (vLLM needs a Python
//! plugin for this). The file names every marker and shape the built-in tables hold; it
//! is checked when it is read, and an error names the field. A format read from a file
//! is registered under its `name`, so the name travels on the bus as a built-in's does:
//! every process that handles requests must be given the same file.
//!
//! ```toml
//! # reasoning
//! name = "my_think"
//! open = "<think>"
//! close = "</think>"
//! implicit_close = ["<tool_call>"]
//! start = "undecided"
//! switch = { key = "enable_thinking", default_on = true }
//! ```
//!
//! Reading the text is pure; the caller reads the file.

use std::sync::{Mutex, PoisonError};

use serde::Deserialize;

use crate::reasoning::{Machine, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};
use crate::tools::markup::{Args, Markup, Name, Tags};
use crate::tools::tag_tree::TagTree;
use crate::tools::xml_params::{ValueTrim, XmlParams};
use crate::tools::{Body, Header};
use crate::{ReasoningFormat, ToolFormat};

/// Formats read from files, by kind, in the order they were registered.
static REASONING: Mutex<Vec<&'static ReasoningFormat>> = Mutex::new(Vec::new());
static TOOLS: Mutex<Vec<&'static ToolFormat>> = Mutex::new(Vec::new());

/// A format file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatFileError {
    /// Not TOML, a field missing, of the wrong type or unknown (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// The file's `name` is a built-in format's.
    #[error("name {0:?} is a built-in format's; give the file's format another name")]
    Builtin(String),
    /// A marker list that must not be empty is, or a marker is the empty string.
    #[error("{field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// The reasoning format registered from a file under `name`, if any.
pub(crate) fn reasoning(name: &str) -> Option<&'static ReasoningFormat> {
    let list = REASONING.lock().unwrap_or_else(PoisonError::into_inner);
    list.iter().copied().find(|f| f.name == name)
}

/// The tool format registered from a file under `name`, if any.
pub(crate) fn tools(name: &str) -> Option<&'static ToolFormat> {
    let list = TOOLS.lock().unwrap_or_else(PoisonError::into_inner);
    list.iter().copied().find(|f| f.name == name)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_all(v: Vec<String>) -> &'static [&'static str] {
    Box::leak(v.into_iter().map(leak).collect::<Vec<_>>().into_boxed_slice())
}

fn markers(field: &'static str, v: &[String]) -> Result<(), FormatFileError> {
    match v.iter().any(String::is_empty) {
        true => Err(FormatFileError::Field {
            field,
            problem: "a marker is the empty string",
        }),
        false => Ok(()),
    }
}

fn marker(field: &'static str, v: &str) -> Result<(), FormatFileError> {
    match v.is_empty() {
        true => Err(FormatFileError::Field {
            field,
            problem: "a marker is the empty string",
        }),
        false => Ok(()),
    }
}

/// Every marker the header and body watch must be text: an empty one would match
/// everywhere.
fn check_shapes(header: &HeaderFile, body: &BodyFile) -> Result<(), FormatFileError> {
    match header {
        HeaderFile::InBody => {}
        HeaderFile::Name { ends, kept } => {
            markers("header.ends", ends)?;
            markers("header.kept", kept)?;
        }
        HeaderFile::TypedName { sep, ends } => {
            marker("header.sep", sep)?;
            markers("header.ends", ends)?;
        }
        HeaderFile::Attribute { attr, ends } => {
            marker("header.attr", attr)?;
            markers("header.ends", ends)?;
        }
        HeaderFile::KimiId { ends } | HeaderFile::FirstWord { ends } => markers("header.ends", ends)?,
    }
    match body {
        BodyFile::Json | BodyFile::HermesObject | BodyFile::HermesItem => {}
        BodyFile::Params {
            param_open,
            value_close,
            between,
            key_end,
            value_open,
            in_value,
            ..
        } => {
            marker("body.param_open", param_open)?;
            marker("body.value_close", value_close)?;
            markers("body.between", between)?;
            markers("body.key_end", key_end)?;
            markers("body.value_open", value_open.as_deref().unwrap_or_default())?;
            markers("body.in_value", in_value)?;
        }
        BodyFile::TagTree { prefix, item } => {
            marker("body.prefix", prefix)?;
            marker("body.item", item)?;
        }
    }
    Ok(())
}

fn invalid(e: &toml::de::Error) -> FormatFileError {
    FormatFileError::Invalid(e.to_string().trim().to_owned())
}

/// A reasoning format as a file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasoningFile {
    name: String,
    open: String,
    close: String,
    #[serde(default)]
    other_opens: Vec<String>,
    #[serde(default)]
    other_closes: Vec<String>,
    #[serde(default)]
    implicit_close: Vec<String>,
    #[serde(default)]
    answer_wrap: Vec<String>,
    start: Start,
    #[serde(default = "reasoning_start")]
    prompt_open: Start,
    #[serde(default)]
    stray_close: Stray,
    #[serde(default)]
    switch: Option<SwitchFile>,
    #[serde(default)]
    placement: Placement,
    #[serde(default)]
    clear_thinking: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Start {
    Reasoning,
    Content,
    Undecided,
}

fn reasoning_start() -> Start {
    Start::Reasoning
}

impl From<Start> for StartState {
    fn from(s: Start) -> StartState {
        match s {
            Start::Reasoning => StartState::Reasoning,
            Start::Content => StartState::Content,
            Start::Undecided => StartState::Undecided,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stray {
    #[default]
    Removed,
    TextUnlessLeading,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Placement {
    #[default]
    Separate,
    InlineTags,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchFile {
    key: String,
    default_on: bool,
}

/// Reads a reasoning format from a file's text and registers it; returns the table.
pub fn register_reasoning(text: &str) -> Result<&'static ReasoningFormat, FormatFileError> {
    let f: ReasoningFile = toml::from_str(text).map_err(|e| invalid(&e))?;
    if crate::reasoning::FORMATS.iter().any(|b| b.name == f.name) {
        return Err(FormatFileError::Builtin(f.name));
    }
    if f.open.is_empty() || f.close.is_empty() {
        return Err(FormatFileError::Field {
            field: if f.open.is_empty() { "open" } else { "close" },
            problem: "a marker is the empty string",
        });
    }
    markers("other_opens", &f.other_opens)?;
    markers("other_closes", &f.other_closes)?;
    markers("implicit_close", &f.implicit_close)?;
    markers("answer_wrap", &f.answer_wrap)?;
    let opens: Vec<String> = std::iter::once(f.open.clone())
        .chain(f.other_opens.iter().cloned())
        .collect();
    let closes: Vec<String> = std::iter::once(f.close.clone())
        .chain(f.other_closes.iter().cloned())
        .collect();
    let reasoning_markers: Vec<String> = closes
        .iter()
        .chain(&opens)
        .chain(&f.implicit_close)
        .cloned()
        .collect();
    let content_markers: Vec<String> = opens
        .iter()
        .chain(&closes)
        .chain(&f.answer_wrap)
        .cloned()
        .collect();
    let format = ReasoningFormat {
        name: leak(f.name),
        open: leak(f.open),
        close: leak(f.close),
        other_opens: leak_all(f.other_opens),
        other_closes: leak_all(f.other_closes),
        implicit_close: leak_all(f.implicit_close),
        answer_wrap: leak_all(f.answer_wrap),
        reasoning_markers: leak_all(reasoning_markers),
        content_markers: leak_all(content_markers),
        start: f.start.into(),
        prompt_open: f.prompt_open.into(),
        stray_close: match f.stray_close {
            Stray::Removed => StrayClose::Removed,
            Stray::TextUnlessLeading => StrayClose::TextUnlessLeading,
        },
        switch: f.switch.map(|s| ThinkingSwitch {
            key: leak(s.key),
            default_on: s.default_on,
        }),
        placement: match f.placement {
            Placement::Separate => ReasoningPlacement::Separate,
            Placement::InlineTags => ReasoningPlacement::InlineTags,
        },
        clear_thinking: f.clear_thinking.map(leak),
        machine: Machine::Markers,
    };
    let format: &'static ReasoningFormat = Box::leak(Box::new(format));
    let mut list = REASONING.lock().unwrap_or_else(PoisonError::into_inner);
    list.retain(|r| r.name != format.name);
    list.push(format);
    Ok(format)
}

/// A tool-call format as a file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolFile {
    name: String,
    opens: Vec<String>,
    #[serde(default)]
    section_open: Vec<String>,
    #[serde(default)]
    in_section: Vec<String>,
    #[serde(default)]
    section_close: Vec<String>,
    #[serde(default)]
    separators: Vec<String>,
    header: HeaderFile,
    body: BodyFile,
    #[serde(default)]
    call_close: Vec<String>,
    markup: MarkupFile,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum HeaderFile {
    InBody,
    Name {
        ends: Vec<String>,
        #[serde(default)]
        kept: Vec<String>,
    },
    TypedName {
        sep: String,
        ends: Vec<String>,
    },
    Attribute {
        attr: String,
        ends: Vec<String>,
    },
    KimiId {
        ends: Vec<String>,
    },
    FirstWord {
        ends: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum BodyFile {
    Json,
    HermesObject,
    HermesItem,
    Params {
        param_open: String,
        value_close: String,
        between: Vec<String>,
        key_end: Vec<String>,
        #[serde(default)]
        value_open: Option<Vec<String>>,
        in_value: Vec<String>,
        #[serde(default)]
        trim: Trim,
        #[serde(default)]
        escaped_keys: bool,
    },
    TagTree {
        prefix: String,
        item: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Trim {
    #[default]
    Whitespace,
    Keep,
    OneNewline,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkupFile {
    #[serde(default)]
    begin: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    between: String,
    call_open: String,
    name: NameFile,
    #[serde(default)]
    name_end: String,
    args: ArgsFile,
    #[serde(default)]
    call_close: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum NameFile {
    Plain,
    KimiId,
    InJson,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ArgsFile {
    Json,
    Tags {
        open: String,
        key_end: String,
        #[serde(default)]
        key_end_typed: Option<String>,
        close: String,
    },
    Elements,
}

/// Reads a tool-call format from a file's text and registers it; returns the table.
pub fn register_tools(text: &str) -> Result<&'static ToolFormat, FormatFileError> {
    let f: ToolFile = toml::from_str(text).map_err(|e| invalid(&e))?;
    if crate::tools::FORMATS.iter().any(|b| b.name == f.name) {
        return Err(FormatFileError::Builtin(f.name));
    }
    if f.opens.is_empty() {
        return Err(FormatFileError::Field {
            field: "opens",
            problem: "there must be at least one marker that opens tool markup",
        });
    }
    for (field, list) in [
        ("opens", &f.opens),
        ("section_open", &f.section_open),
        ("in_section", &f.in_section),
        ("section_close", &f.section_close),
        ("separators", &f.separators),
        ("call_close", &f.call_close),
    ] {
        markers(field, list)?;
    }
    check_shapes(&f.header, &f.body)?;
    if f.section_open.iter().any(|s| !f.opens.contains(s)) {
        return Err(FormatFileError::Field {
            field: "section_open",
            problem: "every section opener must also be in `opens`",
        });
    }
    let header = match f.header {
        HeaderFile::InBody => Header::InBody,
        HeaderFile::Name { ends, kept } => Header::Name {
            ends: leak_all(ends),
            kept: leak_all(kept),
        },
        HeaderFile::TypedName { sep, ends } => Header::TypedName {
            sep: leak(sep),
            ends: leak_all(ends),
        },
        HeaderFile::Attribute { attr, ends } => Header::Attribute {
            attr: leak(attr),
            ends: leak_all(ends),
        },
        HeaderFile::KimiId { ends } => Header::KimiId { ends: leak_all(ends) },
        HeaderFile::FirstWord { ends } => Header::FirstWord { ends: leak_all(ends) },
    };
    let mut tree: Option<&'static TagTree> = None;
    let body = match f.body {
        BodyFile::Json => Body::Json,
        BodyFile::HermesObject => Body::HermesObject,
        BodyFile::HermesItem => Body::HermesItem,
        BodyFile::Params {
            param_open,
            value_close,
            between,
            key_end,
            value_open,
            in_value,
            trim,
            escaped_keys,
        } => Body::Params(Box::leak(Box::new(XmlParams {
            param_open: leak(param_open),
            value_close: leak(value_close),
            between: leak_all(between),
            key_end: leak_all(key_end),
            value_open: value_open.map(leak_all),
            in_value: leak_all(in_value),
            trim: match trim {
                Trim::Whitespace => ValueTrim::Whitespace,
                Trim::Keep => ValueTrim::Keep,
                Trim::OneNewline => ValueTrim::OneNewline,
            },
            escaped_keys,
        }))),
        BodyFile::TagTree { prefix, item } => {
            let t: &'static TagTree = Box::leak(Box::new(TagTree {
                prefix: leak(prefix),
                item: leak(item),
            }));
            tree = Some(t);
            Body::TagTree(t)
        }
    };
    let m = f.markup;
    let args = match m.args {
        ArgsFile::Json => Args::Json,
        ArgsFile::Tags {
            open,
            key_end,
            key_end_typed,
            close,
        } => Args::Tags(Tags {
            open: leak(open),
            key_end: leak(key_end),
            key_end_typed: key_end_typed.map(leak),
            close: leak(close),
        }),
        ArgsFile::Elements => match tree {
            Some(t) => Args::Elements(t),
            None => {
                return Err(FormatFileError::Field {
                    field: "markup.args",
                    problem: "elements need a body of kind tag_tree",
                })
            }
        },
    };
    let format = ToolFormat {
        name: leak(f.name),
        opens: leak_all(f.opens),
        section_open: leak_all(f.section_open),
        in_section: leak_all(f.in_section),
        section_close: leak_all(f.section_close),
        separators: leak_all(f.separators),
        header,
        body,
        call_close: leak_all(f.call_close),
        markup: Markup {
            begin: leak(m.begin),
            end: leak(m.end),
            between: leak(m.between),
            call_open: leak(m.call_open),
            name: match m.name {
                NameFile::Plain => Name::Plain,
                NameFile::KimiId => Name::KimiId,
                NameFile::InJson => Name::InJson,
            },
            name_end: leak(m.name_end),
            args,
            call_close: leak(m.call_close),
        },
    };
    let format: &'static ToolFormat = Box::leak(Box::new(format));
    let mut list = TOOLS.lock().unwrap_or_else(PoisonError::into_inner);
    list.retain(|t| t.name != format.name);
    list.push(format);
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example files describe exactly the built-in tables they copy.
    #[test]
    fn the_example_files_are_the_built_in_tables() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/examples/formats/");
        for (file, builtin) in [
            ("qwen3_think", "qwen3"),
            ("minimax_m2_think", "minimax_m2"),
            ("granite_think", "granite"),
            ("hunyuan_think", "hunyuan_a13b"),
        ] {
            let text = std::fs::read_to_string(format!("{dir}{file}.toml")).unwrap_or_default();
            let read = register_reasoning(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let want = crate::reasoning_format(builtin).unwrap_or_else(|e| panic!("{e}"));
            let got = format!("{read:?}").replace(&format!("{file:?}"), &format!("{builtin:?}"));
            assert_eq!(got, format!("{want:?}"), "{file}");
            assert!(crate::reasoning_format(file).is_ok_and(|f| std::ptr::eq(f, read)));
        }
        for (file, builtin) in [
            ("hermes_calls", "hermes"),
            ("minimax_m2_calls", "minimax_m2"),
            ("granite_calls", "granite"),
            ("hunyuan_calls", "hunyuan_a13b"),
        ] {
            let text = std::fs::read_to_string(format!("{dir}{file}.toml")).unwrap_or_default();
            let read = register_tools(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let want = crate::tool_format(builtin).unwrap_or_else(|e| panic!("{e}"));
            let got = format!("{read:?}").replace(&format!("{file:?}"), &format!("{builtin:?}"));
            assert_eq!(got, format!("{want:?}"), "{file}");
        }
    }

    #[test]
    fn a_file_that_cannot_work_is_refused_naming_the_field() {
        let said = |r: Result<&'static ReasoningFormat, FormatFileError>| match r {
            Ok(f) => panic!("accepted {f:?}"),
            Err(e) => e.to_string(),
        };
        let missing = said(register_reasoning(
            "name = \"a\"\nopen = \"<a>\"\nstart = \"content\"",
        ));
        assert!(missing.contains("missing field `close`"), "{missing}");
        let typo = said(register_reasoning(
            "name = \"a\"\nopen = \"<a>\"\nclose = \"</a>\"\nstart = \"content\"\nimplicit_closes = []",
        ));
        assert!(typo.contains("implicit_closes"), "{typo}");
        let empty = said(register_reasoning(
            "name = \"a\"\nopen = \"<a>\"\nclose = \"</a>\"\nstart = \"content\"\nanswer_wrap = [\"\"]",
        ));
        assert!(empty.starts_with("answer_wrap:"), "{empty}");
        let builtin = said(register_reasoning(
            "name = \"qwen3\"\nopen = \"<a>\"\nclose = \"</a>\"\nstart = \"content\"",
        ));
        assert!(builtin.contains("built-in"), "{builtin}");
        let tools = register_tools("name = \"t\"\nopens = [\"<c>\"]\nheader = { kind = \"name\" }\nbody = { kind = \"json\" }\n[markup]\ncall_open = \"<c>\"\nname = \"plain\"\nargs = { kind = \"json\" }");
        let tools = tools.map(|f| f.name).map_err(|e| e.to_string());
        assert!(
            tools.as_ref().is_err_and(|e| e.contains("missing field `ends`")),
            "{tools:?}"
        );
        let empty_end = register_tools("name = \"t\"\nopens = [\"<c>\"]\nheader = { kind = \"name\", ends = [\"\"] }\nbody = { kind = \"json\" }\n[markup]\ncall_open = \"<c>\"\nname = \"plain\"\nargs = { kind = \"json\" }");
        let empty_end = empty_end.map(|f| f.name).map_err(|e| e.to_string());
        assert!(
            empty_end.as_ref().is_err_and(|e| e.starts_with("header.ends:")),
            "{empty_end:?}"
        );
    }
}
