//! The tool-extractor stage: split text in, OpenAI-shaped deltas out on
//! `braid.out.<request>` (the parsers' [`ToolExtractor`], one per request), with usage
//! on the last chunk.

use std::sync::Arc;

use braid_bus::{Chunk, Delta, RequestId, SegmentKind, Setup, Split, Stage, Usage};
use braid_parsers::{Event, Sink, StreamParser, ToolExtractor, ToolSchemas};

use crate::stage::{Outbox, Stateful};

/// Extracts tool calls.
pub(crate) struct Extractor;

/// One request's extractor and token counts.
pub(crate) struct ExtractState {
    tools: Option<ToolExtractor>,
    usage: Usage,
    /// The tool format's name, for metrics ("none" without one).
    format: &'static str,
}

/// Turns parser events into deltas, merging neighbouring text of the same kind.
struct Deltas<'a> {
    out: &'a mut Vec<Delta>,
}

impl Sink for Deltas<'_> {
    fn event(&mut self, event: Event<'_>) {
        let delta = match event {
            Event::Reasoning(t) => {
                if let Some(Delta::Reasoning { text }) = self.out.last_mut() {
                    return text.push_str(t);
                }
                Delta::Reasoning { text: t.to_owned() }
            }
            Event::Content(t) => {
                if let Some(Delta::Content { text }) = self.out.last_mut() {
                    return text.push_str(t);
                }
                Delta::Content { text: t.to_owned() }
            }
            Event::ToolCallStart { index, id, name } => Delta::ToolCallStart {
                index: index as u32,
                id: id.to_owned(),
                name: name.to_owned(),
            },
            Event::ToolCallArguments { index, fragment } => {
                if let Some(Delta::ToolCallArguments {
                    index: last,
                    fragment: f,
                }) = self.out.last_mut()
                {
                    if *last as usize == index {
                        return f.push_str(fragment);
                    }
                }
                Delta::ToolCallArguments {
                    index: index as u32,
                    fragment: fragment.to_owned(),
                }
            }
            Event::ToolCallEnd { index, outcome } => Delta::ToolCallEnd {
                index: index as u32,
                outcome: outcome.as_str().to_owned(),
            },
            Event::ToolCallAborted { index } => Delta::ToolCallAborted { index: index as u32 },
            Event::Fallback { reason, text } => Delta::Fallback {
                reason: reason.as_str().to_owned(),
                text: text.to_owned(),
                content: reason.text_is_content(),
            },
        };
        self.out.push(delta);
    }
}

impl Stateful for Extractor {
    type In = Split;
    type Out = Chunk;
    type State = ExtractState;
    const STAGE: Stage = Stage::Extractor;

    fn open(&self, id: RequestId, setup: &Setup) -> ExtractState {
        let mut format_name = "none";
        let tools = setup.tool_parser.map(|parser| {
            let format = parser.format();
            format_name = format.name;
            // Ids unique across requests, so a client's replayed turn names one call.
            let prefix = format!("call_{id}_");
            ToolExtractor::new(format, Arc::new(ToolSchemas::from_specs(&setup.tools)), &prefix)
        });
        ExtractState {
            format: format_name,
            tools,
            usage: Usage {
                prompt_tokens: setup.prompt_tokens,
                ..Usage::default()
            },
        }
    }

    fn on(
        &self,
        _id: RequestId,
        st: &mut ExtractState,
        split: Split,
        _setup: Option<Box<Setup>>,
        _out: &mut Outbox,
    ) -> Option<(Chunk, bool)> {
        st.usage.completion_tokens += split.tokens;
        st.usage.reasoning_tokens += split.reasoning_tokens;
        if let Some(r) = split.reported {
            // The executor's own counts (the engine's, an upstream engine's usage) win; reasoning is
            // braid's count either way, capped by the completion.
            st.usage.prompt_tokens = r.prompt_tokens;
            st.usage.completion_tokens = r.completion_tokens;
            st.usage.cached_tokens = r.cached_tokens;
            st.usage.reasoning_tokens = st.usage.reasoning_tokens.min(r.completion_tokens);
        }
        let mut deltas = Vec::new();
        let mut sink = Deltas { out: &mut deltas };
        for seg in &split.segments {
            match (seg.kind, &mut st.tools) {
                (SegmentKind::Content, Some(tools)) => tools.push(&seg.text, &mut sink),
                (SegmentKind::Content, None) => sink.event(Event::Content(&seg.text)),
                (SegmentKind::Reasoning, tools) => {
                    if let Some(tools) = tools {
                        tools.break_text(&mut sink);
                    }
                    sink.event(Event::Reasoning(&seg.text));
                }
                (SegmentKind::StrayEndMarker, _) => sink.event(Event::Fallback {
                    reason: braid_parsers::FallbackReason::StrayEndMarker,
                    text: &seg.text,
                }),
                (SegmentKind::UnfinishedHeader, _) => sink.event(Event::Fallback {
                    reason: braid_parsers::FallbackReason::UnfinishedHeader,
                    text: &seg.text,
                }),
                (SegmentKind::InlineReasoning, tools) => {
                    if let Some(tools) = tools {
                        tools.break_text(&mut sink);
                    }
                    sink.event(Event::Content(&seg.text));
                }
            }
        }
        let last = split.finish.is_some();
        if last {
            if let Some(tools) = &mut st.tools {
                tools.finish(&mut sink);
            }
        }
        for d in &deltas {
            match d {
                Delta::ToolCallEnd { outcome, .. } => {
                    metrics::counter!("braid_tool_calls_total", "format" => st.format, "outcome" => outcome.clone())
                        .increment(1);
                }
                Delta::Fallback { reason, .. } => {
                    metrics::counter!("braid_parser_fallbacks_total", "format" => st.format, "reason" => reason.clone())
                        .increment(1);
                }
                _ => {}
            }
        }
        if deltas.is_empty() && !last {
            return None;
        }
        Some((
            Chunk {
                deltas,
                finish: split.finish,
                usage: last.then_some(st.usage),
            },
            false,
        ))
    }
}
