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
use once_cell::sync::OnceCell;
use safetensors::tensor::{Dtype as StDtype, Metadata};

use crate::error::{Error, Result, Status};

/// Safetensors headers larger than this are refused (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Leading `model.` is dropped before these top-level modules (transformers 4.52+ saves).
const MODEL_PREFIXED: [&str; 5] = [
    "vision_tower.",
    "visual.",
    "multi_modal_projector.",
    "language_model.",
    "image_newline",
];

/// The canonical form of a checkpoint tensor name:
/// - a leading `model.` before `vision_tower.`, `visual.`, `multi_modal_projector.`,
///   `language_model.` or `image_newline` is dropped (transformers 4.5x saves);
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

    /// Reads tensor `name`, checks that its shape is `shape`, converts it to `dtype` and
    /// puts it on `device`. Stored f32, bf16 and f16 are accepted.
    pub fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
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
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(end - start).map_err(|_| {
            Error::new(
                Status::OutOfMemory,
                format!("tensor `{name}`: {} bytes", end - start),
            )
        })?;
        bytes.resize(end - start, 0);
        opened
            .file
            .read_exact_at(&mut bytes, opened.data_start + start as u64)
            .map_err(|e| Error::io(&shard.path, &e))?;
        let t = Tensor::from_raw_buffer(&bytes, stored, shape, &Device::Cpu)?;
        let t = if stored == dtype {
            t
        } else {
            t.to_dtype(dtype)?
        };
        let t = if device.is_cpu() {
            t
        } else {
            t.to_device(device)?
        };
        Ok(t)
    }
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
