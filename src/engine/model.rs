//! The loaded model: thread-safe, immutable after loading, usable from many threads at once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::ModelFiles;
use crate::engine::batch::plan_batches;
use crate::engine::device::{place, Placement};
use crate::engine::{Embeddings, Image, LoadOptions};
use candle_core::DType;

use crate::error::{Error, Result, Status};
use crate::log;
use crate::models::registry;
use crate::models::{ModelInfo, VisionModel};
use crate::preprocess::decode::decode_to_rgb;
use crate::preprocess::limits::try_with_capacity;
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
    pool: rayon::ThreadPool,
    limits: Limits,
    placement: Placement,
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
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.n_threads)
            .thread_name(|i| format!("vtower-{i}"))
            .build()
            .map_err(|e| {
                Error::new(Status::Compute, format!("cannot start worker threads: {e}"))
            })?;
        let inner = pool.install(|| load(&files, &weights, load_dtype, &placement.device))?;
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
        let pixels = self
            .pool
            .install(|| self.inner.preprocess_with(rgb, opts, &self.limits))?;
        // Fixed-size families check nothing per image: their token count is the model's.
        self.limits.check_tokens(pixels.n_tokens() as u64, &|| {
            format!("this {} image", self.info().family)
        })?;
        Ok(Image {
            model_id: self.id,
            pixels,
            merge: self.merge_size(),
        })
    }

    /// Runs the tower on `images` (each preprocessed by this model). Images of the same
    /// shape run together in batches; the result holds one entry per image, in order.
    pub fn forward(&self, images: &[&Image]) -> Result<Embeddings> {
        for (i, img) in images.iter().enumerate() {
            if img.model_id != self.id {
                return Err(Error::invalid_argument(format!(
                    "image {i} was preprocessed by another model; preprocess it with this one"
                )));
            }
        }
        let pixels: Vec<&Pixels> = images.iter().map(|i| &i.pixels).collect();
        let dim = self.info().output_dim;
        let mut outputs: Vec<Option<Vec<candle_core::Tensor>>> = vec![None; images.len()];
        let n_levels = self.n_levels();
        self.pool.install(|| -> Result<()> {
            let info = self.info();
            for group in plan_batches(&pixels, info.max_batch, info.mixed_shape_batches) {
                let batch: Vec<&Pixels> = group.iter().map(|&i| pixels[i]).collect();
                let results = self.inner.forward_levels(&batch)?;
                if results.len() != group.len() {
                    return Err(Error::compute(format!(
                        "model returned {} results for {} images",
                        results.len(),
                        group.len()
                    )));
                }
                for (&i, levels) in group.iter().zip(results) {
                    let expected = [pixels[i].n_tokens(), dim];
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
        let outputs = outputs
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| Error::compute(format!("image {i} was not run"))))
            .collect::<Result<Vec<_>>>()?;
        Embeddings::with_levels(dim, outputs, self.inner.deepstack_layers().to_vec())
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
    let row = width as usize * 3;
    if row_stride < row {
        return Err(Error::invalid_argument(format!(
            "row_stride {row_stride} is smaller than width*3 = {row}"
        )));
    }
    let needed = (height as usize - 1)
        .checked_mul(row_stride)
        .and_then(|n| n.checked_add(row))
        .ok_or_else(|| Error::invalid_argument("row_stride * height overflows"))?;
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
