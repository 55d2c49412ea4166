//! DeepSeek-V4 / V4.1: reasoning only when `chat_template_kwargs.thinking` is true, as
//! V3.2; the DSML tool block ends reasoning without a `</think>`.
//!
//! With thinking on the prompt ends with `<think>`, so output starts inside reasoning;
//! the model may go straight from reasoning to its tool block (`<｜DSML｜tool_calls>`, or
//! V4.1's `<｜DSML｜ calls>`), which then stays in the answer for the tool parser. Source:
//! DeepSeek's `deepseek-recipe` stream processor, vLLM
//! `reasoning/deepseek_v4_reasoning_parser.py`.

use super::deepseek_r1::{CLOSE, OPEN};
use super::{Machine, ReasoningFormat, ReasoningPlacement, StartState, StrayClose, ThinkingSwitch};
use crate::tools::{deepseek_v4, deepseek_v41};

/// The `deepseek_v4` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "deepseek_v4",
    open: OPEN,
    close: CLOSE,
    other_opens: &[],
    other_closes: &[],
    implicit_close: &[deepseek_v4::SECTION_OPEN, deepseek_v41::SECTION_OPEN],
    answer_wrap: &[],
    reasoning_markers: &[CLOSE, OPEN, deepseek_v4::SECTION_OPEN, deepseek_v41::SECTION_OPEN],
    content_markers: &[OPEN, CLOSE],
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
