//! MiniMax-M2: `reasoning</think>answer`.
//!
//! The template ends the prompt with `<think>\n`, so output starts inside reasoning. A
//! second `</think>` in the answer is removed (reported as a stray marker). Source: vLLM
//! `reasoning/minimax_m2_reasoning_parser.py`.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose};

/// The `minimax_m2` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "minimax_m2",
    open: super::deepseek_r1::OPEN,
    close: super::deepseek_r1::CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[],
    answer_wrap: &[],
    reasoning_markers: super::deepseek_r1::FORMAT.reasoning_markers,
    content_markers: super::deepseek_r1::FORMAT.content_markers,
    start: StartState::Reasoning,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::Removed,
    switch: None,
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
