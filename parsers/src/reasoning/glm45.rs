//! GLM-4.5 / 4.6 / 4.7: `<think>reasoning</think>answer`.
//!
//! Output starts in the answer; reasoning begins at `<think>` (GLM-4.7 templates that
//! pre-fill `<think>` are recognised by the server from the prompt). A truncated block is
//! reasoning. `enable_thinking: false` passes everything through. Source: vLLM
//! `reasoning/glm4_moe_reasoning_parser.py`.

use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};

/// The `glm45` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "glm45",
    open: super::deepseek_r1::OPEN,
    close: super::deepseek_r1::CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[],
    answer_wrap: &[],
    reasoning_markers: super::deepseek_r1::FORMAT.reasoning_markers,
    content_markers: super::deepseek_r1::FORMAT.content_markers,
    start: StartState::Content,
    prompt_open: StartState::Reasoning,
    stray_close: StrayClose::Removed,
    switch: Some(ThinkingSwitch {
        key: "enable_thinking",
        default_on: true,
    }),
    placement: ReasoningPlacement::Separate,
    clear_thinking: Some("clear_thinking"),
    machine: Machine::Markers,
};
