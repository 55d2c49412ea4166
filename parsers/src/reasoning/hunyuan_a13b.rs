//! Tencent Hunyuan-A13B: `<think>\n…\n</think>\n<answer>\n…\n</answer>`.
//!
//! The newlines next to the tags belong to the tags, and the `<answer>` wrapper is no
//! part of the answer: both are removed, the text's own whitespace is kept. Output
//! starts in the answer (the model opens `<think>` itself); `enable_thinking: false`
//! makes the template close an empty block in the prompt, and the answer that follows is
//! still unwrapped. Tool calls (`<tool_calls>[…]</tool_calls>`) sit inside the answer.
//! Source: vLLM `reasoning/hunyuan_a13b_reasoning_parser.py`, Tencent's template.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};

const OPEN: &str = "<think>";
const OPEN_NL: &str = "<think>\n";
const CLOSE: &str = "</think>";
const CLOSE_NL: &str = "\n</think>";
const CLOSE_NL2: &str = "\n</think>\n";
const ANSWER: &str = "<answer>";
const ANSWER_NL: &str = "<answer>\n";
const NL_ANSWER_NL: &str = "\n<answer>\n";
const ANSWER_END: &str = "</answer>";
const NL_ANSWER_END: &str = "\n</answer>";

/// The `hunyuan_a13b` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "hunyuan_a13b",
    open: OPEN,
    close: CLOSE,
    other_opens: &[OPEN_NL],
    other_closes: &[CLOSE_NL, CLOSE_NL2],
    implicit_close: &[],
    answer_wrap: &[ANSWER, ANSWER_NL, NL_ANSWER_NL, ANSWER_END, NL_ANSWER_END],
    reasoning_markers: &[CLOSE, CLOSE_NL, CLOSE_NL2, OPEN, OPEN_NL],
    content_markers: &[
        OPEN,
        OPEN_NL,
        CLOSE,
        CLOSE_NL,
        CLOSE_NL2,
        ANSWER,
        ANSWER_NL,
        NL_ANSWER_NL,
        ANSWER_END,
        NL_ANSWER_END,
    ],
    start: StartState::Content,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::Removed,
    switch: Some(ThinkingSwitch {
        key: "enable_thinking",
        default_on: true,
    }),
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
