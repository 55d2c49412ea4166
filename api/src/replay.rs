//! Server-side reasoning replay: the reasoning braid produced before a tool call, kept
//! for when the client sends that assistant turn back without it (many clients drop
//! `reasoning_content`), so the template still sees it. Bounded (oldest out first) and
//! with a time to live.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The key of an assistant turn's tool calls: every call's id, name and arguments (ids
/// alone are not unique for formats whose ids the model writes, such as Kimi-K2's
/// `functions.get_weather:0`). Arguments are compared as JSON values, so a client that
/// re-serialises them still matches.
pub fn key(calls: &[(String, String, String)]) -> String {
    let mut k = String::new();
    for (id, name, args) in calls {
        let args = serde_json::from_str::<Value>(args).map_or_else(|_| args.clone(), |v| v.to_string());
        k.push_str(id);
        k.push('\u{1}');
        k.push_str(name);
        k.push('\u{1}');
        k.push_str(&args);
        k.push('\u{2}');
    }
    k
}

/// The (id, name, arguments) triples of an OpenAI assistant message's `tool_calls`.
pub fn calls_of(message: &Value) -> Vec<(String, String, String)> {
    let Some(calls) = message.get("tool_calls").and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .map(|c| {
            let s = |v: Option<&Value>| match v {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (
                s(c.get("id")),
                s(c.pointer("/function/name")),
                s(c.pointer("/function/arguments")),
            )
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

    /// Remembers the reasoning behind these calls.
    pub fn remember(&self, calls: &[(String, String, String)], reasoning: &str) {
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
    pub fn recall(&self, calls: &[(String, String, String)]) -> Option<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .map
            .get(&key(calls))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(r, _)| r.clone())
    }

    /// Puts remembered reasoning back on assistant turns that have tool calls but no
    /// reasoning; returns how many turns got it.
    pub fn reinject(&self, messages: &mut Value) -> usize {
        let Some(list) = messages.as_array_mut() else {
            return 0;
        };
        let mut n = 0;
        for m in list.iter_mut() {
            if m.get("role").and_then(Value::as_str) != Some("assistant") {
                continue;
            }
            let has = |k: &str| {
                m.get(k)
                    .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            };
            if has("reasoning_content") || has("reasoning") {
                continue;
            }
            let calls = calls_of(m);
            if calls.is_empty() {
                continue;
            }
            if let (Some(r), Some(obj)) = (self.recall(&calls), m.as_object_mut()) {
                obj.insert("reasoning_content".into(), Value::String(r));
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

    #[test]
    fn reasoning_comes_back_for_the_same_calls_only_and_expires() {
        let cache = ReasoningCache::new(2, Duration::from_secs(60));
        let turn = json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]});
        cache.remember(&calls_of(&turn), "I need Paris's weather.");
        let mut messages = json!([{"role": "user", "content": "hi"}, turn]);
        // Re-serialised arguments still match.
        messages[1]["tool_calls"][0]["function"]["arguments"] = json!("{\"city\":\"Paris\"}");
        assert_eq!(cache.reinject(&mut messages), 1);
        assert_eq!(messages[1]["reasoning_content"], "I need Paris's weather.");
        // A turn that kept its reasoning is left alone; other calls get nothing.
        let mut other = json!([{"role": "assistant", "tool_calls": [
            {"id": "call_2", "function": {"name": "get_weather", "arguments": "{}"}}]}]);
        assert_eq!(cache.reinject(&mut other), 0);
        // Bounded: the oldest goes first.
        cache.remember(&[("a".into(), "f".into(), "{}".into())], "r1");
        cache.remember(&[("b".into(), "f".into(), "{}".into())], "r2");
        assert!(cache.recall(&calls_of(&turn)).is_none());
        let expired = ReasoningCache::new(4, Duration::ZERO);
        expired.remember(&[("a".into(), "f".into(), "{}".into())], "r");
        assert!(expired.recall(&[("a".into(), "f".into(), "{}".into())]).is_none());
    }
}
