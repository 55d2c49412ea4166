//! IBM Granite 3.x tool calls: `<|tool_call|>[{"name": "f", "arguments": {…}}, …]`.
//!
//! One list of Hermes-shaped objects after the marker, with no close marker: the list
//! runs to the end of the output. Granite 3.1 wrote `<tool_call>` instead; both open it.
//! Source: vLLM `tool_parsers/granite_tool_parser.py`, Granite's chat templates.

use super::markup::{Args, Markup, Name};
use super::{Body, Header, ToolFormat};

const SECTION_OPEN: &str = "<|tool_call|>";
const SECTION_OPEN_31: &str = "<tool_call>";

/// The `granite` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "granite",
    opens: &[SECTION_OPEN, SECTION_OPEN_31],
    section_open: &[SECTION_OPEN, SECTION_OPEN_31],
    in_section: &["{", "[", ",", "]"],
    section_close: &[],
    separators: &["[", ",", "]"],
    header: Header::InBody,
    body: Body::HermesItem,
    call_close: &["}"],
    markup: Markup {
        begin: "<|tool_call|>[",
        end: "]",
        between: ", ",
        call_open: "",
        name: Name::InJson,
        name_end: "",
        args: Args::Json,
        call_close: "",
    },
};
