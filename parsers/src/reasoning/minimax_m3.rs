//! MiniMax-M3: `<mm:think>reasoning</mm:think>answer`.
//!
//! The template's `thinking_mode` decides the prompt's end: `enabled` pre-fills
//! `<mm:think>` (output starts in reasoning, read from the prompt), `disabled` writes
//! `</mm:think>`, and `adaptive` (the default) leaves the model to open a block or to
//! start with a bare `</mm:think>`. That leading close is removed; a close anywhere else
//! in the answer is text. Source: vLLM `reasoning/minimax_m3_reasoning_parser.py`,
//! SGLang `MiniMaxM3Detector`.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose};

/// Opens reasoning.
pub const OPEN: &str = "<mm:think>";
/// Closes reasoning.
pub const CLOSE: &str = "</mm:think>";

/// The `minimax_m3` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "minimax_m3",
    open: OPEN,
    close: CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[],
    answer_wrap: &[],
    reasoning_markers: &[CLOSE, OPEN],
    content_markers: &[OPEN, CLOSE],
    start: StartState::Content,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::TextUnlessLeading,
    switch: None,
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
