//! CPU micro-benchmarks behind the "what made the difference" figures of BENCHMARKS.md:
//! candle's matmul with the weight as a transposed view (`x · W.t()`, what vtower did before)
//! against the contiguous `Wᵀ` vtower now keeps, and attention as one batched computation over
//! all heads against vtower's per-head tasks (`segment_attention`), query chunks of 32 MB
//! against 4 MB of scores per task, and a whole attention layer. Both sides of each row run
//! in the same process on the same data; the ratio is the point.
//!
//!     cargo bench --bench cpu_ops            # all cores
//!     RAYON_NUM_THREADS=2 cargo bench --bench cpu_ops
//!     cargo bench --bench cpu_ops -- bf16 [<level>] | peak | attention | windows

use std::time::Instant;

use candle_core::{Device, Tensor};
use vtower::__bench::kernels::{gemm_at, supported_levels, PackedB};
use vtower::__bench::layers::{
    segment_attention, segment_attention_unfused, segment_attention_with, Attention, Linear,
};

fn median_ms(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[iters / 2]
}

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
}

/// The CPU bf16 kernels at every level this CPU supports against candle's f32 matmul on the
/// same shapes (the so400m and base towers' linear layers and attention products, the
/// matmul probe's square, Qwen2-VL's MLP). `only`: the one level to run (a level's name on
/// the command line, e.g. `-- bf16 amx`).
fn bf16_gemm(only: Option<&str>) {
    println!("\nbf16 GEMM x[m,k] · W[n,k]ᵀ: GFLOP/s (f32 candle, then each bf16 level)");
    for (m, k, n) in [
        (729, 1152, 3456),
        (729, 1152, 4304),
        (729, 4304, 1152),
        (196, 768, 3072),
        (729, 72, 729),
        (729, 729, 72),
        (2048, 2048, 2048),
        (1024, 1280, 3420),
        (1024, 3420, 1280),
        (1024, 1280, 5120),
        (1024, 1024, 3072),
        (1024, 1024, 1024),
        (1024, 1024, 8192),
        (1024, 4096, 1024),
    ] {
        let x = randn(&[m, k]);
        let w = randn(&[n, k]);
        let wt = w.t().unwrap().contiguous().unwrap();
        let flop = 2.0 * (m * k * n) as f64;
        let f32_ms = median_ms(7, || drop(x.matmul(&wt).unwrap()));
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ws = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let packed = PackedB::from_nk_f32(&ws, n, k).unwrap();
        let mut c = vec![0f32; m * n];
        let mut line = format!("{m:5} x {k:5} x {n:5}  f32 {:7.1}", flop / f32_ms / 1e6);
        for level in supported_levels() {
            if only.is_some_and(|o| o != level.name()) {
                continue;
            }
            let ms = median_ms(7, || gemm_at(level, &xs, m, &packed, &mut c).unwrap());
            line += &format!("  {} {:7.1}", level.name(), flop / ms / 1e6);
        }
        println!("{line}");
    }
}

/// The matmul probe of `scripts/bench_peak.py`: GFLOP/s of a large square product (the
/// machine's practical peak) in f32 (candle's gemm, what vtower's f32 layers run) and through
/// vtower's bf16 kernels at the level this process runs at. One line per dtype, `peak <dtype>
/// <GFLOP/s>`, for the script to read.
fn peak() {
    let n = 2048;
    let x = randn(&[n, n]);
    let w = randn(&[n, n]);
    let flop = 2.0 * (n * n * n) as f64;
    let f32_ms = median_ms(5, || drop(x.matmul(&w).unwrap()));
    println!("peak f32 {:.1}", flop / f32_ms / 1e6);
    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ws = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let packed = PackedB::from_kn_f32(&ws, n, n).unwrap();
    let mut c = vec![0f32; n * n];
    let level = vtower::__bench::kernels::isa();
    let bf16_ms = median_ms(5, || gemm_at(level, &xs, n, &packed, &mut c).unwrap());
    println!("peak bf16 {:.1} ({})", flop / bf16_ms / 1e6, level.name());
}

/// Attention over one long segment, 16 heads (the shapes of the so400m, Pixtral, Gemma3-896
/// and Qwen2-VL-1344 towers): vtower's attention in f32 and bf16 (ms). Compare with
/// PyTorch's SDPA on the same shapes (`scripts/bench_attention.py`).
fn attention_core() {
    println!("\nattention core, 16 heads (tokens, head_dim)   unfused f32 ms   f32 ms   bf16 ms");
    for (n, hd) in [(729, 72), (4096, 64), (4096, 72), (9216, 80)] {
        let (q, k, v) = (
            randn(&[16, n, hd]),
            randn(&[16, n, hd]),
            randn(&[16, n, hd]),
        );
        let scale = (hd as f64).powf(-0.5);
        let iters = if n > 5000 { 3 } else { 5 };
        let unfused_ms = median_ms(iters, || {
            drop(segment_attention_unfused(&q, &k, &v, &[(0, n)], scale, 4 << 20).unwrap())
        });
        let f32_ms = median_ms(iters, || {
            drop(segment_attention(&q, &k, &v, &[(0, n)], scale).unwrap())
        });
        let bf16_ms = median_ms(iters, || {
            drop(segment_attention_with(&q, &k, &v, &[(0, n)], scale, true).unwrap())
        });
        println!(
            "({n:5}, {hd:3})                              {unfused_ms:14.1} {f32_ms:8.1} {bf16_ms:8.1}"
        );
    }
}

/// Windowed attention as Qwen2.5-VL's 1344-px tower runs it: 9216 tokens in 144 windows of
/// 64, 16 heads of 80 (many short segments: per-task overheads dominate).
fn attention_windows() {
    let (n, hd, w) = (9216, 80, 64);
    let (q, k, v) = (
        randn(&[16, n, hd]),
        randn(&[16, n, hd]),
        randn(&[16, n, hd]),
    );
    let segments: Vec<(usize, usize)> = (0..n / w).map(|i| (i * w, w)).collect();
    let scale = (hd as f64).powf(-0.5);
    let f32_ms = median_ms(5, || {
        drop(segment_attention(&q, &k, &v, &segments, scale).unwrap())
    });
    let bf16_ms = median_ms(5, || {
        drop(segment_attention_with(&q, &k, &v, &segments, scale, true).unwrap())
    });
    println!(
        "windows ({n} tokens, {} of {w}, {hd}): f32 {f32_ms:.1} ms, bf16 {bf16_ms:.1} ms",
        n / w
    );
}

fn main() {
    println!("threads: {}", rayon::current_num_threads());
    if std::env::args().any(|a| a == "bf16") {
        let args: Vec<String> = std::env::args().collect();
        let only = supported_levels()
            .into_iter()
            .map(|l| l.name())
            .find(|name| args.iter().any(|a| a == name));
        bf16_gemm(only);
        return;
    }
    if std::env::args().any(|a| a == "peak") {
        peak();
        return;
    }
    if std::env::args().any(|a| a == "windows") {
        attention_windows();
        return;
    }
    if std::env::args().any(|a| a == "attention") {
        attention_core();
        attention_windows();
        return;
    }
    println!("\nmatmul x[m,k] · W[n,k]ᵀ        view ms  contiguous ms  view/contiguous");
    for (m, k, n) in [
        (196, 768, 3072),
        (196, 3072, 768),
        (729, 1152, 4304),
        (729, 4304, 1152),
    ] {
        let x = randn(&[m, k]);
        let w = randn(&[n, k]);
        let wt = w.t().unwrap().contiguous().unwrap();
        let view = median_ms(15, || drop(x.matmul(&w.t().unwrap()).unwrap()));
        let contiguous = median_ms(15, || drop(x.matmul(&wt).unwrap()));
        println!(
            "{m:5} x {k:5} x {n:5}           {view:8.2} {contiguous:14.2} {:16.2}",
            view / contiguous
        );
    }
    println!(
        "\nattention core (tokens, heads, head_dim)  batched ms  per-head ms  batched/per-head"
    );
    for (n, heads, hd) in [(196, 12, 64), (729, 16, 72), (1024, 16, 64)] {
        let (q, k, v) = (
            randn(&[heads, n, hd]),
            randn(&[heads, n, hd]),
            randn(&[heads, n, hd]),
        );
        let scale = (hd as f64).powf(-0.5);
        let batched = median_ms(9, || {
            let s = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
            let p = candle_nn::ops::softmax_last_dim(&s).unwrap();
            drop(
                p.matmul(&v)
                    .unwrap()
                    .transpose(0, 1)
                    .unwrap()
                    .contiguous()
                    .unwrap(),
            );
        });
        let tasks = median_ms(9, || {
            drop(segment_attention(&q, &k, &v, &[(0, n)], scale).unwrap())
        });
        println!(
            "({n:4}, {heads:2}, {hd:3})                       {batched:10.2} {tasks:12.2} {:17.2}",
            batched / tasks
        );
    }
    println!(
        "\nattention, 16 heads (tokens, head_dim)  unfused (4 MB score chunks) ms  fused ms  unfused/fused"
    );
    for (n, hd) in [(4096, 64), (9216, 80)] {
        let (q, k, v) = (
            randn(&[16, n, hd]),
            randn(&[16, n, hd]),
            randn(&[16, n, hd]),
        );
        let scale = (hd as f64).powf(-0.5);
        let unfused = median_ms(3, || {
            drop(segment_attention_unfused(&q, &k, &v, &[(0, n)], scale, 4 << 20).unwrap())
        });
        let fused = median_ms(3, || {
            drop(segment_attention(&q, &k, &v, &[(0, n)], scale).unwrap())
        });
        println!(
            "({n:4}, {hd:3})                                          {unfused:8.0} {fused:8.0} {:10.2}",
            unfused / fused
        );
    }
    println!("\nwhole attention layer (qkv, core, output projection) on one image: ms");
    for (n, heads, hd) in [(196, 12, 64), (729, 16, 72), (1024, 16, 64)] {
        let d = heads * hd;
        let linear = |o: usize| Linear::new(randn(&[o, d]), Some(randn(&[o]))).unwrap();
        let attn = Attention::from_parts(linear(3 * d), linear(d), heads).unwrap();
        let x = randn(&[n, d]);
        let ms = median_ms(9, || {
            drop(attn.forward_packed(&x, &[n], None, None).unwrap())
        });
        println!("({n:4}, {heads:2}, {hd:3})  {ms:8.2}");
    }
}
