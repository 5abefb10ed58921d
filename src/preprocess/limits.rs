//! Caps on what one image's preprocessing may produce, and fallible allocation.
//!
//! Decoding refuses images over `max_image_pixels` from their header, but the steps after it
//! can make far larger buffers than the decoded image: a pad-to-square canvas of a 10⁶×1
//! strip is 10¹² pixels, a shortest-edge resize of it scales the long side up a thousandfold,
//! pan-and-scan can cut thousands of crops. Every step therefore checks the size of its
//! *output* against these limits before it allocates, and large buffers are reserved with
//! `try_reserve` so that an allocation the system cannot satisfy is an
//! [`Status::OutOfMemory`] error instead of an abort of the host process.

use crate::error::{Error, Result, Status};

/// Limits for one image, set per model at load time (`LoadOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most pixels of any image a step produces (decoded, padded, resized, cropped).
    pub max_pixels: u64,
    /// Most embedding rows one image may produce, every frame and crop counted.
    pub max_tokens: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pixels: crate::engine::DEFAULT_MAX_IMAGE_PIXELS,
            max_tokens: crate::engine::DEFAULT_MAX_IMAGE_TOKENS,
        }
    }
}

impl Limits {
    /// Checks that a `width` x `height` image made by `step` (e.g. "pad-to-square canvas")
    /// stays within `max_pixels`.
    pub fn check_image(&self, step: &str, width: u64, height: u64) -> Result<()> {
        let pixels = width.saturating_mul(height);
        if pixels > self.max_pixels {
            return Err(Error::new(
                Status::ImageTooLarge,
                format!(
                    "{step} would be {width}x{height} = {pixels} pixels, above the limit of {} \
                     (max_image_pixels)",
                    self.max_pixels
                ),
            ));
        }
        Ok(())
    }

    /// Checks that an image producing `tokens` embedding rows (`what` says how they come
    /// about) stays within `max_tokens`.
    pub fn check_tokens(&self, tokens: u64, what: &dyn Fn() -> String) -> Result<()> {
        if tokens > self.max_tokens {
            return Err(Error::new(
                Status::ImageTooLarge,
                format!(
                    "{} gives {tokens} embedding rows, above the limit of {} (max_image_tokens)",
                    what(),
                    self.max_tokens
                ),
            ));
        }
        Ok(())
    }
}

/// The error for an allocation of `count` values of `T` for `what` that failed.
pub(crate) fn oom<T>(count: usize, what: &str) -> Error {
    Error::new(
        Status::OutOfMemory,
        format!(
            "cannot allocate {} bytes for {what}",
            (count as u128) * std::mem::size_of::<T>() as u128
        ),
    )
}

/// An empty vector with room for `count` values, or an out-of-memory error.
pub fn try_with_capacity<T>(count: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(count)
        .map_err(|_| oom::<T>(count, what))?;
    Ok(v)
}

/// A vector of `count` copies of `value`, or an out-of-memory error.
pub fn try_filled<T: Clone>(count: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(count, what)?;
    v.resize(count, value);
    Ok(v)
}

/// [`try_filled`] written by the calling thread's rayon pool in parallel (pieces of at least
/// 64 Ki values): for the outputs of the compute kernels, where one thread writing the whole
/// buffer (and taking all its page faults) cost as much as a tenth of a bf16 GEMM.
pub fn try_filled_par<T: Clone + Send + Sync>(
    count: usize,
    value: T,
    what: &str,
) -> Result<Vec<T>> {
    use rayon::iter::{IndexedParallelIterator, ParallelExtend};
    let mut v = try_with_capacity(count, what)?;
    v.par_extend(rayon::iter::repeat_n(value, count).with_min_len(1 << 16));
    Ok(v)
}

/// `count` zeros, or an out-of-memory error. Large buffers come zeroed from the system (fresh
/// pages, touched only when first written): no pass writing zeros, and the page faults fall on
/// whichever threads fill the buffer, not all on the allocating one.
pub fn try_zeroed<T: bytemuck::Zeroable>(count: usize, what: &str) -> Result<Vec<T>> {
    bytemuck::allocation::try_zeroed_vec(count).map_err(|()| oom::<T>(count, what))
}

/// `width * height * channels` as a `usize`, or an out-of-memory error when it overflows.
pub fn buffer_len(width: u64, height: u64, channels: u64, what: &str) -> Result<usize> {
    width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            Error::new(
                Status::OutOfMemory,
                format!("{what} of {width}x{height}x{channels} values does not fit in memory"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_allocations() {
        let v: Vec<u32> = try_zeroed(1 << 20, "a test buffer").unwrap();
        assert_eq!(v.len(), 1 << 20);
        assert!(v.iter().all(|&x| x == 0));
        let e = try_zeroed::<u64>(usize::MAX / 4, "a huge buffer").unwrap_err();
        assert!(e.to_string().contains("a huge buffer"), "{e}");
    }

    #[test]
    fn checks_and_allocations() {
        let l = Limits {
            max_pixels: 100,
            max_tokens: 10,
        };
        assert!(l.check_image("canvas", 10, 10).is_ok());
        let e = l.check_image("canvas", 1_000_000, 1_000_000).unwrap_err();
        assert_eq!(e.status(), Status::ImageTooLarge);
        assert!(
            e.message().contains("canvas would be 1000000x1000000"),
            "{e}"
        );
        assert!(l.check_image("x", u64::MAX, u64::MAX).is_err());
        assert!(l.check_tokens(10, &|| "a".into()).is_ok());
        let e = l.check_tokens(11, &|| "pan-and-scan".into()).unwrap_err();
        assert!(e.message().starts_with("pan-and-scan gives 11"), "{e}");
        assert_eq!(try_filled(4, 7u8, "t").unwrap(), vec![7; 4]);
        let e = try_with_capacity::<u64>(usize::MAX / 2, "a huge table").unwrap_err();
        assert_eq!(e.status(), Status::OutOfMemory);
        assert!(e.message().contains("a huge table"), "{e}");
        assert!(buffer_len(u64::MAX, 2, 3, "b").is_err());
        assert_eq!(buffer_len(2, 3, 4, "b").unwrap(), 24);
    }
}
