//! braid's bus: the messages every stage exchanges, and one interface to send them —
//! in-process by default, NATS to spread stages over processes and machines.
//!
//! The key design decision: **a request is pinned to one replica of every stateful stage
//! when it is admitted.** The executor, detokenizer, splitter and extractor keep
//! per-request state (a sequence, a UTF-8 tail, parser state), so a request's messages
//! must all reach the same replica, in order. A NATS queue group would scatter them, so
//! the ingress picks the replicas from the heartbeats it hears ([`Beat`]), writes them
//! into the request's [`Route`], and each stage sends to the next replica's own subject.
//! The same heartbeats tell the ingress when a replica on a route has died, so it can end
//! that request with a clear error at once. Only the stateless tokenizer takes work from
//! a queue group.
//!
//! The crate is light (serde, bytes, tokio channels, async-nats, and the parsers' pure
//! format tables) so that programs outside braid can subscribe to `braid.out.<request>`
//! or submit requests with it ([`Client`]).

pub mod client;
mod codec;
mod collect;
pub mod conversation;
mod error;
mod id;
mod inproc;
pub mod members;
pub mod message;
pub mod state;
pub mod subject;
mod transport;

use std::time::Duration;

pub use client::{Client, Pipeline, Response};
pub use codec::{count_bad_message, decode, encode};
pub use collect::{Collected, CollectedCall};
pub use conversation::{ChatMessage, Constrain, Constraint, Conversation, Pick, Role, ToolCall, ToolSpec};
pub use error::{Error, Result};
pub use id::{InstanceId, RequestId, Stage};
pub use members::{listen, Heart, Members};
pub use message::*;
pub use state::SharedMap;
pub use transport::{redact, Bus, Message, NatsOptions, Subscription};

/// How often every replica says it is alive.
pub const BEAT_INTERVAL: Duration = Duration::from_millis(200);

/// How often, at most, an executor reports what its prefix cache gained and lost.
pub const CACHE_NEWS_EVERY: Duration = Duration::from_millis(50);

/// How often an executor reports its whole prefix cache.
pub const CACHE_NEWS_FULL_EVERY: Duration = Duration::from_secs(2);

/// A replica unheard for this long is taken for dead.
pub const BEAT_TIMEOUT: Duration = Duration::from_millis(1000);
