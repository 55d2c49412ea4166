//! Key/value-tag argument bodies, shared by qwen3_coder, minimax_m2, glm45/glm47 and
//! DeepSeek-V3.2's DSML: `<parameter=k>v</parameter>`, `<parameter name="k">v</parameter>`,
//! `<arg_key>k</arg_key><arg_value>v</arg_value>`, `<｜DSML｜parameter name="k"
//! string="true">v</｜DSML｜parameter>`.
//!
//! Values are text; the tool schema types them ([`crate::schema`]). A value whose
//! parameter is declared a string (or DSML-marked `string="true"`) streams as it arrives,
//! JSON-escaped; any other value is typed when it ends. Arguments are written as a JSON
//! object, `{"k": v, …}`, one fragment per value or piece of a string value. A body that
//! opens with `{` instead of tags is read as JSON (DSML models sometimes do this).

use std::fmt::Write as _;

use super::Call;
use crate::event::{Event, FallbackReason, Sink};
use crate::scan::Step;
use crate::schema::{convert_value, ToolSchemas, TypeSet};

/// How surrounding whitespace of a value is trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueTrim {
    /// All leading and trailing whitespace (minimax_m2, DSML).
    Whitespace,
    /// None: the value is exactly the text between its tags (glm4x, whose values may be
    /// indented code).
    Keep,
    /// One leading and one trailing newline, which the format puts around values
    /// (qwen3_coder: `<parameter=k>\nvalue\n</parameter>`); other whitespace is data.
    OneNewline,
}

/// A key/value-tag body format.
#[derive(Debug)]
pub struct XmlParams {
    /// Opens a parameter; the key follows.
    pub param_open: &'static str,
    /// Closes a value.
    pub value_close: &'static str,
    /// Watched between parameters: `param_open`, the call and section closers, and `{`
    /// (a JSON body).
    pub between: &'static [&'static str],
    /// Ends the key. A quoted key may be followed by attributes (DSML's
    /// `"k" string="true"`), which end with it.
    pub key_end: &'static [&'static str],
    /// Where the value has its own open tag (glm's `<arg_value>`): that tag, then the
    /// call closers.
    pub value_open: Option<&'static [&'static str]>,
    /// Watched inside a value: `value_close`, then (where the format's models are known to
    /// drop a close tag) `param_open`, then the call and section closers.
    pub in_value: &'static [&'static str],
    /// Whitespace trimming of values.
    pub trim: ValueTrim,
    /// Whether keys are XML-escaped attribute values (`&amp;`, `&quot;`, …: Kimi-K3).
    pub escaped_keys: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Between,
    Key,
    ValueOpen,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string: streamed as it arrives. For a nullable string, until `opened` the value
    /// could still be the literal `null` (which is then null, not "null"), so it is held.
    Stream { opened: bool, nullable: bool },
    /// Typed when complete.
    Typed(TypeSet),
}

/// The state of one key/value body.
#[derive(Debug)]
pub(crate) struct ParamsBody {
    p: &'static XmlParams,
    state: State,
    key: String,
    attrs: String,
    value: String,
    junk: String,
    kind: Kind,
    params: usize,
    lead_done: bool,
    held_ws: String,
    scratch: String,
    json: bool,
}

impl ParamsBody {
    pub(crate) fn new(p: &'static XmlParams) -> ParamsBody {
        ParamsBody {
            p,
            state: State::Between,
            key: String::new(),
            attrs: String::new(),
            value: String::new(),
            junk: String::new(),
            kind: Kind::Stream {
                opened: false,
                nullable: false,
            },
            params: 0,
            lead_done: false,
            held_ws: String::new(),
            scratch: String::new(),
            json: false,
        }
    }

    pub(crate) fn markers(&self) -> &'static [&'static str] {
        match self.state {
            State::Between => self.p.between,
            State::Key => self.p.key_end,
            State::ValueOpen => self.p.value_open.unwrap_or(&[]),
            State::Value => self.p.in_value,
        }
    }

    /// Once, after a `{` opened a JSON body: the text that opened it.
    pub(crate) fn json_body(&mut self) -> Option<&'static str> {
        if std::mem::take(&mut self.json) {
            Some("{")
        } else {
            None
        }
    }

    pub(crate) fn text(&mut self, text: &str, call: &mut Call, sink: &mut dyn Sink) {
        match self.state {
            State::Between => self.junk.push_str(text),
            State::Key => self.key.push_str(text),
            State::ValueOpen => self.junk.push_str(text),
            State::Value => match self.kind {
                Kind::Stream { opened: true, .. } => self.stream(text, call, sink),
                Kind::Stream { opened: false, .. } => {
                    self.value.push_str(text);
                    if !could_be_null(&self.value) {
                        self.open_string(call, sink);
                    }
                }
                Kind::Typed(_) => self.value.push_str(text),
            },
        }
    }

    /// Handles a body marker; `None` means it closes the call.
    pub(crate) fn marker(
        &mut self,
        which: usize,
        call: &mut Call,
        schemas: &ToolSchemas,
        sink: &mut dyn Sink,
    ) -> Option<Step> {
        let marker = self.markers()[which];
        let p = self.p;
        match self.state {
            State::Between if marker == p.param_open => {
                self.flush_junk(sink);
                self.key.clear();
                self.attrs.clear();
                self.state = State::Key;
            }
            State::Between if marker == "{" => {
                if self.params == 0 && self.junk.trim().is_empty() {
                    self.junk.clear();
                    self.json = true;
                } else {
                    self.junk.push_str(marker);
                }
            }
            State::Between => {
                self.flush_junk(sink);
                return None;
            }
            State::Key => {
                self.split_key();
                self.state = self.after_key(call, schemas, sink);
            }
            State::ValueOpen if p.value_open.is_some_and(|v| v.first() == Some(&marker)) => {
                self.junk.clear();
                self.begin_value(call, schemas, sink);
            }
            State::ValueOpen => {
                self.junk.clear();
                return None;
            }
            State::Value if marker == p.value_close => {
                self.end_value(call, sink);
            }
            State::Value if marker == p.param_open => {
                self.end_value(call, sink);
                return Some(Step::Rescan);
            }
            State::Value => {
                self.end_value(call, sink);
                return None;
            }
        }
        Some(Step::Consume)
    }

    /// Splits the key text into the key and its attributes: `"k" string="true"` or `k`.
    fn split_key(&mut self) {
        let text = self.key.trim();
        let (key, attrs) = match text.strip_prefix('"').and_then(|t| t.split_once('"')) {
            Some((key, attrs)) => (key, attrs),
            None => (text, ""),
        };
        self.attrs.clear();
        self.attrs.push_str(attrs);
        self.key = match self.p.escaped_keys {
            true => unescape_entities(key).into_owned(),
            false => key.to_owned(),
        };
    }

    fn flush_junk(&mut self, sink: &mut dyn Sink) {
        if !self.junk.trim().is_empty() {
            sink.event(Event::Fallback {
                reason: FallbackReason::TrailingText,
                text: &self.junk,
            });
        }
        self.junk.clear();
    }

    fn after_key(&mut self, call: &mut Call, schemas: &ToolSchemas, sink: &mut dyn Sink) -> State {
        if self.p.value_open.is_some() {
            State::ValueOpen
        } else {
            self.begin_value(call, schemas, sink);
            State::Value
        }
    }

    fn begin_value(&mut self, call: &mut Call, schemas: &ToolSchemas, sink: &mut dyn Sink) {
        self.state = State::Value;
        self.value.clear();
        self.held_ws.clear();
        self.lead_done = false;
        // The schema decides where it declares the parameter; else the tag's own type
        // attribute (DSML's `string="…"`, Kimi-K3's `type="…"`); else the value's own
        // literal form.
        let declared = schemas.param_type(call.name(), &self.key);
        let ty = match declared.is_unknown() {
            true => attribute_type(&self.attrs),
            false => declared,
        };
        self.kind = if ty.is_string() {
            Kind::Stream {
                opened: false,
                nullable: ty.allows_null(),
            }
        } else {
            Kind::Typed(ty)
        };
        if let Kind::Stream { nullable, .. } = self.kind {
            self.write_key(call, sink);
            if !nullable {
                self.open_string(call, sink);
            }
        }
    }

    /// Opens a streamed string: writes the quote and streams what was held.
    fn open_string(&mut self, call: &mut Call, sink: &mut dyn Sink) {
        if let Kind::Stream { opened, .. } = &mut self.kind {
            *opened = true;
        }
        call.arguments("\"", sink);
        let held = std::mem::take(&mut self.value);
        self.stream(&held, call, sink);
        self.value = held;
        self.value.clear();
    }

    fn write_key(&mut self, call: &mut Call, sink: &mut dyn Sink) {
        self.scratch.clear();
        self.scratch.push_str(if self.params == 0 { "{" } else { ", " });
        self.scratch.push('"');
        escape_json(&self.key, &mut self.scratch);
        self.scratch.push_str("\": ");
        self.params += 1;
        call.arguments(&self.scratch, sink);
    }

    /// Streams a piece of a string value, trimming as the format asks: leading whitespace
    /// is dropped as it comes, trailing whitespace is held until text follows it.
    fn stream(&mut self, text: &str, call: &mut Call, sink: &mut dyn Sink) {
        if text.is_empty() {
            return;
        }
        let mut text = text;
        if !self.lead_done {
            text = match self.p.trim {
                ValueTrim::Whitespace => text.trim_start(),
                ValueTrim::OneNewline => text.strip_prefix('\n').unwrap_or(text),
                ValueTrim::Keep => text,
            };
            if text.is_empty() && self.p.trim == ValueTrim::Whitespace {
                return;
            }
            self.lead_done = true;
            if text.is_empty() {
                return;
            }
        }
        let body_end = match self.p.trim {
            ValueTrim::Whitespace => text.trim_end().len(),
            ValueTrim::OneNewline => text.strip_suffix('\n').map_or(text.len(), str::len),
            ValueTrim::Keep => text.len(),
        };
        if body_end == 0 {
            self.held_ws.push_str(text);
            if self.p.trim == ValueTrim::OneNewline && self.held_ws.len() > 1 {
                // Only the last newline can be the format's; earlier ones are data.
                let keep = self.held_ws.len() - 1;
                let mut held = std::mem::take(&mut self.held_ws);
                self.emit_string(&held[..keep], call, sink);
                held.drain(..keep);
                self.held_ws = held;
            }
            return;
        }
        if !self.held_ws.is_empty() {
            let held = std::mem::take(&mut self.held_ws);
            self.emit_string(&held, call, sink);
            self.held_ws = held;
            self.held_ws.clear();
        }
        self.emit_string(&text[..body_end], call, sink);
        self.held_ws.push_str(&text[body_end..]);
    }

    fn emit_string(&mut self, s: &str, call: &mut Call, sink: &mut dyn Sink) {
        if s.is_empty() {
            return;
        }
        if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            self.scratch.clear();
            escape_json(s, &mut self.scratch);
            let escaped = std::mem::take(&mut self.scratch);
            call.arguments(&escaped, sink);
            self.scratch = escaped;
        } else {
            call.arguments(s, sink);
        }
    }

    fn end_value(&mut self, call: &mut Call, sink: &mut dyn Sink) {
        self.state = State::Between;
        match self.kind {
            Kind::Stream { opened: false, .. } if self.value.trim() == "null" => {
                self.value.clear();
                call.arguments("null", sink);
            }
            Kind::Stream { opened, .. } => {
                if !opened {
                    self.open_string(call, sink);
                }
                self.held_ws.clear();
                call.arguments("\"", sink);
            }
            Kind::Typed(ty) => {
                let raw = std::mem::take(&mut self.value);
                let trimmed = match self.p.trim {
                    ValueTrim::Whitespace => raw.trim(),
                    // Typed values (numbers, JSON) never keep surrounding whitespace.
                    ValueTrim::Keep => raw.trim(),
                    ValueTrim::OneNewline => {
                        let r = raw.strip_prefix('\n').unwrap_or(&raw);
                        r.strip_suffix('\n').unwrap_or(r)
                    }
                };
                let typed = convert_value(trimmed, ty);
                self.write_key(call, sink);
                self.scratch.clear();
                let _ = write!(self.scratch, "{typed}");
                let json = std::mem::take(&mut self.scratch);
                call.arguments(&json, sink);
                self.scratch = json;
                self.value = raw;
                self.value.clear();
            }
        }
    }

    /// Closes the body at the call's end.
    pub(crate) fn close(&mut self, call: &mut Call, sink: &mut dyn Sink) {
        if self.state == State::Value {
            self.end_value(call, sink);
        }
        self.flush_junk(sink);
        call.arguments(if self.params == 0 { "{}" } else { "}" }, sink);
    }
}

/// Whether a value's text so far could still turn out to be the literal `null`.
fn could_be_null(value: &str) -> bool {
    let v = value.trim_start();
    match v.strip_prefix("null") {
        Some(rest) => rest.trim().is_empty(),
        None => "null".starts_with(v),
    }
}

/// The type a tag's attributes give its value: DSML's `string="true"` (a string; `false`
/// says only "not a string"), Kimi-K3's `type="number"`; unknown without either.
fn attribute_type(attrs: &str) -> TypeSet {
    if let Some(v) = attribute(attrs, "string") {
        return match v {
            "true" => TypeSet::named("string"),
            _ => TypeSet::default(),
        };
    }
    attribute(attrs, "type").map(TypeSet::named).unwrap_or_default()
}

/// The value of attribute `name` in `text` (` a="1" name="v"`), quotes removed.
pub(crate) fn attribute<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before_ok = rest[..at].chars().next_back().is_none_or(char::is_whitespace);
        let after = rest[at + name.len()..].trim_start();
        if let (true, Some(value)) = (before_ok, after.strip_prefix('=')) {
            let value = value.trim_start();
            let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
            return Some(match quote {
                Some(q) => value[1..].split(q).next().unwrap_or_default(),
                None => value.split(char::is_whitespace).next().unwrap_or_default(),
            });
        }
        rest = &rest[at + name.len()..];
    }
    None
}

/// XML attribute text with its entities (`&amp;`, `&quot;`, `&apos;`, `&lt;`, `&gt;`)
/// unescaped; borrowed when it has none.
pub(crate) fn unescape_entities(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let entity = [
            ("&amp;", '&'),
            ("&quot;", '"'),
            ("&apos;", '\''),
            ("&lt;", '<'),
            ("&gt;", '>'),
        ]
        .into_iter()
        .find(|(e, _)| rest.starts_with(e));
        match entity {
            Some((e, c)) => {
                out.push(c);
                rest = &rest[e.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Appends `s` JSON-escaped (no quotes), as `json.dumps(ensure_ascii=False)` writes it.
pub(crate) fn escape_json(s: &str, out: &mut String) {
    escape_json_string(s, false, out);
}

/// Appends `s` JSON-escaped (no quotes), exactly as Python's `json.dumps` writes a string:
/// `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control characters as `\u00XX`,
/// and with `ensure_ascii` every non-ASCII character as `\uXXXX` (surrogate pairs above
/// U+FFFF).
pub fn escape_json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
}
