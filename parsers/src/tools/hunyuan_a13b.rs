//! Tencent Hunyuan-A13B tool calls: `<tool_calls>[{"name": "f", "arguments": {…}}, …]</tool_calls>`
//! inside the answer.
//!
//! One list of Hermes-shaped objects between the markers. Text after the block is not
//! answer (reported as trailing). Source: vLLM `tool_parsers/hunyuan_a13b_tool_parser.py`,
//! Tencent's template.

use super::markup::{Args, Markup, Name};
use super::{Body, Header, ToolFormat};

const SECTION_OPEN: &str = "<tool_calls>";
const SECTION_CLOSE: &str = "</tool_calls>";

/// The `hunyuan_a13b` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "hunyuan_a13b",
    opens: &[SECTION_OPEN],
    section_open: &[SECTION_OPEN],
    in_section: &["{", "[", ",", "]", SECTION_CLOSE],
    section_close: &[SECTION_CLOSE],
    separators: &["[", ",", "]"],
    header: Header::InBody,
    body: Body::HermesItem,
    call_close: &["}", SECTION_CLOSE],
    markup: Markup {
        begin: "<tool_calls>[",
        end: "]</tool_calls>",
        between: ", ",
        call_open: "",
        name: Name::InJson,
        name_end: "",
        args: Args::Json,
        call_close: "",
    },
};
