//! What a parser emits: ordered events into a caller-owned [`Sink`].

/// One piece of parsed model output. Text borrows from the input or the parser's
/// buffers; a stage copies it once into its outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Text of a reasoning block (`reasoning_content`).
    Reasoning(&'a str),
    /// Answer text (`content`).
    Content(&'a str),
    /// A tool call begins. `index` counts calls from 0 in this output.
    ToolCallStart {
        /// Position of the call in this output's `tool_calls`.
        index: usize,
        /// The call id: the model's own where the format carries one (Kimi-K2), else generated.
        id: &'a str,
        /// The function name as the model wrote it.
        name: &'a str,
    },
    /// A fragment of a call's `arguments`; a call's fragments concatenate to its final
    /// arguments JSON string.
    ToolCallArguments {
        /// The call these bytes belong to.
        index: usize,
        /// The next bytes of the arguments string.
        fragment: &'a str,
    },
    /// A tool call is complete.
    ToolCallEnd {
        /// The call that ended.
        index: usize,
        /// How well the call parsed.
        outcome: CallOutcome,
    },
    /// A call that was started is withdrawn: the output ended inside it. Its raw text
    /// follows as a [`Event::Fallback`] with [`FallbackReason::UnfinishedToolCall`].
    ToolCallAborted {
        /// The call that is withdrawn.
        index: usize,
    },
    /// Model output that is not well-formed markup, kept verbatim. Whether the text belongs
    /// to `content` is [`FallbackReason::text_is_content`]; either way it is never lost.
    Fallback {
        /// What was wrong.
        reason: FallbackReason,
        /// The raw text concerned.
        text: &'a str,
    },
}

/// How a completed tool call parsed; metrics count calls by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Name and arguments are well-formed.
    Parsed,
    /// The arguments are not valid JSON; they are passed on raw.
    InvalidArguments,
    /// The function is not among the request's tools (the call is still returned).
    UnknownFunction,
}

impl CallOutcome {
    /// The snake_case name used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Parsed => "parsed",
            CallOutcome::InvalidArguments => "invalid_arguments",
            CallOutcome::UnknownFunction => "unknown_function",
        }
    }
}

/// Why text was reported as a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The output ended inside tool-call markup whose body was incomplete; the raw text is
    /// returned as content.
    UnfinishedToolCall,
    /// A tool-call section held no readable call; the raw text is returned as content.
    NoCallInSection,
    /// Text after or between tool calls: not content (it is usually the model imagining a
    /// tool result), but kept here.
    TrailingText,
    /// A call whose header could not be read (no function name, an ambiguous Kimi
    /// counter id); skipped, as peers do.
    UnreadableCall,
    /// An end-of-reasoning marker outside reasoning; removed from content.
    StrayEndMarker,
    /// A message header (Harmony) the output ended inside: not content.
    UnfinishedHeader,
}

impl FallbackReason {
    /// Whether the fallback text is part of `content`.
    pub fn text_is_content(self) -> bool {
        matches!(
            self,
            FallbackReason::UnfinishedToolCall | FallbackReason::NoCallInSection
        )
    }

    /// The snake_case name used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::UnfinishedToolCall => "unfinished_tool_call",
            FallbackReason::NoCallInSection => "no_call_in_section",
            FallbackReason::TrailingText => "trailing_text",
            FallbackReason::UnreadableCall => "unreadable_call",
            FallbackReason::StrayEndMarker => "stray_end_marker",
            FallbackReason::UnfinishedHeader => "unfinished_header",
        }
    }
}

/// Receives a parser's events in order. Implemented for every `FnMut(Event)`.
pub trait Sink {
    /// Takes the next event.
    fn event(&mut self, event: Event<'_>);
}

impl<F: FnMut(Event<'_>)> Sink for F {
    fn event(&mut self, event: Event<'_>) {
        self(event)
    }
}

/// The one interface every parser offers: feed text as it arrives, then finish.
/// Non-streaming use is `push` of the whole output followed by `finish`.
pub trait StreamParser {
    /// Feeds the next piece of model output. Emits what is decided; holds back only bytes
    /// that could still begin a marker (or whose meaning a later marker decides).
    fn push(&mut self, text: &str, sink: &mut dyn Sink);
    /// Ends the output: flushes held bytes and closes open structures.
    fn finish(&mut self, sink: &mut dyn Sink);
}
