//! Names on the bus: request ids, stage instances and stages.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// One request, unique across every ingress of a deployment (random 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// One running stage replica (random 64 bits, new on every start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub u64);

/// A fresh random 64-bit value: the process's random hasher state over a counter and the
/// clock, so ids differ across processes and restarts.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl RequestId {
    /// A new random id.
    pub fn random() -> RequestId {
        RequestId(random_u64())
    }
}

impl InstanceId {
    /// A new random id.
    pub fn random() -> InstanceId {
        InstanceId(random_u64())
    }
}

/// Ids print as 16 lowercase hex digits, the form used in subjects.
impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for RequestId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(RequestId)
    }
}

/// The pipeline's stages, in the order data flows through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Takes requests from the API, admits them, and watches them to the end.
    Ingress,
    /// Renders the prompt and turns it into token ids (stateless).
    Tokenizer,
    /// Runs the model: continuous batching over many requests.
    Executor,
    /// Turns token ids into UTF-8 text and applies stop strings.
    Detokenizer,
    /// Splits text into reasoning and answer.
    Splitter,
    /// Extracts tool calls from the answer.
    Extractor,
}

impl Stage {
    /// Every stage, in flow order.
    pub const ALL: [Stage; 6] = [
        Stage::Ingress,
        Stage::Tokenizer,
        Stage::Executor,
        Stage::Detokenizer,
        Stage::Splitter,
        Stage::Extractor,
    ];

    /// The stages a request is pinned to (one replica each, chosen at admission), in
    /// flow order. The tokenizer is stateless and shared through a queue group instead.
    pub const PINNED: [Stage; 4] = [
        Stage::Executor,
        Stage::Detokenizer,
        Stage::Splitter,
        Stage::Extractor,
    ];

    /// The name used in subjects, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingress => "ingress",
            Stage::Tokenizer => "tokenizer",
            Stage::Executor => "executor",
            Stage::Detokenizer => "detokenizer",
            Stage::Splitter => "splitter",
            Stage::Extractor => "extractor",
        }
    }

    /// The stage a name (as [`Stage::as_str`]) names.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Where this stage sends its output, among the pinned stages (`None` for the last).
    pub fn next_pinned(self) -> Option<Stage> {
        match self {
            Stage::Ingress | Stage::Tokenizer => Some(Stage::Executor),
            Stage::Executor => Some(Stage::Detokenizer),
            Stage::Detokenizer => Some(Stage::Splitter),
            Stage::Splitter => Some(Stage::Extractor),
            Stage::Extractor => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_round_trip_through_hex() {
        let a = RequestId::random();
        let b = RequestId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 16);
        assert_eq!(a.to_string().parse::<RequestId>(), Ok(a));
        for stage in Stage::ALL {
            assert_eq!(Stage::from_name(stage.as_str()), Some(stage));
        }
    }
}
