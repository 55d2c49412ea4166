//! Kimi-K3 tool calls, in the XTML `tools` channel:
//!
//! ```text
//! <|open|>tools<|sep|>
//! <|open|>call tool="get_weather" index="1"<|sep|>
//! <|open|>argument key="city" type="string"<|sep|>Paris<|close|>argument<|sep|>
//! <|close|>call<|sep|>
//! <|close|>tools<|sep|>
//! ```
//!
//! The name is the `tool` attribute, the key the `key` attribute (both `&amp;`/`&quot;`
//! escaped); a value is typed by the tool schema where it declares the parameter, else by
//! its `type` attribute, and kept as text where it does not parse as that type. Source:
//! Moonshot's Kimi-K3 template, SMG `tool_parser/src/parsers/kimi_k3.rs`.

use super::markup::{Args, Markup, Name, Tags};
use super::xml_params::{ValueTrim, XmlParams};
use super::{Body, Header, ToolFormat};

const SECTION_OPEN: &str = "<|open|>tools<|sep|>";
const SECTION_CLOSE: &str = "<|close|>tools<|sep|>";
const CALL_OPEN: &str = "<|open|>call";
const CALL_CLOSE: &str = "<|close|>call<|sep|>";
const SEP: &str = "<|sep|>";
const PARAM_OPEN: &str = "<|open|>argument key=";
const PARAM_CLOSE: &str = "<|close|>argument<|sep|>";

/// Kimi-K3's argument tags.
pub const PARAMS: XmlParams = XmlParams {
    param_open: PARAM_OPEN,
    value_close: PARAM_CLOSE,
    between: &[PARAM_OPEN, CALL_CLOSE, SECTION_CLOSE],
    key_end: &[SEP],
    value_open: None,
    in_value: &[PARAM_CLOSE, CALL_CLOSE, SECTION_CLOSE],
    trim: ValueTrim::Keep,
    escaped_keys: true,
};

/// The `kimi_k3` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "kimi_k3",
    opens: &[SECTION_OPEN],
    section_open: &[SECTION_OPEN],
    in_section: &[CALL_OPEN, SECTION_CLOSE],
    section_close: &[SECTION_CLOSE],
    separators: &[],
    header: Header::Attribute {
        attr: "tool",
        ends: &[SEP],
    },
    body: Body::Params(&PARAMS),
    call_close: &[CALL_CLOSE, SECTION_CLOSE],
    markup: Markup {
        begin: SECTION_OPEN,
        end: SECTION_CLOSE,
        between: "",
        call_open: "<|open|>call tool=\"",
        name: Name::Plain,
        name_end: "\"<|sep|>",
        args: Args::Tags(Tags {
            open: "<|open|>argument key=\"",
            key_end: "\" type=\"string\"<|sep|>",
            key_end_typed: Some("\" type=\"{type}\"<|sep|>"),
            close: PARAM_CLOSE,
        }),
        call_close: CALL_CLOSE,
    },
};
