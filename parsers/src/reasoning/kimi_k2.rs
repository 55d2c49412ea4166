//! Kimi-K2 (-Thinking): `<think>reasoning</think>answer`; a tool-call section also ends
//! reasoning.
//!
//! Kimi-K2-Thinking may open its tool section straight from reasoning:
//! `reasoning<|tool_calls_section_begin|>…`. The section marker stays in the answer for
//! the tool parser. Output without tags is reasoning. `thinking: false` passes everything
//! through. Source: vLLM `reasoning/kimi_k2_reasoning_parser.py`.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";
const SECTION: &str = "<|tool_calls_section_begin|>";
const SECTION_SINGULAR: &str = "<|tool_call_section_begin|>";

/// The `kimi_k2` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "kimi_k2",
    open: OPEN,
    close: CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[SECTION, SECTION_SINGULAR],
    answer_wrap: &[],
    reasoning_markers: &[CLOSE, OPEN, SECTION, SECTION_SINGULAR],
    content_markers: &[OPEN, CLOSE],
    start: StartState::Reasoning,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::Removed,
    switch: Some(ThinkingSwitch {
        key: "thinking",
        default_on: true,
    }),
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
