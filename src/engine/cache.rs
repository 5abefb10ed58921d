//! The per-model embedding cache (opt-in, `LoadOptions::embedding_cache_bytes`).
//!
//! Key: the preprocessed tensor itself (its data, shape, token grid and family extras; within one model
//! nothing else changes a forward pass's output, and every preprocessing option is already
//! in the tensor). Lookups go through a 64-bit hash of that key, and a hit is confirmed by
//! comparing the stored tensor bit for bit with the new one: there are no false hits, at the
//! price of keeping each entry's preprocessed pixels (counted in the byte budget). Both the
//! hash and the comparison are linear in the pixels, far cheaper than a forward pass.
//!
//! Eviction: least recently used first, whenever the bytes held (pixels + embeddings of
//! every entry) would exceed the budget; an entry larger than the whole budget is not kept.
//!
//! Embeddings handed out stay valid after eviction: the cache holds each entry's output
//! tensors (candle tensors: immutable, reference-counted storage). A hit hands out new
//! references to the same storage, which the caller's embeddings keep alive (on a GPU), or
//! which are copied into the caller's host rows (on the CPU, as for every forward pass);
//! evicting only drops the cache's own reference.
//!
//! Thread-safe: one mutex around the map, held for lookups and inserts only (never during a
//! forward pass); two threads missing on the same image both compute it and the second
//! insert is dropped.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use candle_core::Tensor;

use crate::error::Result;
use crate::preprocess::Pixels;

/// Counters of an embedding cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Images answered from the cache.
    pub hits: u64,
    /// Images looked up and not found (then computed).
    pub misses: u64,
    /// Bytes held now: every entry's preprocessed pixels and embeddings.
    pub bytes: u64,
    /// Images held now.
    pub entries: u64,
}

struct Entry {
    pixels: Pixels,
    levels: Vec<Tensor>,
    bytes: u64,
    tick: u64,
}

#[derive(Default)]
struct State {
    map: HashMap<u64, Vec<Entry>>,
    /// Last use of each entry -> its hash (the oldest first).
    lru: BTreeMap<u64, u64>,
    next_tick: u64,
    stats: CacheStats,
}

/// An LRU cache of embeddings keyed by the preprocessed tensor, within a byte budget.
pub struct EmbeddingCache {
    budget: u64,
    state: Mutex<State>,
}

/// The lookup hash of a preprocessed image.
pub fn key(p: &Pixels) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_usize(p.shape.len());
    for &d in &p.shape {
        h.write_usize(d);
    }
    for &g in &p.grid {
        h.write_usize(g);
    }
    h.write_usize(p.extra.len());
    for &e in &p.extra {
        h.write_usize(e);
    }
    for pair in p.data.chunks(2) {
        let lo = u64::from(pair[0].to_bits());
        let hi = pair.get(1).map_or(0, |x| u64::from(x.to_bits()));
        h.write_u64(lo | (hi << 32));
    }
    h.finish()
}

/// Whether two preprocessed images are the same bit for bit.
fn same(a: &Pixels, b: &Pixels) -> bool {
    a.shape == b.shape
        && a.grid == b.grid
        && a.extra == b.extra
        && a.data.len() == b.data.len()
        && a.data
            .iter()
            .zip(&b.data)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

impl EmbeddingCache {
    /// A cache holding at most `budget` bytes (> 0).
    pub fn new(budget: u64) -> EmbeddingCache {
        EmbeddingCache {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached levels of `p` (hash `hash`), counting a hit or a miss.
    pub fn get(&self, hash: u64, p: &Pixels) -> Option<Vec<Tensor>> {
        let mut st = self.lock();
        let tick = st.next_tick;
        let found = st
            .map
            .get_mut(&hash)
            .and_then(|list| list.iter_mut().find(|e| same(&e.pixels, p)))
            .map(|e| {
                let old = std::mem::replace(&mut e.tick, tick);
                (old, e.levels.clone())
            });
        match found {
            Some((old, levels)) => {
                st.next_tick += 1;
                st.lru.remove(&old);
                st.lru.insert(tick, hash);
                st.stats.hits += 1;
                Some(levels)
            }
            None => {
                st.stats.misses += 1;
                None
            }
        }
    }

    /// Keeps `levels` (the output of `p`), evicting the least recently used entries to stay
    /// within the budget. The tensors are copied into storage of their own, so that an
    /// entry never keeps a whole batch's output alive.
    pub fn insert(&self, hash: u64, p: &Pixels, levels: &[Tensor]) -> Result<()> {
        let bytes = (p.data.len() * 4) as u64 + levels.iter().map(tensor_bytes).sum::<u64>();
        if bytes > self.budget {
            return Ok(());
        }
        if self
            .lock()
            .map
            .get(&hash)
            .is_some_and(|list| list.iter().any(|e| same(&e.pixels, p)))
        {
            return Ok(());
        }
        let levels = levels
            .iter()
            .map(|t| t.copy())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut st = self.lock();
        if st
            .map
            .get(&hash)
            .is_some_and(|list| list.iter().any(|e| same(&e.pixels, p)))
        {
            return Ok(());
        }
        while st.stats.bytes + bytes > self.budget {
            let Some((old_tick, old_hash)) = st.lru.pop_first() else {
                break;
            };
            let mut freed = 0;
            if let Some(list) = st.map.get_mut(&old_hash) {
                if let Some(i) = list.iter().position(|e| e.tick == old_tick) {
                    freed = list.swap_remove(i).bytes;
                }
                if list.is_empty() {
                    st.map.remove(&old_hash);
                }
            }
            st.stats.bytes -= freed;
            st.stats.entries -= 1;
        }
        let tick = st.next_tick;
        st.next_tick += 1;
        st.lru.insert(tick, hash);
        st.map.entry(hash).or_default().push(Entry {
            pixels: p.clone(),
            levels,
            bytes,
            tick,
        });
        st.stats.bytes += bytes;
        st.stats.entries += 1;
        Ok(())
    }

    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn px(v: f32) -> Pixels {
        Pixels {
            data: vec![v; 6],
            shape: vec![1, 2, 3],
            grid: [1, 1, 2],
            extra: Vec::new(),
        }
    }

    fn out(v: f32) -> Vec<Tensor> {
        vec![Tensor::full(v, (2, 4), &Device::Cpu).unwrap()]
    }

    fn value(levels: &[Tensor]) -> f32 {
        levels[0].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn hits_misses_lru_eviction_and_collisions() {
        // Each entry: 6 pixels + 8 outputs = 56 bytes; room for two.
        let cache = EmbeddingCache::new(120);
        let (a, b, c) = (px(1.0), px(2.0), px(3.0));
        assert!(cache.get(key(&a), &a).is_none());
        cache.insert(key(&a), &a, &out(10.0)).unwrap();
        cache.insert(key(&b), &b, &out(20.0)).unwrap();
        assert_eq!(value(&cache.get(key(&a), &a).unwrap()), 10.0); // a is now the newest
        let held = cache.get(key(&b), &b).unwrap();
        cache.get(key(&a), &a).unwrap(); // b is the oldest again
        cache.insert(key(&c), &c, &out(30.0)).unwrap(); // evicts b
        assert!(cache.get(key(&b), &b).is_none());
        assert_eq!(value(&held), 20.0, "handed-out embeddings outlive eviction");
        assert_eq!(value(&cache.get(key(&c), &c).unwrap()), 30.0);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.bytes), (4, 2, 2, 112));
        // A forced hash collision is not a hit: the pixels are compared.
        assert!(cache.get(key(&a), &b).is_none());
        // -0.0 and 0.0 differ bit for bit; an entry over the budget is not kept.
        let (z, nz) = (px(0.0), px(-0.0));
        cache.insert(key(&z), &z, &out(1.0)).unwrap();
        assert!(cache.get(key(&nz), &nz).is_none());
        // Same tensor, other family extras (e.g. another original size): another image.
        let z2 = Pixels {
            extra: vec![7, 9],
            ..px(0.0)
        };
        assert_ne!(key(&z), key(&z2));
        assert!(cache.get(key(&z), &z2).is_none());
        assert!(cache.get(key(&z), &z).is_some());
        let big = Pixels {
            data: vec![0.0; 64],
            ..px(0.0)
        };
        cache.insert(key(&big), &big, &out(1.0)).unwrap();
        assert!(cache.get(key(&big), &big).is_none());
        assert!(cache.stats().bytes <= 120);
    }
}
