//! braid's output parsers: model output in, `reasoning_content`, `content` and
//! `tool_calls` out — streamed or not, for every interleaved-thinking family.
//!
//! The key design decision: **one incremental state machine per format, driven by
//! markers, and nothing else.** Non-streaming parsing is "push everything, then finish"
//! on the same machine, so the two can never disagree, and a machine only ever holds back
//! bytes that could still begin a marker (or whose meaning a later marker decides), so
//! where chunks happen to split never changes what comes out. Formats are tables
//! ([`reasoning::ReasoningFormat`], [`tools::ToolFormat`]): adding one is mostly markers
//! and a doc comment. Where output starts (inside reasoning or not) is given by the
//! caller from the rendered prompt ([`reasoning::StartOverride`]), not guessed.
//!
//! Pure Rust: no I/O, no async. Events borrow text and go into a caller-owned [`Sink`].

pub mod assemble;
pub mod event;
pub mod family;
pub mod format_file;
pub mod grammar;
mod named;
pub mod output;
pub mod reasoning;
mod scan;
pub mod schema;
pub mod testkit;
pub mod tools;

pub use assemble::{ParsedCall, ParsedOutput};
pub use event::{CallOutcome, Event, FallbackReason, Sink, StreamParser};
pub use named::{Format, Named, ReasoningParser, ToolParser};
pub use output::{OutputConfig, OutputParser};
pub use reasoning::{ReasoningFormat, ReasoningPlacement, ReasoningSplitter, StartOverride};
pub use schema::ToolSchemas;
pub use tools::xml_params::escape_json_string;
pub use tools::{ToolExtractor, ToolFormat};

/// A parser configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No reasoning parser has this name.
    #[error("unknown reasoning parser {name:?}; known: {known}")]
    UnknownReasoningParser {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// No tool parser has this name.
    #[error("unknown tool parser {name:?}; known: {known}")]
    UnknownToolParser {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
}

/// The reasoning format called `name` (vLLM's names).
pub fn reasoning_format(name: &str) -> Result<&'static ReasoningFormat, ConfigError> {
    reasoning::FORMATS
        .iter()
        .copied()
        .find(|f| f.name == name)
        .or_else(|| format_file::reasoning(name))
        .ok_or_else(|| ConfigError::UnknownReasoningParser {
            name: name.to_owned(),
            known: reasoning_names().join(", "),
        })
}

/// The tool-call format called `name` (vLLM's names).
pub fn tool_format(name: &str) -> Result<&'static ToolFormat, ConfigError> {
    tools::FORMATS
        .iter()
        .copied()
        .find(|f| f.name == name)
        .or_else(|| format_file::tools(name))
        .ok_or_else(|| ConfigError::UnknownToolParser {
            name: name.to_owned(),
            known: tool_names().join(", "),
        })
}

/// Names of every reasoning format.
pub fn reasoning_names() -> Vec<&'static str> {
    reasoning::FORMATS.iter().map(|f| f.name).collect()
}

/// Names of every tool-call format.
pub fn tool_names() -> Vec<&'static str> {
    tools::FORMATS.iter().map(|f| f.name).collect()
}
