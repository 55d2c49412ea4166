//! Qwen3-Coder tool calls:
//!
//! ```text
//! <tool_call>
//! <function=get_weather>
//! <parameter=city>
//! Dallas
//! </parameter>
//! </function>
//! </tool_call>
//! ```
//!
//! Values are text with one newline on each side; the schema types them. A bare
//! `<function=…>` without the `<tool_call>` wrapper is read too. Source: vLLM
//! `tool_parsers/qwen3coder_tool_parser.py`.

use super::markup::{Args, Markup, Name, Tags};
use super::xml_params::{ValueTrim, XmlParams};
use super::{Body, Header, ToolFormat};

const WRAP_OPEN: &str = "<tool_call>";
const WRAP_CLOSE: &str = "</tool_call>";
const CALL_OPEN: &str = "<function=";
const CALL_CLOSE: &str = "</function>";
const PARAM_OPEN: &str = "<parameter=";
const PARAM_CLOSE: &str = "</parameter>";

/// Qwen3-Coder's parameter tags.
pub const PARAMS: XmlParams = XmlParams {
    param_open: PARAM_OPEN,
    value_close: PARAM_CLOSE,
    between: &[PARAM_OPEN, CALL_CLOSE, WRAP_CLOSE, "{"],
    key_end: &[">"],
    value_open: None,
    in_value: &[PARAM_CLOSE, PARAM_OPEN, CALL_CLOSE, WRAP_CLOSE],
    trim: ValueTrim::OneNewline,
    escaped_keys: false,
};

/// The `qwen3_coder` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "qwen3_coder",
    opens: &[WRAP_OPEN, CALL_OPEN],
    section_open: &[WRAP_OPEN],
    in_section: &[CALL_OPEN, WRAP_CLOSE],
    section_close: &[WRAP_CLOSE],
    separators: &[],
    header: Header::Name {
        ends: &[">"],
        kept: &[],
    },
    body: Body::Params(&PARAMS),
    call_close: &[CALL_CLOSE, WRAP_CLOSE],
    markup: Markup {
        begin: "",
        end: "",
        between: "\n",
        call_open: "<tool_call>\n<function=",
        name: Name::Plain,
        name_end: ">\n",
        args: Args::Tags(Tags {
            open: "<parameter=",
            key_end: ">\n",
            key_end_typed: None,
            close: "\n</parameter>\n",
        }),
        call_close: "</function>\n</tool_call>",
    },
};
