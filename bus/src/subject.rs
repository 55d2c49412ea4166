//! Subject names: the whole addressing scheme of the bus in one place.
//!
//! | subject | who publishes | who listens |
//! |---|---|---|
//! | `braid.tokenizer.in` | ingress (request/reply) | every tokenizer, queue group `tokenizer` |
//! | `braid.tokenizer.call` | ingress (request/reply: `/tokenize`, `/detokenize`) | every tokenizer, queue group `tokenizer` |
//! | `braid.<stage>.<instance>` | the stage before | that one replica (requests are pinned) |
//! | `braid.out.<request>` | the extractor | the request's ingress, and anyone else allowed |
//! | `braid.cancel` | ingress | every stateful replica |
//! | `braid.executor.<instance>.stop` | a detokenizer (stop string) | that executor |
//! | `braid.beat` | every replica, every [`crate::BEAT_INTERVAL`] | every process |
//! | `braid.cache` | every engine executor: its prefix cache ([`crate::CacheNews`]) | every tokenizer (the router) |

use crate::id::{InstanceId, RequestId, Stage};

/// Where tokenizers take new requests (a queue group: replicas share them).
pub const TOKENIZER_IN: &str = "braid.tokenizer.in";
/// Where tokenizers answer calls that start no generation (`/tokenize`, `/detokenize`).
pub const TOKENIZER_CALL: &str = "braid.tokenizer.call";
/// The queue group of the tokenizers.
pub const TOKENIZER_GROUP: &str = "tokenizer";
/// Cancellations, to every stateful replica.
pub const CANCEL: &str = "braid.cancel";
/// Heartbeats of every replica.
pub const BEAT: &str = "braid.beat";
/// Executors' prefix-cache news, for the routers.
pub const CACHE: &str = "braid.cache";
/// Wildcard over every request's output (NATS only), for outside subscribers.
pub const OUT_ALL: &str = "braid.out.*";

/// The input of one pinned replica.
pub fn instance(stage: Stage, instance: InstanceId) -> String {
    format!("braid.{stage}.{instance}")
}

/// One request's output stream.
pub fn out(id: RequestId) -> String {
    format!("braid.out.{id}")
}

/// Where a detokenizer tells one executor that a request hit a stop string (only the
/// executor stops; the stages after it still finish the request).
pub fn stop(executor: InstanceId) -> String {
    format!("braid.executor.{executor}.stop")
}
