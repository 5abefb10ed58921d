//! Times the engine machinery on a model folder: the embedding cache (a hit against a
//! forward pass of the same image) and cancellation latency (from vt_job_cancel's engine
//! call to the job's end, against the time of one encoder layer).
//!
//!     cargo run --release --example engine_bench -- <model_dir> <image> [threads] [layers]
//!
//! scripts/bench_engine.py builds a real-size random-weight SigLIP tower and runs this.

use std::time::{Duration, Instant};

use vtower::{LoadOptions, Model, Status};

/// A distinct synthetic image for each `k` (so that it is never a cache hit).
fn variant(model: &Model, k: usize) -> vtower::Image {
    let (w, h) = (320u32, 240u32);
    let px: Vec<u8> = (0..(w * h * 3) as usize)
        .map(|i| ((i * 31 + k * 977 + (i / 3) % 7 * k) % 251) as u8)
        .collect();
    model.preprocess_rgb8(&px, w, h, (w * 3) as usize).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = &args[1];
    let bytes = std::fs::read(&args[2]).expect("image");
    let threads: usize = args.get(3).map_or(0, |s| s.parse().unwrap());
    let layers: f64 = args.get(4).map_or(1.0, |s| s.parse().unwrap());
    let opts = LoadOptions {
        n_threads: threads,
        embedding_cache_bytes: 1 << 30,
        ..LoadOptions::default()
    };
    let model = std::sync::Arc::new(Model::load(dir, &opts).expect("load"));
    let img = model.preprocess(&bytes).unwrap();
    println!(
        "model: {} tokens/image, {} threads",
        img.n_tokens(),
        model.n_threads()
    );

    // Cache: the first forward is a miss (the full pass), the following ones hit.
    let t0 = Instant::now();
    let first = model.forward(&[&img]).unwrap();
    let miss = t0.elapsed().as_secs_f64();
    let mut misses = vec![miss];
    // More misses: other images (full passes of the same size).
    for k in 0..3 {
        let other = variant(&model, k);
        let t = Instant::now();
        model.forward(&[&other]).unwrap();
        misses.push(t.elapsed().as_secs_f64());
    }
    let mut hits = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let out = model.forward(&[&img]).unwrap();
        hits.push(t.elapsed().as_secs_f64());
        assert!(out.data(0).unwrap() == first.data(0).unwrap());
    }
    let t = Instant::now();
    for _ in 0..20 {
        model.preprocess(&bytes).unwrap();
    }
    let pre = t.elapsed().as_secs_f64() / 20.0;
    let (fwd, hit) = (median(misses), median(hits));
    let s = model.cache_stats();
    println!(
        "cache: forward (miss) {:.2} ms, hit {:.4} ms = {:.3}% of the forward pass \
         (preprocessing, same for both: {:.2} ms); {} hits, {} misses, {} bytes held",
        fwd * 1e3,
        hit * 1e3,
        100.0 * hit / fwd,
        pre * 1e3,
        s.hits,
        s.misses,
        s.bytes
    );

    // Cancellation: jobs of `b` distinct images (never cached: one batch of `b`) cancelled
    // at a spread of points into their run; latency = cancel() to the job's end, against
    // one encoder layer of that batch (its forward time / layers).
    for (b, base) in [(1usize, 100usize), (4, 1000)] {
        let mut times = Vec::new();
        for r in 0..3 {
            let imgs: Vec<_> = (0..b)
                .map(|j| variant(&model, 5000 + base + r * b + j))
                .collect();
            let refs: Vec<_> = imgs.iter().collect();
            let t = Instant::now();
            model.forward(&refs).unwrap();
            times.push(t.elapsed().as_secs_f64());
        }
        let batch_fwd = median(times);
        let mut lat = Vec::new();
        for k in 0..10 {
            let imgs: Vec<_> = (0..b).map(|j| variant(&model, base + k * b + j)).collect();
            let job = model.submit(imgs, None).unwrap();
            while !job.has_started() {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_secs_f64(
                batch_fwd * (0.05 + 0.09 * k as f64),
            ));
            let t = Instant::now();
            job.cancel();
            match job.wait() {
                Err(e) if e.status() == Status::Cancelled => lat.push(t.elapsed().as_secs_f64()),
                Err(e) => panic!("{e}"),
                Ok(_) => {}
            }
        }
        let n = lat.len();
        let worst = lat.iter().copied().fold(0.0, f64::max);
        println!(
            "cancel, jobs of {b} image(s): {n}/10 cancelled while running, latency median {:.2} ms, \
             max {:.2} ms; one encoder layer of the batch ~{:.2} ms (forward {:.1} ms / {layers} layers)",
            median(lat) * 1e3,
            worst * 1e3,
            batch_fwd / layers * 1e3,
            batch_fwd * 1e3
        );
    }
}
