//! Server-side reasoning replay: the reasoning braid produced before a tool call, kept
//! for when the client sends that assistant turn back without it (many clients drop
//! `reasoning_content`), so the template still sees it. Kept in a [`SharedMap`]: a
//! JetStream bucket shared by every ingress on NATS (a conversation's rounds may land on
//! any of them), or a bounded in-process map; either has a time to live.

use braid_bus::{ChatMessage, Role, SharedMap};
use serde_json::Value;

/// Reasoning by the tool calls it led to.
#[derive(Debug)]
pub struct ReasoningCache {
    map: SharedMap,
}

/// One call as the cache keys it: id, name, and arguments as canonical JSON text.
type CallKey = (String, String, String);

/// The key of an assistant turn's tool calls: every call's id, name and arguments (ids
/// alone are not unique for formats whose ids the model writes, such as Kimi-K2's
/// `functions.get_weather:0`). Arguments are compared as JSON values, so a client that
/// re-serialises them still matches.
fn key(calls: &[CallKey]) -> String {
    let mut k = String::new();
    for (id, name, args) in calls {
        k.push_str(id);
        k.push('\u{1}');
        k.push_str(name);
        k.push('\u{1}');
        k.push_str(args);
        k.push('\u{2}');
    }
    k
}

/// The calls of a turn the client sent back (arguments were decoded at the edge).
fn calls_of(message: &ChatMessage) -> Vec<CallKey> {
    message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| {
            let args = c
                .parsed
                .as_ref()
                .map_or_else(|| c.arguments.clone(), Value::to_string);
            (c.id.clone(), c.name.clone(), args)
        })
        .collect()
}

/// The calls the model made, as (id, name, arguments text) from its output.
pub fn calls_made(calls: &[(String, String, String)]) -> Vec<CallKey> {
    calls
        .iter()
        .map(|(id, name, args)| {
            let args = serde_json::from_str::<Value>(args).map_or_else(|_| args.clone(), |v| v.to_string());
            (id.clone(), name.clone(), args)
        })
        .collect()
}

impl ReasoningCache {
    /// A cache kept in `map`.
    pub fn new(map: SharedMap) -> ReasoningCache {
        ReasoningCache { map }
    }

    /// Remembers the reasoning behind the calls the model made ([`calls_made`]).
    pub async fn remember(&self, calls: &[CallKey], reasoning: &str) {
        if calls.is_empty() || reasoning.is_empty() {
            return;
        }
        self.map.put(&key(calls), &reasoning).await;
    }

    /// The reasoning behind these calls, if still kept (a value braid did not store
    /// there is refused and counted by the map).
    async fn recall(&self, calls: &[CallKey]) -> Option<String> {
        self.map.get(&key(calls)).await
    }

    /// Puts remembered reasoning back on assistant turns that have tool calls but no
    /// reasoning; returns how many turns got it.
    pub async fn reinject(&self, messages: &mut [ChatMessage]) -> usize {
        let mut n = 0;
        for m in messages.iter_mut() {
            if m.role != Role::Assistant || m.reasoning.as_deref().is_some_and(|r| !r.is_empty()) {
                continue;
            }
            let calls = calls_of(m);
            if calls.is_empty() {
                continue;
            }
            if let Some(r) = self.recall(&calls).await {
                m.reasoning = Some(r);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn turn(id: &str, args: &str) -> ChatMessage {
        let m = crate::conversation::messages(&json!([{"role": "assistant", "content": "", "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]}]));
        m.unwrap_or_default().remove(0)
    }

    #[tokio::test]
    async fn reasoning_comes_back_for_the_same_calls_only_and_expires() {
        let cache = ReasoningCache::new(SharedMap::memory("braid_reasoning", 2, Duration::from_secs(60)));
        let made = [(
            "call_1".to_owned(),
            "get_weather".to_owned(),
            "{\"city\": \"Paris\"}".to_owned(),
        )];
        cache
            .remember(&calls_made(&made), "I need Paris's weather.")
            .await;
        // Re-serialised arguments still match.
        let mut messages = vec![
            ChatMessage::text(Role::User, "hi"),
            turn("call_1", "{\"city\":\"Paris\"}"),
        ];
        assert_eq!(cache.reinject(&mut messages).await, 1);
        assert_eq!(messages[1].reasoning.as_deref(), Some("I need Paris's weather."));
        // A turn that kept its reasoning is left alone; other calls get nothing.
        assert_eq!(cache.reinject(&mut messages).await, 0);
        let mut other = vec![turn("call_2", "{}")];
        assert_eq!(cache.reinject(&mut other).await, 0);
        // Bounded: the oldest goes first.
        let one = |id: &str| vec![(id.to_owned(), "f".to_owned(), "{}".to_owned())];
        cache.remember(&one("a"), "r1").await;
        cache.remember(&one("b"), "r2").await;
        assert!(cache.recall(&calls_made(&made)).await.is_none());
        let expired = ReasoningCache::new(SharedMap::memory("braid_reasoning", 4, Duration::ZERO));
        expired.remember(&one("a"), "r").await;
        assert!(expired.recall(&one("a")).await.is_none());
    }
}
