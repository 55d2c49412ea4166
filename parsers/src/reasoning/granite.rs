//! IBM Granite 3.2 / 3.3: `Here is my thought process: … Here is my response: …` (3.2) or
//! `<think>…</think><response>…</response>` (3.3).
//!
//! Granite writes either only when `chat_template_kwargs.thinking` is true (off by
//! default, as the template's own default), so with thinking off everything is answer.
//! Output starts in the answer; both spellings of each phrase (`Here is`, `Here's`) and
//! the 3.3 tags open and close a block, and 3.3's `<response>` wrapper is removed from
//! the answer. Whitespace around the phrases is kept (vLLM does too). Source: vLLM
//! `reasoning/granite_reasoning_parser.py` (3.2 only), llama.cpp and IBM granite-common
//! (3.3 tags).

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};

const OPEN: &str = "Here is my thought process:";
const OPEN_SHORT: &str = "Here's my thought process:";
const CLOSE: &str = "Here is my response:";
const CLOSE_SHORT: &str = "Here's my response:";
const THINK: &str = "<think>";
const THINK_END: &str = "</think>";
const RESPONSE: &str = "<response>";
const RESPONSE_END: &str = "</response>";

/// The `granite` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "granite",
    open: OPEN,
    close: CLOSE,
    other_opens: &[OPEN_SHORT, THINK],
    other_closes: &[CLOSE_SHORT, THINK_END],
    implicit_close: &[],
    answer_wrap: &[RESPONSE, RESPONSE_END],
    reasoning_markers: &[CLOSE, CLOSE_SHORT, THINK_END, OPEN, OPEN_SHORT, THINK],
    content_markers: &[
        OPEN,
        OPEN_SHORT,
        THINK,
        CLOSE,
        CLOSE_SHORT,
        THINK_END,
        RESPONSE,
        RESPONSE_END,
    ],
    start: StartState::Content,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::Removed,
    switch: Some(ThinkingSwitch {
        key: "thinking",
        default_on: false,
    }),
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
