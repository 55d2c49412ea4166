//! DeepSeek-V3.2 DSML tool calls:
//!
//! ```text
//! <｜DSML｜function_calls>
//! <｜DSML｜invoke name="get_weather">
//! <｜DSML｜parameter name="location" string="true">SF</｜DSML｜parameter>
//! </｜DSML｜invoke>
//! </｜DSML｜function_calls>
//! ```
//!
//! `string="true"` marks a string value; `string="false"` a JSON value (typed by the
//! schema). An `<invoke>` body may be one JSON object instead of parameters. The `｜` is
//! U+FF5C. Source: DeepSeek's `encoding_dsv32.py`, vLLM
//! `tool_parsers/deepseekv32_tool_parser.py`.

use super::markup::{Args, Markup, Name, Tags};
use super::xml_params::{ValueTrim, XmlParams};
use super::{Body, Header, ToolFormat};

const SECTION_OPEN: &str = "<\u{ff5c}DSML\u{ff5c}function_calls>";
const SECTION_CLOSE: &str = "</\u{ff5c}DSML\u{ff5c}function_calls>";
const CALL_OPEN: &str = "<\u{ff5c}DSML\u{ff5c}invoke name=";
const CALL_CLOSE: &str = "</\u{ff5c}DSML\u{ff5c}invoke>";
const PARAM_OPEN: &str = "<\u{ff5c}DSML\u{ff5c}parameter name=";
const PARAM_CLOSE: &str = "</\u{ff5c}DSML\u{ff5c}parameter>";

/// DSML's parameter tags.
pub const PARAMS: XmlParams = XmlParams {
    param_open: PARAM_OPEN,
    value_close: PARAM_CLOSE,
    between: &[PARAM_OPEN, CALL_CLOSE, SECTION_CLOSE, "{"],
    key_end: &[">"],
    value_open: None,
    in_value: &[PARAM_CLOSE, PARAM_OPEN, CALL_CLOSE, SECTION_CLOSE],
    trim: ValueTrim::Whitespace,
};

/// The `deepseek_v32` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "deepseek_v32",
    opens: &[SECTION_OPEN],
    section_open: &[SECTION_OPEN],
    in_section: &[CALL_OPEN, SECTION_CLOSE],
    section_close: &[SECTION_CLOSE],
    header: Header::Name {
        ends: &[">"],
        kept: &[],
    },
    body: Body::Params(&PARAMS),
    call_close: &[CALL_CLOSE, SECTION_CLOSE],
    markup: Markup {
        begin: "<\u{ff5c}DSML\u{ff5c}function_calls>\n",
        end: SECTION_CLOSE,
        between: "",
        call_open: "<\u{ff5c}DSML\u{ff5c}invoke name=\"",
        name: Name::Plain,
        name_end: "\">\n",
        args: Args::Tags(Tags {
            open: "<\u{ff5c}DSML\u{ff5c}parameter name=\"",
            key_end: "\" string=\"true\">",
            key_end_typed: Some("\" string=\"false\">"),
            close: "</\u{ff5c}DSML\u{ff5c}parameter>\n",
        }),
        call_close: "</\u{ff5c}DSML\u{ff5c}invoke>\n",
    },
};
