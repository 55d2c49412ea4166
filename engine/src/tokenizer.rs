//! A model folder's tokenizer (`tokenizer.json` through the `tokenizers` crate) and the
//! special tokens that end generation.

use std::path::Path;

use std::sync::Arc;

use serde_json::Value;

use crate::config::{read_json, token_ids};
use crate::detokenize::TokenBytes;
use crate::error::{Error, Result};

/// The tokenizer of a model folder, with its EOS ids.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_token_ids: Vec<u32>,
    bytes: Option<Arc<TokenBytes>>,
}

impl Tokenizer {
    /// Loads `DIR/tokenizer.json`; EOS ids come from `generation_config.json`, then
    /// `config.json`, then `tokenizer_config.json`'s `eos_token`, whichever name them.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::MissingFile { path });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Config {
            path: path.clone(),
            field: "(file)".into(),
            problem: format!("not a tokenizer: {e}"),
        })?;
        let mut eos = Vec::new();
        for file in ["generation_config.json", "config.json"] {
            let p = dir.join(file);
            if p.exists() {
                eos.extend(token_ids(read_json(&p)?.get("eos_token_id")));
            }
        }
        let tc = dir.join("tokenizer_config.json");
        if tc.exists() {
            let v = read_json(&tc)?;
            let token = match v.get("eos_token") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            eos.extend(token.and_then(|t| inner.token_to_id(&t)));
        }
        eos.sort_unstable();
        eos.dedup();
        let bytes = TokenBytes::of(&inner).map(Arc::new);
        Ok(Tokenizer {
            inner,
            eos_token_ids: eos,
            bytes,
        })
    }

    /// Token ids of `text`, special tokens (`<|im_start|>`) recognised, none added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Input(format!("cannot tokenize: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Input(format!("cannot detokenize: {e}")))
    }

    /// Text of `ids`, decoding errors becoming an empty string (for incremental decoding,
    /// where ids come from the model's own vocabulary).
    pub fn decode_lossy(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        self.inner.decode(ids, skip_special_tokens).unwrap_or_default()
    }

    /// Each token's bytes, when the vocabulary is byte-level BPE.
    pub fn token_bytes(&self) -> Option<&TokenBytes> {
        self.bytes.as_deref()
    }

    /// The byte table, shared (for structured outputs).
    pub fn token_bytes_arc(&self) -> Option<Arc<TokenBytes>> {
        self.bytes.clone()
    }

    /// The `tokenizers` tokenizer underneath.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The special tokens (text and id), as `tokenizer.json` marks them.
    pub fn special_tokens(&self) -> Vec<(String, u32)> {
        self.inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (t.content, id))
            .collect()
    }

    /// Ids that end generation.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// Size of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}
