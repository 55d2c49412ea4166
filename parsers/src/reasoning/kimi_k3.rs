//! Kimi-K3: XTML channels, `<|open|>think<|sep|>reasoning<|close|>think<|sep|>`, then the
//! answer in `<|open|>response<|sep|>…<|close|>response<|sep|>` and calls in a `tools`
//! channel.
//!
//! The `response` channel's markers (and the turn's `<|close|>message<|sep|>`) wrap the
//! answer and are removed, thinking on or off; the `tools` channel (and a `response`
//! channel opened straight from reasoning) ends reasoning and stays for the tool parser.
//! A prompt that ends with the `think` opener does not settle where output starts: the
//! model may close `think` (it reasoned) or `response` (it answered at once), so text is
//! held until one of them comes. Inside a block the model opened itself, a `response`
//! closer is text. Source: Moonshot's Kimi-K3 template and SMG's parser tests.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};

const OPEN: &str = "<|open|>think<|sep|>";
const CLOSE: &str = "<|close|>think<|sep|>";
const TOOLS: &str = "<|open|>tools<|sep|>";
const RESPONSE: &str = "<|open|>response<|sep|>";
const RESPONSE_END: &str = "<|close|>response<|sep|>";
const RESPONSE_SPACED: &str = "<|open|> response <|sep|>";
const RESPONSE_END_SPACED: &str = "<|close|> response <|sep|>";
const MESSAGE_END: &str = "<|close|>message<|sep|>";

/// The `kimi_k3` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "kimi_k3",
    open: OPEN,
    close: CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[TOOLS, RESPONSE, RESPONSE_SPACED],
    answer_wrap: &[
        RESPONSE,
        RESPONSE_END,
        RESPONSE_SPACED,
        RESPONSE_END_SPACED,
        MESSAGE_END,
    ],
    reasoning_markers: &[CLOSE, OPEN, TOOLS, RESPONSE, RESPONSE_SPACED],
    content_markers: &[
        OPEN,
        CLOSE,
        RESPONSE,
        RESPONSE_END,
        RESPONSE_SPACED,
        RESPONSE_END_SPACED,
        MESSAGE_END,
        TOOLS,
    ],
    start: StartState::Content,
    prompt_open: StartState::Undecided,
    stray_close: StrayClose::Removed,
    switch: Some(ThinkingSwitch {
        key: "thinking",
        default_on: true,
    }),
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
