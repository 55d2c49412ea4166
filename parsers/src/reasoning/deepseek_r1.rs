//! DeepSeek-R1: `reasoning</think>answer`.
//!
//! The R1 templates end the prompt with `<think>\n`, so output starts inside reasoning and
//! usually carries only the close marker; an echoed leading `<think>` is dropped.
//! Source: vLLM `reasoning/deepseek_r1_reasoning_parser.py`, SGLang `DeepSeekR1Detector`.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose};

/// Opens reasoning.
pub const OPEN: &str = "<think>";
/// Closes reasoning.
pub const CLOSE: &str = "</think>";

/// The `deepseek_r1` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "deepseek_r1",
    open: OPEN,
    close: CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[],
    answer_wrap: &[],
    reasoning_markers: &[CLOSE, OPEN],
    content_markers: &[OPEN, CLOSE],
    start: StartState::Reasoning,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::Removed,
    switch: None,
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
