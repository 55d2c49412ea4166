//! The engine's one error type.

use std::path::PathBuf;

/// What went wrong loading or running a model. Each variant names the file, field or
/// value concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model folder must have is missing.
    #[error("{path}: file not found")]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A chat template that does not compile (or no template where one is needed).
    #[error("chat template {source_name}: {problem}")]
    Template {
        /// Where the template came from.
        source_name: String,
        /// What is wrong.
        problem: String,
    },
    /// A structured-output grammar that does not compile, or a matcher that cannot go on.
    #[error("{0}")]
    Grammar(String),
    /// A conversation the template cannot render (it raised, or a message is unusable).
    #[error("cannot render the conversation: {0}")]
    Render(String),
    /// A config field is missing or has an unusable value.
    #[error("{path}: field `{field}`: {problem}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The model's architecture is not one braid runs.
    #[error("{path}: architecture {architecture:?} is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        /// The config file.
        path: PathBuf,
        /// The architecture named there.
        architecture: String,
        /// The supported ones.
        supported: &'static str,
    },
    /// A weights file is unreadable or a tensor is missing or mis-shaped.
    #[error("{path}: {source}")]
    Weights {
        /// The weights file (or folder, for sharded weights).
        path: PathBuf,
        /// candle's description, which names the tensor and shapes.
        #[source]
        source: candle_core::Error,
    },
    /// The KV cache cannot hold what was asked of it.
    #[error("KV cache: {0}")]
    Cache(String),
    /// A request the engine cannot run (an empty prompt, a position past the model's limit).
    #[error("invalid input: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
