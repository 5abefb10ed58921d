//! Model families. Each family is one file implementing [`VisionModel`]; the registry maps
//! `config.json`'s `model_type` to the family that loads it.

pub mod activation;
pub mod aya_vision;
pub mod cancel;
pub mod checkpoint;
pub mod clip;
pub mod fused;
pub mod gemma3;
pub mod gemma4;
pub mod glm4v;
pub mod grid_sample;
pub mod idefics3;
pub mod internvl;
pub mod interpolate_aa;
pub mod kernels;
pub mod kimi_k25;
pub mod layers;
pub mod lfm2_vl;
pub mod llava;
pub mod llava_next;
pub mod paddleocr_vl;
pub mod paligemma;
pub mod pixels;
pub mod pixtral;
pub mod position_taps;
pub mod projector;
pub mod qwen2_vl;
pub mod qwen3_vl;
pub mod registry;
pub mod rope;
pub mod siglip;
pub mod siglip2;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tiles;
pub mod vit;

use candle_core::Tensor;

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::qwen2_vl::PatchGeometry;
use crate::preprocess::qwen_video::{SampleOptions, VideoFrames, VideoMeta};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// What a loaded model is, for introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The family that implements it (`"siglip"`, ...).
    pub family: &'static str,
    /// `model_type` from `config.json`.
    pub model_type: String,
    /// Width of the output embeddings (the language model's hidden size for VLMs).
    pub output_dim: usize,
    /// Width of the vision encoder.
    pub vision_dim: usize,
    /// Patch size in pixels.
    pub patch_size: usize,
    /// The input size the tower was trained at, `(width, height)`.
    pub image_size: (usize, usize),
    /// Embeddings per image when the family yields a fixed number, else `None`.
    pub tokens_per_image: Option<usize>,
    /// How many images one forward pass should take at most (bounds activation memory).
    pub max_batch: usize,
    /// Whether the model's forward pass accepts images of different shapes in one batch
    /// (variable-resolution families); otherwise the engine groups images by shape.
    pub mixed_shape_batches: bool,
    /// Token ids the language model uses around the image embeddings.
    pub tokens: SpecialTokens,
}

impl ModelInfo {
    /// The info of a tower fed packed patch rows of any image size, mixed in one batch
    /// (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, GLM-4.xV, PaddleOCR-VL). `widths` are the
    /// output, vision and MLP widths; the processor keeps at most `frame_pixels` pixels per
    /// frame. `image_size` is the largest square image it produces; `max_batch` keeps the
    /// activations of the largest image, a few `[patches, max(4·dim, mlp)]` f32 buffers,
    /// around 512 MiB (attention scores are chunked: `layers::segment_attention`).
    pub(crate) fn packed(
        family: &'static str,
        model_type: String,
        widths: [usize; 3],
        g: PatchGeometry,
        frame_pixels: usize,
        tokens: SpecialTokens,
    ) -> ModelInfo {
        let [output_dim, vision_dim, mlp] = widths;
        let f = g.factor();
        let side = ((frame_pixels as f64).sqrt() as usize / f * f).max(f);
        let max_patches = (frame_pixels / (g.patch_size * g.patch_size)).max(1);
        let width = (4 * vision_dim).max(mlp);
        let per_image = max_patches.saturating_mul(width).saturating_mul(16);
        ModelInfo {
            family,
            model_type,
            output_dim,
            vision_dim,
            patch_size: g.patch_size,
            image_size: (side, side),
            tokens_per_image: None,
            max_batch: batch_for_budget(per_image, 512 << 20),
            mixed_shape_batches: true,
            tokens,
        }
    }
}

/// The config keys of the image, vision-start and vision-end tokens in the Qwen-VL
/// convention (Qwen2-VL to Qwen3.5, PaddleOCR-VL, Kimi K2.5).
pub(crate) const VISION_TOKEN_KEYS: [&str; 3] = [
    "image_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
];

/// Special token ids of the language model that frame image embeddings in a prompt, as the
/// checkpoint's config names them. `None` when the model has no such token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// The placeholder repeated once per embedding (`image_token_index`, `<image_soft_token>`,
    /// `[IMG]`, `<|image_pad|>`).
    pub image: Option<i64>,
    /// The token before an image's embeddings (`<start_of_image>`, `<|vision_start|>`).
    pub image_start: Option<i64>,
    /// The token after an image's embeddings (`<end_of_image>`, `[IMG_END]`, `<|vision_end|>`).
    pub image_end: Option<i64>,
    /// The token after each row of embeddings (`[IMG_BREAK]`).
    pub image_break: Option<i64>,
}

impl SpecialTokens {
    /// The image, start and end tokens read from the config keys `keys`, in that order,
    /// each the config class's default in `defaults` when absent; no break token.
    pub(crate) fn from_config(
        cfg: &ConfigObject,
        keys: [&str; 3],
        defaults: [i64; 3],
    ) -> Result<SpecialTokens> {
        let [image, start, end] =
            [0, 1, 2].map(|i| cfg.i64(keys[i]).map(|v| v.or(Some(defaults[i]))));
        Ok(SpecialTokens {
            image: image?,
            image_start: start?,
            image_end: end?,
            image_break: None,
        })
    }
}

/// The most common prompt layout: the start token, `n` placeholder rows, the end token (each
/// when the model has it).
pub(crate) fn framed_layout(
    tokens: &SpecialTokens,
    placeholder: Option<i64>,
    n: usize,
) -> Result<PromptLayout> {
    let mut b = PromptBuilder::default();
    b.token(tokens.image_start)
        .rows(placeholder, n)
        .token(tokens.image_end);
    b.finish(n)
}

/// The prompt layout of a video whose frames (the temporal groups, `pixels.grid[0]`) are laid
/// out one by one: per frame `f`, `open(b, f, timestamp)` writes what comes before its
/// `placeholder` rows (its timestamp, the start token), then the rows and the end token.
pub(crate) fn per_frame_layout(
    tokens: &SpecialTokens,
    pixels: &Pixels,
    meta: &VideoMeta,
    placeholder: Option<i64>,
    mut open: impl FnMut(&mut PromptBuilder, usize, f64),
) -> Result<PromptLayout> {
    let [frames, rows, cols] = pixels.grid;
    let mut b = PromptBuilder::default();
    for f in 0..frames {
        open(&mut b, f, meta.timestamps.get(f).copied().unwrap_or(0.0));
        b.rows(placeholder, rows * cols).token(tokens.image_end);
    }
    b.finish(pixels.n_tokens())
}

/// One piece of the prompt text that stands for an image, in order (see
/// [`VisionModel::prompt_layout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSegment {
    /// Plain text, to be tokenized with the model's tokenizer like the rest of the prompt.
    Text(String),
    /// One special token, by its language-model id.
    Token(i64),
    /// `count` placeholder tokens (`token`, when the model folder names it) whose input
    /// embeddings are the image's embedding rows `start .. start + count`.
    Embeddings {
        token: Option<i64>,
        start: usize,
        count: usize,
    },
}

/// What [`VisionModel::prompt_layout`] returns: the prompt text that stands for one image (or
/// video), segment by segment, in order.
pub type PromptLayout = Vec<PromptSegment>;

/// Builds a [`PromptSegment`] list, merging adjacent text.
#[derive(Debug, Default)]
pub struct PromptBuilder {
    segments: Vec<PromptSegment>,
    next_row: usize,
}

impl PromptBuilder {
    pub fn text(&mut self, text: &str) -> &mut Self {
        if text.is_empty() {
            return self;
        }
        if let Some(PromptSegment::Text(t)) = self.segments.last_mut() {
            t.push_str(text);
        } else {
            self.segments.push(PromptSegment::Text(text.to_string()));
        }
        self
    }

    /// A special token; nothing when the model folder does not name it.
    pub fn token(&mut self, id: Option<i64>) -> &mut Self {
        if let Some(id) = id {
            self.segments.push(PromptSegment::Token(id));
        }
        self
    }

    /// A special token given by its string: the token when the model folder names its id,
    /// else the string as text (the tokenizer then maps it).
    pub fn special(&mut self, id: Option<i64>, text: &str) -> &mut Self {
        match id {
            Some(_) => self.token(id),
            None => self.text(text),
        }
    }

    /// The next `count` embedding rows, as `token` placeholders.
    pub fn rows(&mut self, token: Option<i64>, count: usize) -> &mut Self {
        if count > 0 {
            self.segments.push(PromptSegment::Embeddings {
                token,
                start: self.next_row,
                count,
            });
            self.next_row += count;
        }
        self
    }

    /// The segments; an error when they do not cover exactly `n_tokens` rows (a layout that
    /// disagrees with the embeddings is a bug, never sent to an engine).
    pub fn finish(self, n_tokens: usize) -> Result<PromptLayout> {
        if self.next_row != n_tokens {
            return Err(Error::compute(format!(
                "prompt layout covers {} embedding rows, the image has {n_tokens}",
                self.next_row
            )));
        }
        Ok(self.segments)
    }
}

/// A loaded vision tower with its preprocessing.
///
/// Implementations are immutable after loading and used from many threads at once.
pub trait VisionModel: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// Turns a decoded RGB image into the tower's input, exactly as the reference image
    /// processor does, with per-call overrides of the processor's settings (the default
    /// [`PreprocessOptions`] keep the processor's own). No step may make an image or a token
    /// count over `limits`; each is checked before its buffer is allocated. The engine has
    /// already refused the knobs the family does not take ([`VisionModel::size_knobs`],
    /// [`VisionModel::gemma_knobs`]).
    fn preprocess_with(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels>;

    /// The language model's video placeholder token (`video_token_id`), when the family
    /// takes video.
    fn video_token(&self) -> Option<i64> {
        None
    }

    /// Preprocesses a video's decoded frames (only the kept ones are read) as the reference
    /// video processor does: frame sampling, resize, normalization, temporal grouping. The
    /// result goes through [`VisionModel::forward`] like an image. Families without video
    /// refuse it.
    fn preprocess_video(
        &self,
        video: &VideoFrames,
        opts: &SampleOptions,
        limits: &Limits,
    ) -> Result<(Pixels, VideoMeta)> {
        let _ = (video, opts, limits);
        Err(Error::invalid_argument(format!(
            "{} models take no video (video input is Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, \
             Gemma 4 and Kimi K2.5)",
            self.info().family
        )))
    }

    /// The per-call size knobs of [`PreprocessOptions`] this family's `preprocess_with`
    /// implements (`min_pixels`, `max_pixels`, `longest_edge`, `max_tokens`,
    /// `crop_to_patches`, `min_patches`, `max_patches`); the engine refuses the others and
    /// checks `max_tokens` itself for families without it. None by default.
    fn size_knobs(&self) -> &'static [&'static str] {
        &[]
    }

    /// How this family takes the Gemma knobs (pan-and-scan, `max_soft_tokens`); the engine
    /// refuses the others. Neither by default.
    fn gemma_knobs(&self) -> GemmaKnobs {
        GemmaKnobs::NONE
    }

    /// Runs the tower and projector on a batch of images preprocessed by this model that all
    /// have the same shape (any shapes when [`ModelInfo::mixed_shape_batches`]). Returns one
    /// `[n_tokens, output_dim]` tensor per image, in the compute dtype on the compute device
    /// (the engine copies them out).
    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>>;

    /// [`VisionModel::forward`] with every embedding level of each image: level 0 is the
    /// `forward` output, levels 1.. the extra features a language model adds inside its
    /// decoder (Qwen3-VL's deepstack), each `[n_tokens, output_dim]`. One level by default.
    fn forward_levels(&self, batch: &[&Pixels]) -> Result<Vec<Vec<Tensor>>> {
        Ok(self.forward(batch)?.into_iter().map(|t| vec![t]).collect())
    }

    /// For each extra level (1..), the language model's decoder layer (0-based) after
    /// which it is added to the hidden states at the image positions. Empty by default.
    fn deepstack_layers(&self) -> &[usize] {
        &[]
    }

    /// The prompt pieces that stand for one preprocessed image (or video) in the language
    /// model's input, in order: what the reference processor expands the image placeholder
    /// into, together with the start / end tokens the model's prompt format puts around it.
    /// By default: the start token, one placeholder per embedding row, the end token (each
    /// when the model has it).
    fn prompt_layout(&self, pixels: &Pixels, video: Option<&VideoMeta>) -> Result<PromptLayout> {
        let t = &self.info().tokens;
        let placeholder = if video.is_some() {
            self.video_token()
        } else {
            t.image
        };
        framed_layout(t, placeholder, pixels.n_tokens())
    }

    /// How many patches per side one output token covers (Qwen2-VL's `spatial_merge_size`):
    /// an image's patch grid is its token grid ([`Pixels::grid`]) times this in rows and
    /// columns. 1 for families whose tokens are patches.
    fn spatial_merge_size(&self) -> usize {
        1
    }
}

/// The [`VisionModel`] methods of a model with fields `info` and `processor`, whose processor
/// implements every per-call option itself (`processor.process(image, opts, limits)`): `info`,
/// `preprocess_with` and `size_knobs` (the knobs given, each the processor's own kwarg).
/// SigLIP2 NaFlex, Kimi K2.5, LFM2-VL, Gemma 4. With `tower: $arg;` first, `$arg`, a
/// `Fn(&Self) -> usize`, gives the processor the side of the tower's token grid per frame or
/// tile (`processor.process(image, opts, side, limits)`): Gemma3, InternVL, Aya Vision,
/// Idefics3. With `via $method;` first, the processor's `$method(image, opts, limits)` runs
/// in place of `process` (Qwen-VL, Pixtral); `@image via $method` gives `info` and
/// `preprocess_with` alone (GLM-4.xV).
macro_rules! processor_methods {
    (via $method:ident; $($knob:literal),*) => {
        crate::models::processor_methods!(@image via $method);

        fn size_knobs(&self) -> &'static [&'static str] {
            &[$($knob),*]
        }
    };
    ($(tower: $arg:expr;)? $($knob:literal),*) => {
        crate::models::processor_methods!(@image via process $(, tower: $arg)?);

        fn size_knobs(&self) -> &'static [&'static str] {
            &[$($knob),*]
        }
    };
    (@image via $method:ident $(, tower: $arg:expr)?) => {
        fn info(&self) -> &crate::models::ModelInfo {
            &self.info
        }

        #[allow(
            clippy::redundant_closure_call,
            reason = "`$arg` is the caller's closure"
        )]
        fn preprocess_with(
            &self,
            image: &crate::preprocess::RgbImage,
            opts: &crate::preprocess::PreprocessOptions,
            limits: &crate::preprocess::Limits,
        ) -> crate::error::Result<crate::preprocess::Pixels> {
            self.processor
                .$method(image, opts, $(($arg)(self),)? limits)
        }
    };
}
pub(crate) use processor_methods;

/// The video methods of a model with fields `video` (its video processor, whose
/// `process(video, opts, limits)` samples and patchifies the frames, or why its config is
/// unusable: [`crate::preprocess::qwen_video::loaded`]) and `video_token` (`i64` or
/// `Option<i64>`): `video_token` and `preprocess_video`. `$time`, a
/// `Fn(&Self, &VideoMeta) -> VideoTime`, sets how the temporal M-RoPE ids are assigned;
/// without it the processor's own choice stands. Qwen-VL, Gemma 4, Kimi K2.5.
macro_rules! video_methods {
    () => {
        crate::models::video_methods!(|_, m: &crate::preprocess::qwen_video::VideoMeta| m.time);
    };
    ($time:expr) => {
        fn video_token(&self) -> Option<i64> {
            self.video_token.into()
        }

        fn preprocess_video(
            &self,
            video: &crate::preprocess::qwen_video::VideoFrames,
            opts: &crate::preprocess::qwen_video::SampleOptions,
            limits: &crate::preprocess::Limits,
        ) -> crate::error::Result<(
            crate::preprocess::Pixels,
            crate::preprocess::qwen_video::VideoMeta,
        )> {
            let processor = crate::preprocess::qwen_video::loaded(&self.video)?;
            let (pixels, mut meta) = processor.process(video, opts, limits)?;
            #[allow(
                clippy::redundant_closure_call,
                reason = "`$time` is the caller's closure"
            )]
            let time = ($time)(self, &meta);
            meta.time = time;
            Ok((pixels, meta))
        }
    };
}
pub(crate) use video_methods;

/// How a family takes the Gemma knobs of [`PreprocessOptions`]: pan-and-scan (Gemma3's) and
/// the soft-token budget `max_soft_tokens` (Gemma 4's). The engine refuses what a family
/// does not take (`GemmaKnobs::refuse`) before its `preprocess_with` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmaKnobs {
    /// What the family does with the pan-and-scan settings.
    pub pan_and_scan: PanAndScan,
    /// Whether a `max_soft_tokens` is refused (Gemma 4 takes it; the Qwen-VL processors
    /// ignore it).
    pub refuse_max_soft_tokens: bool,
}

/// What a family does with the pan-and-scan settings of [`PreprocessOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanAndScan {
    /// Gemma3: its processor takes every setting.
    Takes,
    /// Refuses to switch it on, naming the family, and ignores the other settings (which do
    /// nothing while it is off).
    RefusesOn,
    /// [`PanAndScan::RefusesOn`] naming these models instead of the family (the processor
    /// the Qwen-VL and GLM-V families share: "Qwen and GLM").
    RefusesOnFor(&'static str),
    /// Refuses any of its settings, pointing at the family's own knob (tiled families: the
    /// tile budget `max_patches`, Idefics3's `do_image_splitting`).
    RefusesAny { use_instead: &'static str },
}

impl GemmaKnobs {
    /// Neither knob: pan-and-scan refused when switched on, `max_soft_tokens` refused.
    pub(crate) const NONE: GemmaKnobs = GemmaKnobs {
        pan_and_scan: PanAndScan::RefusesOn,
        refuse_max_soft_tokens: true,
    };

    /// The Qwen-VL image processor's (Qwen2-VL to Qwen3.5, GLM-4.xV, PaddleOCR-VL):
    /// pan-and-scan refused when switched on, naming "Qwen and GLM" models;
    /// `max_soft_tokens` refused (it was ignored until 2026-12-07, against the header).
    pub(crate) const QWEN: GemmaKnobs = GemmaKnobs {
        pan_and_scan: PanAndScan::RefusesOnFor("Qwen and GLM"),
        refuse_max_soft_tokens: true,
    };

    /// Neither knob, for a tiled family whose own knob `use_instead` sets what pan-and-scan
    /// would: any pan-and-scan setting refused, `max_soft_tokens` refused.
    pub(crate) const fn tiled(use_instead: &'static str) -> GemmaKnobs {
        GemmaKnobs {
            pan_and_scan: PanAndScan::RefusesAny { use_instead },
            refuse_max_soft_tokens: true,
        }
    }

    /// The error for the knobs of `opts` that `family` does not take, if any (pan-and-scan
    /// first).
    pub(crate) fn refuse(self, family: &str, opts: &PreprocessOptions) -> Result<()> {
        let no_pan_and_scan = |models: &str, hint: &str| -> Result<()> {
            Err(Error::invalid_argument(format!(
                "{models} models have no pan-and-scan (it is Gemma3's){hint}"
            )))
        };
        let on = opts.pan_and_scan == Some(true);
        match self.pan_and_scan {
            PanAndScan::RefusesOn if on => return no_pan_and_scan(family, ""),
            PanAndScan::RefusesOnFor(models) if on => return no_pan_and_scan(models, ""),
            PanAndScan::RefusesAny { use_instead } if opts.touches_pan_and_scan() => {
                return no_pan_and_scan(family, &format!("; use {use_instead}"))
            }
            _ => {}
        }
        match opts.max_soft_tokens {
            Some(n) if self.refuse_max_soft_tokens => Err(Error::invalid_argument(format!(
                "{family} models have no soft-token budget (max_soft_tokens {n} is Gemma 4's)"
            ))),
            _ => Ok(()),
        }
    }
}

/// Bytes of attention scores one image needs in one layer, to size batches.
pub fn attention_bytes(heads: usize, tokens: usize) -> usize {
    heads
        .saturating_mul(tokens)
        .saturating_mul(tokens)
        .saturating_mul(4)
}

/// A batch size that keeps per-layer attention scores around `budget` bytes.
pub fn batch_for_budget(per_image: usize, budget: usize) -> usize {
    (budget / per_image.max(1)).clamp(1, 64)
}

/// Images (or tiles) of `tokens` tokens per forward pass of a tower with `heads` heads: as
/// many as keep one layer's attention scores around 256 MiB.
pub fn attention_batch(heads: usize, tokens: usize) -> usize {
    batch_for_budget(attention_bytes(heads, tokens), 256 << 20)
}
