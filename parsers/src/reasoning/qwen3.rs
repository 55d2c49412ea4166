//! Qwen3: `<think>reasoning</think>answer`, with `<think>` optional.
//!
//! Qwen3 hybrid models write `<think>` themselves; Qwen3 thinking-only templates put it in
//! the prompt, so output may start with bare reasoning closed by `</think>`. Without a
//! prompt to say which, text before the first marker is undecided: reasoning if a
//! `</think>` follows, content otherwise (SGLang's default; vLLM's with the start state
//! from the prompt). `enable_thinking: false` passes everything through as content. A
//! `<tool_call>` inside an unclosed think block ends reasoning (vLLM
//! `reasoning/qwen3_reasoning_parser.py`, `test_qwen3_reasoning_parser.py`).

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";
const TOOL_CALL: &str = "<tool_call>";

/// The `qwen3` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "qwen3",
    open: OPEN,
    close: CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[TOOL_CALL],
    answer_wrap: &[],
    reasoning_markers: &[CLOSE, OPEN, TOOL_CALL],
    content_markers: &[OPEN, CLOSE],
    start: StartState::Undecided,
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
