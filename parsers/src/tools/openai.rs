//! gpt-oss tool calls (`openai`): Harmony messages addressed to a function,
//!
//! ```text
//! <|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>
//! ```
//!
//! with the recipient in the channel part of the header or before it
//! (` to=functions.get_weather<|channel|>commentary …`). The `openai_gptoss` reasoning
//! splitter hands calls on as `to=functions.NAME<|message|>{…}<|call|>`; this reads both
//! that and the raw message. The name ends at the first space or special token; the body
//! after `<|message|>` is one JSON value (other text is kept as the arguments, raw). Source: OpenAI's `openai-harmony`, vLLM
//! `tool_parsers/openai_tool_parser.py`.

use super::markup::{Args, Markup, Name};
use super::{Body, Header, ToolFormat};

const TO: &str = "to=functions.";
const CHANNEL_TO: &str = "<|channel|>commentary to=functions.";
const MESSAGE_TO: &str = "<|start|>assistant<|channel|>commentary to=functions.";
const CALL: &str = "<|call|>";

/// The `openai` format.
pub const FORMAT: ToolFormat = ToolFormat {
    name: "openai",
    opens: &[TO, CHANNEL_TO, MESSAGE_TO],
    section_open: &[],
    in_section: &[],
    section_close: &[],
    separators: &[],
    header: Header::FirstWord {
        ends: &["<|message|>"],
    },
    body: Body::Json,
    call_close: &[CALL],
    markup: Markup {
        begin: "",
        end: "",
        between: "<|start|>assistant",
        call_open: CHANNEL_TO,
        name: Name::Plain,
        name_end: " <|constrain|>json<|message|>",
        args: Args::Json,
        call_close: CALL,
    },
};
