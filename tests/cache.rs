//! The embedding cache (LoadOptions::embedding_cache_bytes): hits give the computed
//! embeddings bit for bit without a forward pass, mixed calls, LRU eviction within the
//! budget, embeddings valid after eviction, many threads.

mod common;

use std::sync::Arc;

use common::*;
use vtower::{CacheStats, LoadOptions, Model};

const NAME: &str = "siglip_f32";

fn load(budget: u64) -> Arc<Model> {
    let opts = LoadOptions {
        n_threads: 2,
        embedding_cache_bytes: budget,
        ..LoadOptions::default()
    };
    Arc::new(Model::load(fixtures().join(NAME), &opts).unwrap())
}

/// Bytes one siglip_f32 entry holds: a [3, 48, 48] f32 tensor and 36 x 64 f32 embeddings.
const ENTRY: u64 = (3 * 48 * 48 + 36 * 64) * 4;

#[test]
fn hits_equal_the_computed_embeddings_and_count() {
    let plain = load(0);
    let model = load(1 << 20);
    let (files, reference) = serial_references(&plain, NAME);
    assert_eq!(plain.cache_stats(), CacheStats::default());
    let imgs: Vec<_> = files.iter().map(|b| model.preprocess(b).unwrap()).collect();
    let first = model.forward(&[&imgs[0], &imgs[1]]).unwrap();
    let s = model.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries, s.bytes), (0, 2, 2, 2 * ENTRY));
    // Image 0 again, with a new one: one hit, one miss, results as without a cache.
    let again = model.forward(&[&imgs[2], &imgs[0]]).unwrap();
    let s = model.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 3, 3));
    assert!(again.data(1).unwrap() == first.data(0).unwrap());
    assert!(again.data(1).unwrap() == reference[0].as_slice());
    assert!(again.data(0).unwrap() == reference[2].as_slice());
    // The same pixels from another decode of the same file hit too.
    let copy = model.preprocess(&files[1]).unwrap();
    assert!(model.forward(&[&copy]).unwrap().data(0).unwrap() == reference[1].as_slice());
    assert_eq!(model.cache_stats().hits, 2);
}

#[test]
fn lru_eviction_keeps_the_budget_and_handed_out_embeddings() {
    // Room for two entries.
    let model = load(2 * ENTRY + ENTRY / 2);
    let (files, reference) = serial_references(&model, NAME);
    let imgs: Vec<_> = files.iter().map(|b| model.preprocess(b).unwrap()).collect();
    let a = model.forward(&[&imgs[0]]).unwrap();
    model.forward(&[&imgs[1]]).unwrap();
    let hit = model.forward(&[&imgs[0]]).unwrap(); // 0 is now the most recent
    model.forward(&[&imgs[2]]).unwrap(); // evicts 1
    let s = model.cache_stats();
    assert_eq!((s.entries, s.bytes), (2, 2 * ENTRY));
    let before = s.misses;
    model.forward(&[&imgs[0]]).unwrap(); // still held
    assert_eq!(model.cache_stats().misses, before);
    model.forward(&[&imgs[1]]).unwrap(); // was evicted
    assert_eq!(model.cache_stats().misses, before + 1);
    // Evict everything the early results came from: they are unchanged.
    for img in &imgs[3..] {
        model.forward(&[img]).unwrap();
    }
    assert!(model.cache_stats().bytes <= 2 * ENTRY + ENTRY / 2);
    assert!(a.data(0).unwrap() == reference[0].as_slice());
    assert!(hit.data(0).unwrap() == reference[0].as_slice());
}

#[test]
fn threads_share_the_cache_bit_exactly() {
    // Room for every reference image: after the serial pass, every lookup hits.
    let model = load(1 << 23);
    let (files, reference) = serial_references(&model, NAME);
    let (files, reference) = (Arc::new(files), Arc::new(reference));
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let (model, files, reference) = (model.clone(), files.clone(), reference.clone());
            std::thread::spawn(move || {
                for round in 0..6 {
                    let i = (t + round) % files.len();
                    let img = model.preprocess(&files[i]).unwrap();
                    let out = model.forward(&[&img]).unwrap();
                    assert!(out.data(0).unwrap() == reference[i].as_slice());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = model.cache_stats();
    assert_eq!(s.hits + s.misses, (reference.len() + 36) as u64);
    assert_eq!(s.hits, 36, "{s:?}");
}
