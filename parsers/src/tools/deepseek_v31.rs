//! DeepSeek-V3.1 tool calls:
//! `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}<｜tool▁call▁end｜><｜tool▁calls▁end｜>`.
//!
//! V3's markers without the call type and the code fence. Source: vLLM
//! `tool_parsers/deepseekv31_tool_parser.py`.

use super::deepseek_v3::{CALL_CLOSE, CALL_OPEN, SECTION_CLOSE, SECTION_OPEN, SEP};
use super::markup::Markup;
use super::{Body, Header, ToolFormat};

/// The `deepseek_v31` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "deepseek_v31",
    opens: &[SECTION_OPEN],
    section_open: &[SECTION_OPEN],
    in_section: &[CALL_OPEN, SECTION_CLOSE],
    section_close: &[SECTION_CLOSE],
    separators: &[],
    header: Header::Name {
        ends: &[SEP],
        kept: &[],
    },
    body: Body::Json,
    call_close: &[CALL_CLOSE, SECTION_CLOSE],
    markup: Markup::json_calls(SECTION_OPEN, SECTION_CLOSE, CALL_OPEN, SEP, CALL_CLOSE),
};
