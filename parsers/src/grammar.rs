//! Grammars for constrained decoding, written as text in llguidance's Lark dialect.
//!
//! braid sends every constraint to the engine as one Lark grammar: a JSON schema becomes
//! `start: %json {…}`, a regex `start: /…/`, a choice a list of literals, and a family's
//! tool-call markup a grammar of literals and embedded schemas
//! ([`crate::tools::grammar`]). This module writes that text; it compiles nothing (the
//! engine does, with llguidance), so it stays free of I/O and of the engine.

use serde_json::{json, Value};

/// How embedded JSON is laid out: one space after `:` and `,`, no other whitespace, the
/// way `json.dumps` writes it. Free whitespace would let a model pad forever.
fn json_style() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

/// A Lark string literal for `text`: the dialect takes JSON's escapes, plus DEL escaped.
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    crate::escape_json_string(text, false, &mut out);
    out.push('"');
    if out.contains('\u{7f}') {
        out = out.replace('\u{7f}', "\\u007f");
    }
    out
}

/// `text` as a regex that matches it literally, fit to stand inside Lark's `/…/`.
pub fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$/-".contains(c) {
            out.push('\\');
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// A user's regex made fit for Lark's `/…/`: unescaped slashes are escaped.
pub fn regex_body(rx: &str) -> String {
    let mut out = String::with_capacity(rx.len() + 4);
    let mut chars = rx.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// An embedded JSON value lexeme (`%json {…}`) for `schema`, laid out compactly unless the
/// schema says otherwise in its own `x-guidance`.
pub fn json_lexeme(schema: &Value) -> String {
    let mut schema = schema.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(json_style);
    }
    format!("%json {schema}")
}

/// A grammar for one JSON value valid against `schema`.
pub fn json_schema(schema: &Value) -> String {
    format!("start: {}\n", json_lexeme(schema))
}

/// A grammar for text matching `rx` in full.
pub fn regex(rx: &str) -> String {
    format!("start: /{}/\n", regex_body(rx))
}

/// A grammar for exactly one of `options`.
pub fn choice(options: &[String]) -> String {
    let alts: Vec<String> = options.iter().map(|o| literal(o)).collect();
    format!("start: {}\n", alts.join(" | "))
}

/// Special tokens of the vocabulary, by text: markup that is a special token must be
/// written as that token (`<[id]>`), since text can never produce it.
#[derive(Debug, Clone, Default)]
pub struct Specials {
    tokens: Vec<(String, u32)>,
}

impl Specials {
    /// The special tokens (text and id).
    pub fn new(mut tokens: Vec<(String, u32)>) -> Specials {
        // Longest first, so a token is never matched by a shorter one inside it.
        tokens.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        tokens.retain(|(t, _)| !t.is_empty());
        Specials { tokens }
    }

    /// A grammar expression for `text`: literals, with special tokens as token references.
    pub fn expr(&self, text: &str) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut rest = text;
        'outer: while !rest.is_empty() {
            for (i, _) in rest.char_indices() {
                if let Some((tok, id)) = self
                    .tokens
                    .iter()
                    .find(|(t, _)| rest[i..].starts_with(t.as_str()))
                {
                    if i > 0 {
                        parts.push(literal(&rest[..i]));
                    }
                    parts.push(format!("<[{id}]>"));
                    rest = &rest[i + tok.len()..];
                    continue 'outer;
                }
            }
            parts.push(literal(rest));
            break;
        }
        if parts.is_empty() {
            "\"\"".into()
        } else {
            parts.join(" ")
        }
    }

    /// Whether `text` holds a special token.
    pub fn any_in(&self, text: &str) -> bool {
        self.tokens.iter().any(|(t, _)| text.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_regexes_are_escaped() {
        assert_eq!(literal("a\"b\\c\nd\u{7f}"), r#""a\"b\\c\nd\u007f""#);
        assert_eq!(regex_literal("</p>"), r"<\/p>");
        assert_eq!(regex_literal("a.b"), r"a\.b");
        assert_eq!(regex_body(r"a/b\/c\d"), r"a\/b\/c\d");
        assert_eq!(choice(&["x".into(), "y z".into()]), "start: \"x\" | \"y z\"\n");
    }

    #[test]
    fn special_tokens_become_token_references() {
        let s = Specials::new(vec![("<|a|>".into(), 7), ("<|ab|>".into(), 8)]);
        assert_eq!(s.expr("x<|ab|>y<|a|>"), r#""x" <[8]> "y" <[7]>"#);
        assert_eq!(s.expr("plain"), r#""plain""#);
        assert!(s.any_in("..<|a|>"));
    }

    #[test]
    fn embedded_json_is_compact_unless_the_schema_says_so() {
        let g = json_schema(&json!({"type": "object"}));
        assert!(g.contains(r#""whitespace_flexible":false"#), "{g}");
        let g = json_schema(&json!({"type": "object", "x-guidance": {"whitespace_flexible": true}}));
        assert!(!g.contains("false"), "{g}");
    }
}
