//! MiniMax-M2, reasoning kept in `content` with its tags: `<think>reasoning</think>answer`.
//!
//! MiniMax asks clients to send reasoning back inside the assistant content, tags
//! included; this variant returns it that way. Reasoning is still recognised (so tool
//! calls are never read from it), only placed differently. Source: vLLM
//! `reasoning/minimax_m2_reasoning_parser.py` (`MiniMaxM2AppendThinkReasoningParser`).

use super::{ReasoningFormat, ReasoningPlacement};

/// The `minimax_m2_append_think` format.
pub const FORMAT: ReasoningFormat = ReasoningFormat {
    name: "minimax_m2_append_think",
    placement: ReasoningPlacement::InlineTags,
    ..super::minimax_m2::FORMAT
};
