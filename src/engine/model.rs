//! The loaded model: thread-safe, immutable after loading, usable from many threads at once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::ModelFiles;
use crate::engine::batch::plan_batches;
use crate::engine::cache::{self, CacheStats, EmbeddingCache};
use crate::engine::device::{place, Placement};
use crate::engine::jobs::{self, Job, JobQueue, OnDone};
use crate::engine::workers::WorkerPool;
use crate::engine::{Embeddings, Image, LoadOptions};
use candle_core::DType;

use crate::error::{Error, Result, Status};
use crate::log;
use crate::models::cancel::{self, CancelToken};
use crate::models::checkpoint::Checkpoint;
use crate::models::registry;
use crate::models::{ModelInfo, PromptLayout, VisionModel};
use crate::preprocess::decode::decode_to_rgb;
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::options::size_knobs_given;
use crate::preprocess::qwen_video::{SampleOptions, VideoFrames};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};
use crate::weights::Weights;

static NEXT_MODEL_ID: AtomicU64 = AtomicU64::new(1);

/// A loaded vision tower with its preprocessing.
///
/// `Model` is `Send + Sync`: every method takes `&self` and may run concurrently from any
/// number of threads. CPU work runs on the model's own thread pool.
pub struct Model {
    id: u64,
    inner: Box<dyn VisionModel>,
    pool: WorkerPool,
    limits: Limits,
    placement: Placement,
    /// Asynchronous jobs ([`Model::submit`]); its threads start with the first job.
    jobs: JobQueue,
    /// The embedding cache, when `LoadOptions::embedding_cache_bytes` > 0.
    cache: Option<EmbeddingCache>,
    /// `LoadOptions::max_forward_bytes` (0 = no limit).
    max_forward_bytes: u64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({:?})", self.inner.info())
    }
}

impl Model {
    /// Loads the model in `dir` (a folder as `save_pretrained` writes it).
    pub fn load(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let dir = dir.as_ref();
        let start = Instant::now();
        let files = ModelFiles::read(dir)?;
        let load = registry::loader(&files.model_type()?)?;
        let placement = place(options.device, options.dtype)?;
        let mut weights = Weights::open(dir)?;
        // bf16 on the CPU: the linear layers keep bf16 weights and run the bf16 kernels of
        // `crate::kernels` (f32 accumulation); everything else (norms, softmax, activations,
        // residuals) computes in f32.
        let load_dtype = if placement.device.is_cpu() && placement.dtype == DType::BF16 {
            weights.set_bf16_matmuls(true);
            DType::F32
        } else {
            placement.dtype
        };
        let pool = WorkerPool::new(options.n_threads)?;
        let checkpoint = Checkpoint {
            files: &files,
            weights: &weights,
            dtype: load_dtype,
            device: &placement.device,
        };
        let inner = pool.install(|| load(&checkpoint))?;
        if !files.has_preprocessor {
            log::warn(&format!(
                "{}: no preprocessor_config.json (nor processor_config.json with an `image_processor`), using the image processor's defaults",
                dir.display()
            ));
        }
        let info = inner.info();
        log::info(&format!(
            "loaded {} ({}, {} -> {}) from {} on {:?} ({:?}, {} threads) in {:.0} ms",
            info.family,
            info.model_type,
            info.vision_dim,
            info.output_dim,
            dir.display(),
            placement.device,
            placement.dtype,
            pool.current_num_threads(),
            start.elapsed().as_secs_f64() * 1e3
        ));
        Ok(Model {
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
            inner,
            pool,
            limits: Limits {
                max_pixels: options.max_image_pixels,
                max_tokens: options.max_image_tokens,
            },
            placement,
            jobs: JobQueue::default(),
            cache: (options.embedding_cache_bytes > 0)
                .then(|| EmbeddingCache::new(options.embedding_cache_bytes)),
            max_forward_bytes: options.max_forward_bytes,
        })
    }

    /// What this model is.
    pub fn info(&self) -> &ModelInfo {
        self.inner.info()
    }

    /// How many patches per side one output token covers (Qwen2-VL's `spatial_merge_size`;
    /// 1 for families whose tokens are patches).
    pub fn merge_size(&self) -> usize {
        self.inner.spatial_merge_size().max(1)
    }

    /// Worker threads used for CPU work.
    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The device the tower runs on.
    pub fn device(&self) -> &candle_core::Device {
        &self.placement.device
    }

    /// Decodes an encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF) and preprocesses it.
    pub fn preprocess(&self, encoded: &[u8]) -> Result<Image> {
        self.preprocess_with(encoded, &PreprocessOptions::default())
    }

    /// [`Model::preprocess`] with per-call overrides of the model's preprocessing settings
    /// (e.g. Gemma3's pan-and-scan). Options the model does not have are an error.
    pub fn preprocess_with(&self, encoded: &[u8], opts: &PreprocessOptions) -> Result<Image> {
        opts.validate()?;
        let max = self.limits.max_pixels;
        let rgb = self.pool.install(|| decode_to_rgb(encoded, max))?;
        self.preprocess_decoded_with(&rgb, opts)
    }

    /// Preprocesses raw 8-bit RGB pixels: `height` rows of `width * 3` bytes, each row
    /// starting `row_stride` bytes after the previous one.
    pub fn preprocess_rgb8(
        &self,
        pixels: &[u8],
        width: u32,
        height: u32,
        row_stride: usize,
    ) -> Result<Image> {
        self.preprocess_rgb8_with(
            pixels,
            width,
            height,
            row_stride,
            &PreprocessOptions::default(),
        )
    }

    /// [`Model::preprocess_rgb8`] with per-call preprocessing overrides.
    pub fn preprocess_rgb8_with(
        &self,
        pixels: &[u8],
        width: u32,
        height: u32,
        row_stride: usize,
        opts: &PreprocessOptions,
    ) -> Result<Image> {
        opts.validate()?;
        let rgb = rgb_from_strided(pixels, width, height, row_stride, self.limits.max_pixels)?;
        self.preprocess_decoded_with(&rgb, opts)
    }

    /// Preprocesses an already decoded RGB image.
    pub fn preprocess_decoded(&self, rgb: &RgbImage) -> Result<Image> {
        self.preprocess_decoded_with(rgb, &PreprocessOptions::default())
    }

    /// [`Model::preprocess_decoded`] with per-call preprocessing overrides.
    pub fn preprocess_decoded_with(
        &self,
        rgb: &RgbImage,
        opts: &PreprocessOptions,
    ) -> Result<Image> {
        self.limits
            .check_image("the image", u64::from(rgb.width), u64::from(rgb.height))?;
        let knobs = self.inner.size_knobs();
        if let Some(k) = size_knobs_given(opts)
            .into_iter()
            .find(|k| !knobs.contains(k) && *k != "max_tokens")
        {
            let owners = match k {
                "longest_edge" => "Pixtral's, Mistral3's, Idefics3's and SmolVLM's",
                "crop_to_patches" => "InternVL's and Aya Vision's",
                "min_patches" => "InternVL's, Aya Vision's and LFM2-VL's",
                "max_patches" => "InternVL's, Aya Vision's, LFM2-VL's and Kimi K2.5's",
                "do_image_splitting" => "Idefics3's, SmolVLM's, LLaVA-OneVision's and LFM2-VL's",
                _ => "Qwen2-VL's and Qwen3-VL's",
            };
            return Err(Error::invalid_argument(format!(
                "{} models have no per-call `{k}` ({owners} processors do)",
                self.info().family
            )));
        }
        self.inner.gemma_knobs().refuse(self.info().family, opts)?;
        let pixels = self
            .pool
            .install(|| self.inner.preprocess_with(rgb, opts, &self.limits))?;
        if let Some(t) = opts.max_tokens.filter(|_| !knobs.contains(&"max_tokens")) {
            if pixels.n_tokens() > t {
                return Err(Error::invalid_argument(format!(
                    "no size of this image yields at most max_tokens = {t} embeddings: {} \
                     images yield {}",
                    self.info().family,
                    pixels.n_tokens()
                )));
            }
        }
        // Fixed-size families check nothing per image: their token count is the model's.
        self.limits.check_tokens(pixels.n_tokens() as u64, &|| {
            format!("this {} image", self.info().family)
        })?;
        Ok(Image {
            model_id: self.id,
            pixels,
            merge: self.merge_size(),
            video: None,
        })
    }

    /// Preprocesses a video of decoded frames as the model's reference video processor does
    /// (frame sampling, resize, normalization, temporal grouping). `frames[i]` holds frame
    /// `i`: `height` rows of `width * 3` RGB bytes, `row_stride` apart. `source_fps` is the
    /// video's frame rate when known. Only the kept frames are copied.
    pub fn preprocess_video(
        &self,
        frames: &[&[u8]],
        width: u32,
        height: u32,
        row_stride: usize,
        source_fps: Option<f64>,
        opts: &SampleOptions,
    ) -> Result<Image> {
        self.limits
            .check_image("a video frame", u64::from(width), u64::from(height))?;
        let frame = |i: usize| {
            rgb_from_strided(frames[i], width, height, row_stride, self.limits.max_pixels)
        };
        let (pixels, meta) = self.pool.install(|| {
            let video = VideoFrames {
                n_frames: frames.len(),
                width,
                height,
                source_fps,
                frame: &frame,
            };
            self.inner.preprocess_video(&video, opts, &self.limits)
        })?;
        self.limits.check_tokens(pixels.n_tokens() as u64, &|| {
            format!("this {} video", self.info().family)
        })?;
        Ok(Image {
            model_id: self.id,
            pixels,
            merge: self.merge_size(),
            video: Some(meta),
        })
    }

    /// The language model's video placeholder token id, when the model takes video.
    pub fn video_token(&self) -> Option<i64> {
        self.inner.video_token()
    }

    /// Runs the tower on `images` (each preprocessed by this model). Images of the same
    /// shape run together in batches; the result holds one entry per image, in order.
    pub fn forward(&self, images: &[&Image]) -> Result<Embeddings> {
        self.forward_cancellable(images, None)
    }

    /// Queues a forward pass of `images` and returns at once with its [`Job`]: wait for it,
    /// poll it or cancel it there (see [`crate::engine::jobs`] for the threads that run it).
    /// The job owns `images` and holds the model until it finishes. `on_done`, if any, is
    /// called on the job thread with the job's status once it has finished, before
    /// [`Job::wait`] returns; it must not wait for its own job.
    pub fn submit(self: &Arc<Model>, images: Vec<Image>, on_done: Option<OnDone>) -> Result<Job> {
        jobs::submit(self, &self.jobs, images, on_done)
    }

    /// [`Model::forward`] that stops with [`Status::Cancelled`] before the next encoder
    /// layer (or batch) once `token` is cancelled.
    pub fn forward_cancellable(
        &self,
        images: &[&Image],
        token: Option<&CancelToken>,
    ) -> Result<Embeddings> {
        for (i, img) in images.iter().enumerate() {
            self.check_image(i, img)?;
        }
        let all: Vec<&Pixels> = images.iter().map(|i| &i.pixels).collect();
        let dim = self.info().output_dim;
        let mut outputs: Vec<Option<Vec<candle_core::Tensor>>> = vec![None; images.len()];
        // With a cache: the images it holds are answered from it, the rest run.
        let hashes: Vec<u64> = match &self.cache {
            Some(cache) => self.pool.install(|| {
                all.iter()
                    .zip(outputs.iter_mut())
                    .map(|(p, out)| {
                        let h = cache::key(p);
                        *out = cache.get(h, p);
                        h
                    })
                    .collect()
            }),
            None => Vec::new(),
        };
        let todo: Vec<usize> = (0..all.len()).filter(|&i| outputs[i].is_none()).collect();
        let pixels: Vec<&Pixels> = todo.iter().map(|&i| all[i]).collect();
        let max_batch = self.batch_within_limit(&todo, images)?;
        let n_levels = self.n_levels();
        self.pool.install(|| -> Result<()> {
            let info = self.info();
            for group in plan_batches(&pixels, max_batch, info.mixed_shape_batches) {
                let batch: Vec<&Pixels> = group.iter().map(|&i| pixels[i]).collect();
                let results = cancel::scoped(token, || {
                    cancel::check()?;
                    self.inner.forward_levels(&batch)
                })?;
                if results.len() != group.len() {
                    return Err(Error::compute(format!(
                        "model returned {} results for {} images",
                        results.len(),
                        group.len()
                    )));
                }
                for (&j, levels) in group.iter().zip(results) {
                    let i = todo[j];
                    let expected = [all[i].n_tokens(), dim];
                    if levels.len() != n_levels {
                        return Err(Error::compute(format!(
                            "image {i}: {} embedding levels, expected {n_levels}",
                            levels.len()
                        )));
                    }
                    if let Some(out) = levels.iter().find(|t| t.dims() != expected) {
                        return Err(Error::compute(format!(
                            "image {i}: output shape {:?}, expected {expected:?}",
                            out.dims()
                        )));
                    }
                    outputs[i] = Some(levels);
                }
            }
            Ok(())
        })?;
        // GPU work is queued asynchronously: wait for it here, so that the results are
        // complete (and any device error is reported) when `forward` returns.
        self.placement.device.synchronize()?;
        if let Some(cache) = &self.cache {
            for &i in &todo {
                if let Some(levels) = &outputs[i] {
                    cache.insert(hashes[i], all[i], levels)?;
                }
            }
        }
        let outputs = outputs
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| Error::compute(format!("image {i} was not run"))))
            .collect::<Result<Vec<_>>>()?;
        Embeddings::with_levels(dim, outputs, self.inner.deepstack_layers().to_vec())
    }

    /// Estimated activation memory, in bytes, of running `image` alone: what
    /// `LoadOptions::max_forward_bytes` is compared with (times the batch size). An upper
    /// estimate from the image's size, computed before anything runs:
    /// `4 * (16 * patches * vision_dim + n_levels * n_tokens * output_dim)`, plus on a GPU
    /// the attention scores `4 * (vision_dim / 64) * patches^2` (the CPU computes them in
    /// bounded chunks), where `patches` is the larger of `n_tokens * merge^2` and the pixel
    /// tensor's size over `3 * patch_size^2`: 16 hidden-size vectors per patch cover a
    /// layer's live tensors (input, norm, q/k/v, attention output, residual, an MLP of 4x
    /// the width before and after its activation), counted as f32 whatever the dtype.
    pub fn forward_bytes(&self, image: &Image) -> u64 {
        let info = self.info();
        let p = &image.pixels;
        let patch = info.patch_size.max(1) as u64;
        let m = self.merge_size() as u64;
        let tokens = p.n_tokens() as u64;
        let patches = (tokens * m * m).max(p.data.len() as u64 / (3 * patch * patch));
        let d = info.vision_dim as u64;
        let mut bytes = 4u64
            .saturating_mul(16 * patches)
            .saturating_mul(d)
            .saturating_add(4 * self.n_levels() as u64 * tokens * info.output_dim as u64);
        if !self.placement.device.is_cpu() {
            let heads = (d / 64).max(1);
            bytes = bytes.saturating_add(4 * heads * patches.saturating_mul(patches));
        }
        bytes
    }

    /// The batch size that keeps every batch of `todo` (indices into `images`) within
    /// `max_forward_bytes`; refuses an image that does not fit alone.
    fn batch_within_limit(&self, todo: &[usize], images: &[&Image]) -> Result<usize> {
        let max_batch = self.info().max_batch.max(1);
        let limit = self.max_forward_bytes;
        if limit == 0 {
            return Ok(max_batch);
        }
        let mut largest = 1;
        for &i in todo {
            let need = self.forward_bytes(images[i]);
            if need > limit {
                return Err(Error::new(
                    Status::ImageTooLarge,
                    format!(
                        "image {i} needs an estimated {need} bytes of activations to run, over \
                         max_forward_bytes = {limit}"
                    ),
                ));
            }
            largest = largest.max(need);
        }
        Ok(max_batch.min((limit / largest).max(1) as usize))
    }

    /// The embedding cache's counters (all 0 without a cache).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache
            .as_ref()
            .map(EmbeddingCache::stats)
            .unwrap_or_default()
    }

    /// The prompt pieces that stand for `image` (preprocessed by this model) in the language
    /// model's input, in order: text, special tokens and runs of placeholder tokens that take
    /// the image's embedding rows (see [`crate::models::VisionModel::prompt_layout`]).
    pub fn prompt_layout(&self, image: &Image) -> Result<PromptLayout> {
        self.check_image(0, image)?;
        self.inner
            .prompt_layout(&image.pixels, image.video.as_ref())
    }

    /// Checks that image `i` of a call was preprocessed by this model.
    pub fn check_image(&self, i: usize, img: &Image) -> Result<()> {
        if img.model_id != self.id {
            return Err(Error::invalid_argument(format!(
                "image {i} was preprocessed by another model; preprocess it with this one"
            )));
        }
        Ok(())
    }

    /// Embedding levels per image: 1 + the deepstack levels of Qwen3-VL (1 for other models).
    pub fn n_levels(&self) -> usize {
        1 + self.inner.deepstack_layers().len()
    }

    /// The language model's decoder layer (0-based) after which embedding level `level`
    /// (>= 1) is added to its hidden states at the image positions; `None` for level 0 (the
    /// input embeddings of the placeholder tokens) and past the last level.
    pub fn level_layer(&self, level: usize) -> Option<usize> {
        level
            .checked_sub(1)
            .and_then(|k| self.inner.deepstack_layers().get(k).copied())
    }
}

/// The bytes that `height` (at least 1) rows of `width` RGB pixels span when they start
/// `row_stride` bytes apart, or why that stride cannot hold them.
pub(crate) fn strided_len(width: u32, height: u32, row_stride: usize) -> Result<usize> {
    let row = width as usize * 3;
    if row_stride < row {
        return Err(Error::invalid_argument(format!(
            "row_stride {row_stride} is smaller than width*3 = {row}"
        )));
    }
    (height as usize - 1)
        .checked_mul(row_stride)
        .and_then(|n| n.checked_add(row))
        .ok_or_else(|| Error::invalid_argument("row_stride * height overflows"))
}

/// Copies strided RGB rows into a packed image, checking every size first.
pub fn rgb_from_strided(
    pixels: &[u8],
    width: u32,
    height: u32,
    row_stride: usize,
    max_pixels: u64,
) -> Result<RgbImage> {
    if width == 0 || height == 0 {
        return Err(Error::invalid_argument(format!(
            "image size {width}x{height} is empty"
        )));
    }
    let count = width as u64 * height as u64;
    if count > max_pixels {
        return Err(Error::new(
            Status::ImageTooLarge,
            format!("image of {width}x{height} = {count} pixels exceeds the limit of {max_pixels}"),
        ));
    }
    let needed = strided_len(width, height, row_stride)?;
    let row = width as usize * 3;
    if pixels.len() < needed {
        return Err(Error::invalid_argument(format!(
            "pixel buffer of {} bytes is smaller than the {needed} bytes that {width}x{height} with stride {row_stride} needs",
            pixels.len()
        )));
    }
    let mut data = try_with_capacity(row * height as usize, "the image's pixels")?;
    for y in 0..height as usize {
        data.extend_from_slice(&pixels[y * row_stride..y * row_stride + row]);
    }
    RgbImage::new(width, height, data)
}
