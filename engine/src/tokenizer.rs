//! A model folder's tokenizer (`tokenizer.json` through the `tokenizers` crate) and the
//! special tokens that end generation.

use std::path::Path;

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
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
    /// Finds the special tokens' texts in text (none when there are none).
    specials: Option<Arc<AhoCorasick>>,
}

/// Bytes of text counted at once by [`Tokenizer::encode_within`].
const COUNT_PIECE: usize = 16 * 1024;

/// The first piece of `text` of about `size` bytes, ending after whitespace where there
/// is some (so words stay whole), and on a character boundary always.
fn cut(text: &str, size: usize) -> &str {
    if text.len() <= size {
        return text;
    }
    let mut end = size;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let piece = &text[..end];
    match piece.rfind(char::is_whitespace) {
        Some(at) if at > 0 => &text[..at + piece[at..].chars().next().map_or(1, char::len_utf8)],
        _ => piece,
    }
}

impl Tokenizer {
    /// Loads `DIR/tokenizer.json`; EOS ids come from `generation_config.json`, then
    /// `config.json`, then `tokenizer_config.json`'s `eos_token`, whichever name them.
    /// For a GGUF file, the vocabulary and EOS ids in its metadata
    /// ([`crate::gguf::Gguf::tokenizer_json`]).
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        if crate::gguf::is_gguf(dir) {
            let file = crate::gguf::Gguf::open(dir)?;
            let inner: tokenizers::Tokenizer = file.tokenizer_json()?.parse().map_err(|e| Error::Config {
                path: dir.to_path_buf(),
                field: "tokenizer.ggml.tokens".into(),
                problem: format!("not a usable vocabulary: {e}"),
            })?;
            return Ok(Tokenizer::with_eos(inner, file.eos_token_ids()));
        }
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
        Ok(Tokenizer::with_eos(inner, eos))
    }

    fn with_eos(inner: tokenizers::Tokenizer, mut eos: Vec<u32>) -> Tokenizer {
        eos.sort_unstable();
        eos.dedup();
        let bytes = TokenBytes::of(&inner).map(Arc::new);
        let special: Vec<String> = inner
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special && !t.content.is_empty())
            .map(|t| t.content)
            .collect();
        // Leftmost-longest, as the tokenizer splits added tokens out of text.
        let specials = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&special)
            .ok()
            .filter(|_| !special.is_empty())
            .map(Arc::new);
        Tokenizer {
            inner,
            eos_token_ids: eos,
            bytes,
            specials,
        }
    }

    /// Appends `text` to `out` without the special tokens in it: what encoding `text`
    /// and decoding it with `skip_special_tokens` gives, without doing either.
    pub fn push_without_special(&self, text: &str, out: &mut String) {
        let Some(specials) = &self.specials else {
            out.push_str(text);
            return;
        };
        let mut from = 0;
        for m in specials.find_iter(text) {
            out.push_str(&text[from..m.start()]);
            from = m.end();
        }
        out.push_str(&text[from..]);
    }

    /// Token ids of `text`, special tokens (`<|im_start|>`) recognised, none added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Input(format!("cannot tokenize: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` when it has at most `limit` tokens; `None` when it has more.
    /// A long text is first counted piece by piece (pieces of [`COUNT_PIECE`] bytes cut
    /// at whitespace), stopping as soon as the count passes `limit`, so a prompt of
    /// megabytes is refused for the price of its first `limit` tokens rather than
    /// tokenized whole (which costs seconds and over a gigabyte for 16 MB of text).
    pub fn encode_within(&self, text: &str, limit: usize) -> Result<Option<Vec<u32>>> {
        // A token is rarely over 16 bytes: shorter texts are encoded whole, at once.
        if text.len() > limit.saturating_mul(16) {
            let mut counted = 0;
            let mut rest = text;
            while !rest.is_empty() {
                let piece = cut(rest, COUNT_PIECE);
                rest = &rest[piece.len()..];
                let enc = self
                    .inner
                    .encode(piece, false)
                    .map_err(|e| Error::Input(format!("cannot tokenize: {e}")))?;
                // Cutting may split what would be one token in two: at most one per cut.
                counted += enc.len().saturating_sub(1);
                if counted > limit {
                    return Ok(None);
                }
            }
        }
        let ids = self.encode(text)?;
        Ok((ids.len() <= limit).then_some(ids))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pieces_end_after_whitespace_on_character_boundaries() {
        assert_eq!(cut("short", 100), "short");
        assert_eq!(cut("one two three", 9), "one two ");
        assert_eq!(cut("ééééé", 3), "é", "never inside a character");
        assert_eq!(cut("abcdefgh", 4), "abcd", "no whitespace: cut at the size");
    }

    #[test]
    fn a_text_over_the_limit_is_refused_without_being_tokenized_whole() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.fixtures/tokenizer-qwen3");
        assert!(
            dir.join("tokenizer.json").exists(),
            "the Qwen3 tokenizer is missing: run scripts/setup"
        );
        let tok = Tokenizer::from_dir(&dir).unwrap();
        let text = "hello world ".repeat(200_000);
        assert_eq!(tok.encode_within(&text, 4096).unwrap(), None);
        let short = "hello world ".repeat(100);
        assert_eq!(
            tok.encode_within(&short, 4096).unwrap(),
            Some(tok.encode(&short).unwrap())
        );
        assert_eq!(tok.encode_within(&short, 10).unwrap(), None);
    }
}
