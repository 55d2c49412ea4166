//! Conversation state every ingress shares (replayable reasoning today): one small
//! key-value interface over two stores. With NATS it is a JetStream key-value bucket (file
//! storage, so a nats-server restart keeps it; a count bound that drops the oldest; a time
//! to live), so a conversation's rounds may land on any ingress; in-process it is a
//! bounded map. Keys are hashed (SHA-256, hex) so any text can key an entry and every
//! process derives the same key.
//!
//! A bucket is shared with whatever else can write to the NATS account, so nothing read
//! from it is trusted as such: every value is stored as an [`Entry`] (MessagePack: braid's
//! schema version, the bucket's name, the value), and anything else found there (another
//! program's bytes, another version's entry, another bucket's value) reads as absent and
//! is counted in `braid_state_bad_values_total{bucket}`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::message::SCHEMA_VERSION;
use crate::Bus;

/// A bounded key-value map with a time to live, local or shared.
pub struct SharedMap {
    bucket: String,
    store: Store,
}

/// How a value is stored: tagged with the schema version and the bucket it belongs to.
#[derive(Serialize, Deserialize)]
struct Entry<B, V> {
    version: u16,
    bucket: B,
    value: V,
}

enum Store {
    Memory(Mutex<Memory>),
    JetStream(Box<kv::Store>),
}

/// The in-process store: at most `capacity` entries, oldest out first.
struct Memory {
    capacity: usize,
    ttl: Duration,
    map: HashMap<String, (Bytes, Instant)>,
    order: VecDeque<String>,
}

impl std::fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.store {
            Store::Memory(_) => "memory",
            Store::JetStream(_) => "jetstream",
        };
        f.debug_struct("SharedMap")
            .field("bucket", &self.bucket)
            .field("store", &kind)
            .finish()
    }
}

/// The key under which `text` is stored.
fn hashed(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl SharedMap {
    /// An in-process map named `bucket` of at most `capacity` entries, each kept for
    /// `ttl`.
    pub fn memory(bucket: &str, capacity: usize, ttl: Duration) -> SharedMap {
        SharedMap {
            bucket: bucket.to_owned(),
            store: Store::Memory(Mutex::new(Memory {
                capacity,
                ttl,
                map: HashMap::new(),
                order: VecDeque::new(),
            })),
        }
    }

    /// The JetStream bucket `bucket` on `bus`'s NATS server (created, or its limits
    /// updated): at most `capacity` entries, the oldest dropped first, each kept for
    /// `ttl`. A server without JetStream is an error that names the fix.
    pub async fn jetstream(bus: &Bus, bucket: &str, capacity: usize, ttl: Duration) -> Result<SharedMap> {
        let Some(client) = bus.nats_client() else {
            return Ok(SharedMap::memory(bucket, capacity, ttl));
        };
        let js = jetstream::new(client.clone());
        let refused = |reason: String| Error::Connect {
            url: format!("JetStream bucket {bucket}"),
            reason,
        };
        js.query_account().await.map_err(|e| {
            refused(format!(
                "the NATS server has no JetStream ({e}); start nats-server with -js (or run one ingress with --state memory)"
            ))
        })?;
        // A key-value bucket's stream, as async-nats lays it out, with a count bound that
        // discards the oldest (a bucket's own limits can only refuse new entries).
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            description: Some("braid conversation state".into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_messages: i64::try_from(capacity.max(1)).unwrap_or(i64::MAX),
            max_age: ttl,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            ..Default::default()
        };
        js.create_or_update_stream(config)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let store = js
            .get_key_value(bucket)
            .await
            .map_err(|e| refused(e.to_string()))?;
        Ok(SharedMap {
            bucket: bucket.to_owned(),
            store: Store::JetStream(Box::new(store)),
        })
    }

    /// The value stored under `key`, if any, not expired, and braid's own for this
    /// bucket (anything else is counted and reads as absent). A store that cannot be read
    /// now is logged and reads as empty.
    pub async fn get<V: DeserializeOwned>(&self, key: &str) -> Option<V> {
        let bytes = self.get_bytes(key).await?;
        let why = match rmp_serde::from_slice::<Entry<String, V>>(&bytes) {
            Ok(e) if e.version != SCHEMA_VERSION => format!("schema version {}", e.version),
            Ok(e) if e.bucket != self.bucket => format!("an entry of bucket {:?}", e.bucket),
            Ok(e) => return Some(e.value),
            Err(e) => format!("not braid's ({e})"),
        };
        metrics::counter!("braid_state_bad_values_total", "bucket" => self.bucket.clone()).increment(1);
        tracing::warn!("a value in bucket {} is refused: {why}", self.bucket);
        None
    }

    /// Stores `value` under `key`. A store that cannot be written now is logged.
    pub async fn put<V: Serialize>(&self, key: &str, value: &V) {
        let entry = Entry {
            version: SCHEMA_VERSION,
            bucket: self.bucket.as_str(),
            value,
        };
        match rmp_serde::to_vec(&entry) {
            Ok(bytes) => self.put_bytes(key, Bytes::from(bytes)).await,
            Err(e) => tracing::warn!("a value for bucket {} not stored: {e}", self.bucket),
        }
    }

    async fn get_bytes(&self, key: &str) -> Option<Bytes> {
        let key = hashed(key);
        match &self.store {
            Store::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.map
                    .get(&key)
                    .filter(|(_, at)| at.elapsed() < m.ttl)
                    .map(|(v, _)| v.clone())
            }
            Store::JetStream(kv) => match kv.get(key).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("shared state not read: {e}");
                    None
                }
            },
        }
    }

    async fn put_bytes(&self, key: &str, value: Bytes) {
        let key = hashed(key);
        match &self.store {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                if m.capacity == 0 {
                    return;
                }
                if m.map.insert(key.clone(), (value, Instant::now())).is_none() {
                    m.order.push_back(key);
                }
                while m.order.len() > m.capacity {
                    if let Some(old) = m.order.pop_front() {
                        m.map.remove(&old);
                    }
                }
            }
            Store::JetStream(kv) => {
                if let Err(e) = kv.put(key, value).await {
                    tracing::warn!("shared state not written: {e}");
                }
            }
        }
    }
}

impl SharedMap {
    /// Removes `key`; whether it was there.
    pub async fn delete(&self, key: &str) -> bool {
        let hashed_key = hashed(key);
        match &self.store {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let ttl = m.ttl;
                m.order.retain(|k| k != &hashed_key);
                m.map
                    .remove(&hashed_key)
                    .is_some_and(|(_, at)| at.elapsed() < ttl)
            }
            Store::JetStream(kv) => {
                if self.get_bytes(key).await.is_none() {
                    return false;
                }
                match kv.delete(hashed_key).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!("shared state not deleted: {e}");
                        false
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(capacity: usize, ttl: Duration) -> SharedMap {
        SharedMap::memory("braid_test", capacity, ttl)
    }

    #[tokio::test]
    async fn the_memory_store_is_bounded_and_expires() {
        let m = map(2, Duration::from_secs(60));
        m.put("a", &"1").await;
        m.put("b", &"2").await;
        m.put("c", &"3").await;
        assert_eq!(m.get::<String>("a").await, None, "the oldest went first");
        assert_eq!(m.get::<String>("c").await.as_deref(), Some("3"));
        let expired = map(2, Duration::ZERO);
        expired.put("a", &"1").await;
        assert_eq!(expired.get::<String>("a").await, None);
        assert_eq!(hashed("a").len(), 64);
    }

    #[tokio::test]
    async fn a_deleted_key_is_gone_and_deleting_it_again_says_so() {
        let m = map(4, Duration::from_secs(60));
        m.put("a", &1u32).await;
        assert!(m.delete("a").await);
        assert_eq!(m.get::<u32>("a").await, None);
        assert!(!m.delete("a").await);
        m.put("b", &2u32).await;
        m.put("c", &3u32).await;
        assert_eq!(m.get::<u32>("b").await, Some(2));
    }

    #[tokio::test]
    async fn values_not_stored_by_braid_for_this_bucket_read_as_absent() {
        let m = map(8, Duration::from_secs(60));
        m.put_bytes("raw", Bytes::from_static(b"forged reasoning")).await;
        assert_eq!(m.get::<String>("raw").await, None, "another program's bytes");
        let other = SharedMap::memory("braid_other", 8, Duration::from_secs(60));
        let entry = |bucket: &str, version: u16| {
            let e = Entry {
                version,
                bucket,
                value: "text",
            };
            Bytes::from(rmp_serde::to_vec(&e).unwrap_or_default())
        };
        m.put_bytes("other", entry("braid_other", SCHEMA_VERSION)).await;
        assert_eq!(m.get::<String>("other").await, None, "another bucket's entry");
        m.put_bytes("old", entry("braid_test", SCHEMA_VERSION - 1)).await;
        assert_eq!(m.get::<String>("old").await, None, "another version's entry");
        m.put("typed", &7u32).await;
        assert_eq!(m.get::<String>("typed").await, None, "a value of another type");
        other.put("own", &"text").await;
        assert_eq!(other.get::<String>("own").await.as_deref(), Some("text"));
    }
}
