//! MiniMax-M2 tool calls:
//!
//! ```text
//! <minimax:tool_call>
//! <invoke name="get_weather">
//! <parameter name="city">Seattle</parameter>
//! </invoke>
//! </minimax:tool_call>
//! ```
//!
//! One wrapper may hold several `<invoke>`s. Values are text; the schema types them.
//! Source: vLLM `tool_parsers/minimax_m2_tool_parser.py`, MiniMax-M2's chat template.

use super::markup::{Args, Markup, Name, Tags};
use super::xml_params::{ValueTrim, XmlParams};
use super::{Body, Header, ToolFormat};

const SECTION_OPEN: &str = "<minimax:tool_call>";
const SECTION_CLOSE: &str = "</minimax:tool_call>";
const CALL_OPEN: &str = "<invoke name=";
const CALL_CLOSE: &str = "</invoke>";
const PARAM_OPEN: &str = "<parameter name=";
const PARAM_CLOSE: &str = "</parameter>";

/// MiniMax-M2's parameter tags.
pub const PARAMS: XmlParams = XmlParams {
    param_open: PARAM_OPEN,
    value_close: PARAM_CLOSE,
    between: &[PARAM_OPEN, CALL_CLOSE, SECTION_CLOSE, "{"],
    key_end: &[">"],
    value_open: None,
    in_value: &[PARAM_CLOSE, PARAM_OPEN, CALL_CLOSE, SECTION_CLOSE],
    trim: ValueTrim::Whitespace,
    escaped_keys: false,
};

/// The `minimax_m2` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "minimax_m2",
    opens: &[SECTION_OPEN],
    section_open: &[SECTION_OPEN],
    in_section: &[CALL_OPEN, SECTION_CLOSE],
    section_close: &[SECTION_CLOSE],
    separators: &[],
    header: Header::Name {
        ends: &[">"],
        kept: &[],
    },
    body: Body::Params(&PARAMS),
    call_close: &[CALL_CLOSE, SECTION_CLOSE],
    markup: Markup {
        begin: "<minimax:tool_call>\n",
        end: SECTION_CLOSE,
        between: "",
        call_open: "<invoke name=\"",
        name: Name::Plain,
        name_end: "\">\n",
        args: Args::Tags(Tags {
            open: "<parameter name=\"",
            key_end: "\">",
            key_end_typed: None,
            close: "</parameter>\n",
        }),
        call_close: "</invoke>\n",
    },
};
