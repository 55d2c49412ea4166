//! Kimi-K2 tool calls:
//!
//! ```text
//! <|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0
//! <|tool_call_argument_begin|>{"city": "Beijing"}<|tool_call_end|><|tool_calls_section_end|>
//! ```
//!
//! The id `functions.NAME:INDEX` is the model's own and is kept: Kimi's template renders
//! it back into the prompt. A bare counter id (`0`) names no function; the one declared
//! tool whose parameters fit the arguments is used, else the call is skipped. The
//! singular `<|tool_call_section_begin|>` spelling is accepted. Source: vLLM
//! `tool_parsers/kimi_k2_tool_parser.py`, Kimi-K2-Thinking's chat template.

use super::markup::{Markup, Name};
use super::{Body, Header, ToolFormat};

const SECTION_OPEN: &str = "<|tool_calls_section_begin|>";
const SECTION_OPEN_SINGULAR: &str = "<|tool_call_section_begin|>";
const SECTION_CLOSE: &str = "<|tool_calls_section_end|>";
const SECTION_CLOSE_SINGULAR: &str = "<|tool_call_section_end|>";
const CALL_OPEN: &str = "<|tool_call_begin|>";
const ARGUMENTS: &str = "<|tool_call_argument_begin|>";
const CALL_CLOSE: &str = "<|tool_call_end|>";

/// The `kimi_k2` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "kimi_k2",
    opens: &[SECTION_OPEN, SECTION_OPEN_SINGULAR],
    section_open: &[SECTION_OPEN, SECTION_OPEN_SINGULAR],
    in_section: &[CALL_OPEN, SECTION_CLOSE, SECTION_CLOSE_SINGULAR],
    section_close: &[SECTION_CLOSE, SECTION_CLOSE_SINGULAR],
    separators: &[],
    header: Header::KimiId { ends: &[ARGUMENTS] },
    body: Body::Json,
    call_close: &[CALL_CLOSE, SECTION_CLOSE, SECTION_CLOSE_SINGULAR],
    markup: Markup {
        name: Name::KimiId,
        ..Markup::json_calls(SECTION_OPEN, SECTION_CLOSE, CALL_OPEN, ARGUMENTS, CALL_CLOSE)
    },
};

/// The function name in a Kimi call id: `functions.NAME:INDEX` or `NAME:INDEX` → NAME; a
/// bare counter (`0`) gives "" (no name); anything else is malformed (`None`).
pub fn name_from_id(id: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(id) {
        return Some("");
    }
    let id = id.strip_prefix("functions.").unwrap_or(id);
    match id.rsplit_once(':') {
        Some((name, index)) if !name.is_empty() && digits(index) => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::name_from_id;

    #[test]
    fn names_come_from_ids() {
        assert_eq!(name_from_id("functions.get_weather:0"), Some("get_weather"));
        assert_eq!(name_from_id("get_weather:3"), Some("get_weather"));
        assert_eq!(name_from_id("functions.a.b:1"), Some("a.b"));
        assert_eq!(name_from_id("0"), Some(""));
        assert_eq!(name_from_id("functions.invalid.0"), None);
        assert_eq!(name_from_id("functions.f:x"), None);
    }
}
