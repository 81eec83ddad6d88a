//! A map split into shards, each an atomically swapped immutable `HashMap`: readers never lock
//! and never wait; a writer copies only one shard.

use std::collections::HashMap as StdHashMap;
use std::hash::Hash;
use std::sync::Arc;

use arc_swap::ArcSwap;

const SHARDS: usize = 64;

/// Keys that say which shard they live in (their bytes are already well mixed).
pub(crate) trait ShardKey: Eq + Hash + Clone {
    fn shard(&self) -> usize;
}

impl ShardKey for [u8; 16] {
    fn shard(&self) -> usize {
        usize::from(self[0]) % SHARDS
    }
}

impl ShardKey for portcullis_model::UserId {
    fn shard(&self) -> usize {
        // The tail of a UUIDv7 is random.
        usize::from(self.0.as_bytes()[15]) % SHARDS
    }
}

impl ShardKey for portcullis_model::SessionId {
    fn shard(&self) -> usize {
        usize::from(self.0.as_bytes()[15]) % SHARDS
    }
}

/// Keys here are digests and server-made ids, not chosen by callers: a fast hasher is enough
/// (SipHash was a measurable share of a gateway request's instructions).
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// One shard: an immutable map, replaced whole on change.
type Shard<K, V> = ArcSwap<HashMap<K, Arc<V>>>;

pub(crate) struct Sharded<K, V> {
    shards: Box<[Shard<K, V>]>,
}

impl<K: ShardKey, V> Sharded<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| ArcSwap::from_pointee(HashMap::default()))
                .collect(),
        }
    }

    /// Looks a key up without locking.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        self.shards[key.shard()].load().get(key).cloned()
    }

    /// Replaces one shard with a changed copy. Callers serialise writers.
    pub(crate) fn change(&self, shard_of: &K, edit: impl FnOnce(&mut HashMap<K, Arc<V>>)) {
        let slot = &self.shards[shard_of.shard()];
        let mut copy = HashMap::clone(&slot.load());
        edit(&mut copy);
        slot.store(Arc::new(copy));
    }

    /// Builds the whole map at once (at start).
    pub(crate) fn fill(&self, entries: impl IntoIterator<Item = (K, Arc<V>)>) {
        let mut parts: Vec<HashMap<K, Arc<V>>> = (0..SHARDS).map(|_| HashMap::default()).collect();
        for (k, v) in entries {
            parts[k.shard()].insert(k, v);
        }
        for (slot, part) in self.shards.iter().zip(parts) {
            slot.store(Arc::new(part));
        }
    }

    /// Removes every entry `keep` refuses, one shard at a time. Callers serialise writers.
    pub(crate) fn retain(&self, keep: impl Fn(&V) -> bool) {
        for slot in self.shards.iter() {
            let current = slot.load();
            if current.values().all(|v| keep(v)) {
                continue;
            }
            let copy: HashMap<K, Arc<V>> = current
                .iter()
                .filter(|(_, v)| keep(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            slot.store(Arc::new(copy));
        }
    }

    /// Number of entries (for metrics and tests).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.load().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_touch_one_shard_and_are_seen_at_once() {
        let map: Sharded<[u8; 16], u32> = Sharded::new();
        map.fill([([1; 16], Arc::new(1)), ([2; 16], Arc::new(2))]);
        assert_eq!(map.get(&[1; 16]).as_deref(), Some(&1));
        map.change(&[1; 16], |m| {
            m.remove(&[1; 16]);
        });
        assert_eq!(map.get(&[1; 16]), None);
        assert_eq!(map.get(&[2; 16]).as_deref(), Some(&2));
        assert_eq!(map.len(), 1);
    }
}
