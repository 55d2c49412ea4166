//! JSON argument bodies, streamed as they arrive: a bracket scanner that finds where a
//! JSON value ends without parsing it, the plain body (`{…}` between markers: Kimi-K2,
//! DeepSeek-V3/V3.1, DSML's JSON body), and Hermes' `{"name": …, "arguments": …}` object.

use super::Call;
use crate::event::Sink;

/// Tracks brackets and strings of one JSON container value, byte by byte.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonScan {
    depth: u32,
    in_string: bool,
    escape: bool,
}

impl JsonScan {
    /// Feeds bytes of a value whose opening bracket was already fed (or is `bytes[0]`).
    /// Returns the index of the byte that closes the value, if it is in `bytes`.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// A body that is one JSON value: text before its first bracket (whitespace, a
/// ```` ```json ```` fence) and after its end is markup, not arguments.
#[derive(Debug, Default)]
pub(crate) struct JsonBody {
    scan: JsonScan,
    began: bool,
    done: bool,
    /// Text before any bracket: markup if a value follows, else the arguments as the
    /// model wrote them (kept, not dropped).
    lead: String,
}

impl JsonBody {
    /// A body whose opening bracket was already consumed as a marker.
    pub(crate) fn opened(call: &mut Call, bracket: &str, sink: &mut dyn Sink) -> JsonBody {
        let mut body = JsonBody::default();
        body.text(bracket, call, sink);
        body
    }

    pub(crate) fn text(&mut self, text: &str, call: &mut Call, sink: &mut dyn Sink) {
        if self.done || text.is_empty() {
            return;
        }
        let bytes = text.as_bytes();
        let from = if self.began {
            0
        } else {
            match bytes.iter().position(|&b| b == b'{' || b == b'[') {
                Some(p) => {
                    self.began = true;
                    self.lead.clear();
                    p
                }
                None => {
                    self.lead.push_str(text);
                    return;
                }
            }
        };
        match self.scan.feed(&bytes[from..]) {
            Some(end) => {
                self.done = true;
                call.arguments(&text[from..from + end + 1], sink);
            }
            None => call.arguments(&text[from..], sink),
        }
    }

    /// Whether the value is complete (a call may end at EOS without its close marker).
    pub(crate) fn complete(&self) -> bool {
        self.done
    }

    /// Closes the body: an empty body means no arguments; text that never became a JSON
    /// value is kept as the arguments, raw (the call is then reported as invalid).
    pub(crate) fn close(&mut self, call: &mut Call, sink: &mut dyn Sink) {
        if !self.began {
            match self.lead.trim() {
                "" => call.arguments("{}", sink),
                raw => call.arguments(raw, sink),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hermes {
    /// Before the object's `{`.
    Start,
    /// Expecting a key, `,` or `}`.
    Key,
    /// Inside a key string.
    KeyText { escape: bool },
    /// Expecting `:`.
    Colon,
    /// Expecting a value for the last key.
    Value,
    /// Inside the `name` string.
    Name { escape: bool },
    /// Inside a container value; `emit` for arguments.
    Container { emit: bool },
    /// Inside a string value; `keep` for arguments given as a serialized string.
    Text { keep: bool, escape: bool },
    /// Inside a number or literal; `emit` for arguments.
    Scalar { emit: bool },
    /// The object closed; the rest (whitespace) is ignored.
    Done,
    /// Not a JSON object: nothing more is read.
    Broken,
}

/// Hermes' `{"name": "f", "arguments": {…}}`, read incrementally: the name starts the
/// call, and an object or array `arguments` value streams as it arrives. Arguments
/// written as a serialized JSON string are decoded once the string ends (never
/// double-encoded). `parameters` is accepted for `arguments`.
#[derive(Debug)]
pub(crate) struct HermesBody {
    state: Hermes,
    key: String,
    text: String,
    scan: JsonScan,
    complete: bool,
}

impl HermesBody {
    pub(crate) fn new() -> HermesBody {
        HermesBody {
            state: Hermes::Start,
            key: String::new(),
            text: String::new(),
            scan: JsonScan::default(),
            complete: false,
        }
    }

    fn is_arguments(&self) -> bool {
        self.key == "arguments" || self.key == "parameters"
    }

    pub(crate) fn text(&mut self, text: &str, call: &mut Call, sink: &mut dyn Sink) {
        let bytes = text.as_bytes();
        let mut emit_from: Option<usize> = match self.state {
            Hermes::Container { emit: true } | Hermes::Scalar { emit: true } => Some(0),
            _ => None,
        };
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                Hermes::Start => match b {
                    b'{' => self.state = Hermes::Key,
                    _ if b.is_ascii_whitespace() => {}
                    _ => self.state = Hermes::Broken,
                },
                Hermes::Key => match b {
                    b'"' => {
                        self.key.clear();
                        self.state = Hermes::KeyText { escape: false };
                    }
                    b'}' => {
                        self.state = Hermes::Done;
                        self.complete = true;
                    }
                    _ => {}
                },
                Hermes::KeyText { escape } => {
                    let end = next_boundary(text, i);
                    if escape {
                        self.key.push_str(&text[i..end]);
                        self.state = Hermes::KeyText { escape: false };
                    } else if b == b'\\' {
                        self.state = Hermes::KeyText { escape: true };
                    } else if b == b'"' {
                        self.state = Hermes::Colon;
                    } else {
                        self.key.push_str(&text[i..end]);
                    }
                    i = end;
                    continue;
                }
                Hermes::Colon => {
                    if b == b':' {
                        self.state = Hermes::Value;
                    }
                }
                Hermes::Value => {
                    if b.is_ascii_whitespace() {
                        i += 1;
                        continue;
                    }
                    let args = self.is_arguments();
                    match b {
                        b'"' if self.key == "name" => {
                            self.text.clear();
                            self.state = Hermes::Name { escape: false };
                        }
                        b'"' => {
                            self.text.clear();
                            if args {
                                self.text.push('"');
                            }
                            self.state = Hermes::Text {
                                keep: args,
                                escape: false,
                            };
                        }
                        b'{' | b'[' => {
                            self.scan = JsonScan::default();
                            self.scan.feed(&bytes[i..=i]);
                            self.state = Hermes::Container { emit: args };
                            if args {
                                emit_from = Some(i);
                            }
                        }
                        _ => {
                            self.state = Hermes::Scalar { emit: args };
                            if args {
                                emit_from = Some(i);
                            }
                        }
                    }
                }
                Hermes::Name { escape } | Hermes::Text { escape, .. } => {
                    let keep = matches!(self.state, Hermes::Name { .. } | Hermes::Text { keep: true, .. });
                    let closing = !escape && b == b'"';
                    let next_escape = !escape && b == b'\\';
                    let end = next_boundary(text, i);
                    if closing {
                        if let Hermes::Name { .. } = self.state {
                            self.finish_name(call);
                        } else if keep {
                            self.text.push('"');
                            self.finish_string_arguments(call, sink);
                        }
                        self.state = Hermes::Key;
                    } else {
                        if keep {
                            self.text.push_str(&text[i..end]);
                        }
                        self.state = match self.state {
                            Hermes::Name { .. } => Hermes::Name { escape: next_escape },
                            Hermes::Text { keep, .. } => Hermes::Text {
                                keep,
                                escape: next_escape,
                            },
                            s => s,
                        };
                    }
                    i = end;
                    continue;
                }
                Hermes::Container { emit } => {
                    if let Some(end) = self.scan.feed(&bytes[i..]) {
                        let stop = i + end + 1;
                        if emit {
                            call.arguments(&text[emit_from.unwrap_or(i)..stop], sink);
                            emit_from = None;
                        }
                        self.state = Hermes::Key;
                        i = stop;
                        continue;
                    }
                    i = bytes.len();
                    continue;
                }
                Hermes::Scalar { emit } => {
                    if b == b',' || b == b'}' || b.is_ascii_whitespace() {
                        if emit {
                            call.arguments(&text[emit_from.unwrap_or(i)..i], sink);
                            emit_from = None;
                        }
                        self.state = Hermes::Key;
                        continue;
                    }
                }
                Hermes::Done | Hermes::Broken => return,
            }
            i += 1;
        }
        if let Some(from) = emit_from {
            if matches!(
                self.state,
                Hermes::Container { emit: true } | Hermes::Scalar { emit: true }
            ) {
                call.arguments(&text[from..], sink);
            }
        }
    }

    fn finish_name(&mut self, call: &mut Call) {
        let quoted = format!("\"{}\"", self.text);
        let name = serde_json::from_str::<String>(&quoted).unwrap_or_else(|_| self.text.clone());
        call.set_name(&name);
    }

    /// `"arguments": "…"`: a string that holds serialized JSON is that JSON (never
    /// double-encoded); any other string is the JSON string itself.
    fn finish_string_arguments(&mut self, call: &mut Call, sink: &mut dyn Sink) {
        match serde_json::from_str::<String>(&self.text) {
            Ok(decoded) if serde_json::from_str::<serde::de::IgnoredAny>(&decoded).is_ok() => {
                call.arguments(&decoded, sink)
            }
            _ => call.arguments(&self.text, sink),
        }
    }

    /// Whether the object closed.
    pub(crate) fn complete(&self) -> bool {
        self.complete
    }

    /// Closes the body; no arguments key means no arguments.
    pub(crate) fn close(&mut self, call: &mut Call, sink: &mut dyn Sink) {
        if call.args_empty() && self.complete {
            call.arguments("{}", sink);
        }
    }
}

/// The index just past the char that starts at `i`.
fn next_boundary(text: &str, i: usize) -> usize {
    (i + 1..=text.len())
        .find(|&e| text.is_char_boundary(e))
        .unwrap_or(text.len())
}
