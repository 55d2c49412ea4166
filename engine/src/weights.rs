//! Finding a model folder's safetensors files and mapping them into memory.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::config::read_json;
use crate::error::{Error, Result};

/// The weight files of a model folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let v = read_json(&index)?;
        let Some(Value::Object(map)) = v.get("weight_map") else {
            return Err(Error::Config {
                path: index,
                field: "weight_map".into(),
                problem: "must map tensor names to shard files".into(),
            });
        };
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(Value::as_str)
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(Error::MissingFile {
                path: missing.clone(),
            });
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        Ok(vec![single])
    } else {
        Err(Error::MissingFile { path: single })
    }
}

/// Maps the files into memory as one tensor namespace.
pub fn var_builder(files: &[PathBuf], dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let path = files.first().cloned().unwrap_or_default();
    // SAFETY: the weight files are mapped read-only; like every peer that memory-maps
    // checkpoints, braid assumes they are not modified while it runs.
    #[allow(unsafe_code)]
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) };
    vb.map_err(|source| Error::Weights { path, source })
}
