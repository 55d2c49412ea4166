//! One model output, parsed end to end: the reasoning splitter feeds answer text to the
//! tool extractor, and both emit into the caller's sink.

use std::sync::Arc;

use crate::event::{Event, Sink, StreamParser};
use crate::reasoning::{ReasoningFormat, ReasoningPlacement, ReasoningSplitter, StartOverride};
use crate::schema::ToolSchemas;
use crate::tools::{ToolExtractor, ToolFormat};
use crate::{reasoning_format, tool_format, ConfigError};

/// Everything needed to parse one request's output.
#[derive(Debug, Clone, Default)]
pub struct OutputConfig {
    /// The reasoning format; `None` means no reasoning split (all text is answer).
    pub reasoning: Option<&'static ReasoningFormat>,
    /// The tool-call format; `None` means no tool extraction.
    pub tools: Option<&'static ToolFormat>,
    /// The request's `chat_template_kwargs` (thinking switches).
    pub chat_template_kwargs: Option<serde_json::Value>,
    /// Where output starts, as read from the rendered prompt.
    pub start: StartOverride,
    /// The request's tools.
    pub schemas: Arc<ToolSchemas>,
    /// Starts every generated tool-call id (the call index follows).
    pub id_prefix: String,
}

impl OutputConfig {
    /// A configuration from parser names (vLLM's names); unknown names are an error that
    /// lists the known ones.
    pub fn from_names(reasoning: Option<&str>, tools: Option<&str>) -> Result<OutputConfig, ConfigError> {
        Ok(OutputConfig {
            reasoning: reasoning.map(reasoning_format).transpose()?,
            tools: tools.map(tool_format).transpose()?,
            id_prefix: "call_".to_owned(),
            ..OutputConfig::default()
        })
    }

    /// Whether thinking is on for this request (always false without a reasoning format).
    pub fn thinking_enabled(&self) -> bool {
        self.reasoning.is_some_and(|f| {
            f.thinking_enabled(
                self.chat_template_kwargs
                    .as_ref()
                    .and_then(serde_json::Value::as_object),
            )
        })
    }
}

/// Parses one output: reasoning, answer text and tool calls, incrementally.
#[derive(Debug)]
pub struct OutputParser {
    splitter: Option<ReasoningSplitter>,
    inline: bool,
    tools: Option<ToolExtractor>,
}

impl OutputParser {
    /// A parser for one output.
    pub fn new(config: &OutputConfig) -> OutputParser {
        OutputParser {
            splitter: config
                .reasoning
                .map(|f| ReasoningSplitter::new(f, config.thinking_enabled(), config.start)),
            inline: config
                .reasoning
                .is_some_and(|f| f.placement == ReasoningPlacement::InlineTags),
            tools: config
                .tools
                .map(|f| ToolExtractor::new(f, Arc::clone(&config.schemas), &config.id_prefix)),
        }
    }

    /// Whether the output is inside reasoning now.
    pub fn in_reasoning(&self) -> bool {
        self.splitter
            .as_ref()
            .is_some_and(ReasoningSplitter::in_reasoning)
    }
}

/// Routes the splitter's events: answer text to the tool extractor, reasoning out.
struct Route<'a> {
    tools: Option<&'a mut ToolExtractor>,
    inline: bool,
    out: &'a mut dyn Sink,
}

impl Sink for Route<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Content(text) => match self.tools.as_deref_mut() {
                Some(tools) => tools.push(text, self.out),
                None => self.out.event(event),
            },
            Event::Reasoning(text) => {
                if let Some(tools) = self.tools.as_deref_mut() {
                    tools.break_text(self.out);
                }
                self.out
                    .event(if self.inline { Event::Content(text) } else { event });
            }
            other => self.out.event(other),
        }
    }
}

impl StreamParser for OutputParser {
    fn push(&mut self, text: &str, sink: &mut dyn Sink) {
        match &mut self.splitter {
            Some(splitter) => {
                let mut route = Route {
                    tools: self.tools.as_mut(),
                    inline: self.inline,
                    out: sink,
                };
                splitter.push(text, &mut route);
            }
            None => match &mut self.tools {
                Some(tools) => tools.push(text, sink),
                None if !text.is_empty() => sink.event(Event::Content(text)),
                None => {}
            },
        }
    }

    fn finish(&mut self, sink: &mut dyn Sink) {
        if let Some(splitter) = &mut self.splitter {
            let mut route = Route {
                tools: self.tools.as_mut(),
                inline: self.inline,
                out: sink,
            };
            splitter.finish(&mut route);
        }
        if let Some(tools) = &mut self.tools {
            tools.finish(sink);
        }
    }
}
