//! A replica's prefix cache over the blocks of a trace's `hash_ids`.
//!
//! Mooncake traces name each 512-token block of a prompt by an id that
//! stands for the block and everything before it (two requests share an id
//! only where their prompts share the prefix up to it). A request whose
//! leading ids are cached prefills only the rest. The cache holds at most
//! the replica's KV capacity in blocks and evicts the least recently used
//! block; a stated simplification: it does not shrink while running
//! requests fill the KV cache (engines evict cached blocks first), so the
//! hit rate is an upper bound under memory pressure, and a request's blocks
//! count as cached from its arrival (a request arriving during the prefill
//! of a shared prefix reuses it).

use std::collections::{BTreeMap, HashMap};

/// Tokens per block of a Mooncake trace's `hash_ids`.
pub const BLOCK_TOKENS: u64 = 512;

/// Least-recently-used block ids, bounded.
#[derive(Debug, Default)]
pub(crate) struct PrefixCache {
    capacity: usize,
    tick: u64,
    /// Block id → when it was last used.
    used: HashMap<u64, u64>,
    /// When → block id, oldest first.
    order: BTreeMap<u64, u64>,
}

impl PrefixCache {
    /// A cache of at most `capacity` blocks.
    pub(crate) fn new(capacity: usize) -> PrefixCache {
        PrefixCache {
            capacity,
            ..PrefixCache::default()
        }
    }

    /// How many of `ids`' leading blocks are cached; then every block of
    /// `ids` is cached (the least recently used ones evicted beyond the capacity).
    pub(crate) fn lookup(&mut self, ids: &[u64]) -> usize {
        let hits = ids
            .iter()
            .take_while(|id| self.used.contains_key(id))
            .count();
        for id in ids {
            self.tick += 1;
            if let Some(old) = self.used.insert(*id, self.tick) {
                self.order.remove(&old);
            }
            self.order.insert(self.tick, *id);
        }
        while self.used.len() > self.capacity {
            let Some((_, id)) = self.order.pop_first() else {
                break;
            };
            self.used.remove(&id);
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_blocks_hit_and_the_oldest_go_first() {
        let mut c = PrefixCache::new(3);
        assert_eq!(c.lookup(&[1, 2]), 0);
        // 1, 2 cached; 3 is not, so the run of hits stops at 2 blocks.
        assert_eq!(c.lookup(&[1, 2, 3]), 2);
        // A shared block after a miss is no prefix hit.
        assert_eq!(c.lookup(&[9, 2]), 0);
        // Capacity 3: 9, 2 and 3 were used last; 1 was evicted.
        assert_eq!(c.lookup(&[1]), 0);
        assert_eq!(c.used.len(), 3);
    }
}
