//! Structured output: llguidance grammars compiled against the model's vocabulary, and
//! the per-sequence matcher whose token mask the sampler applies.
//!
//! Every constraint braid supports (a JSON schema, a regex, a choice, a Lark grammar, a
//! family's tool-call markup) arrives as one Lark grammar in llguidance's dialect, so
//! there is one mechanism here. The vocabulary comes from braid's own byte table
//! ([`TokenBytes`]) rather than a second copy of the tokenizer: special tokens are marked
//! the way llguidance expects (a leading `0xFF`), so grammars can name them (`<|im_end|>`)
//! and free text can never produce them.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::detokenize::TokenBytes;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// The vocabulary as llguidance sees it, and our tokenizer for text a grammar forces.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: tokenizers::Tokenizer,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default()
        })
    }
}

/// Compiles grammars for one model; shared by every request (cheap to clone).
#[derive(Clone)]
pub struct Guides {
    factory: Arc<ParserFactory>,
    bytes: Arc<TokenBytes>,
}

impl std::fmt::Debug for Guides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guides")
            .field("vocab", &self.factory.tok_env().tok_trie().vocab_size())
            .finish()
    }
}

impl Guides {
    /// Guides for `tokenizer`'s vocabulary; one serves every request of the process (the
    /// API's checks and the engine's masks). A model with more embedding rows than the
    /// tokenizer has ids never gets the extra rows: [`apply_mask`] rules out logits past
    /// the mask's end. Needs a byte-level BPE tokenizer.
    pub fn new(tokenizer: &Tokenizer) -> Result<Guides> {
        let bytes = tokenizer.token_bytes_arc().ok_or_else(|| {
            Error::Grammar(
                "structured outputs need a byte-level BPE tokenizer (tokenizer.json with a ByteLevel decoder)"
                    .into(),
            )
        })?;
        let rows = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..rows as u32)
            .map(|id| {
                let (b, special) = bytes.get(id);
                if special {
                    let mut w = Vec::with_capacity(b.len() + 1);
                    w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    w.extend_from_slice(b);
                    w
                } else {
                    b.to_vec()
                }
            })
            .collect();
        let eos = tokenizer.eos_token_ids();
        let info = TokRxInfo::new(rows as u32, eos.first().copied().unwrap_or(0));
        let mut trie = TokTrie::from(&info, &words);
        if !eos.is_empty() {
            trie = trie.with_eos_tokens(eos);
        }
        let env: TokEnv = Arc::new(Vocabulary {
            trie,
            tokenizer: tokenizer.inner().clone(),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::Grammar(e.to_string()))?;
        factory.quiet();
        let limits = factory.limits_mut();
        // Errors name the problem, not the parser's state (which would reach clients).
        limits.verbose_errors = false;
        // A regex that blows up (`(a{1000}){1000}`) fails in milliseconds, not seconds.
        limits.max_lexer_states = MAX_LEXER_STATES;
        Ok(Guides {
            factory: Arc::new(factory),
            bytes,
        })
    }

    /// Compiles a Lark grammar (llguidance's dialect) into a fresh matcher, and computes
    /// its first mask, so that a grammar that cannot start (a `$ref` with no way out, a
    /// regex past the limits) is refused here rather than failing the first step; the
    /// error says in words what is wrong ([`explain`]).
    pub fn compile(&self, lark: &str) -> Result<Guide> {
        let grammar = TopLevelGrammar::from_lark(lark.to_string());
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| Error::Grammar(explain(&e.to_string())))?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::Grammar(explain(&e)));
        }
        matcher
            .compute_mask()
            .map_err(|e| Error::Grammar(explain(&e.to_string())))?;
        Ok(Guide { matcher })
    }

    /// Each token's bytes.
    pub fn token_bytes(&self) -> &TokenBytes {
        &self.bytes
    }
}

/// Lexer states one grammar may build (llguidance's default is 250,000, ~1–2 kB each).
const MAX_LEXER_STATES: usize = 50_000;

/// llguidance's error in words a client can act on: one line, without its position in
/// braid's generated grammar, with the two ways a client's schema usually fails named.
pub fn explain(e: &str) -> String {
    let one_line = e
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = one_line
        .strip_prefix("at ")
        .and_then(|r| r.split_once("): "))
        .filter(|(pos, _)| pos.chars().all(|c| c.is_ascii_digit() || c == '('))
        .map_or(one_line.as_str(), |(_, msg)| msg);
    let lower = message.to_ascii_lowercase();
    let said = if lower.contains("noextensionbias") {
        "it admits no complete value (does a $ref refer to itself with no way out?)".to_owned()
    } else if lower.contains("too many") || lower.contains("limit") || lower.contains("fuel") {
        format!("it is too complex to enforce within the grammar engine's limits ({message})")
    } else {
        message.to_owned()
    };
    said.chars().take(300).collect()
}

/// One sequence's grammar state.
pub struct Guide {
    matcher: Matcher,
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guide")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl Guide {
    /// The tokens the grammar allows next (only EOS once it is complete).
    pub fn mask(&mut self) -> Result<SimpleVob> {
        self.matcher
            .compute_mask_or_eos()
            .map_err(|e| Error::Grammar(explain(&e.to_string())))
    }

    /// Moves past a sampled token.
    pub fn advance(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::Grammar(explain(&e.to_string())))
    }

    /// Whether the grammar is complete and nothing more may follow.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// Sets every logit the mask does not allow to −∞ (rows past the mask's end too).
pub fn apply_mask(logits: &mut [f32], mask: &SimpleVob) {
    let words = mask.as_slice();
    let mut chunks = logits.chunks_mut(32);
    for (&word, chunk) in words.iter().zip(&mut chunks) {
        if word == u32::MAX {
            continue;
        }
        for (bit, l) in chunk.iter_mut().enumerate() {
            if (word >> bit) & 1 == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    for chunk in chunks {
        chunk.fill(f32::NEG_INFINITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_errors_are_told_in_words_without_the_parsers_state() {
        let state = "parser error: Too many items (limit 50000; ff_tokens); try avoiding short lexemes\n<state>\nTokens: x";
        let said = explain(state);
        assert!(said.starts_with("it is too complex to enforce"), "{said}");
        assert!(!said.contains("<state>"), "{said}");
        assert!(explain("at 3(8): NoExtensionBias").contains("$ref"));
        assert_eq!(explain("at 1(8): unknown name: foo"), "unknown name: foo");
    }

    /// Every family's calls, written in its own markup, are what its `tool_choice:
    /// required` grammar allows, token by token through the real Qwen3 tokenizer, ending
    /// where the grammar lets the output stop (the parser reading them back is
    /// `tools::markup`'s test).
    #[test]
    fn each_familys_calls_are_what_its_required_grammar_allows() {
        use braid_parsers::grammar::Specials;
        use braid_parsers::tools::grammar::{calls_grammar, Pick, ToolSpec};
        use serde_json::json;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.fixtures/tokenizer-qwen3");
        assert!(
            dir.join("tokenizer.json").exists(),
            "the Qwen3 tokenizer is missing: run scripts/setup"
        );
        let tokenizer = Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let guides = Guides::new(&tokenizer).unwrap_or_else(|e| panic!("{e}"));
        let specials = Specials::new(tokenizer.special_tokens());
        let eos = tokenizer.eos_token_ids()[0];
        let tools = ToolSpec::list(&json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"},
            "days": {"type": "integer"}, "opts": {"type": "object", "properties": {"unit": {"type": "string"}}}},
            "required": ["city"]}}}]));
        let (a, b) = (
            json!({"city": "Paris", "days": 3, "opts": {"unit": "C"}}),
            json!({"city": "Oslo"}),
        );
        for f in braid_parsers::tools::FORMATS {
            let lark = calls_grammar(f, &tools, &Pick::Required { parallel: true }, &specials)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut guide = guides
                .compile(&lark)
                .unwrap_or_else(|e| panic!("{}: {e}\n{lark}", f.name));
            let text = f.markup.write(&[("get_weather", &a), ("get_weather", &b)]);
            let tokens = tokenizer.encode(&text).unwrap_or_else(|e| panic!("{e}"));
            for (i, &token) in tokens.iter().enumerate() {
                let mask = guide.mask().unwrap_or_else(|e| panic!("{e}"));
                let so_far = tokenizer.decode(&tokens[..i]).unwrap_or_default();
                let next = tokenizer.decode(&[token]).unwrap_or_default();
                assert!(
                    mask.is_allowed(token),
                    "{}: {next:?} refused after {so_far:?}\n{lark}",
                    f.name
                );
                guide.advance(token).unwrap_or_else(|e| panic!("{e}"));
            }
            let end = guide.is_done() || guide.mask().is_ok_and(|m| m.is_allowed(eos));
            assert!(end, "{}: the grammar wants more after {text:?}", f.name);
        }
    }

    #[test]
    fn a_mask_keeps_only_allowed_logits() {
        let mut mask = SimpleVob::alloc(70);
        mask.allow_token(1);
        mask.allow_token(33);
        mask.allow_token(64);
        let mut logits = vec![0.5f32; 80];
        apply_mask(&mut logits, &mask);
        let kept: Vec<usize> = (0..80).filter(|&i| logits[i].is_finite()).collect();
        assert_eq!(kept, vec![1, 33, 64]);
    }
}
