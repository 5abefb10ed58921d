//! What a family's loader reads: the model folder being loaded ([`Checkpoint`]).

use candle_core::{DType, Device};

use crate::config::{ConfigObject, ModelFiles};
use crate::error::Result;
use crate::models::layers::Loader;
use crate::weights::Weights;

/// A model folder being loaded: its config files and weights, with the dtype and device the
/// tower computes in. Every family's `load` takes one.
#[derive(Clone, Copy)]
pub struct Checkpoint<'a> {
    pub files: &'a ModelFiles,
    pub weights: &'a Weights,
    pub dtype: DType,
    pub device: &'a Device,
}

impl<'a> Checkpoint<'a> {
    /// `config.json`.
    pub fn config(&self) -> &'a ConfigObject {
        &self.files.config
    }

    /// `config.json`'s `vision_config`, an empty object of that name when absent (the config
    /// class's defaults).
    pub fn vision_config(&self) -> Result<ConfigObject> {
        self.files.config.object_or_empty("vision_config")
    }

    /// The tensors under `prefix` (`""` for all), in the compute dtype on the compute device.
    pub fn loader(&self, prefix: &str) -> Loader<'a> {
        Loader::new(self.weights, prefix, self.dtype, self.device)
    }
}
