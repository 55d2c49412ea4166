//! GLM-4.7 tool calls: GLM-4.5's markup without the newline after the name:
//! `<tool_call>get_weather<arg_key>city</arg_key><arg_value>Beijing</arg_value></tool_call>`.
//!
//! The GLM-4.5 table already ends the name at `<arg_key>` or `</tool_call>` as well as at
//! a newline, so GLM-4.7 is the same table under its own name. Source: vLLM
//! `tool_parsers/glm47_moe_tool_parser.py`.

use super::markup::{Args, Markup, Tags};
use super::ToolFormat;

/// The `glm47` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "glm47",
    markup: Markup {
        between: "",
        name_end: "",
        args: Args::Tags(Tags {
            key_end: "</arg_key><arg_value>",
            close: "</arg_value>",
            ..super::glm45::TAGS
        }),
        ..super::glm45::FORMAT.markup
    },
    ..super::glm45::FORMAT
};
