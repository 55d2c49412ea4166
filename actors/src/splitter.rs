//! The reasoning-splitter stage: text in, ordered reasoning and answer segments out
//! (the parsers' [`ReasoningSplitter`], one per request).

use braid_bus::{RequestId, Segment, SegmentKind, Setup, Split, Stage, Text};
use braid_parsers::{
    Event, ReasoningFormat, ReasoningPlacement, ReasoningSplitter, Sink, StartOverride, StreamParser,
};

use crate::stage::{Outbox, Stateful};

/// Splits reasoning from answers.
pub(crate) struct Splitter;

/// What a request's `Setup` says about its reasoning: the format, whether thinking is on
/// (`chat_template_kwargs`) and where output starts (read from the prompt). The splitter
/// and the engine executor's reasoning gate both start from this.
pub(crate) struct ReasoningSetup {
    pub(crate) format: &'static ReasoningFormat,
    pub(crate) thinking: bool,
    pub(crate) start: StartOverride,
}

impl ReasoningSetup {
    /// `None` when the request has no reasoning parser.
    pub(crate) fn of(setup: &Setup) -> Option<ReasoningSetup> {
        let format = setup.reasoning_parser?.format();
        let start = setup.start;
        Some(ReasoningSetup {
            format,
            thinking: setup.thinking,
            start,
        })
    }
}

/// One request's splitter (none when the request has no reasoning parser).
pub(crate) struct SplitState {
    splitter: Option<ReasoningSplitter>,
    inline: bool,
}

/// Collects events as segments, merging neighbours of the same kind.
struct Segments<'a> {
    out: &'a mut Vec<Segment>,
    inline: bool,
}

impl Segments<'_> {
    fn add(&mut self, kind: SegmentKind, text: &str) {
        match self.out.last_mut() {
            Some(last) if last.kind == kind => last.text.push_str(text),
            _ => self.out.push(Segment {
                kind,
                text: text.to_owned(),
            }),
        }
    }
}

impl Sink for Segments<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Reasoning(t) if self.inline => self.add(SegmentKind::InlineReasoning, t),
            Event::Reasoning(t) => self.add(SegmentKind::Reasoning, t),
            Event::Content(t) => self.add(SegmentKind::Content, t),
            Event::Fallback { text, .. } => self.out.push(Segment {
                kind: SegmentKind::StrayEndMarker,
                text: text.to_owned(),
            }),
            // The splitter emits only text and its one fallback; tool events are the
            // extractor's.
            _ => {}
        }
    }
}

impl Stateful for Splitter {
    type In = Text;
    type Out = Split;
    type State = SplitState;
    const STAGE: Stage = Stage::Splitter;

    fn open(&self, _id: RequestId, setup: &Setup) -> SplitState {
        match ReasoningSetup::of(setup) {
            Some(r) => SplitState {
                splitter: Some(ReasoningSplitter::new(r.format, r.thinking, r.start)),
                inline: r.format.placement == ReasoningPlacement::InlineTags,
            },
            None => SplitState {
                splitter: None,
                inline: false,
            },
        }
    }

    fn on(
        &self,
        _id: RequestId,
        st: &mut SplitState,
        text: Text,
        setup: Option<Box<Setup>>,
        _out: &mut Outbox,
    ) -> Option<(Split, bool)> {
        let mut segments = Vec::new();
        let mut reasoning_tokens = 0;
        match &mut st.splitter {
            Some(splitter) => {
                if splitter.in_reasoning() {
                    reasoning_tokens = text.tokens;
                }
                let mut sink = Segments {
                    out: &mut segments,
                    inline: st.inline,
                };
                splitter.push(&text.text, &mut sink);
                if text.finish.is_some() {
                    splitter.finish(&mut sink);
                }
            }
            None if !text.text.is_empty() => segments.push(Segment {
                kind: SegmentKind::Content,
                text: text.text,
            }),
            None => {}
        }
        if segments.is_empty()
            && text.finish.is_none()
            && setup.is_none()
            && text.tokens == 0
            && text.reported.is_none()
        {
            return None;
        }
        Some((
            Split {
                segments,
                tokens: text.tokens,
                reasoning_tokens,
                finish: text.finish,
                setup,
                reported: text.reported,
            },
            false,
        ))
    }
}
