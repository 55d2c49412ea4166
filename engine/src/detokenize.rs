//! Token ids back to text, one step at a time: whole UTF-8 only (a character split over
//! tokens waits for its last byte), and stop strings matched across step boundaries.
//!
//! For byte-level BPE tokenizers (Qwen, Llama 3, DeepSeek, Kimi…) every token is a fixed
//! byte string, so decoding is a table lookup and a UTF-8 check: a few nanoseconds a
//! token, where re-decoding a window through `tokenizers` costs microseconds. Other
//! decoders use that window method (vLLM's prefix/read offsets).

use std::sync::Arc;

use crate::tokenizer::Tokenizer;

/// Each token's bytes, for byte-level BPE vocabularies.
#[derive(Debug)]
pub struct TokenBytes {
    bytes: Vec<u8>,
    /// `offsets[id]..offsets[id + 1]` is token `id`'s bytes.
    offsets: Vec<u32>,
    special: Vec<bool>,
}

/// GPT-2's printable stand-ins for bytes, inverted: char → byte.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(c, b);
    }
    map
}

impl TokenBytes {
    /// The table of a byte-level tokenizer; `None` for other decoders.
    pub fn of(tokenizer: &tokenizers::Tokenizer) -> Option<TokenBytes> {
        if !matches!(
            tokenizer.get_decoder(),
            Some(tokenizers::DecoderWrapper::ByteLevel(_))
        ) {
            return None;
        }
        let decode = byte_decoder();
        let added = tokenizer.get_added_tokens_decoder();
        let vocab = tokenizer.get_vocab(true);
        let size = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let mut pieces: Vec<Option<(Vec<u8>, bool)>> = vec![None; size];
        for (token, id) in vocab {
            let piece = match added.get(&id) {
                Some(a) => (a.content.as_bytes().to_vec(), a.special),
                None => match token
                    .chars()
                    .map(|c| decode.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                {
                    Some(bytes) => (bytes, false),
                    None => (token.into_bytes(), false),
                },
            };
            pieces[id as usize] = Some(piece);
        }
        let mut table = TokenBytes {
            bytes: Vec::new(),
            offsets: Vec::with_capacity(size + 1),
            special: Vec::with_capacity(size),
        };
        table.offsets.push(0);
        for piece in pieces {
            let (bytes, special) = piece.unwrap_or_default();
            table.bytes.extend_from_slice(&bytes);
            table.offsets.push(table.bytes.len() as u32);
            table.special.push(special);
        }
        Some(table)
    }

    /// Token `id`'s bytes (empty for an id outside the vocabulary) and whether it is a
    /// special token.
    pub fn get(&self, id: u32) -> (&[u8], bool) {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => (&self.bytes[a as usize..b as usize], self.special[i]),
            _ => (&[], false),
        }
    }
}

/// One request's incremental decoder.
#[derive(Debug)]
pub struct IncrementalDecoder {
    tokenizer: Arc<Tokenizer>,
    skip_special: bool,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Bytes of an unfinished UTF-8 character.
    Table { tail: Vec<u8> },
    /// vLLM's window: text is emitted once decoding past `read` no longer ends in U+FFFD.
    Window {
        ids: Vec<u32>,
        prefix: usize,
        read: usize,
    },
}

impl IncrementalDecoder {
    /// A decoder for one output.
    pub fn new(tokenizer: Arc<Tokenizer>, skip_special_tokens: bool) -> IncrementalDecoder {
        let mode = if tokenizer.token_bytes().is_some() {
            Mode::Table { tail: Vec::new() }
        } else {
            Mode::Window {
                ids: Vec::new(),
                prefix: 0,
                read: 0,
            }
        };
        IncrementalDecoder {
            tokenizer,
            skip_special: skip_special_tokens,
            mode,
        }
    }

    /// Appends `text`, a step that came as text (an upstream engine's), to `out`,
    /// without its special tokens when this output skips them: the text decoding its
    /// tokens would give.
    pub fn push_text(&mut self, text: &str, out: &mut String) {
        if self.skip_special {
            self.tokenizer.push_without_special(text, out);
        } else {
            out.push_str(text);
        }
    }

    /// Appends the text that `ids` complete to `out`.
    pub fn push(&mut self, ids: &[u32], out: &mut String) {
        match &mut self.mode {
            Mode::Table { tail } => {
                let Some(table) = self.tokenizer.token_bytes() else {
                    return;
                };
                for &id in ids {
                    let (bytes, special) = table.get(id);
                    if !(special && self.skip_special) {
                        tail.extend_from_slice(bytes);
                    }
                }
                drain_utf8(tail, out, false);
            }
            Mode::Window {
                ids: all,
                prefix,
                read,
            } => {
                all.extend_from_slice(ids);
                let skip = self.skip_special;
                let before = self.tokenizer.decode_lossy(&all[*prefix..*read], skip);
                let now = self.tokenizer.decode_lossy(&all[*prefix..], skip);
                if now.len() > before.len()
                    && !now.ends_with('\u{FFFD}')
                    && now.is_char_boundary(before.len())
                {
                    out.push_str(&now[before.len()..]);
                    *prefix = *read;
                    *read = all.len();
                }
            }
        }
    }

    /// Appends whatever is still held (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self, out: &mut String) {
        match &mut self.mode {
            Mode::Table { tail } => drain_utf8(tail, out, true),
            Mode::Window { ids, prefix, read } => {
                let skip = self.skip_special;
                let before = self.tokenizer.decode_lossy(&ids[*prefix..*read], skip);
                let now = self.tokenizer.decode_lossy(&ids[*prefix..], skip);
                if now.len() > before.len() && now.is_char_boundary(before.len()) {
                    out.push_str(&now[before.len()..]);
                }
                *prefix = ids.len();
                *read = ids.len();
            }
        }
    }
}

/// Moves the whole characters at the front of `bytes` into `out`; invalid bytes become
/// U+FFFD; an unfinished character at the end stays unless `all`.
fn drain_utf8(bytes: &mut Vec<u8>, out: &mut String, all: bool) {
    let mut start = 0;
    loop {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = bytes.len();
                break;
            }
            Err(e) => {
                let valid = start + e.valid_up_to();
                out.push_str(std::str::from_utf8(&bytes[start..valid]).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        start = valid + n;
                    }
                    None if all => {
                        out.push('\u{FFFD}');
                        start = bytes.len();
                        break;
                    }
                    None => {
                        start = valid;
                        break;
                    }
                }
            }
        }
    }
    bytes.drain(..start);
}

/// Stop strings matched across pushes: text that could still begin a stop string is
/// held back until it either completes one or cannot.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    include: bool,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty ones ignored); `include` keeps the matched string.
    pub fn new(stops: &[String], include: bool) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            include,
            held: String::new(),
        }
    }

    /// Appends to `out` the part of `text` (after what was held) that is safe to emit;
    /// returns the stop string that matched, if one did (the output ends there).
    pub fn push(&mut self, text: &str, out: &mut String) -> Option<&str> {
        if self.stops.is_empty() {
            out.push_str(text);
            return None;
        }
        self.held.push_str(text);
        let hit = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                memchr::memmem::find(self.held.as_bytes(), s.as_bytes()).map(|at| (at, s.len(), i))
            })
            .min();
        if let Some((at, len, i)) = hit {
            let end = if self.include { at + len } else { at };
            out.push_str(&self.held[..end]);
            self.held.clear();
            return Some(&self.stops[i]);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| partial_suffix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        out.push_str(&self.held[..cut]);
        self.held.drain(..cut);
        None
    }

    /// Appends what is still held (the output ended without a stop string).
    pub fn finish(&mut self, out: &mut String) {
        out.push_str(&self.held);
        self.held.clear();
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`, on a
/// char boundary.
fn partial_suffix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.as_bytes().starts_with(&text.as_bytes()[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The real Qwen3 tokenizer, which the test command installs.
    fn qwen() -> Arc<Tokenizer> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.fixtures/tokenizer-qwen3");
        assert!(
            dir.join("tokenizer.json").exists(),
            "the Qwen3 tokenizer is missing: run scripts/setup"
        );
        Arc::new(Tokenizer::from_dir(&dir).unwrap())
    }

    #[test]
    fn table_decoding_equals_the_tokenizer_at_every_split() {
        let tok = qwen();
        assert!(tok.token_bytes().is_some(), "Qwen3 is byte-level BPE");
        let text = "Héllo 世界! 🦀🦀 <think>naïve</think> ok\n\tend — ✓";
        let ids = tok.encode(text).unwrap();
        let whole = tok.decode(&ids).unwrap();
        assert_eq!(whole, text);
        for step in 1..=4 {
            let mut d = IncrementalDecoder::new(Arc::clone(&tok), false);
            let mut out = String::new();
            for chunk in ids.chunks(step) {
                let before = out.len();
                d.push(chunk, &mut out);
                assert!(
                    !out[before..].contains('\u{FFFD}'),
                    "split character emitted early"
                );
            }
            d.finish(&mut out);
            assert_eq!(out, whole, "chunks of {step}");
        }
        // Byte-level pieces of every 97th id agree with the tokenizer's own decode.
        let table = tok.token_bytes().unwrap();
        for id in (0..tok.vocab_size() as u32).step_by(97) {
            let mut mine = table.get(id).0.to_vec();
            let mut out = String::new();
            drain_utf8(&mut mine, &mut out, true);
            assert_eq!(out, tok.decode(&[id]).unwrap(), "token {id}");
        }
    }

    #[test]
    fn special_tokens_are_skipped_on_request() {
        let tok = qwen();
        let ids = tok.encode("<|im_start|>hi<|im_end|>").unwrap();
        let mut out = String::new();
        let mut d = IncrementalDecoder::new(Arc::clone(&tok), true);
        d.push(&ids, &mut out);
        d.finish(&mut out);
        assert_eq!(out, "hi");
    }

    #[test]
    fn text_steps_read_as_their_tokens_would_decode() {
        let tok = qwen();
        let texts = [
            "<|im_start|>hi<|im_end|>",
            "<think>a</think> <tool_call>{}</tool_call><|endoftext|>",
            "<|im_end|><|im_end|>x<|im_start",
            "plain 世界 🦀",
            "",
        ];
        for text in texts {
            for skip in [true, false] {
                let ids = tok.encode(text).unwrap();
                let mut d = IncrementalDecoder::new(Arc::clone(&tok), skip);
                let mut out = String::new();
                d.push_text(text, &mut out);
                assert_eq!(out, tok.decode_lossy(&ids, skip), "{text:?}, skip {skip}");
            }
        }
    }

    #[test]
    fn stop_strings_match_across_pushes_and_release_false_starts() {
        let stops = vec!["STOP".to_owned(), "</end>".to_owned()];
        let mut m = StopMatcher::new(&stops, false);
        let mut out = String::new();
        assert_eq!(m.push("abc ST", &mut out), None);
        assert_eq!(out, "abc ");
        assert_eq!(m.push("Ax </e", &mut out), None);
        assert_eq!(out, "abc STAx ");
        assert_eq!(m.push("nd> tail", &mut out), Some("</end>"));
        assert_eq!(out, "abc STAx ");
        let mut m = StopMatcher::new(&stops, true);
        let mut out = String::new();
        assert_eq!(m.push("xSTOPy", &mut out), Some("STOP"));
        assert_eq!(out, "xSTOP");
        let mut m = StopMatcher::new(&["é!".to_owned()], false);
        let mut out = String::new();
        assert_eq!(m.push("café", &mut out), None);
        m.finish(&mut out);
        assert_eq!(out, "café");
    }
}
