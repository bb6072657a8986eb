//! What a user agent alone says (its catalog entry, whether it declares
//! itself a bot), cached by user-agent string.
//!
//! Most traffic repeats a few thousand user agents, and classifying one
//! costs two automaton passes; a hit costs one hash and one short lock.
//! Bounded: 16 shards of at most `cap / 16` entries each, least recently
//! used evicted. A user agent rotating on every request only misses.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// The classification of one user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UaClass {
    /// Index of the catalog entry and whether the match is weak.
    pub catalog: Option<(usize, bool)>,
    /// Why it declares itself a bot (only looked at when the catalog does
    /// not name it fully).
    pub declared: Option<&'static str>,
}

const SHARDS: usize = 16;

/// The cache.
pub struct UaCache {
    shards: Vec<Mutex<LruCache<u64, (usize, UaClass)>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for UaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaCache").field("len", &self.len()).finish()
    }
}

impl UaCache {
    /// A cache of at most `cap` user agents.
    pub fn new(cap: usize) -> UaCache {
        let per = NonZeroUsize::new((cap / SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        UaCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per)))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The class of `ua`, computed by `classify` on a miss.
    pub fn get_or(&self, ua: &str, classify: impl FnOnce() -> UaClass) -> UaClass {
        let h = self.hasher.hash_one(ua);
        let Some(shard) = self.shards.get((h as usize) % SHARDS) else {
            return classify();
        };
        if let Ok(mut m) = shard.lock()
            && let Some((len, c)) = m.get(&h)
            && *len == ua.len()
        {
            return *c;
        }
        let c = classify();
        if let Ok(mut m) = shard.lock() {
            m.put(h, (ua.len(), c));
        }
        c
    }

    /// User agents held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_stays_bounded() {
        let c = UaCache::new(160);
        let mut calls = 0;
        let class = UaClass {
            catalog: None,
            declared: Some("x"),
        };
        for _ in 0..3 {
            assert_eq!(
                c.get_or("A/1", || {
                    calls += 1;
                    class
                }),
                class
            );
        }
        assert_eq!(calls, 1);
        for i in 0..10_000 {
            c.get_or(&format!("ua-{i}"), || class);
        }
        assert!(c.len() <= 160, "{}", c.len());
    }
}
