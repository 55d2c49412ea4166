//! braid's pipeline: one ractor actor per stage — ingress, tokenizer, executor,
//! detokenizer, reasoning splitter, tool extractor — exchanging bus messages.
//!
//! The key design decision: **a stage's behaviour is synchronous [`stage`] logic; the
//! actor around it only decodes, calls, and publishes.** Every stage runs as the same
//! actor type under the same supervisor, with the same bounded delivery, so a stage is
//! a small module that turns one message into the next, testable without a runtime, and
//! scaling, restarts and backpressure are solved once. Stateful stages share one
//! bookkeeper (`StatefulLogic`) that opens per-request state from the first message,
//! numbers outputs, and ends a request it cannot serve with an error at its client.

mod detokenizer;
pub mod executor;
mod extractor;
pub mod ingress;
pub mod membership;
pub mod node;
mod splitter;
pub mod stage;
pub mod supervisor;
mod tokenizer;

#[cfg(test)]
mod tests;

pub use executor::engine::EngineExecutor;
pub use executor::replay::{Pace, ReplayExecutor};
pub use executor::upstream::{PromptAs, UpstreamExecutor, UpstreamSpec};
pub use executor::{ExecOutput, ExecStats, Executor};
pub use ingress::{Ingress, Response};
pub use membership::Members;
pub use node::{ExecutorFactory, Node, NodeConfig};

use thiserror::Error;

/// Why a stage could not start or go on.
#[derive(Debug, Error)]
pub enum StageError {
    /// The stage is misconfigured (a missing model, a bad recordings file…).
    #[error("{0}")]
    Config(String),
    /// An actor or thread could not start.
    #[error("cannot start {0}")]
    Start(String),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] braid_bus::Error),
}
