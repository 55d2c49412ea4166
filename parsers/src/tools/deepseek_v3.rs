//! DeepSeek-V3 tool calls:
//!
//! ````text
//! <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
//! ```json
//! {"city": "Tokyo"}
//! ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>
//! ````
//!
//! The header is `TYPE<｜tool▁sep｜>NAME` up to the newline; the arguments are the JSON
//! value inside the fence. `｜` is U+FF5C and `▁` U+2581. Source: vLLM
//! `tool_parsers/deepseekv3_tool_parser.py`.

use super::markup::Markup;
use super::{Body, Header, ToolFormat};

pub(crate) const SECTION_OPEN: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>";
pub(crate) const SECTION_CLOSE: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
pub(crate) const CALL_OPEN: &str = "<\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>";
pub(crate) const CALL_CLOSE: &str = "<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}>";
pub(crate) const SEP: &str = "<\u{ff5c}tool\u{2581}sep\u{ff5c}>";

/// The `deepseek_v3` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "deepseek_v3",
    opens: &[SECTION_OPEN],
    section_open: &[SECTION_OPEN],
    in_section: &[CALL_OPEN, SECTION_CLOSE],
    section_close: &[SECTION_CLOSE],
    separators: &[],
    header: Header::TypedName {
        sep: SEP,
        ends: &["\n", "```"],
    },
    body: Body::Json,
    call_close: &[CALL_CLOSE, SECTION_CLOSE],
    markup: Markup::json_calls(
        SECTION_OPEN,
        SECTION_CLOSE,
        "<\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>function<\u{ff5c}tool\u{2581}sep\u{ff5c}>",
        "\n```json\n",
        "\n```<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}>",
    ),
};
