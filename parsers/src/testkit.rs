//! Test and CLI helpers: feed an output in chunks of every shape and check that the
//! streamed result equals the push-all result.

use crate::assemble::ParsedOutput;
use crate::event::{CallOutcome, Event, FallbackReason, StreamParser};
use crate::output::{OutputConfig, OutputParser};

/// How an output is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// One push of everything.
    Whole,
    /// Chunks of this many chars.
    Chars(usize),
    /// Random chunk sizes of 1 to 8 chars from a seed.
    Random(u64),
    /// Two chunks, split before char index `n`.
    SplitAt(usize),
}

/// A small seeded generator (SplitMix64), so chunkings are reproducible without a crate.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Cuts `text` into chunks on char boundaries.
pub fn chunks(text: &str, chunking: Chunking) -> Vec<&str> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let chars = bounds.len() - 1;
    let mut cuts = vec![0];
    match chunking {
        Chunking::Whole => {}
        Chunking::Chars(n) => cuts.extend((n.max(1)..chars).step_by(n.max(1))),
        Chunking::Random(seed) => {
            let mut rng = SplitMix::new(seed);
            let mut at = 0;
            loop {
                at += rng.range(1, 8);
                if at >= chars {
                    break;
                }
                cuts.push(at);
            }
        }
        Chunking::SplitAt(n) if n > 0 && n < chars => cuts.push(n),
        Chunking::SplitAt(_) => {}
    }
    cuts.push(chars);
    cuts.windows(2).map(|w| &text[bounds[w[0]]..bounds[w[1]]]).collect()
}

/// Parses `text` fed as `chunking` says, and assembles the result.
pub fn parse(config: &OutputConfig, text: &str, chunking: Chunking) -> ParsedOutput {
    let mut parser = OutputParser::new(config);
    let mut out = ParsedOutput::default();
    for chunk in chunks(text, chunking) {
        parser.push(chunk, &mut out);
    }
    parser.finish(&mut out);
    out
}

/// An owned event, with adjacent text of one kind merged, so event streams from different
/// chunkings compare equal exactly when they carry the same thing in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// Reasoning text.
    Reasoning(String),
    /// Answer text.
    Content(String),
    /// A call began.
    Start(usize, String, String),
    /// Argument bytes of a call.
    Arguments(usize, String),
    /// A call ended.
    End(usize, CallOutcome),
    /// A call was withdrawn.
    Aborted(usize),
    /// A fallback.
    Fallback(FallbackReason, String),
}

/// The merged event log of parsing `text` fed as `chunking` says.
pub fn event_log(config: &OutputConfig, text: &str, chunking: Chunking) -> Vec<Logged> {
    let mut parser = OutputParser::new(config);
    let mut log: Vec<Logged> = Vec::new();
    let mut record = |e: Event<'_>| {
        match (log.last_mut(), e) {
            (Some(Logged::Reasoning(s)), Event::Reasoning(t)) => return s.push_str(t),
            (Some(Logged::Content(s)), Event::Content(t)) => return s.push_str(t),
            (Some(Logged::Arguments(i, s)), Event::ToolCallArguments { index, fragment }) if *i == index => {
                return s.push_str(fragment)
            }
            _ => {}
        }
        log.push(match e {
            Event::Reasoning(t) => Logged::Reasoning(t.to_owned()),
            Event::Content(t) => Logged::Content(t.to_owned()),
            Event::ToolCallStart { index, id, name } => Logged::Start(index, id.to_owned(), name.to_owned()),
            Event::ToolCallArguments { index, fragment } => Logged::Arguments(index, fragment.to_owned()),
            Event::ToolCallEnd { index, outcome } => Logged::End(index, outcome),
            Event::ToolCallAborted { index } => Logged::Aborted(index),
            Event::Fallback { reason, text } => Logged::Fallback(reason, text.to_owned()),
        });
    };
    for chunk in chunks(text, chunking) {
        parser.push(chunk, &mut record);
    }
    parser.finish(&mut record);
    log
}

/// Checks that every single split point gives the push-all event log; returns the first
/// split (char index) that does not.
pub fn first_bad_split(config: &OutputConfig, text: &str) -> Option<usize> {
    let whole = event_log(config, text, Chunking::Whole);
    let chars = text.chars().count();
    (1..chars).find(|&n| event_log(config, text, Chunking::SplitAt(n)) != whole)
}
