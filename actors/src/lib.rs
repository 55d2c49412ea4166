//! braid's pipeline: one ractor actor per stage — tokenizer, executor, detokenizer,
//! reasoning splitter, tool extractor — exchanging bus messages. (The ingress is the bus
//! crate's [`braid_bus::Client`]: it needs nothing but the bus.)
//!
//! The key design decision: **a stage's behaviour is synchronous [`stage`] logic; the
//! actor around it only decodes, calls, and publishes.** Every stage runs as the same
//! actor type under the same supervisor, with the same bounded delivery, so a stage is
//! a small module that turns one message into the next, testable without a runtime, and
//! scaling, restarts and backpressure are solved once. Stateful stages share one
//! bookkeeper (`StatefulLogic`) that opens per-request state from the first message,
//! numbers outputs, and ends a request it cannot serve with an error at its client.

pub mod constraints;
mod detokenizer;
pub mod executor;
mod extractor;
pub mod node;
pub mod router;
mod splitter;
pub mod stage;
pub mod supervisor;
pub mod tokenizer;

#[cfg(test)]
mod tests;

pub use constraints::{Grammars, GuideHandoff, Refusal};
pub use executor::engine::EngineExecutor;
pub use executor::replay::{Pace, ReplayExecutor};
pub use executor::upstream::{PromptAs, UpstreamExecutor, UpstreamSpec};
pub use executor::{ExecOutput, ExecStats, Executing, Executor};
pub use node::{ExecutorFactory, Node, NodeConfig};
pub use router::{Outcome, Router, Routing};

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
    /// A request this stage cannot serve as asked (the client's to fix).
    #[error("{0}")]
    Refused(String),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] braid_engine::Error),
    /// Running a request failed (an upstream engine, a step): not the client's doing.
    #[error("{0}")]
    Failed(String),
}

impl StageError {
    /// How a request that met this error fails at its client.
    pub fn failure_kind(&self) -> braid_bus::FailureKind {
        match self {
            StageError::Refused(_) | StageError::Engine(braid_engine::Error::Input(_)) => {
                braid_bus::FailureKind::BadRequest
            }
            _ => braid_bus::FailureKind::Internal,
        }
    }
}
