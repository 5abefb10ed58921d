//! Reading `config.json` and `preprocessor_config.json`: typed access to JSON values with
//! errors that name the file and the key.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result, Status};

/// Refuse config files larger than this: a real one is a few KB.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A JSON object read from a config file, remembering where it came from so that errors can
/// say `config.json: vision_config.hidden_size: ...`.
#[derive(Debug, Clone)]
pub struct ConfigObject {
    /// Where this object is, e.g. `config.json` or `config.json: vision_config`.
    location: String,
    map: Map<String, Value>,
}

impl ConfigObject {
    /// Reads and parses a JSON object from `path`.
    pub fn read(path: &Path) -> Result<ConfigObject> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, &e))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(Error::bad_config(format!(
                "{}: {} bytes is too large for a config file",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
        ConfigObject::parse(&name, &text)
    }

    /// Parses `text` as a JSON object; `location` names it in errors.
    pub fn parse(location: &str, text: &str) -> Result<ConfigObject> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_config(format!("{location}: invalid JSON: {e}")))?;
        match value {
            Value::Object(map) => Ok(ConfigObject {
                location: location.to_string(),
                map,
            }),
            _ => Err(Error::bad_config(format!(
                "{location}: expected a JSON object at the top level"
            ))),
        }
    }

    /// An empty object (used where a file is optional and absent).
    pub fn empty(location: &str) -> ConfigObject {
        ConfigObject {
            location: location.to_string(),
            map: Map::new(),
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The raw value of `key`, treating JSON `null` as absent.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    /// Whether `key` is present with the value `null` (which [`ConfigObject::value`] treats as
    /// absent): for settings whose class default is not `None`, where a saved `null` means
    /// `None`.
    pub fn is_null(&self, key: &str) -> bool {
        matches!(self.map.get(key), Some(Value::Null))
    }

    /// The key a setting is stored under when a config class accepts several names for it
    /// (its `attribute_map`: `image_token_id` for `image_token_index`, `num_attention_heads`
    /// for `num_heads`, ...): the first of `names` present, else the first. Read the value
    /// with the typed accessors, e.g. `cfg.i64(cfg.aliased(&["image_token_index",
    /// "image_token_id"]))`.
    pub fn aliased<'a>(&self, names: &[&'a str]) -> &'a str {
        names
            .iter()
            .copied()
            .find(|n| self.contains(n))
            .or_else(|| names.first().copied())
            .unwrap_or("")
    }

    fn err(&self, key: &str, what: impl std::fmt::Display) -> Error {
        Error::bad_config(format!("{}: `{key}`: {what}", self.location))
    }

    /// A nested object, if present.
    pub fn object(&self, key: &str) -> Result<Option<ConfigObject>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(ConfigObject {
                location: if self.location.contains(": ") {
                    format!("{}.{key}", self.location)
                } else {
                    format!("{}: {key}", self.location)
                },
                map: map.clone(),
            })),
            Some(other) => Err(self.err(key, format!("expected an object, found {other}"))),
        }
    }

    /// [`ConfigObject::object`], an empty object of that name when absent (a sub-config
    /// whose class defaults then all apply).
    pub fn object_or_empty(&self, key: &str) -> Result<ConfigObject> {
        Ok(self
            .object(key)?
            .unwrap_or_else(|| ConfigObject::empty(&format!("{}: {key}", self.location))))
    }

    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(key, format!("expected a string, found {other}"))),
        }
    }

    pub fn string_or(&self, key: &str, default: &str) -> Result<String> {
        Ok(self.string(key)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(key, format!("expected true/false, found {other}"))),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.bool(key)?.unwrap_or(default))
    }

    /// A non-negative integer no larger than `max` (config values beyond it are absurd
    /// and would only lead to giant allocations).
    pub fn usize_max(&self, key: &str, max: usize) -> Result<Option<usize>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .as_u64()
                    .or_else(|| {
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                            .map(|f| f as u64)
                    })
                    .ok_or_else(|| {
                        self.err(key, format!("expected a non-negative integer, found {v}"))
                    })?;
                if n > max as u64 {
                    return Err(self.err(
                        key,
                        format!("{n} is larger than the supported maximum {max}"),
                    ));
                }
                Ok(Some(n as usize))
            }
        }
    }

    pub fn usize_or(&self, key: &str, default: usize, max: usize) -> Result<usize> {
        Ok(self.usize_max(key, max)?.unwrap_or(default))
    }

    /// A positive integer (at most `max`) that must be present or defaulted.
    pub fn positive_or(&self, key: &str, default: usize, max: usize) -> Result<usize> {
        let n = self.usize_or(key, default, max)?;
        if n == 0 {
            return Err(self.err(key, "must be positive"));
        }
        Ok(n)
    }

    /// A signed integer.
    pub fn i64(&self, key: &str) -> Result<Option<i64>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected an integer, found {v}"))),
        }
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(f) if f.is_finite() => Ok(Some(f)),
                _ => Err(self.err(key, format!("expected a finite number, found {v}"))),
            },
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.f64(key)?.unwrap_or(default))
    }

    /// A list of non-negative integers (block indexes and the like).
    pub fn usize_list(&self, key: &str) -> Result<Option<Vec<usize>>> {
        let location = &self.location;
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_u64().map(|i| i as usize).ok_or_else(|| {
                        Error::bad_config(format!(
                            "{location}: `{key}` must hold non-negative integers, found {i}"
                        ))
                    })
                })
                .collect::<Result<Vec<usize>>>()
                .map(Some),
            Some(other) => Err(Error::bad_config(format!(
                "{location}: `{key}` must be a list, found {other}"
            ))),
        }
    }

    /// A list of numbers, or a single number meaning "this value for every channel".
    pub fn f64_list(&self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| self.err(key, format!("expected numbers, found {v}")))
                })
                .collect::<Result<Vec<f64>>>()
                .map(Some),
            Some(v) => match v.as_f64() {
                Some(f) if f.is_finite() => Ok(Some(vec![f])),
                _ => Err(self.err(key, format!("expected a list of numbers, found {v}"))),
            },
        }
    }
}

/// Where a config class keeps its rotary settings: an object under one of these keys
/// (`rope_parameters` in 5.x saves, `rope_scaling` in older ones) holding `rope_theta` and
/// `rope_type` (or `type`). Classes differ in which wins when both are present.
pub const ROPE_PARAMETERS_FIRST: [&str; 2] = ["rope_parameters", "rope_scaling"];
/// The other order (`PixtralVisionConfig`: `rope_scaling or rope_parameters`).
pub const ROPE_SCALING_FIRST: [&str; 2] = ["rope_scaling", "rope_parameters"];

/// The rotary base of a vision tower with axial 2D rotary embeddings, as `PreTrainedConfig`
/// standardizes it: `rope_theta` in the first of the objects `keys` names that is present,
/// else a top-level `rope_theta`, else 10000. The rope type must be axial (`default`, or
/// absent, is read as axial, as transformers does for these towers); the base must be
/// positive.
pub fn axial_rope_theta(cfg: &ConfigObject, keys: [&str; 2]) -> Result<f64> {
    let params = match cfg.object(keys[0])? {
        Some(p) => Some(p),
        None => cfg.object(keys[1])?,
    };
    let top = cfg.f64("rope_theta")?;
    let (theta, kind) = match &params {
        Some(p) => (
            p.f64("rope_theta")?.or(top),
            p.string(p.aliased(&["rope_type", "type"]))?,
        ),
        None => (top, None),
    };
    match kind.as_deref() {
        None | Some("default") | Some("axial") => {}
        Some(other) => {
            return Err(Error::bad_config(format!(
                "{}: rope type `{other}` is not supported (the vision tower uses axial 2D \
                 rotary embeddings)",
                cfg.location()
            )))
        }
    }
    let theta = theta.unwrap_or(10_000.0);
    if theta <= 0.0 {
        return Err(Error::bad_config(format!(
            "{}: rope_theta {theta} must be positive",
            cfg.location()
        )));
    }
    Ok(theta)
}

/// The configuration files of a model folder.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    /// `config.json`.
    pub config: ConfigObject,
    /// The image processor's settings, found as transformers 5.x looks for them: the
    /// `image_processor` object of `processor_config.json` (what a 5.x processor
    /// `save_pretrained` writes), else `preprocessor_config.json`, else an empty object.
    pub preprocessor: ConfigObject,
    /// Whether image processor settings were found.
    pub has_preprocessor: bool,
    /// `processor_config.json` (the multimodal processor's own settings, e.g. special token
    /// strings, `patch_size`, `spatial_merge_size`), or an empty object when absent.
    pub processor: ConfigObject,
}

impl ModelFiles {
    /// Reads the config files of a model folder.
    pub fn read(dir: &Path) -> Result<ModelFiles> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| Error::new(Status::Io, format!("model folder {}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(Error::new(
                Status::Io,
                format!("model folder {}: not a directory", dir.display()),
            ));
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::new(
                Status::Io,
                format!(
                    "{}: no config.json (expected a folder written by save_pretrained)",
                    dir.display()
                ),
            ));
        }
        let config = ConfigObject::read(&config_path)?;
        let proc_path = dir.join("processor_config.json");
        let processor = if proc_path.is_file() {
            ConfigObject::read(&proc_path)?
        } else {
            ConfigObject::empty("processor_config.json")
        };
        let pre_path = dir.join("preprocessor_config.json");
        let (preprocessor, has_preprocessor) =
            if let Some(nested) = processor.object("image_processor")? {
                (nested, true)
            } else if pre_path.is_file() {
                (ConfigObject::read(&pre_path)?, true)
            } else {
                (ConfigObject::empty("preprocessor_config.json"), false)
            };
        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            config,
            preprocessor,
            has_preprocessor,
            processor,
        })
    }

    /// `config.json`'s `model_type`.
    pub fn model_type(&self) -> Result<String> {
        self.config.string("model_type")?.ok_or_else(|| {
            Error::bad_config("config.json: no `model_type` (cannot tell which model this is)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access_and_errors_name_the_key() {
        let c = ConfigObject::parse(
            "config.json",
            r#"{"a": 3, "b": "x", "v": {"h": 2.0, "bad": -1}, "n": null, "l": [0.5, 1]}"#,
        )
        .unwrap();
        assert_eq!(c.usize_or("a", 0, 10).unwrap(), 3);
        assert_eq!(c.usize_or("n", 7, 10).unwrap(), 7);
        assert!(c.usize_or("a", 0, 2).unwrap_err().message().contains("`a`"));
        let v = c.object("v").unwrap().unwrap();
        assert_eq!(v.usize_or("h", 0, 10).unwrap(), 2);
        let e = v.usize_or("bad", 0, 10).unwrap_err();
        assert_eq!(e.status(), Status::BadConfig);
        assert!(e.message().contains("config.json: v"), "{}", e.message());
        assert_eq!(c.f64_list("l").unwrap().unwrap(), vec![0.5, 1.0]);
        assert!(c.string("a").is_err());
        assert!(ConfigObject::parse("x", "[1]").is_err());
        assert!(ConfigObject::parse("x", "{").is_err());
    }
}
