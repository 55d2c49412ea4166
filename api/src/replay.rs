//! Server-side reasoning replay: the reasoning braid produced before a tool call, kept
//! for when the client sends that assistant turn back without it (many clients drop
//! `reasoning_content`), so the template still sees it. Bounded (oldest out first) and
//! with a time to live.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use braid_bus::{ChatMessage, Role};
use serde_json::Value;

/// Reasoning by the tool calls it led to.
#[derive(Debug)]
pub struct ReasoningCache {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, (String, Instant)>,
    order: VecDeque<String>,
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
    /// A cache of at most `capacity` turns, each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> ReasoningCache {
        ReasoningCache {
            capacity,
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Remembers the reasoning behind the calls the model made ([`calls_made`]).
    pub fn remember(&self, calls: &[CallKey], reasoning: &str) {
        if calls.is_empty() || reasoning.is_empty() || self.capacity == 0 {
            return;
        }
        let k = key(calls);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner
            .map
            .insert(k.clone(), (reasoning.to_owned(), Instant::now()))
            .is_none()
        {
            inner.order.push_back(k);
        }
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }

    /// The reasoning behind these calls, if still kept.
    fn recall(&self, calls: &[CallKey]) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .map
            .get(&key(calls))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(r, _)| r.clone())
    }

    /// Puts remembered reasoning back on assistant turns that have tool calls but no
    /// reasoning; returns how many turns got it.
    pub fn reinject(&self, messages: &mut [ChatMessage]) -> usize {
        let mut n = 0;
        for m in messages.iter_mut() {
            if m.role != Role::Assistant || m.reasoning.as_deref().is_some_and(|r| !r.is_empty()) {
                continue;
            }
            let calls = calls_of(m);
            if calls.is_empty() {
                continue;
            }
            if let Some(r) = self.recall(&calls) {
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

    fn turn(id: &str, args: &str) -> ChatMessage {
        let m = crate::conversation::messages(&json!([{"role": "assistant", "content": "", "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]}]));
        m.unwrap_or_default().remove(0)
    }

    #[test]
    fn reasoning_comes_back_for_the_same_calls_only_and_expires() {
        let cache = ReasoningCache::new(2, Duration::from_secs(60));
        let made = [(
            "call_1".to_owned(),
            "get_weather".to_owned(),
            "{\"city\": \"Paris\"}".to_owned(),
        )];
        cache.remember(&calls_made(&made), "I need Paris's weather.");
        // Re-serialised arguments still match.
        let mut messages = vec![
            ChatMessage::text(Role::User, "hi"),
            turn("call_1", "{\"city\":\"Paris\"}"),
        ];
        assert_eq!(cache.reinject(&mut messages), 1);
        assert_eq!(messages[1].reasoning.as_deref(), Some("I need Paris's weather."));
        // A turn that kept its reasoning is left alone; other calls get nothing.
        assert_eq!(cache.reinject(&mut messages), 0);
        let mut other = vec![turn("call_2", "{}")];
        assert_eq!(cache.reinject(&mut other), 0);
        // Bounded: the oldest goes first.
        let one = |id: &str| vec![(id.to_owned(), "f".to_owned(), "{}".to_owned())];
        cache.remember(&one("a"), "r1");
        cache.remember(&one("b"), "r2");
        assert!(cache.recall(&calls_made(&made)).is_none());
        let expired = ReasoningCache::new(4, Duration::ZERO);
        expired.remember(&one("a"), "r");
        assert!(expired.recall(&one("a")).is_none());
    }
}
