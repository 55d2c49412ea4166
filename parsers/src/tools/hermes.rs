//! Hermes / Qwen3 tool calls: `<tool_call>{"name": "f", "arguments": {…}}</tool_call>`.
//!
//! One JSON object per call; calls follow each other. The object's `name` starts the call
//! and `arguments` streams as it arrives. Source: vLLM `tool_parsers/hermes_tool_parser.py`,
//! Qwen3's chat template (which writes calls back in this shape).

use super::markup::{Args, Markup, Name};
use super::{Body, Header, ToolFormat};

const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";

/// The `hermes` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "hermes",
    opens: &[CALL_OPEN],
    section_open: &[],
    in_section: &[],
    section_close: &[],
    separators: &[],
    header: Header::InBody,
    body: Body::HermesObject,
    call_close: &[CALL_CLOSE],
    markup: Markup {
        begin: "",
        end: "",
        between: "\n",
        call_open: "<tool_call>\n",
        name: Name::InJson,
        name_end: "",
        args: Args::Json,
        call_close: "\n</tool_call>",
    },
};
