//! Recorded model outputs as an executor: each request replays a recording, tokenized by
//! the real tokenizer, a set number of tokens per step at a set pace. For load tests and
//! end-to-end tests of every model family without its weights; never a stand-in for
//! testing the engine itself.
//!
//! The file is JSONL, one recording per line: `{"match": "<text in the rendered
//! prompt>", "output": "<raw model output>"}` (`match` optional; a list of texts matches
//! a prompt that holds every one). A request replays the first recording whose `match`
//! occurs in its prompt, else the recordings without `match` in turn.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_bus::{Finish, Prefill, RequestId};
use braid_engine::Tokenizer;
use serde::Deserialize;

use super::{ExecOutput, Executor};
use crate::StageError;

/// How fast recordings play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Tokens each request gets per step.
    pub tokens_per_step: usize,
    /// Time between steps (zero: as fast as the pipeline takes them).
    pub interval: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            tokens_per_step: 1,
            interval: Duration::from_millis(10),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "match")]
    pattern: Option<Pattern>,
    output: String,
}

/// A line's `match`: one text, or texts that must all occur.
#[derive(Deserialize)]
#[serde(untagged)]
enum Pattern {
    One(String),
    All(Vec<String>),
}

/// One recording, tokenized.
#[derive(Debug)]
struct Recording {
    /// Texts the prompt must all hold (empty: played in turn to prompts nothing matched).
    pattern: Vec<String>,
    tokens: Arc<[u32]>,
}

impl Recording {
    fn matches(&self, prompt: &str) -> bool {
        !self.pattern.is_empty() && self.pattern.iter().all(|p| prompt.contains(p.as_str()))
    }
}

#[derive(Debug)]
struct Playing {
    id: RequestId,
    tokens: Arc<[u32]>,
    at: usize,
    max_tokens: usize,
}

/// Replays recordings.
#[derive(Debug)]
pub struct ReplayExecutor {
    recordings: Vec<Recording>,
    unmatched: Vec<usize>,
    turn: usize,
    tokenizer: Arc<Tokenizer>,
    pace: Pace,
    playing: Vec<Playing>,
    last_step: Option<Instant>,
}

impl ReplayExecutor {
    /// Reads and tokenizes a recordings file; errors name the line.
    pub fn load(path: &Path, tokenizer: Arc<Tokenizer>, pace: Pace) -> Result<Self, StageError> {
        let bad = |line: usize, problem: String| {
            StageError::Config(format!("{}:{line}: {problem}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(0, e.to_string()))?;
        let mut recordings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(raw).map_err(|e| bad(i + 1, e.to_string()))?;
            let tokens = tokenizer
                .encode(&line.output)
                .map_err(|e| bad(i + 1, e.to_string()))?;
            recordings.push(Recording {
                pattern: match line.pattern {
                    None => Vec::new(),
                    Some(Pattern::One(p)) => vec![p],
                    Some(Pattern::All(all)) => all,
                },
                tokens: tokens.into(),
            });
        }
        Self::new(recordings, tokenizer, pace).map_err(|e| bad(0, e))
    }

    /// An executor over `(match, output)` pairs (for tests and benchmarks).
    pub fn from_outputs(
        outputs: &[(Option<&str>, &str)],
        tokenizer: Arc<Tokenizer>,
        pace: Pace,
    ) -> Result<Self, StageError> {
        let mut recordings = Vec::new();
        for (pattern, output) in outputs {
            recordings.push(Recording {
                pattern: pattern.map(str::to_owned).into_iter().collect(),
                tokens: tokenizer
                    .encode(output)
                    .map_err(|e| StageError::Config(e.to_string()))?
                    .into(),
            });
        }
        Self::new(recordings, tokenizer, pace).map_err(StageError::Config)
    }

    fn new(recordings: Vec<Recording>, tokenizer: Arc<Tokenizer>, pace: Pace) -> Result<Self, String> {
        if recordings.is_empty() {
            return Err("no recordings".into());
        }
        if pace.tokens_per_step == 0 {
            return Err("tokens per step must be at least 1".into());
        }
        let unmatched = (0..recordings.len())
            .filter(|&i| recordings[i].pattern.is_empty())
            .collect();
        Ok(ReplayExecutor {
            recordings,
            unmatched,
            turn: 0,
            tokenizer,
            pace,
            playing: Vec::new(),
            last_step: None,
        })
    }

    /// The recording a prompt plays.
    fn pick(&mut self, prompt: &str) -> Option<Arc<[u32]>> {
        let matched = self.recordings.iter().find(|r| r.matches(prompt));
        if let Some(r) = matched {
            return Some(Arc::clone(&r.tokens));
        }
        if self.unmatched.is_empty() {
            return None;
        }
        let i = self.unmatched[self.turn % self.unmatched.len()];
        self.turn += 1;
        Some(Arc::clone(&self.recordings[i].tokens))
    }
}

impl Executor for ReplayExecutor {
    fn add(&mut self, id: RequestId, prefill: &Prefill) -> Result<(), StageError> {
        if prefill.sampling.max_tokens == 0 {
            return Err(StageError::Refused("max_tokens must be at least 1".into()));
        }
        super::refuse_constraints(&prefill.sampling, "replay")?;
        let prompt = self.tokenizer.decode_lossy(&prefill.prompt, false);
        let tokens = self.pick(&prompt).ok_or_else(|| {
            StageError::Refused("no recording matches this prompt (and none is without `match`)".into())
        })?;
        self.playing.push(Playing {
            id,
            tokens,
            at: 0,
            max_tokens: prefill.sampling.max_tokens as usize,
        });
        Ok(())
    }

    fn abort(&mut self, id: RequestId) {
        self.playing.retain(|p| p.id != id);
    }

    fn has_work(&self) -> bool {
        !self.playing.is_empty()
    }

    fn step(&mut self, out: &mut Vec<ExecOutput>) -> Result<(), StageError> {
        if let Some(last) = self.last_step {
            let due = last + self.pace.interval;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.last_step = Some(Instant::now());
        let per_step = self.pace.tokens_per_step;
        for p in &mut self.playing {
            let end = (p.at + per_step).min(p.tokens.len()).min(p.max_tokens);
            let finish = if end >= p.max_tokens && end < p.tokens.len() {
                Some(Finish::Length)
            } else if end >= p.tokens.len() {
                Some(Finish::Stop)
            } else {
                None
            };
            out.push(ExecOutput {
                id: p.id,
                tokens: p.tokens[p.at..end].to_vec(),
                finish,
                reported: None,
            });
            p.at = end;
        }
        self.playing
            .retain(|p| p.at < p.tokens.len() && p.at < p.max_tokens);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_list_match_needs_every_text_in_the_prompt() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.fixtures/tokenizer-qwen3");
        let tokenizer = Arc::new(Tokenizer::from_dir(&dir).unwrap());
        let path = std::env::temp_dir().join(format!("braid-replay-match-{}.jsonl", std::process::id()));
        std::fs::write(
            &path,
            "{\"match\": [\"alpha\", \"beta\"], \"output\": \"both\"}\n{\"match\": \"alpha\", \"output\": \"one\"}\n{\"output\": \"neither\"}\n",
        )
        .unwrap();
        let mut replay = ReplayExecutor::load(&path, Arc::clone(&tokenizer), Pace::default()).unwrap();
        let mut played = |prompt: &str| {
            let tokens = replay.pick(prompt).unwrap();
            tokenizer.decode(&tokens).unwrap()
        };
        assert_eq!(played("beta then alpha"), "both");
        assert_eq!(played("alpha alone"), "one");
        assert_eq!(played("beta alone"), "neither");
        let _ = std::fs::remove_file(path);
    }
}
