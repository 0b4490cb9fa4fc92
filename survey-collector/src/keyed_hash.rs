//! Hashing for the collector's in-memory maps and caches, whose keys come
//! from senders (attribute sets, resources, stream identities): keyed with
//! a seed drawn at random once per process (foldhash's `RandomState`), so
//! that no sender can choose keys that collide and turn a map's lookups
//! into scans. Callers compare keys in full on a match, so a collision
//! costs time, never a wrong result. Nothing hashed here is stored.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::fast::{FoldHasher, RandomState};

/// A `HashMap` keyed with a random seed of its own.
pub type KeyedMap<K, V> = HashMap<K, V, RandomState>;

/// The process's seed, for hashes computed ahead of a map (see
/// [`hash_bytes`]).
fn process_state() -> &'static RandomState {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::default)
}

/// A hasher with the process's seed: the same input hashes the same within
/// one process, and differently in another.
pub fn hasher() -> FoldHasher {
    process_state().build_hasher()
}

/// The hash of `bytes`, with the process's seed.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    process_state().hash_one(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_strings_hash_differently_and_the_same_alike() {
        let a = hash_bytes(b"mesh_llm.model=Qwen3-8B");
        assert_ne!(a, hash_bytes(b"mesh_llm.model=Qwen3-8C"));
        assert_ne!(hash_bytes(b"ab"), hash_bytes(b"ab\0"));
        assert_eq!(a, hash_bytes(b"mesh_llm.model=Qwen3-8B"));
    }

    #[test]
    fn the_seed_is_random() {
        // Two fresh states (each with its own random seed) disagree on the
        // same input: the seed is not a constant an attacker can know.
        let input = b"service.instance.id=0f0e0d0c-0b0a-4908-8706-050403020100";
        let hashes: std::collections::BTreeSet<u64> = (0..4)
            .map(|_| RandomState::default().hash_one(input))
            .collect();
        assert!(hashes.len() > 1, "{hashes:?}");
    }
}
