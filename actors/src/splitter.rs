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
    /// Tokens whose text the splitter still holds (undecided, or a marker cut in two):
    /// counted with the text when it comes out.
    unsettled: u32,
}

/// How many of a step's `tokens` (with those held from before) were reasoning: all of
/// them while the text out is reasoning only (or nothing, inside reasoning: a marker);
/// none for answer only; else in proportion to the bytes out. Tokens whose text is still
/// held (an undecided start) are carried in `unsettled` to the step that lets it out.
fn reasoning_share(segments: &[Segment], was_reasoning: bool, tokens: u32, unsettled: &mut u32) -> u32 {
    let tokens = tokens + std::mem::take(unsettled);
    let bytes = |kinds: &[SegmentKind]| -> u64 {
        segments
            .iter()
            .filter(|s| kinds.contains(&s.kind))
            .map(|s| s.text.len() as u64)
            .sum()
    };
    let reasoning = bytes(&[SegmentKind::Reasoning, SegmentKind::InlineReasoning]);
    let content = bytes(&[SegmentKind::Content]);
    match (reasoning, content) {
        (0, 0) if !was_reasoning => {
            *unsettled = tokens;
            0
        }
        (_, 0) => tokens,
        (0, _) => 0,
        (r, c) => u32::try_from(u64::from(tokens) * r / (r + c)).unwrap_or(tokens),
    }
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
            Event::Fallback { reason, text } => self.out.push(Segment {
                kind: match reason {
                    braid_parsers::FallbackReason::UnfinishedHeader => SegmentKind::UnfinishedHeader,
                    _ => SegmentKind::StrayEndMarker,
                },
                text: text.to_owned(),
            }),
            // The splitter emits only text and its fallbacks (a stray end marker, a cut
            // Harmony header); tool events are the extractor's.
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
                unsettled: 0,
            },
            None => SplitState {
                splitter: None,
                inline: false,
                unsettled: 0,
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
                let was_reasoning = splitter.in_reasoning();
                let mut sink = Segments {
                    out: &mut segments,
                    inline: st.inline,
                };
                splitter.push(&text.text, &mut sink);
                if text.finish.is_some() {
                    splitter.finish(&mut sink);
                }
                reasoning_tokens = reasoning_share(&segments, was_reasoning, text.tokens, &mut st.unsettled);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(kind: SegmentKind, text: &str) -> Segment {
        Segment {
            kind,
            text: text.to_owned(),
        }
    }

    #[test]
    fn reasoning_tokens_follow_the_text_that_comes_out() {
        let mut held = 0;
        // Inside reasoning: all of the step, markers too.
        assert_eq!(reasoning_share(&[], true, 2, &mut held), 2);
        // An undecided start holds its text: its tokens wait for it.
        assert_eq!(reasoning_share(&[], false, 5, &mut held), 0);
        assert_eq!(held, 5);
        // It comes out as 30 bytes of reasoning and 10 of answer: 3/4 of 5 + 3 tokens.
        let out = [
            seg(SegmentKind::Reasoning, &"r".repeat(30)),
            seg(SegmentKind::Content, &"c".repeat(10)),
        ];
        assert_eq!(reasoning_share(&out, false, 3, &mut held), 6);
        assert_eq!(held, 0);
        assert_eq!(reasoning_share(&out[1..], true, 4, &mut held), 0);
    }
}
