//! DeepSeek-V3.1 / V3.2: reasoning only when `chat_template_kwargs.thinking` is true.
//!
//! With thinking on the template ends the prompt with `<think>` and output reads like R1
//! (`reasoning</think>answer`); with thinking off (the default) the template writes
//! `</think>` itself and every byte of output is answer. Source: vLLM
//! `reasoning/deepseek_v3_reasoning_parser.py` (R1 parser or identity by `thinking`).

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};

/// The `deepseek_v3` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "deepseek_v3",
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
    switch: Some(ThinkingSwitch {
        key: "thinking",
        default_on: false,
    }),
    placement: ReasoningPlacement::Separate,
    clear_thinking: None,
    machine: Machine::Markers,
};
