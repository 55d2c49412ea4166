//! llama.cpp's GGUF files as model sources. A file's metadata is read as the
//! `config.json`, `tokenizer.json` and chat template a Hugging Face folder would hold, so
//! everything downstream (the config checks, the tokenizer, templates, parsers) is the
//! same code; its tensors are served under their Hugging Face names, quantized ones kept
//! quantized (candle's `QTensor`) for the linear layers.
//!
//! Tensors are read from the file when the model asks for them, one at a time, and a
//! stacked experts tensor (`blk.N.ffn_gate_exps`, all experts in one) is read one expert's
//! slice at a time, so loading holds no tensor twice.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value as Meta};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// llama.cpp's architecture names braid loads: `(general.architecture, the Hugging Face
/// class it stands for, its model_type)`.
const ARCHITECTURES: &[(&str, &str, &str)] = &[
    ("qwen3", "Qwen3ForCausalLM", "qwen3"),
    ("qwen3moe", "Qwen3MoeForCausalLM", "qwen3_moe"),
];

/// `ARCH.KEY` metadata → the `config.json` field it is, and whether the file must have it.
const CONFIG_FIELDS: &[(&str, &str, bool)] = &[
    ("block_count", "num_hidden_layers", true),
    ("embedding_length", "hidden_size", true),
    ("attention.head_count", "num_attention_heads", true),
    ("attention.head_count_kv", "num_key_value_heads", false),
    ("attention.key_length", "head_dim", false),
    ("feed_forward_length", "intermediate_size", false),
    ("context_length", "max_position_embeddings", false),
    ("rope.freq_base", "rope_theta", false),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps", false),
    ("expert_count", "num_experts", false),
    ("expert_used_count", "num_experts_per_tok", false),
    ("expert_feed_forward_length", "moe_intermediate_size", false),
];

/// Hugging Face names outside the layers → GGUF names.
const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// A layer's modules: Hugging Face (under `model.layers.N.`) → GGUF (under `blk.N.`).
const LAYER_NAMES: &[(&str, &str)] = &[
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("mlp.gate", "ffn_gate_inp"),
];

/// One expert's projections (under `mlp.experts.E.`) → the stacked GGUF tensor holding
/// every expert's (under `blk.N.`).
const EXPERT_NAMES: &[(&str, &str)] = &[
    ("gate_proj", "ffn_gate_exps"),
    ("up_proj", "ffn_up_exps"),
    ("down_proj", "ffn_down_exps"),
];

/// `tokenizer.ggml.pre` → the pre-tokenizer split and normalizer of the Hugging Face
/// tokenizer the file was converted from.
const PRE_TOKENIZERS: &[(&str, &str, Option<&str>)] = &[(
    "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    Some("NFC"),
)];

/// `tokenizer.ggml.token_type` values that mark added tokens: control tokens are special
/// (`<|im_start|>`), user-defined ones are not (`<think>`).
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// Control tokens that end a turn whatever the metadata's EOS says (llama.cpp's list of
/// end-of-generation texts, the families braid serves).
const END_OF_GENERATION: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
];

/// Whether `path` is a GGUF file (by its magic bytes, not its name).
pub fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"GGUF"
}

/// An open GGUF file: its metadata and where its tensors lie.
#[derive(Debug)]
pub struct Gguf {
    path: PathBuf,
    content: Content,
}

impl Gguf {
    /// Reads the file's header (metadata and tensor table; no tensor data) and checks
    /// that every tensor lies within the file (a truncated download is named as one).
    pub fn open(path: &Path) -> Result<Gguf> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        // The header is hundreds of thousands of small fields (the vocabulary): buffered,
        // not a system call each.
        let mut file = std::io::BufReader::with_capacity(1 << 20, file);
        let header = |problem: String| Error::Config {
            path: path.to_path_buf(),
            field: "(header)".into(),
            problem,
        };
        // candle's reader divides by the file's `general.alignment`: a 0 there panics.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut file)));
        let content = match read {
            Ok(Ok(content)) => content,
            Ok(Err(e)) => {
                return Err(header(format!(
                    "not a readable GGUF file, or one with a tensor type braid cannot run \
                     (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to Q6_K are supported): {e}"
                )))
            }
            Err(_) => return Err(header("not a readable GGUF file (its alignment is 0)".into())),
        };
        let gguf = Gguf {
            path: path.to_path_buf(),
            content,
        };
        for (name, info) in &gguf.content.tensor_infos {
            let Some(bytes) = stored_bytes(info.ggml_dtype, info.shape.dims()).filter(|b| *b > 0) else {
                return Err(gguf.error(name, &format!("has an unusable shape {:?}", info.shape.dims())));
            };
            let end = gguf
                .content
                .tensor_data_offset
                .checked_add(info.offset)
                .and_then(|start| start.checked_add(bytes as u64));
            match end {
                Some(end) if end <= size => {}
                _ => {
                    return Err(gguf.error(
                        name,
                        &format!(
                            "its data ends past the end of the file ({size} bytes): the file is truncated"
                        ),
                    ))
                }
            }
        }
        Ok(gguf)
    }

    fn error(&self, key: &str, problem: &str) -> Error {
        Error::Config {
            path: self.path.clone(),
            field: key.into(),
            problem: problem.into(),
        }
    }

    fn meta(&self, key: &str) -> Option<&Meta> {
        self.content.metadata.get(key)
    }

    fn string(&self, key: &str) -> Result<&str> {
        match self.meta(key) {
            Some(Meta::String(s)) => Ok(s),
            Some(other) => Err(self.error(key, &format!("must be a string, got {other:?}"))),
            None => Err(self.error(key, "is missing")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let Some(Meta::Array(items)) = self.meta(key) else {
            return Err(self.error(key, "must be an array of strings"));
        };
        items
            .iter()
            .map(|v| match v {
                Meta::String(s) => Ok(s.as_str()),
                other => Err(self.error(key, &format!("holds {other:?}, not a string"))),
            })
            .collect()
    }

    /// `general.architecture`, checked to be one braid loads: `(llama.cpp's name, the
    /// Hugging Face class, model_type)`.
    fn architecture(&self) -> Result<(&'static str, &'static str, &'static str)> {
        let name = self.string("general.architecture")?;
        ARCHITECTURES
            .iter()
            .find(|(a, _, _)| *a == name)
            .copied()
            .ok_or_else(|| Error::UnsupportedArchitecture {
                path: self.path.clone(),
                architecture: name.to_owned(),
                supported: "qwen3, qwen3moe",
            })
    }

    /// The `config.json` a Hugging Face folder of this model would hold, built from the
    /// metadata (the architecture's keys, the vocabulary, whether `output.weight` exists).
    pub fn config_json(&self) -> Result<Value> {
        let (arch, class, model_type) = self.architecture()?;
        let mut c = Map::new();
        c.insert("architectures".into(), json!([class]));
        c.insert("model_type".into(), json!(model_type));
        for (key, field, required) in CONFIG_FIELDS {
            let key = format!("{arch}.{key}");
            match self.meta(&key).map(json_of) {
                Some(Some(v)) => {
                    c.insert((*field).into(), v);
                }
                Some(None) => return Err(self.error(&key, "must be a number or a flag")),
                None if *required => return Err(self.error(&key, "is missing")),
                None => {}
            }
        }
        let embed = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| self.error("token_embd.weight", "the file has no such tensor"))?;
        c.insert(
            "vocab_size".into(),
            json!(embed.shape.dims().first().copied().unwrap_or(0)),
        );
        c.insert(
            "tie_word_embeddings".into(),
            json!(!self.content.tensor_infos.contains_key("output.weight")),
        );
        if let Some(Some(eos)) = self.meta("tokenizer.ggml.eos_token_id").map(json_of) {
            c.insert("eos_token_id".into(), eos);
        }
        if model_type == "qwen3_moe" {
            // llama.cpp runs every qwen3moe layer sparse and renormalises the top-k
            // weights.
            c.insert("norm_topk_prob".into(), json!(true));
            c.insert("decoder_sparse_step".into(), json!(1));
            if let Some(w) = c.get("moe_intermediate_size").cloned() {
                c.entry("intermediate_size").or_insert(w);
            }
        }
        let scaling = format!("{arch}.rope.scaling.type");
        match self.meta(&scaling) {
            Some(Meta::String(t)) if t == "none" => {}
            Some(Meta::String(t)) => {
                let number = |k: &str| self.meta(&format!("{arch}.rope.scaling.{k}")).and_then(json_of);
                c.insert(
                    "rope_scaling".into(),
                    json!({
                        "type": t,
                        "factor": number("factor"),
                        "original_max_position_embeddings": number("original_context_length"),
                    }),
                );
            }
            Some(other) => return Err(self.error(&scaling, &format!("must be a string, got {other:?}"))),
            None => {}
        }
        Ok(Value::Object(c))
    }

    /// The `tokenizer.json` of the Hugging Face tokenizer the file's vocabulary came from:
    /// byte-level BPE (`tokenizer.ggml.model` `gpt2`) with the tokens, merges, added
    /// tokens (control and user-defined) and the pre-tokenizer `tokenizer.ggml.pre` names.
    pub fn tokenizer_json(&self) -> Result<String> {
        let model = self.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(self.error(
                "tokenizer.ggml.model",
                &format!("{model:?} vocabularies are not supported (only gpt2, byte-level BPE)"),
            ));
        }
        let pre = self.string("tokenizer.ggml.pre")?;
        let Some((_, split, normalizer)) = PRE_TOKENIZERS.iter().find(|(p, _, _)| *p == pre) else {
            let known: Vec<&str> = PRE_TOKENIZERS.iter().map(|p| p.0).collect();
            return Err(self.error(
                "tokenizer.ggml.pre",
                &format!("{pre:?} is not supported (supported: {})", known.join(", ")),
            ));
        };
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        let merges = self.strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match self.meta("tokenizer.ggml.token_type") {
            Some(Meta::Array(t)) => t
                .iter()
                .map(|v| json_of(v).and_then(|v| v.as_i64()).unwrap_or(1))
                .collect(),
            _ => Vec::new(),
        };
        let mut vocab = Map::new();
        let mut added = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            vocab.insert((*token).to_owned(), json!(id));
            let kind = types.get(id).copied().unwrap_or(1);
            if kind == TOKEN_CONTROL || kind == TOKEN_USER_DEFINED {
                added.push(json!({
                    "id": id, "content": token, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": kind == TOKEN_CONTROL,
                }));
            }
        }
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
        let tokenizer = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer.map(|n| json!({"type": n})),
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
                byte_level,
            ]},
            "post_processor": byte_level,
            "decoder": byte_level,
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": vocab, "merges": merges,
            },
        });
        Ok(tokenizer.to_string())
    }

    /// The ids that end generation, as llama.cpp counts them: the file's EOS, end-of-turn
    /// and end-of-message tokens, and the control tokens named as turn ends
    /// ([`END_OF_GENERATION`]; Qwen3's files name only `<|im_end|>` as EOS, and a base
    /// model ends with `<|endoftext|>`).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ]
        .iter()
        .filter_map(|k| self.meta(k).and_then(json_of).and_then(|v| v.as_u64()))
        .filter_map(|id| u32::try_from(id).ok())
        .collect();
        let types = match self.meta("tokenizer.ggml.token_type") {
            Some(Meta::Array(t)) => t.as_slice(),
            _ => &[],
        };
        let tokens = self.strings("tokenizer.ggml.tokens").unwrap_or_default();
        for (id, token) in tokens.iter().enumerate() {
            let control = types.get(id).and_then(json_of).and_then(|v| v.as_i64()) == Some(TOKEN_CONTROL);
            if control && END_OF_GENERATION.contains(token) {
                ids.push(id as u32);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// `tokenizer.chat_template`, if the file has one.
    pub fn chat_template(&self) -> Option<String> {
        match self.meta("tokenizer.chat_template") {
            Some(Meta::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The special tokens' texts a chat template reads (`bos_token`, `eos_token`), from
    /// the ids the metadata names.
    pub fn special_tokens(&self) -> Map<String, Value> {
        let tokens = self.strings("tokenizer.ggml.tokens").unwrap_or_default();
        let mut out = Map::new();
        for (name, key) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
        ] {
            let text = self
                .meta(key)
                .and_then(json_of)
                .and_then(|v| v.as_u64())
                .and_then(|id| tokens.get(id as usize));
            if let Some(t) = text {
                out.insert(name.into(), json!(t));
            }
        }
        out
    }

    /// How many tensors of each storage type the file holds (`{"Q4K": 20, "F32": 9}`),
    /// for the log and the bench.
    pub fn dtype_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for info in self.content.tensor_infos.values() {
            *out.entry(format!("{:?}", info.ggml_dtype)).or_insert(0) += 1;
        }
        out
    }

    /// The file's tensors, read on demand.
    pub fn tensors(self) -> Result<GgufTensors> {
        let file = File::open(&self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(GgufTensors {
            path: self.path,
            content: self.content,
            file: Mutex::new(file),
        })
    }
}

/// Bytes of a tensor of `dims` stored as `dtype`; `None` when the shape overflows or is not
/// whole blocks.
fn stored_bytes(dtype: GgmlDType, dims: &[usize]) -> Option<usize> {
    let elems = dims.iter().try_fold(1usize, |n, d| n.checked_mul(*d))?;
    elems
        .is_multiple_of(dtype.block_size())
        .then(|| (elems / dtype.block_size()).checked_mul(dtype.type_size()))
        .flatten()
}

/// A metadata value as JSON (numbers and flags; `None` for strings and arrays).
fn json_of(v: &Meta) -> Option<Value> {
    Some(match v {
        Meta::U8(x) => json!(x),
        Meta::I8(x) => json!(x),
        Meta::U16(x) => json!(x),
        Meta::I16(x) => json!(x),
        Meta::U32(x) => json!(x),
        Meta::I32(x) => json!(x),
        Meta::U64(x) => json!(x),
        Meta::I64(x) => json!(x),
        // The decimal the file's writer meant (1e-6, not 9.99999997e-7).
        Meta::F32(x) => json!(x.to_string().parse::<f64>().ok()?),
        Meta::F64(x) => json!(x),
        Meta::Bool(x) => json!(x),
        Meta::String(_) | Meta::Array(_) => return None,
    })
}

/// Where a tensor of a Hugging Face name lies in a GGUF file: the GGUF tensor, and for
/// one expert of a stacked experts tensor, which expert.
fn gguf_name(hf: &str) -> Option<(String, Option<usize>)> {
    if let Some((_, g)) = GLOBAL_NAMES.iter().find(|(h, _)| *h == hf) {
        return Some(((*g).to_owned(), None));
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    if let Some(expert) = module.strip_prefix("mlp.experts.") {
        let (e, proj) = expert.split_once('.')?;
        let (_, g) = EXPERT_NAMES.iter().find(|(h, _)| *h == proj)?;
        return Some((format!("blk.{layer}.{g}.{kind}"), Some(e.parse().ok()?)));
    }
    let (_, g) = LAYER_NAMES.iter().find(|(h, _)| *h == module)?;
    Some((format!("blk.{layer}.{g}.{kind}"), None))
}

/// A GGUF file's tensors under their Hugging Face names, read from the file on demand.
#[derive(Debug)]
pub struct GgufTensors {
    path: PathBuf,
    content: Content,
    file: Mutex<File>,
}

impl GgufTensors {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self, hf: &str) -> candle_core::Result<(&TensorInfo, Option<usize>, String)> {
        let Some((name, expert)) = gguf_name(hf) else {
            candle_core::bail!("no GGUF tensor stands for {hf}")
        };
        match self.content.tensor_infos.get(&name) {
            Some(info) => Ok((info, expert, name)),
            None => candle_core::bail!("cannot find tensor {name} (for {hf})"),
        }
    }

    /// Whether the file holds the tensor of this Hugging Face name.
    pub fn contains(&self, hf: &str) -> bool {
        self.info(hf).is_ok()
    }

    /// The storage type of the tensor of this Hugging Face name.
    pub fn dtype(&self, hf: &str) -> candle_core::Result<GgmlDType> {
        Ok(self.info(hf)?.0.ggml_dtype)
    }

    /// Reads the tensor of this Hugging Face name, as stored (one expert's slice of a
    /// stacked experts tensor).
    pub fn read(&self, hf: &str, device: &Device) -> candle_core::Result<QTensor> {
        let (info, expert, name) = self.info(hf)?;
        let dims = info.shape.dims();
        let (dims, index) = match (expert, dims) {
            (None, _) => (dims.to_vec(), 0),
            (Some(e), [experts, rest @ ..]) if e < *experts => (rest.to_vec(), e),
            (Some(e), _) => candle_core::bail!("{name} {:?} has no expert {e}", info.shape),
        };
        let dtype = info.ggml_dtype;
        let Some(bytes) = stored_bytes(dtype, &dims) else {
            candle_core::bail!("{name}: {dims:?} is not whole {dtype:?} blocks")
        };
        // `open` checked the whole tensor lies within the file, so this cannot overflow.
        let start = self.content.tensor_data_offset + info.offset + (index * bytes) as u64;
        let mut raw = vec![0u8; bytes];
        {
            let mut file = self
                .file
                .lock()
                .map_err(|_| candle_core::Error::Msg("the GGUF file's reader is poisoned".into()))?;
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut raw)?;
        }
        let storage = QStorage::from_data(Cow::Owned(raw), device, dtype)?;
        QTensor::new(storage, dims)
    }

    /// Reads the tensor of this Hugging Face name as a plain tensor of `dtype`.
    pub fn dequantized(&self, hf: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.read(hf, device)?.dequantize(device)?.to_dtype(dtype)
    }
}

/// `VarBuilder` access to the tensors, dequantized (norms, biases, the router, and
/// weights stored as f32/f16/bf16).
#[derive(Debug, Clone)]
pub(crate) struct Dequantizing(pub(crate) Arc<GgufTensors>);

impl candle_nn::var_builder::SimpleBackend for Dequantizing {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.0.dequantized(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "shape mismatch for {name}: expected {s:?}, the file has {:?}",
                t.shape()
            )
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.dequantized(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::{ModelConfig, Tokenizer};

    /// A dense Qwen3 model folder (`braid fixture`'s layout) converted to a GGUF file beside
    /// it, its matrices stored as `dtype` (1-D tensors stay f32, as llama.cpp stores them).
    pub(crate) fn convert(dir: &Path, dtype: GgmlDType) -> PathBuf {
        let cfg = ModelConfig::from_dir(dir).unwrap();
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let mut stored = Vec::new();
        for (hf, t) in &tensors {
            let (name, _) = gguf_name(hf).unwrap();
            let kind = if t.rank() > 1 { dtype } else { GgmlDType::F32 };
            stored.push((name, QTensor::quantize(t, kind).unwrap()));
        }
        let n = |v: usize| Meta::U32(v as u32);
        let meta = [
            ("general.architecture", Meta::String("qwen3".into())),
            ("qwen3.block_count", n(cfg.num_layers)),
            ("qwen3.embedding_length", n(cfg.hidden_size)),
            ("qwen3.feed_forward_length", n(cfg.intermediate_size)),
            ("qwen3.attention.head_count", n(cfg.num_heads)),
            ("qwen3.attention.head_count_kv", n(cfg.num_kv_heads)),
            ("qwen3.attention.key_length", n(cfg.head_dim)),
            ("qwen3.context_length", n(cfg.max_position_embeddings)),
            ("qwen3.rope.freq_base", Meta::F32(cfg.rope_theta as f32)),
            (
                "qwen3.attention.layer_norm_rms_epsilon",
                Meta::F32(cfg.rms_norm_eps as f32),
            ),
        ];
        let path = dir.join(format!("model-{dtype:?}.gguf"));
        let meta: Vec<(&str, &Meta)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        let stored: Vec<(&str, &QTensor)> = stored.iter().map(|(k, v)| (k.as_str(), v)).collect();
        candle_core::quantized::gguf_file::write(&mut File::create(&path).unwrap(), &meta, &stored).unwrap();
        path
    }

    /// A small GGUF: a Qwen3 header (`edit` changes it) and one f32 embedding of 8 × 4.
    fn write(name: &str, edit: impl FnOnce(&mut Vec<(&'static str, Meta)>)) -> PathBuf {
        let mut meta: Vec<(&str, Meta)> = vec![
            ("general.architecture", Meta::String("qwen3".into())),
            ("qwen3.block_count", Meta::U32(1)),
            ("qwen3.embedding_length", Meta::U32(4)),
            ("qwen3.attention.head_count", Meta::U32(1)),
            ("qwen3.attention.key_length", Meta::U32(4)),
            ("qwen3.feed_forward_length", Meta::U32(8)),
            ("qwen3.attention.layer_norm_rms_epsilon", Meta::F32(1e-6)),
            ("tokenizer.ggml.model", Meta::String("gpt2".into())),
            ("tokenizer.ggml.pre", Meta::String("qwen2".into())),
            (
                "tokenizer.ggml.tokens",
                Meta::Array(
                    ["a", "b", "ab", "<|im_end|>"]
                        .map(|t| Meta::String(t.into()))
                        .to_vec(),
                ),
            ),
            (
                "tokenizer.ggml.token_type",
                Meta::Array([1, 1, 1, 3].map(Meta::I32).to_vec()),
            ),
            (
                "tokenizer.ggml.merges",
                Meta::Array(vec![Meta::String("a b".into())]),
            ),
        ];
        edit(&mut meta);
        let embed = QTensor::quantize(
            &Tensor::ones((8, 4), DType::F32, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        let path = std::env::temp_dir().join(format!("braid-gguf-{name}-{}.gguf", std::process::id()));
        let mut f = File::create(&path).unwrap();
        let meta: Vec<(&str, &Meta)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        candle_core::quantized::gguf_file::write(&mut f, &meta, &[("token_embd.weight", &embed)]).unwrap();
        path
    }

    #[test]
    fn the_metadata_reads_as_a_config_and_a_tokenizer() {
        let path = write("good", |_| {});
        assert!(is_gguf(&path));
        let cfg = ModelConfig::from_dir(&path).unwrap();
        assert_eq!((cfg.hidden_size, cfg.vocab_size, cfg.num_kv_heads), (4, 8, 1));
        assert_eq!(cfg.rms_norm_eps, 1e-6, "the decimal the writer meant");
        assert!(cfg.tie_word_embeddings, "no output.weight");
        let tok = Tokenizer::from_dir(&path).unwrap();
        assert_eq!(
            tok.encode("abab<|im_end|>").unwrap(),
            vec![2, 2, 3],
            "merges and the control token"
        );
        assert_eq!(tok.eos_token_ids(), &[3], "<|im_end|> ends generation");
        assert_eq!(tok.special_tokens(), vec![("<|im_end|>".to_owned(), 3)]);
    }

    #[test]
    fn files_braid_cannot_run_are_refused_by_name() {
        let set = |key: &'static str, v: Meta| {
            move |m: &mut Vec<(&'static str, Meta)>| {
                m.retain(|(k, _)| *k != key);
                m.push((key, v));
            }
        };
        let cases: Vec<(PathBuf, &str)> = vec![
            (
                write("llama", set("general.architecture", Meta::String("llama".into()))),
                "architecture \"llama\" is not supported (supported: qwen3, qwen3moe)",
            ),
            (
                write("no-width", |m| m.retain(|(k, _)| *k != "qwen3.embedding_length")),
                "field `qwen3.embedding_length`: is missing",
            ),
            (
                write("spm", set("tokenizer.ggml.model", Meta::String("llama".into()))),
                "\"llama\" vocabularies are not supported",
            ),
            (
                write("pre", set("tokenizer.ggml.pre", Meta::String("tekken".into()))),
                "field `tokenizer.ggml.pre`: \"tekken\" is not supported (supported: qwen2)",
            ),
        ];
        for (path, needle) in cases {
            let err = match ModelConfig::from_dir(&path) {
                Err(e) => e.to_string(),
                Ok(_) => Tokenizer::from_dir(&path).unwrap_err().to_string(),
            };
            assert!(err.contains(needle), "{err}");
        }

        let path = write("cut", |_| {});
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 16]).unwrap();
        let err = ModelConfig::from_dir(&path).unwrap_err().to_string();
        assert!(
            err.contains("field `token_embd.weight`") && err.contains("the file is truncated"),
            "{err}"
        );
        let aligned = write("align", |m| m.push(("general.alignment", Meta::U32(0))));
        let err = ModelConfig::from_dir(&aligned).unwrap_err().to_string();
        assert!(err.contains("alignment is 0"), "{err}");
        std::fs::write(&path, &bytes[..64]).unwrap();
        let err = ModelConfig::from_dir(&path).unwrap_err().to_string();
        assert!(
            err.contains("field `(header)`: not a readable GGUF file"),
            "{err}"
        );
    }

    #[test]
    fn hugging_face_names_map_to_gguf_names() {
        let cases = [
            ("model.embed_tokens.weight", Some(("token_embd.weight", None))),
            ("lm_head.weight", Some(("output.weight", None))),
            (
                "model.layers.3.self_attn.o_proj.weight",
                Some(("blk.3.attn_output.weight", None)),
            ),
            (
                "model.layers.0.self_attn.q_norm.weight",
                Some(("blk.0.attn_q_norm.weight", None)),
            ),
            (
                "model.layers.12.post_attention_layernorm.weight",
                Some(("blk.12.ffn_norm.weight", None)),
            ),
            (
                "model.layers.1.mlp.gate.weight",
                Some(("blk.1.ffn_gate_inp.weight", None)),
            ),
            (
                "model.layers.1.mlp.gate_proj.weight",
                Some(("blk.1.ffn_gate.weight", None)),
            ),
            (
                "model.layers.2.mlp.experts.7.down_proj.weight",
                Some(("blk.2.ffn_down_exps.weight", Some(7))),
            ),
            ("model.layers.2.mlp.shared_experts.up_proj.weight", None),
            ("model.layers.x.mlp.gate.weight", None),
            ("model.rotary.inv_freq", None),
        ];
        for (hf, want) in cases {
            let got = gguf_name(hf);
            let want = want.map(|(n, e)| (n.to_owned(), e));
            assert_eq!(got, want, "{hf}");
        }
    }
}
