//! A preprocessed image, tied to the model that made it.

use crate::error::{Error, Result};
use crate::preprocess::qwen_video::{VideoMeta, VideoTime};
use crate::preprocess::Pixels;

/// An image preprocessed by one model, ready for that model's forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub(crate) model_id: u64,
    pub(crate) pixels: Pixels,
    /// The model's spatial merge size ([`crate::models::VisionModel::spatial_merge_size`]).
    pub(crate) merge: usize,
    /// What the prompt needs of a video (`None` for a still image).
    pub(crate) video: Option<VideoMeta>,
}

impl Image {
    /// The normalized input tensor, row-major, in the reference processor's layout.
    pub fn pixels(&self) -> &[f32] {
        &self.pixels.data
    }

    /// The shape of [`Image::pixels`] (e.g. `[3, H, W]`).
    pub fn shape(&self) -> &[usize] {
        &self.pixels.shape
    }

    /// How many embedding rows this image yields.
    pub fn n_tokens(&self) -> usize {
        self.pixels.n_tokens()
    }

    /// The video's prompt data (`None` for a still image).
    pub fn video(&self) -> Option<&VideoMeta> {
        self.video.as_ref()
    }

    /// The output embeddings as a `[frames, rows, cols]` grid (row-major order).
    pub fn token_grid(&self) -> [usize; 3] {
        self.pixels.grid
    }

    /// The grid of patches the tower sees, `[frames, rows, cols]`: the token grid with rows
    /// and columns times the model's spatial merge size. For Qwen2-VL this is the image's
    /// `image_grid_thw` (`[temporal patches, height / patch, width / patch]`).
    pub fn patch_grid(&self) -> [usize; 3] {
        let [t, r, c] = self.pixels.grid;
        [t, r * self.merge, c * self.merge]
    }

    /// The multimodal rotary (M-RoPE) position ids of this image's tokens when the image's
    /// first token sits at position `start`, as transformers' Qwen2-VL `get_rope_index`
    /// assigns them: token `(f, i, j)` of the token grid (row-major) gets temporal position
    /// `start + f`, height position `start + i` and width position `start + j`. Returns the
    /// ids as three rows of `n_tokens` values (temporal, height, width), and the position
    /// at which the text after the image continues: `start + max(rows, cols)`.
    ///
    /// Fails (invalid argument) when a position would overflow `i64`.
    pub fn mrope_positions(&self, start: i64) -> Result<(Vec<i64>, i64)> {
        let time = self.video.as_ref().map_or(VideoTime::Index, |v| v.time);
        if time == VideoTime::PerFrame {
            return Err(Error::invalid_argument(
                "this model lays a video out frame by frame (a timestamp, then each frame \
                 between its own vision start / end tokens): take the M-RoPE positions of \
                 each frame with vt_image_frame_mrope_positions",
            ));
        }
        self.positions(start, self.pixels.grid, time)
    }

    /// The M-RoPE ids of temporal group `frame` alone, laid out as its own image starting at
    /// `start` (Qwen3-VL / Qwen3.5 videos: `<t seconds><|vision_start|>` frame
    /// `<|vision_end|>`); for a still image, frame 0 is the whole image.
    pub fn frame_mrope_positions(&self, frame: usize, start: i64) -> Result<(Vec<i64>, i64)> {
        let [t, r, c] = self.pixels.grid;
        if frame >= t {
            return Err(Error::invalid_argument(format!(
                "frame {frame} is out of range (the image has {t} temporal groups)"
            )));
        }
        let time = self.video.as_ref().map_or(VideoTime::Index, |v| v.time);
        if t > 1 && time != VideoTime::PerFrame {
            return Err(Error::invalid_argument(
                "this model lays a video's frames out together: use vt_image_mrope_positions",
            ));
        }
        self.positions(start, [1, r, c], VideoTime::Index)
    }

    /// Positions of a `[t, r, c]` token grid from `start`.
    fn positions(&self, start: i64, grid: [usize; 3], time: VideoTime) -> Result<(Vec<i64>, i64)> {
        let [t, r, c] = grid;
        let temporal = |f: usize| -> i64 {
            match time {
                // (torch.arange(t) * interval).long(): f32 product, truncated.
                VideoTime::Scaled(x) => (f as f32 * x) as i64,
                _ => f as i64,
            }
        };
        let t_max = if t == 0 {
            0
        } else {
            temporal(t - 1).max(0) as usize + 1
        };
        let t = grid[0];
        let n = t * r * c;
        let overflow =
            || Error::invalid_argument(format!("M-RoPE positions from {start} overflow"));
        // The largest id is below start + max(t, r, c); the next text position is
        // start + max(r, c).
        i64::try_from(t_max.max(r).max(c))
            .ok()
            .and_then(|m| start.checked_add(m))
            .ok_or_else(overflow)?;
        let next = start + r.max(c) as i64;
        let mut out = vec![0i64; 3 * n];
        let (tt, rest) = out.split_at_mut(n);
        let (hh, ww) = rest.split_at_mut(n);
        let mut k = 0;
        for f in 0..t {
            for i in 0..r {
                for j in 0..c {
                    tt[k] = start + temporal(f);
                    hh[k] = start + i as i64;
                    ww[k] = start + j as i64;
                    k += 1;
                }
            }
        }
        Ok((out, next))
    }
}
