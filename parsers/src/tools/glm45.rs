//! GLM-4.5 / 4.6 tool calls:
//!
//! ```text
//! <tool_call>get_weather
//! <arg_key>city</arg_key>
//! <arg_value>Beijing</arg_value>
//! </tool_call>
//! ```
//!
//! The name runs to the newline (or straight into the first `<arg_key>`, or the close
//! tag for a call without arguments). Values are the exact text between their tags (they
//! may be indented code); the schema types them. Source:
//! vLLM `tool_parsers/glm4_moe_tool_parser.py`, GLM-4.5's chat template.

use super::markup::{Args, Markup, Name, Tags};
use super::xml_params::{ValueTrim, XmlParams};
use super::{Body, Header, ToolFormat};

const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";
const KEY_OPEN: &str = "<arg_key>";
const KEY_CLOSE: &str = "</arg_key>";
const VALUE_OPEN: &str = "<arg_value>";
const VALUE_CLOSE: &str = "</arg_value>";

/// GLM's `<arg_key>`/`<arg_value>` tags.
pub const PARAMS: XmlParams = XmlParams {
    param_open: KEY_OPEN,
    value_close: VALUE_CLOSE,
    between: &[KEY_OPEN, CALL_CLOSE, "{"],
    key_end: &[KEY_CLOSE],
    value_open: Some(&[VALUE_OPEN, CALL_CLOSE]),
    // Only the close tag ends a value: a literal `<arg_key>` inside one is text.
    in_value: &[VALUE_CLOSE, CALL_CLOSE],
    trim: ValueTrim::Keep,
    escaped_keys: false,
};

/// How GLM-4.5 writes a tagged argument (GLM-4.7 drops the newlines).
pub(crate) const TAGS: Tags = Tags {
    open: KEY_OPEN,
    key_end: "</arg_key>\n<arg_value>",
    key_end_typed: None,
    close: "</arg_value>\n",
};

/// The `glm45` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "glm45",
    opens: &[CALL_OPEN],
    section_open: &[],
    in_section: &[],
    section_close: &[],
    separators: &[],
    header: Header::Name {
        ends: &["\n", KEY_OPEN, CALL_CLOSE],
        kept: &[KEY_OPEN, CALL_CLOSE],
    },
    body: Body::Params(&PARAMS),
    call_close: &[CALL_CLOSE],
    markup: Markup {
        begin: "",
        end: "",
        between: "\n",
        call_open: CALL_OPEN,
        name: Name::Plain,
        name_end: "\n",
        args: Args::Tags(TAGS),
        call_close: CALL_CLOSE,
    },
};
