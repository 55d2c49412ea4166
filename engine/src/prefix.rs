//! The prefix cache's keys, and what it reports to routers. A full block of a sequence is
//! known by its chain hash: the hash of the previous block's hash and the block's tokens,
//! so one value stands for every token up to the block's end. The engine keys its cache
//! by these; a router computes the same values for a prompt ([`chain_hashes`]) to ask
//! which replica holds its longest prefix, from the [`CacheChanges`] the replicas report.
//!
//! The hash is std's `DefaultHasher` (SipHash with fixed keys): the same in every process
//! of one build. Replicas of different builds may disagree; that costs routing hits,
//! never correctness, since each engine only looks up the hashes it computed itself.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Chain hash of one full block: it stands for every token up to the block's end.
pub(crate) fn block_hash(prev: u64, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    prev.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// The chain hashes of `tokens`' full blocks of `block_size` tokens, in order: the keys
/// under which an engine caches this prefix.
pub fn chain_hashes(tokens: &[u32], block_size: usize) -> impl Iterator<Item = u64> + '_ {
    tokens.chunks_exact(block_size.max(1)).scan(0u64, |prev, block| {
        *prev = block_hash(*prev, block);
        Some(*prev)
    })
}

/// What the prefix cache gained and lost since it was last asked, for routers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheChanges {
    /// Set when `stored` is everything the cache holds now (start over from it).
    pub full: bool,
    /// Chain hashes of blocks now cached.
    pub stored: Vec<u64>,
    /// Chain hashes of blocks no longer cached.
    pub removed: Vec<u64>,
}

impl CacheChanges {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        !self.full && self.stored.is_empty() && self.removed.is_empty()
    }
}

/// The log of changes kept between reports: bounded, because nobody may ask for a while;
/// past [`ChangeLog::LIMIT`] entries it is dropped and the next report is a full one.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    on: bool,
    overflowed: bool,
    changes: CacheChanges,
}

impl ChangeLog {
    /// Entries kept between two reports at most.
    const LIMIT: usize = 1 << 16;

    pub(crate) fn enable(&mut self) {
        self.on = true;
        self.overflowed = true;
    }

    pub(crate) fn stored(&mut self, hash: u64) {
        if self.on && !self.overflowed {
            self.changes.stored.push(hash);
            self.bound();
        }
    }

    pub(crate) fn removed(&mut self, hash: u64) {
        if self.on && !self.overflowed {
            self.changes.removed.push(hash);
            self.bound();
        }
    }

    fn bound(&mut self) {
        if self.changes.stored.len() + self.changes.removed.len() > Self::LIMIT {
            self.overflowed = true;
            self.changes = CacheChanges::default();
        }
    }

    /// The changes since the last call; a full report (from `all`) when one is asked
    /// for or the log overflowed.
    pub(crate) fn take(&mut self, full: bool, all: impl Iterator<Item = u64>) -> CacheChanges {
        if full || self.overflowed {
            self.overflowed = false;
            self.changes = CacheChanges::default();
            return CacheChanges {
                full: true,
                stored: all.collect(),
                removed: Vec::new(),
            };
        }
        std::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_shares_the_hashes_of_its_blocks_and_a_partial_block_has_none() {
        let a: Vec<u32> = (0..40).collect();
        let mut b = a.clone();
        b[20] = 999;
        let ha: Vec<u64> = chain_hashes(&a, 16).collect();
        let hb: Vec<u64> = chain_hashes(&b, 16).collect();
        assert_eq!(ha.len(), 2, "40 tokens hold two full blocks of 16");
        assert_eq!(ha[0], hb[0]);
        assert_ne!(ha[1], hb[1], "a change in block 2 changes its hash");
        // The same block after a different first block hashes differently.
        let mut c = a;
        c[0] = 7;
        assert_ne!(chain_hashes(&c, 16).nth(1), Some(ha[1]));
    }

    #[test]
    fn the_log_reports_changes_once_and_a_full_report_after_overflow() {
        let mut log = ChangeLog::default();
        log.stored(1);
        assert!(
            log.take(false, std::iter::empty()).is_empty(),
            "off until enabled"
        );
        log.enable();
        let first = log.take(false, [5, 6].into_iter());
        assert!(
            first.full && first.stored == vec![5, 6],
            "the first report is full"
        );
        log.stored(7);
        log.removed(5);
        let next = log.take(false, std::iter::empty());
        assert_eq!((next.full, next.stored, next.removed), (false, vec![7], vec![5]));
        for h in 0..=ChangeLog::LIMIT as u64 {
            log.stored(h);
        }
        assert!(log.take(false, [9].into_iter()).full);
    }
}
