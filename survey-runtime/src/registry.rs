//! The loaded-model registry: which instances are loaded, since when, and how
//! they were launched. The source of the three gauges and of uptimes.
//!
//! Writers (instrumented calls) publish a new snapshot with a compare-and-swap;
//! the gauge callback on the exporter thread reads the current snapshot. No
//! lock is shared between the two, so an export can never hold up a launch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::model::{InstanceKey, ModelFacts};
use crate::schema::LaunchKind;

/// One loaded instance.
#[derive(Debug)]
pub(crate) struct LoadedModel {
    pub facts: Arc<ModelFacts>,
    pub kind: LaunchKind,
    pub loaded_at: Instant,
}

type Snapshot = HashMap<InstanceKey, Arc<LoadedModel>>;

/// The set of loaded instances.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    loaded: ArcSwap<Snapshot>,
}

impl Registry {
    /// Records `facts` as loaded at `now`; replaces an entry with the same key.
    pub(crate) fn insert(&self, facts: Arc<ModelFacts>, kind: LaunchKind, now: Instant) {
        let entry = Arc::new(LoadedModel {
            facts,
            kind,
            loaded_at: now,
        });
        let key = entry.facts.instance();
        self.loaded.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.insert(key, entry.clone());
            next
        });
    }

    /// Removes `key`, returning the entry if it was loaded.
    pub(crate) fn remove(&self, key: InstanceKey) -> Option<Arc<LoadedModel>> {
        let mut removed = None;
        self.loaded.rcu(|current| {
            let mut next = Snapshot::clone(current);
            removed = next.remove(&key);
            next
        });
        removed
    }

    /// Whether `key` is loaded.
    pub(crate) fn contains(&self, key: InstanceKey) -> bool {
        self.loaded.load().contains_key(&key)
    }

    /// The entry of `key`, if it is loaded.
    pub(crate) fn get(&self, key: InstanceKey) -> Option<Arc<LoadedModel>> {
        self.loaded.load().get(&key).cloned()
    }

    /// The loaded set as of now.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.loaded.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_remove_round_trip() {
        let registry = Registry::default();
        let facts = Arc::new(ModelFacts::new(7u64, "m"));
        registry.insert(facts.clone(), LaunchKind::Startup, Instant::now());
        registry.insert(
            Arc::new(ModelFacts::new(8u64, "n")),
            LaunchKind::MultiModel,
            Instant::now(),
        );
        assert_eq!(registry.snapshot().len(), 2);
        let removed = registry.remove(InstanceKey::from_u64(7)).unwrap();
        assert_eq!(removed.facts, facts);
        assert_eq!(removed.kind, LaunchKind::Startup);
        assert!(registry.remove(InstanceKey::from_u64(7)).is_none());
        assert_eq!(registry.snapshot().len(), 1);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let registry = Arc::new(Registry::default());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        registry.insert(
                            Arc::new(ModelFacts::new(t * 1000 + i, "m")),
                            LaunchKind::RuntimeLoad,
                            Instant::now(),
                        );
                    }
                    for i in 0..50u64 {
                        assert!(
                            registry
                                .remove(InstanceKey::from_u64(t * 1000 + i))
                                .is_some()
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(registry.snapshot().len(), 200);
    }
}
