//! Stored responses (`store: true`, the Responses API's default): the response object
//! for `GET /v1/responses/{id}`, and the conversation it ended (its input turns and its
//! own output as an assistant turn, reasoning included) for a later request's
//! `previous_response_id`. Kept in a [`SharedMap`]: a JetStream bucket every ingress
//! reads on NATS, or a bounded in-process map; either has a time to live.

use braid_bus::{ChatMessage, SharedMap};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What is kept of one response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The response object, as it was returned.
    pub(crate) response: Value,
    /// The conversation through this response's output (without `instructions`, which a
    /// next request does not inherit).
    pub(crate) conversation: Vec<ChatMessage>,
}

/// Responses by id.
#[derive(Debug)]
pub struct ResponseStore {
    map: SharedMap,
}

impl ResponseStore {
    /// A store kept in `map`.
    pub fn new(map: SharedMap) -> ResponseStore {
        ResponseStore { map }
    }

    /// Keeps `stored` under its response's id.
    pub(crate) async fn put(&self, id: &str, stored: &Stored) {
        self.map.put(id, stored).await;
    }

    /// The response `id`, if kept (a value braid did not store there reads as absent,
    /// and is counted by the map).
    pub(crate) async fn get(&self, id: &str) -> Option<Stored> {
        self.map.get(id).await
    }

    /// Forgets the response `id`; whether it was kept.
    pub(crate) async fn delete(&self, id: &str) -> bool {
        self.map.delete(id).await
    }
}
