//! braid's engine: Hugging Face model folders loaded with candle, a batched forward over a
//! paged KV cache, the continuous-batching scheduler with prefix caching, the sampler,
//! structured-output guides (llguidance), the tokenizer and chat templates.
//!
//! The key design decision: **the model holds weights only; all per-sequence state lives
//! in the KV cache and the caller's block tables.** One forward call runs many sequences
//! at different positions, so the linear layers read their weights once per step for the
//! whole batch, and sequences join and leave between steps without touching the model.
//! The engine knows nothing of the bus or HTTP.

mod attention;
pub mod chat;
pub mod config;
pub mod detokenize;
pub mod error;
mod ffn;
pub mod fixture;
pub mod gguf;
pub mod guide;
pub mod kv_cache;
mod linear;
mod matvec;
mod mla;
pub mod model;
mod paged_attention;
mod parallel;
mod prefill_product;
pub mod prefix;
mod q8_0;
mod rng;
pub mod rope;
pub mod routing;
pub mod sampling;
pub mod scheduler;
mod softmax;
pub mod tokenizer;
pub mod weights;

pub use chat::{ChatRenderer, Conversation};
pub use config::{Architecture, MlaConfig, ModelConfig, MoeConfig, MoeLayout, QkNorm};
pub use detokenize::{IncrementalDecoder, StopMatcher, TokenBytes};
pub use error::{Error, Result};
pub use guide::{Guide, Guides};
pub use kv_cache::{BlockAllocator, KvCache};
pub use model::{Model, SeqInput};
pub use prefix::{chain_hashes, CacheChanges};
pub use sampling::{Sampled, Sampler, SamplingParams};
pub use scheduler::{
    Counts, Engine, EngineConfig, EngineStats, FinishReason, ReasoningGate, Request, StepOutput,
};
pub use tokenizer::Tokenizer;

use std::path::Path;

use candle_core::{DType, Device};

/// Loads a model: a folder (`config.json` and its safetensors weights, memory-mapped) or
/// a GGUF file (its quantized weights kept quantized, the rest read as `dtype`).
/// `progress` hears `(layers loaded, total)`.
pub fn load_model(
    dir: &Path,
    dtype: DType,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Model> {
    if gguf::is_gguf(dir) {
        let file = gguf::Gguf::open(dir)?;
        let cfg = ModelConfig::from_json(&file.config_json()?, dir)?;
        tracing::info!("{}: tensors stored as {:?}", dir.display(), file.dtype_counts());
        let tensors = std::sync::Arc::new(file.tensors()?);
        let src = weights::Source::gguf(tensors, dtype, device);
        return Model::load(&cfg, &src, progress).map_err(|source| Error::Weights {
            path: dir.to_path_buf(),
            source,
        });
    }
    let cfg = ModelConfig::from_dir(dir)?;
    let files = weights::safetensors_files(dir)?;
    let vb = weights::var_builder(&files, dtype, device)?;
    let path = if files.len() == 1 {
        files[0].clone()
    } else {
        dir.to_path_buf()
    };
    Model::new(&cfg, &vb, progress).map_err(|source| Error::Weights { path, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;
    use crate::fixture::ModelSpec;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("braid-load-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn load(d: &Path) -> Result<Model> {
        load_model(d, DType::F32, &Device::Cpu, &mut |_, _| {})
    }

    fn edit_config(d: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = d.join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(path, v.to_string()).unwrap();
    }

    #[test]
    fn loading_errors_name_the_file_and_field() {
        let d = dir("errors");
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("config.json: file not found"), "{err}");

        ModelSpec::tiny(32).write(&d, &mut |_, _| {}).unwrap();
        edit_config(&d, |v| {
            v["architectures"] = serde_json::json!(["GPT2LMHeadModel"])
        });
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("\"GPT2LMHeadModel\" is not supported"), "{err}");

        ModelSpec::tiny(32).write(&d, &mut |_, _| {}).unwrap();
        edit_config(&d, |v| {
            v.as_object_mut()
                .unwrap()
                .remove("hidden_size")
                .map(drop)
                .unwrap_or_default()
        });
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("field `hidden_size`: is missing"), "{err}");

        ModelSpec::tiny(32).write(&d, &mut |_, _| {}).unwrap();
        edit_config(&d, |v| v["num_key_value_heads"] = serde_json::json!(3));
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("field `num_key_value_heads`"), "{err}");

        ModelSpec::tiny(32).write(&d, &mut |_, _| {}).unwrap();
        edit_config(&d, |v| {
            v["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0})
        });
        let err = load(&d).unwrap_err().to_string();
        assert!(
            err.contains("field `rope_scaling`") && err.contains("\"linear\" is not supported"),
            "{err}"
        );

        ModelSpec::tiny(32).write(&d, &mut |_, _| {}).unwrap();
        edit_config(
            &d,
            |v| {
                v["quantization_config"] =
                    serde_json::json!({"quant_method": "fp8", "weight_block_size": [128, 128]})
            },
        );
        let err = load(&d).unwrap_err().to_string();
        assert!(
            err.contains("field `quantization_config`") && err.contains("(fp8) are not supported"),
            "{err}"
        );

        ModelSpec::tiny(32).write(&d, &mut |_, _| {}).unwrap();
        edit_config(
            &d,
            |v| {
                v["rope_scaling"] =
                    serde_json::json!({"type": "yarn", "factor": 0.5, "original_max_position_embeddings": 32})
            },
        );
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("field `factor`: must be at least 1"), "{err}");

        ModelSpec::tiny(32).write(&d, &mut |_, _| {}).unwrap();
        edit_config(&d, |v| v["intermediate_size"] = serde_json::json!(100));
        let err = load(&d).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("gate_proj"),
            "{err}"
        );

        std::fs::remove_file(d.join("model.safetensors")).unwrap();
        let err = load(&d).unwrap_err().to_string();
        assert!(err.contains("model.safetensors: file not found"), "{err}");
    }

    #[test]
    fn sharded_checkpoints_load_like_single_files() {
        let single = dir("single");
        let spec = ModelSpec::tiny(64);
        spec.write(&single, &mut |_, _| {}).unwrap();
        let sharded = dir("sharded");
        std::fs::create_dir_all(&sharded).unwrap();
        std::fs::copy(single.join("config.json"), sharded.join("config.json")).unwrap();
        let all = candle_core::safetensors::load(single.join("model.safetensors"), &Device::Cpu).unwrap();
        let mut shards: [HashMap<String, candle_core::Tensor>; 2] = Default::default();
        let mut index = serde_json::Map::new();
        for (i, (name, t)) in all.into_iter().enumerate() {
            let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
            index.insert(name.clone(), file.into());
            shards[i % 2].insert(name, t);
        }
        for (i, shard) in shards.iter().enumerate() {
            candle_core::safetensors::save(
                shard,
                sharded.join(format!("model-0000{}-of-00002.safetensors", i + 1)),
            )
            .unwrap();
        }
        let idx = serde_json::json!({"metadata": {}, "weight_map": index});
        std::fs::write(sharded.join("model.safetensors.index.json"), idx.to_string()).unwrap();

        let run = |d: &Path| {
            let m = load(d).unwrap();
            let cache = KvCache::new(m.config(), 2, 8, DType::F32, &Device::Cpu).unwrap();
            m.forward(
                &[SeqInput {
                    tokens: &[1, 2, 3],
                    start: 0,
                    blocks: &[0],
                }],
                &cache,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
        };
        assert_eq!(run(&single), run(&sharded));

        std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
        let err = load(&sharded).unwrap_err().to_string();
        assert!(
            err.contains("model-00002-of-00002.safetensors: file not found"),
            "{err}"
        );
    }
}
