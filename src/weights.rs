//! Checkpoint weights: the safetensors files of a model folder (one file or shards named by
//! `model.safetensors.index.json`), read lazily so that only the tensors a vision tower asks
//! for are ever read from disk — a 10 GB language model beside them costs one header parse.
//!
//! Files are read with positioned reads, not memory-mapped: a mapped file that another
//! process truncates kills the host with SIGBUS, and this library promises never to crash
//! its host. Reading the tower's tensors once at load costs the same I/O as faulting in a
//! map, and the data has to be converted into the compute dtype anyway.
//!
//! Tensor names are normalized so that every layout that transformers writes or reads maps
//! to one canonical name (see [`canonical_name`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use once_cell::sync::OnceCell;
use safetensors::tensor::{Dtype as StDtype, Metadata};

use crate::error::{Error, Result, Status};
use crate::kernels::PackedB;

/// Safetensors headers larger than this are refused (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Leading `model.` is dropped before these top-level modules (transformers 4.52+ saves).
const MODEL_PREFIXED: [&str; 6] = [
    "vision_tower.",
    "visual.",
    "multi_modal_projector.",
    "mm_projector.",
    "language_model.",
    "image_newline",
];

/// The canonical form of a checkpoint tensor name:
/// - a leading `model.` before `vision_tower.`, `visual.`, `multi_modal_projector.`,
///   `mm_projector.`, `language_model.` or `image_newline` is dropped (transformers 4.5x
///   saves; Kimi K2.5's 5.23 saves);
/// - `vision_tower.vision_model.` becomes `vision_tower.` (Hub layout vs 5.x saves);
/// - a leading `vision_model.` is dropped (standalone towers and dual models as released,
///   vs 5.x standalone saves that have no prefix).
pub fn canonical_name(name: &str) -> String {
    let mut n = name;
    if let Some(rest) = n.strip_prefix("model.") {
        if MODEL_PREFIXED.iter().any(|p| rest.starts_with(p)) {
            n = rest;
        }
    }
    if let Some(rest) = n.strip_prefix("vision_tower.vision_model.") {
        return format!("vision_tower.{rest}");
    }
    if let Some(rest) = n.strip_prefix("vision_model.") {
        return rest.to_string();
    }
    n.to_string()
}

/// Where a tensor lives.
#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    /// The name as stored in the file.
    stored_name: String,
}

/// An opened, validated safetensors file.
struct OpenShard {
    file: File,
    /// Offset of the data section (8 + header length).
    data_start: u64,
    metadata: Metadata,
}

struct Shard {
    path: PathBuf,
    opened: OnceCell<OpenShard>,
}

/// The tensors of a model folder.
pub struct Weights {
    dir: PathBuf,
    shards: Vec<Shard>,
    entries: HashMap<String, Entry>,
    /// Linear layers keep bf16 weights for the CPU bf16 kernels (see [`Weights::bf16_matmuls`]).
    bf16_matmuls: bool,
}

/// Shape and storage type of a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    pub shape: Vec<usize>,
    pub dtype: String,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Weights({}, {} shards, {} tensors)",
            self.dir.display(),
            self.shards.len(),
            self.entries.len()
        )
    }
}

fn shard_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::bad_weights(format!("{}: {what}", path.display()))
}

fn open_shard(path: &Path) -> Result<OpenShard> {
    let file = File::open(path).map_err(|e| Error::io(path, &e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, &e))?.len();
    let mut len_bytes = [0u8; 8];
    if file_len < 8 {
        return Err(shard_error(
            path,
            format!("truncated safetensors file ({file_len} bytes, no header)"),
        ));
    }
    file.read_exact_at(&mut len_bytes, 0)
        .map_err(|e| Error::io(path, &e))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(shard_error(
            path,
            format!("not a safetensors file (header length {header_len} is absurd)"),
        ));
    }
    if 8 + header_len > file_len {
        return Err(shard_error(
            path,
            format!(
                "truncated safetensors file: header of {header_len} bytes but the file has {file_len}"
            ),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact_at(&mut header, 8)
        .map_err(|e| Error::io(path, &e))?;
    let metadata: Metadata = serde_json::from_slice(&header)
        .map_err(|e| shard_error(path, format!("corrupt safetensors header: {e}")))?;
    let data_len = metadata
        .tensors()
        .values()
        .map(|info| info.data_offsets.1)
        .max()
        .unwrap_or(0) as u64;
    let actual = file_len - 8 - header_len;
    if data_len > actual {
        return Err(shard_error(
            path,
            format!(
                "truncated safetensors file: tensors need {data_len} bytes of data, the file has {actual}"
            ),
        ));
    }
    if data_len < actual {
        return Err(shard_error(
            path,
            format!(
                "corrupt safetensors file: {} bytes after the last tensor",
                actual - data_len
            ),
        ));
    }
    Ok(OpenShard {
        file,
        data_start: 8 + header_len,
        metadata,
    })
}

fn dtype_name(dtype: StDtype) -> String {
    format!("{dtype:?}")
}

impl Weights {
    /// Marks this checkpoint as loaded for a bf16 model on the CPU: linear layers keep their
    /// weights in bf16 (packed for the CPU kernels) while the model computes in f32.
    pub fn set_bf16_matmuls(&mut self, on: bool) {
        self.bf16_matmuls = on;
    }

    /// See [`Weights::set_bf16_matmuls`].
    pub fn bf16_matmuls(&self) -> bool {
        self.bf16_matmuls
    }

    /// Finds the checkpoint files of `dir`: the shards named by
    /// `model.safetensors.index.json`, else `model.safetensors`, else every `*.safetensors`.
    /// Only headers are read (and, with an index, not even those until a tensor is needed).
    pub fn open(dir: &Path) -> Result<Weights> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let mut weights = Weights {
            dir: dir.to_path_buf(),
            shards: Vec::new(),
            entries: HashMap::new(),
            bf16_matmuls: false,
        };
        if index_path.is_file() {
            weights.add_index(&index_path)?;
        } else if single.is_file() {
            weights.add_file(&single)?;
        } else {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, &e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::new(
                    Status::Io,
                    format!(
                        "{}: no model.safetensors, model.safetensors.index.json or *.safetensors file",
                        dir.display()
                    ),
                ));
            }
            for f in files {
                weights.add_file(&f)?;
            }
        }
        Ok(weights)
    }

    fn insert(&mut self, stored_name: &str, shard: usize) -> Result<()> {
        let canonical = canonical_name(stored_name);
        if let Some(prev) = self.entries.get(&canonical) {
            if prev.stored_name != stored_name || prev.shard != shard {
                return Err(Error::bad_weights(format!(
                    "{}: tensors `{}` and `{stored_name}` both name `{canonical}`",
                    self.dir.display(),
                    prev.stored_name
                )));
            }
        }
        self.entries.insert(
            canonical,
            Entry {
                shard,
                stored_name: stored_name.to_string(),
            },
        );
        Ok(())
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        let opened = open_shard(path)?;
        let names: Vec<String> = opened.metadata.tensors().keys().cloned().collect();
        let shard = self.shards.len();
        let cell = OnceCell::new();
        let _ = cell.set(opened);
        self.shards.push(Shard {
            path: path.to_path_buf(),
            opened: cell,
        });
        for name in names {
            self.insert(&name, shard)?;
        }
        Ok(())
    }

    fn add_index(&mut self, index_path: &Path) -> Result<()> {
        let index = crate::config::ConfigObject::read(index_path)
            .map_err(|e| Error::bad_weights(e.message().to_string()))?;
        let map = index
            .value("weight_map")
            .and_then(|v| v.as_object())
            .ok_or_else(|| {
                Error::bad_weights(format!("{}: no `weight_map` object", index_path.display()))
            })?;
        let mut shard_of_file: HashMap<String, usize> = HashMap::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::bad_weights(format!(
                    "{}: weight_map entry `{name}` is not a file name",
                    index_path.display()
                ))
            })?;
            if file.contains('/') || file.contains('\\') || file == ".." {
                return Err(Error::bad_weights(format!(
                    "{}: shard name `{file}` must be a plain file name",
                    index_path.display()
                )));
            }
            let shard = match shard_of_file.get(file) {
                Some(&s) => s,
                None => {
                    let path = self.dir.join(file);
                    self.shards.push(Shard {
                        path,
                        opened: OnceCell::new(),
                    });
                    shard_of_file.insert(file.to_string(), self.shards.len() - 1);
                    self.shards.len() - 1
                }
            };
            self.insert(name, shard)?;
        }
        Ok(())
    }

    /// Whether a tensor with this canonical name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// All canonical names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(|s| s.as_str()).collect();
        v.sort_unstable();
        v
    }

    fn locate(&self, name: &str) -> Result<(&Entry, &Shard, &OpenShard)> {
        let entry = self.entries.get(name).ok_or_else(|| {
            Error::bad_weights(format!("{}: missing tensor `{name}`", self.dir.display()))
        })?;
        let shard = &self.shards[entry.shard];
        let opened = shard.opened.get_or_try_init(|| open_shard(&shard.path))?;
        if opened.metadata.info(&entry.stored_name).is_none() {
            return Err(Error::bad_weights(format!(
                "{}: tensor `{}` is listed in the index but missing from the file",
                shard.path.display(),
                entry.stored_name
            )));
        }
        Ok((entry, shard, opened))
    }

    /// Shape and storage dtype of a tensor (reads its shard's header if not yet read).
    pub fn meta(&self, name: &str) -> Result<TensorMeta> {
        let (entry, _, opened) = self.locate(name)?;
        let info = opened
            .metadata
            .info(&entry.stored_name)
            .expect("checked by locate");
        Ok(TensorMeta {
            shape: info.shape.clone(),
            dtype: dtype_name(info.dtype),
        })
    }

    /// The file, offset and stored type of tensor `name`, checked to have exactly `shape`
    /// (from config.json) and a data size that matches it.
    fn source(&self, name: &str, shape: &[usize]) -> Result<Source<'_>> {
        let (entry, shard, opened) = self.locate(name)?;
        let info = opened
            .metadata
            .info(&entry.stored_name)
            .expect("checked by locate");
        if info.shape != shape {
            return Err(Error::bad_weights(format!(
                "tensor `{}`: expected shape {shape:?} (from config.json), found {:?} in {}",
                entry.stored_name,
                info.shape,
                shard.path.display()
            )));
        }
        let stored = match info.dtype {
            StDtype::F32 => DType::F32,
            StDtype::BF16 => DType::BF16,
            StDtype::F16 => DType::F16,
            other => {
                return Err(Error::bad_weights(format!(
                    "tensor `{}`: storage type {other:?} is not supported (f32, bf16, f16)",
                    entry.stored_name
                )))
            }
        };
        let (start, end) = info.data_offsets;
        let count: usize = shape.iter().product();
        if (end - start) != count * stored.size_in_bytes() {
            return Err(Error::bad_weights(format!(
                "tensor `{}`: {} bytes of data for shape {shape:?} of {stored:?} in {}",
                entry.stored_name,
                end - start,
                shard.path.display()
            )));
        }
        Ok(Source {
            file: &opened.file,
            path: &shard.path,
            offset: opened.data_start + start as u64,
            stored,
            shape: shape.to_vec(),
        })
    }

    /// Reads tensor `name`, checks that its shape is `shape`, converts it to `dtype` and
    /// puts it on `device`. Stored f32, bf16 and f16 are accepted.
    pub fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let src = self.source(name, shape)?;
        let stored = src.stored;
        let count: usize = shape.iter().product();
        let read = |buf: &mut [u8]| src.read(0, buf);
        let t = match (stored, dtype) {
            // Stored as computed: read straight into the tensor's own buffer.
            (DType::F32, DType::F32) => tensor_from(read_as::<f32>(count, name, read)?, shape)?,
            (DType::BF16, DType::BF16) => tensor_from(read_as::<bf16>(count, name, read)?, shape)?,
            (DType::F16, DType::F16) => tensor_from(read_as::<f16>(count, name, read)?, shape)?,
            // bf16 / f16 files computed in f32: one conversion pass over the read values.
            (DType::BF16, DType::F32) => {
                let v = read_as::<bf16>(count, name, read)?;
                tensor_from(widen(&v, name, bf16::to_f32)?, shape)?
            }
            (DType::F16, DType::F32) => {
                let v = read_as::<f16>(count, name, read)?;
                tensor_from(widen(&v, name, f16::to_f32)?, shape)?
            }
            _ => {
                let len = count * stored.size_in_bytes();
                let mut bytes = crate::preprocess::limits::try_filled(len, 0u8, name)?;
                read(&mut bytes)?;
                Tensor::from_raw_buffer(&bytes, stored, shape, &Device::Cpu)?.to_dtype(dtype)?
            }
        };
        let t = if device.is_cpu() {
            t
        } else {
            t.to_device(device)?
        };
        Ok(t)
    }
}

impl Weights {
    /// Reads linear weight `name` `[n, k]` (`W`, any stored float type) straight into the
    /// packed bf16 `Wᵀ` of the CPU bf16 kernels: each panel's 16 rows are read into a small
    /// buffer and packed, panels in parallel on the calling thread's pool; the weight is never
    /// held whole in another form. Values are rounded to bf16 as a conversion of the tensor
    /// would round them (bf16 stored values are kept as they are).
    pub fn packed_bf16(&self, name: &str, shape: [usize; 2]) -> Result<PackedB> {
        self.packed_bf16_fused(&[(name, shape)])
    }

    /// Several linear weights `[n_i, k]` with the same `k`, packed as [`Weights::packed_bf16`]
    /// packs their rows one after another (`[Σ n_i, k]`: a fused q/k/v or gate/up), read
    /// straight into the one packed matrix (no packed parts copied together).
    pub fn packed_bf16_fused(&self, parts: &[(&str, [usize; 2])]) -> Result<PackedB> {
        let k = fused_width(parts)?;
        let sources = parts
            .iter()
            .map(|(name, shape)| self.source(name, shape))
            .collect::<Result<Vec<_>>>()?;
        let stored = sources[0].stored;
        if sources.iter().any(|s| s.stored != stored) {
            let each = parts
                .iter()
                .map(|&(name, shape)| self.packed_bf16(name, shape))
                .collect::<Result<Vec<_>>>()?;
            return PackedB::concat(&each.iter().collect::<Vec<_>>());
        }
        let n: usize = parts.iter().map(|(_, [rows, _])| rows).sum();
        // Rows n0.. of the fused weight into `buf` (whole rows of `size`-byte values), from
        // whichever parts hold them.
        let read = |size: usize, n0: usize, buf: &mut [u8]| -> Result<()> {
            let row = k * size;
            let (mut at, mut start) = (n0, 0);
            let mut buf = buf;
            for src in &sources {
                let end = start + src.shape[0];
                if at < end && !buf.is_empty() {
                    let take = (end - at).min(buf.len() / row);
                    let (now, rest) = std::mem::take(&mut buf).split_at_mut(take * row);
                    src.read((at - start) * row, now)?;
                    (at, buf) = (at + take, rest);
                }
                start = end;
            }
            Ok(())
        };
        match stored {
            DType::BF16 => PackedB::from_nk_rows(
                n,
                k,
                |n0, rows: &mut [bf16]| read(2, n0, bytemuck::cast_slice_mut(rows)),
                |v| v.to_bits(),
            ),
            DType::F16 => PackedB::from_nk_rows(
                n,
                k,
                |n0, rows: &mut [f16]| read(2, n0, bytemuck::cast_slice_mut(rows)),
                |v| bf16::from_f32(v.to_f32()).to_bits(),
            ),
            _ => PackedB::from_nk_rows(
                n,
                k,
                |n0, rows: &mut [f32]| read(4, n0, bytemuck::cast_slice_mut(rows)),
                |v| bf16::from_f32(v).to_bits(),
            ),
        }
    }
}

/// The common input width `k` of fused parts `[n_i, k]`, or an error naming the part that
/// differs (or that there is none).
fn fused_width(parts: &[(&str, [usize; 2])]) -> Result<usize> {
    let Some(&(first, [_, k])) = parts.first() else {
        return Err(Error::bad_weights("a fused projection without parts"));
    };
    match parts.iter().find(|(_, [_, c])| *c != k) {
        Some((name, _)) => Err(Error::bad_weights(format!(
            "tensor `{name}`: fused with `{first}`, whose input width {k} differs"
        ))),
        None => Ok(k),
    }
}

/// Bytes of a 2-D tensor read at once by [`Weights::tensor_transposed`] (a band of rows that
/// stays in the caches while it is scattered into the transpose).
const BAND_BYTES: usize = 1 << 20;

impl Weights {
    /// Reads 2-D tensor `name` of shape `[rows, cols]` and returns its transpose `[cols, rows]`
    /// as a contiguous CPU tensor of `dtype` (the layout CPU matmuls want for `Wᵀ`). The file
    /// is read a band of rows at a time into a small buffer, and each band is converted and
    /// scattered into the result across the calling thread's rayon pool (8 × 8 blocks in
    /// registers for f32, [`crate::kernels::transpose`]): the weight's bytes are read once
    /// and written once, with no full-size intermediate copy. Values equal `tensor(...)`
    /// transposed and made contiguous.
    pub fn tensor_transposed(&self, name: &str, shape: [usize; 2], dtype: DType) -> Result<Tensor> {
        self.tensors_transposed(&[(name, shape)], dtype)
    }

    /// Several 2-D tensors `[rows_i, cols]` with the same `cols`, each transposed as by
    /// [`Weights::tensor_transposed`], side by side: `[cols, Σ rows_i]` (the `Wᵀ` of a fused
    /// projection, e.g. q/k/v). For an f32 result each part is written straight into its
    /// columns (no second copy of the parts).
    pub fn tensors_transposed(&self, parts: &[(&str, [usize; 2])], dtype: DType) -> Result<Tensor> {
        let cols = fused_width(parts)?;
        let first = parts[0].0;
        let total: usize = parts.iter().map(|(_, [rows, _])| rows).sum();
        if dtype != DType::F32 {
            let each = parts
                .iter()
                .map(|&(name, shape)| self.source(name, &shape)?.transposed(name, dtype))
                .collect::<Result<Vec<_>>>()?;
            return match &each[..] {
                [one] => Ok(one.clone()),
                _ => Ok(Tensor::cat(&each, 1)?),
            };
        }
        let mut out = zeroed::<f32>(cols * total, first)?;
        let mut col0 = 0;
        for &(name, shape) in parts {
            let src = self.source(name, &shape)?;
            match src.stored {
                DType::F32 => {
                    src.transpose_f32(name, None::<fn(f32) -> f32>, &mut out, total, col0)
                }
                DType::BF16 => src.transpose_f32(name, Some(bf16::to_f32), &mut out, total, col0),
                DType::F16 => src.transpose_f32(name, Some(f16::to_f32), &mut out, total, col0),
                stored => Err(Error::bad_weights(format!(
                    "tensor `{name}`: cannot compute {stored:?} weights in f32"
                ))),
            }?;
            col0 += shape[0];
        }
        Ok(Tensor::from_vec(out, (cols, total), &Device::Cpu)?)
    }
}

/// Where a checked tensor's data lies.
struct Source<'a> {
    file: &'a File,
    path: &'a Path,
    /// Absolute offset of the first byte.
    offset: u64,
    stored: DType,
    shape: Vec<usize>,
}

impl Source<'_> {
    fn read(&self, at: usize, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, self.offset + at as u64)
            .map_err(|e| Error::io(self.path, &e))
    }

    /// Rows of this `[rows, cols]` tensor of `S` read at once: about [`BAND_BYTES`], a
    /// multiple of 8 (the transpose's blocks) when there are more rows than that.
    fn band_rows<S>(&self) -> usize {
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let band = BAND_BYTES / (cols * std::mem::size_of::<S>()).max(1);
        (band / 8 * 8).max(8).min(rows.max(1))
    }

    /// The transpose of this `[rows, cols]` tensor converted to f32 (`convert`; `None` when it
    /// is stored in f32) into columns `col0 .. col0 + rows` of `out`, whose rows are `stride`
    /// values long.
    fn transpose_f32<S>(
        &self,
        name: &str,
        convert: Option<impl Fn(S) -> f32 + Sync>,
        out: &mut [f32],
        stride: usize,
        col0: usize,
    ) -> Result<()>
    where
        S: bytemuck::Pod + Default + Send + Sync,
    {
        use rayon::prelude::*;
        const BLOCK: usize = 32;
        let cols = self.shape[1];
        let band = self.band_rows::<S>();
        let mut wide = match convert {
            Some(_) => crate::preprocess::limits::try_filled(band * cols, 0f32, name)?,
            None => Vec::new(),
        };
        self.for_each_band(name, |r0, r1, part: &[S]| {
            let part: &[f32] = match &convert {
                Some(f) => {
                    let wide = &mut wide[..part.len()];
                    wide.par_chunks_mut(1 << 14)
                        .zip(part.par_chunks(1 << 14))
                        .for_each(|(o, v)| o.iter_mut().zip(v).for_each(|(o, &v)| *o = f(v)));
                    wide
                }
                None => bytemuck::cast_slice(part),
            };
            // Output rows c0 .. c0 + BLOCK (columns of the weight) get this band's rows.
            out.par_chunks_mut(stride * BLOCK)
                .enumerate()
                .try_for_each(|(block, chunk)| {
                    let c0 = block * BLOCK;
                    let width = chunk.len() / stride;
                    let block = crate::kernels::Block {
                        rows: r1 - r0,
                        cols: width,
                        src_stride: cols,
                        dst_stride: stride,
                    };
                    crate::kernels::transpose(&part[c0..], &mut chunk[col0 + r0..], block)
                })
        })
    }

    /// Reads this `[rows, cols]` tensor of `S` a band of [`Source::band_rows`] rows at a
    /// time into one buffer, and calls `f(r0, r1, rows r0..r1)` for each band in order; the
    /// first error (a read's or `f`'s) is returned.
    fn for_each_band<S>(
        &self,
        name: &str,
        mut f: impl FnMut(usize, usize, &[S]) -> Result<()>,
    ) -> Result<()>
    where
        S: bytemuck::Pod + Default,
    {
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let band = self.band_rows::<S>();
        let mut scratch = crate::preprocess::limits::try_filled(band * cols, S::default(), name)?;
        for r0 in (0..rows).step_by(band) {
            let r1 = (r0 + band).min(rows);
            let part = &mut scratch[..(r1 - r0) * cols];
            self.read(
                r0 * cols * std::mem::size_of::<S>(),
                bytemuck::cast_slice_mut(part),
            )?;
            f(r0, r1, part)?;
        }
        Ok(())
    }

    /// The transpose of this `[rows, cols]` tensor in `dtype` (the scalar scatter: the f32
    /// result goes through [`Source::transpose_f32`]).
    fn transposed(&self, name: &str, dtype: DType) -> Result<Tensor> {
        match (self.stored, dtype) {
            (DType::F32, DType::BF16) => self.transposed_as(name, bf16::from_f32),
            (DType::F32, DType::F16) => self.transposed_as(name, f16::from_f32),
            (DType::BF16, DType::BF16) => self.transposed_as(name, |v: bf16| v),
            (DType::BF16, DType::F16) => {
                self.transposed_as(name, |v: bf16| f16::from_f32(v.to_f32()))
            }
            (DType::F16, DType::BF16) => {
                self.transposed_as(name, |v: f16| bf16::from_f32(v.to_f32()))
            }
            (DType::F16, DType::F16) => self.transposed_as(name, |v: f16| v),
            (stored, _) => Err(Error::bad_weights(format!(
                "tensor `{name}`: cannot compute {stored:?} weights in {dtype:?}"
            ))),
        }
    }

    /// The transpose of this `[rows, cols]` tensor of stored type `S`, converted by `convert`.
    fn transposed_as<S, T, F>(&self, name: &str, convert: F) -> Result<Tensor>
    where
        S: bytemuck::Pod + Default + Send + Sync,
        T: candle_core::WithDType + bytemuck::Zeroable + Send + Sync,
        F: Fn(S) -> T + Sync,
    {
        use rayon::prelude::*;
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut out = zeroed::<T>(rows * cols, name)?;
        self.for_each_band(name, |r0, r1, part: &[S]| {
            // Output row c (a column of the weight) gets this band's rows r0..r1.
            // Tiles of 32 columns: each band row's 32 values are read contiguously and written
            // to 32 output rows, one element further each time.
            out.par_chunks_mut(rows * 32)
                .enumerate()
                .for_each(|(block, chunk)| {
                    let c0 = block * 32;
                    let width = chunk.len() / rows;
                    for r in r0..r1 {
                        let src = &part[(r - r0) * cols + c0..(r - r0) * cols + c0 + width];
                        for (dc, &v) in src.iter().enumerate() {
                            chunk[dc * rows + r] = convert(v);
                        }
                    }
                });
            Ok(())
        })?;
        Ok(Tensor::from_vec(out, (cols, rows), &Device::Cpu)?)
    }
}

/// `count` values of `T` read by `read` into a fresh buffer (safetensors stores little-endian
/// values, which is the layout of every target this crate builds for).
fn read_as<T: bytemuck::Pod>(
    count: usize,
    name: &str,
    read: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<Vec<T>> {
    let mut v = zeroed::<T>(count, name)?;
    read(bytemuck::cast_slice_mut(&mut v))?;
    Ok(v)
}

/// `count` zeros for tensor `name`, allocated fallibly. Zeroed memory comes fresh from the
/// system (no pass writing zeros), which is what makes a large load cheap.
fn zeroed<T: bytemuck::Zeroable>(count: usize, name: &str) -> Result<Vec<T>> {
    bytemuck::allocation::try_zeroed_vec(count).map_err(|()| {
        Error::new(
            Status::OutOfMemory,
            format!(
                "tensor `{name}`: cannot allocate {} bytes",
                count as u128 * std::mem::size_of::<T>() as u128
            ),
        )
    })
}

#[cfg(target_endian = "big")]
compile_error!("safetensors data is little-endian; vtower reads it in place");

/// `values` converted to f32, split across the calling thread's rayon pool.
fn widen<T: Copy + Sync>(values: &[T], name: &str, f: fn(T) -> f32) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let mut out = zeroed::<f32>(values.len(), name)?;
    out.par_chunks_mut(1 << 16)
        .zip(values.par_chunks(1 << 16))
        .for_each(|(o, v)| {
            for (o, &v) in o.iter_mut().zip(v) {
                *o = f(v);
            }
        });
    Ok(out)
}

/// A CPU tensor owning `values` (no copy).
fn tensor_from<T: candle_core::WithDType>(values: Vec<T>, shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_cover_all_layouts() {
        let cases = [
            (
                "vision_model.encoder.layers.0.mlp.fc1.weight",
                "encoder.layers.0.mlp.fc1.weight",
            ),
            (
                "encoder.layers.0.mlp.fc1.weight",
                "encoder.layers.0.mlp.fc1.weight",
            ),
            (
                "vision_tower.vision_model.post_layernorm.bias",
                "vision_tower.post_layernorm.bias",
            ),
            (
                "model.vision_tower.vision_model.post_layernorm.bias",
                "vision_tower.post_layernorm.bias",
            ),
            (
                "model.vision_tower.post_layernorm.bias",
                "vision_tower.post_layernorm.bias",
            ),
            (
                "vision_tower.post_layernorm.bias",
                "vision_tower.post_layernorm.bias",
            ),
            (
                "model.multi_modal_projector.linear_1.weight",
                "multi_modal_projector.linear_1.weight",
            ),
            (
                "model.visual.blocks.0.attn.qkv.weight",
                "visual.blocks.0.attn.qkv.weight",
            ),
            (
                "model.layers.0.mlp.up_proj.weight",
                "model.layers.0.mlp.up_proj.weight",
            ),
            (
                "text_model.embeddings.token_embedding.weight",
                "text_model.embeddings.token_embedding.weight",
            ),
        ];
        for (stored, canonical) in cases {
            assert_eq!(canonical_name(stored), canonical, "{stored}");
        }
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn tiny_safetensors() -> Vec<u8> {
        let header = br#"{"a.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}}"#;
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header);
        out.extend_from_slice(&1.5f32.to_le_bytes());
        out.extend_from_slice(&(-2.0f32).to_le_bytes());
        out.extend_from_slice(&[0x80, 0x3f, 0x00, 0x40]); // bf16 1.0, 2.0
        out
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vtower-weights-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_and_converts_tensors() {
        let d = tmpdir("ok");
        write_file(&d, "model.safetensors", &tiny_safetensors());
        let w = Weights::open(&d).unwrap();
        let a = w
            .tensor("a.weight", &[2], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(a.to_vec1::<f32>().unwrap(), vec![1.5, -2.0]);
        let b = w.tensor("b", &[2], DType::F32, &Device::Cpu).unwrap();
        assert_eq!(b.to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        let e = w
            .tensor("a.weight", &[3], DType::F32, &Device::Cpu)
            .unwrap_err();
        assert_eq!(e.status(), Status::BadWeights);
        assert!(
            e.message().contains("expected shape [3]") && e.message().contains("[2]"),
            "{e}"
        );
        let e = w
            .tensor("nope", &[3], DType::F32, &Device::Cpu)
            .unwrap_err();
        assert!(e.message().contains("missing tensor `nope`"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Reading a weight straight into its transpose (in bands, converting on the way) gives
    /// exactly the values of reading it and transposing it, for every stored and compute type,
    /// over several bands and an odd shape.
    #[test]
    fn transposed_reads_equal_read_then_transpose() {
        use safetensors::tensor::{serialize, TensorView};
        let (rows, cols) = (601, 703); // f32: 1.7 MB, two bands
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 1e3 / (1 + i % 97) as f32)
            .collect();
        let as_bytes = |dtype: DType| -> Vec<u8> {
            let t = Tensor::from_vec(values.clone(), (rows, cols), &Device::Cpu).unwrap();
            let t = t.to_dtype(dtype).unwrap();
            match dtype {
                DType::F32 => {
                    bytemuck::cast_slice(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                        .to_vec()
                }
                DType::BF16 => {
                    bytemuck::cast_slice(&t.flatten_all().unwrap().to_vec1::<bf16>().unwrap())
                        .to_vec()
                }
                _ => bytemuck::cast_slice(&t.flatten_all().unwrap().to_vec1::<f16>().unwrap())
                    .to_vec(),
            }
        };
        let stored = [
            (DType::F32, StDtype::F32),
            (DType::BF16, StDtype::BF16),
            (DType::F16, StDtype::F16),
        ];
        let data: Vec<Vec<u8>> = stored.iter().map(|(d, _)| as_bytes(*d)).collect();
        let views: Vec<(String, TensorView)> = stored
            .iter()
            .zip(&data)
            .map(|((d, st), bytes)| {
                (
                    format!("{d:?}"),
                    TensorView::new(*st, vec![rows, cols], bytes).unwrap(),
                )
            })
            .collect();
        let d = tmpdir("transposed");
        write_file(&d, "model.safetensors", &serialize(views, None).unwrap());
        let w = Weights::open(&d).unwrap();
        for (s, _) in stored {
            for target in [DType::F32, DType::BF16, DType::F16] {
                let name = format!("{s:?}");
                let want = w
                    .tensor(&name, &[rows, cols], target, &Device::Cpu)
                    .unwrap()
                    .t()
                    .unwrap()
                    .contiguous()
                    .unwrap();
                let got = w.tensor_transposed(&name, [rows, cols], target).unwrap();
                assert_eq!(got.dims(), &[cols, rows]);
                assert_eq!(got.dtype(), target);
                let f = |t: &Tensor| {
                    t.to_dtype(DType::F32)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                };
                assert!(f(&got) == f(&want), "stored {s:?} computed {target:?}");
            }
            // Packed for the bf16 kernels while reading: the packing of the tensor read as
            // bf16 (rows of 601 = 37 panels, the last one short; odd k = 703).
            let name = format!("{s:?}");
            let bf = w
                .tensor(&name, &[rows, cols], DType::BF16, &Device::Cpu)
                .unwrap();
            let want = crate::models::fused::pack_bf16_weight(&bf).unwrap();
            let got = w.packed_bf16(&name, [rows, cols]).unwrap();
            assert_eq!((got.n(), got.k()), (rows, cols));
            for (kk, nn) in [(0, 0), (702, 600), (351, 17), (1, 599), (700, 16)] {
                assert_eq!(
                    got.get(kk, nn),
                    want.get(kk, nn),
                    "stored {s:?} [{kk}, {nn}]"
                );
            }
            assert!(got.same_values(&want), "stored {s:?} packed while reading");
        }
        assert_eq!(
            w.packed_bf16("F32", [cols, rows]).unwrap_err().status(),
            Status::BadWeights
        );
        let e = w
            .tensor_transposed("F32", [cols, rows], DType::F32)
            .unwrap_err();
        assert_eq!(e.status(), Status::BadWeights);
        // Fused parts (q/k/v): each part's transpose in its own columns, in every dtype.
        let parts = [
            ("F32", [rows, cols]),
            ("BF16", [rows, cols]),
            ("F16", [rows, cols]),
        ];
        for target in [DType::F32, DType::BF16] {
            let each: Vec<Tensor> = parts
                .iter()
                .map(|&(n, shape)| w.tensor_transposed(n, shape, target).unwrap())
                .collect();
            let want = Tensor::cat(&each, 1).unwrap();
            let got = w.tensors_transposed(&parts, target).unwrap();
            assert_eq!(got.dims(), &[cols, 3 * rows]);
            let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
            let (got, want) = (
                f(&got).to_vec1::<f32>().unwrap(),
                f(&want).to_vec1::<f32>().unwrap(),
            );
            assert!(got == want, "fused {target:?}");
        }
        let e = w
            .tensors_transposed(&[("F32", [rows, cols]), ("F16", [cols, rows])], DType::F32)
            .unwrap_err();
        assert!(e.message().contains("input width"), "{e}");
        assert!(w.tensors_transposed(&[], DType::F32).is_err());
        // Fused packing (601 rows a part: panels straddle the parts), same and mixed storage.
        for names in [
            ["BF16", "BF16", "BF16"],
            ["F32", "F16", "F32"],
            ["F16", "F16", "F16"],
        ] {
            let parts: Vec<(&str, [usize; 2])> = names.iter().map(|&n| (n, [rows, cols])).collect();
            let each: Vec<PackedB> = parts
                .iter()
                .map(|&(n, shape)| w.packed_bf16(n, shape).unwrap())
                .collect();
            let want = PackedB::concat(&each.iter().collect::<Vec<_>>()).unwrap();
            let got = w.packed_bf16_fused(&parts).unwrap();
            assert_eq!((got.n(), got.k()), (3 * rows, cols));
            assert!(got.same_values(&want), "fused packing of {names:?}");
        }
        assert!(w.packed_bf16_fused(&[]).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors() {
        let d = tmpdir("bad");
        let full = tiny_safetensors();
        for cut in [0, 5, 8, 20, full.len() - 1] {
            write_file(&d, "model.safetensors", &full[..cut]);
            let e = Weights::open(&d).unwrap_err();
            assert_eq!(e.status(), Status::BadWeights, "cut {cut}: {e}");
        }
        let mut garbage = full.clone();
        garbage[8] = b'!'; // the opening brace of the JSON header
        write_file(&d, "model.safetensors", &garbage);
        assert_eq!(Weights::open(&d).unwrap_err().status(), Status::BadWeights);
        std::fs::remove_file(d.join("model.safetensors")).unwrap();
        assert_eq!(Weights::open(&d).unwrap_err().status(), Status::Io);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn index_shards_are_opened_lazily() {
        let d = tmpdir("index");
        write_file(&d, "part-1.safetensors", &tiny_safetensors());
        // The second shard is garbage, but no requested tensor lives there.
        write_file(&d, "part-2.safetensors", b"garbage");
        write_file(
            &d,
            "model.safetensors.index.json",
            br#"{"weight_map": {"a.weight": "part-1.safetensors", "b": "part-1.safetensors", "language_model.x": "part-2.safetensors"}}"#,
        );
        let w = Weights::open(&d).unwrap();
        assert!(w.tensor("a.weight", &[2], DType::F32, &Device::Cpu).is_ok());
        let e = w
            .tensor("language_model.x", &[1], DType::F32, &Device::Cpu)
            .unwrap_err();
        assert_eq!(e.status(), Status::BadWeights);
        let _ = std::fs::remove_dir_all(&d);
    }
}
