//! Where a model's tensors come from: a folder's safetensors files mapped into memory, or
//! a GGUF file's tensors ([`Source`] serves both under Hugging Face names).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::config::read_json;
use crate::error::{Error, Result};
use crate::gguf::{Dequantizing, GgufTensors};

/// A model's tensors under a name prefix, as the layers load them: plain tensors through a
/// `VarBuilder` (safetensors, or a GGUF file's tensors dequantized) and, from a GGUF file,
/// the quantized weights the linear layers keep as they are stored.
#[derive(Clone)]
pub(crate) struct Source {
    vb: VarBuilder<'static>,
    gguf: Option<Arc<GgufTensors>>,
}

impl Source {
    /// Tensors of a `VarBuilder` (safetensors, or tensors built in memory).
    pub(crate) fn plain(vb: VarBuilder<'static>) -> Source {
        Source { vb, gguf: None }
    }

    /// A GGUF file's tensors; plain ones come out as `dtype`.
    pub(crate) fn gguf(tensors: Arc<GgufTensors>, dtype: DType, device: &Device) -> Source {
        let backend: Box<dyn candle_nn::var_builder::SimpleBackend> =
            Box::new(Dequantizing(Arc::clone(&tensors)));
        Source {
            vb: VarBuilder::from_backend(backend, dtype, device.clone()),
            gguf: Some(tensors),
        }
    }

    /// The tensors under `prefix.name`.
    pub(crate) fn pp(&self, name: impl ToString) -> Source {
        Source {
            vb: self.vb.pp(name),
            gguf: self.gguf.clone(),
        }
    }

    /// The same tensors, plain ones read as `dtype`.
    pub(crate) fn set_dtype(&self, dtype: DType) -> Source {
        Source {
            vb: self.vb.clone().set_dtype(dtype),
            gguf: self.gguf.clone(),
        }
    }

    /// Plain access (norms, biases, embeddings, dense weights).
    pub(crate) fn vb(&self) -> &VarBuilder<'static> {
        &self.vb
    }

    /// The tensor `name` under the prefix as the file stores it, when it is stored
    /// quantized (a GGUF file's Q8_0, Q4_K, …); `None` for plain tensors, which
    /// [`Source::vb`] reads.
    pub(crate) fn quantized(&self, name: &str) -> candle_core::Result<Option<QTensor>> {
        let Some(g) = &self.gguf else {
            return Ok(None);
        };
        let full = format!("{}.{name}", self.vb.prefix());
        if !g.contains(&full) {
            return Ok(None);
        }
        match g.dtype(&full)? {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => Ok(None),
            _ => g.read(&full, self.vb.device()).map(Some),
        }
    }
}

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
