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
    cuts.windows(2)
        .map(|w| &text[bounds[w[0]]..bounds[w[1]]])
        .collect()
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

/// Every event, unmerged and in `Debug` form, of feeding `pieces` (and finishing, if
/// `finish`): for tests about *when* events come, not only what they carry.
pub fn raw_events(config: &OutputConfig, pieces: &[&str], finish: bool) -> Vec<String> {
    let mut parser = OutputParser::new(config);
    let mut log = Vec::new();
    let mut record = |e: Event<'_>| log.push(format!("{e:?}"));
    for piece in pieces {
        parser.push(piece, &mut record);
    }
    if finish {
        parser.finish(&mut record);
    }
    log
}

/// Checks that every single split point gives the push-all event log; returns the first
/// split (char index) that does not.
pub fn first_bad_split(config: &OutputConfig, text: &str) -> Option<usize> {
    let whole = event_log(config, text, Chunking::Whole);
    let chars = text.chars().count();
    (1..chars).find(|&n| event_log(config, text, Chunking::SplitAt(n)) != whole)
}

/// Every marker a configuration reacts to: the vocabulary for generated outputs.
pub fn markers(config: &OutputConfig) -> Vec<&'static str> {
    use crate::tools::{Body, Header};
    let mut out: Vec<&'static str> = Vec::new();
    if let Some(r) = config.reasoning {
        out.extend([r.open, r.close]);
        out.extend(r.other_opens);
        out.extend(r.other_closes);
        out.extend(r.answer_wrap);
        out.extend(r.implicit_close);
    }
    if let Some(t) = config.tools {
        out.extend(t.opens);
        out.extend(t.in_section);
        out.extend(t.separators);
        out.extend(t.call_close);
        match t.header {
            Header::InBody => {}
            Header::Name { ends, .. }
            | Header::Attribute { ends, .. }
            | Header::FirstWord { ends }
            | Header::KimiId { ends } => out.extend(ends),
            Header::TypedName { sep, ends } => {
                out.push(sep);
                out.extend(ends);
            }
        }
        if let Body::Params(p) = t.body {
            out.extend(p.between);
            out.extend(p.key_end);
            out.extend(p.in_value);
            out.extend(p.value_open.unwrap_or(&[]));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Parses `text` whole, at every split point and in random chunks, asserts that all give
/// the same events, and returns the result. For tests.
#[cfg(test)]
pub(crate) fn checked(reasoning: Option<&str>, tools: Option<&str>, text: &str) -> ParsedOutput {
    checked_with(&config(reasoning, tools), text)
}

/// As [`checked`], with a full configuration.
#[cfg(test)]
pub(crate) fn checked_with(config: &OutputConfig, text: &str) -> ParsedOutput {
    assert_eq!(
        first_bad_split(config, text),
        None,
        "a split changed the events for {text:?}"
    );
    let whole = event_log(config, text, Chunking::Whole);
    for seed in 0..4 {
        assert_eq!(
            event_log(config, text, Chunking::Random(seed)),
            whole,
            "random:{seed} on {text:?}"
        );
    }
    parse(config, text, Chunking::Whole)
}

/// A configuration by names. For tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn config(reasoning: Option<&str>, tools: Option<&str>) -> OutputConfig {
    OutputConfig::from_names(reasoning, tools).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (reasoning, tools) pairs as families run them ([`crate::family::FAMILIES`]), plus
    /// each side alone and the MiniMax inline-tags variant.
    fn pairs() -> Vec<(Option<&'static str>, Option<&'static str>)> {
        let mut pairs: Vec<_> = crate::family::FAMILIES
            .iter()
            .map(|f| (Some(f.reasoning), Some(f.tools)))
            .collect();
        pairs.extend([
            (Some("minimax_m2_append_think"), Some("minimax_m2")),
            (None, Some("hermes")),
            (Some("kimi_k2"), None),
            (Some("granite"), None),
        ]);
        pairs
    }

    /// Well-formed pieces per tool format, so generated outputs reach deep states.
    fn samples(tools: Option<&str>) -> Vec<&'static str> {
        match tools {
            Some("hermes") => vec!["<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"x}\"}}\n</tool_call>"],
            Some("qwen3_coder") => vec!["<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call>"],
            Some("deepseek_v3") => vec!["<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"],
            Some("deepseek_v31") => vec!["<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": [1]}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"],
            Some("deepseek_v32") => vec!["<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">x</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>"],
            Some("kimi_k2") => vec!["<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0 <|tool_call_argument_begin|>{\"a\": 1}<|tool_call_end|><|tool_calls_section_end|>"],
            Some("minimax_m2") => vec!["<minimax:tool_call>\n<invoke name=\"f\">\n<parameter name=\"a\"> null </parameter>\n</invoke>\n</minimax:tool_call>"],
            Some("glm45") | Some("glm47") => vec!["<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>x y</arg_value>\n</tool_call>"],
            Some("deepseek_v4") => vec!["<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"false\">[1]</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>"],
            Some("deepseek_v41") => vec!["<｜DSML｜ calls>\n<｜DSML｜ invoke name=\"f\">\n</｜DSML｜ invoke>\n</｜DSML｜ calls>"],
            Some("kimi_k3") => vec!["<|open|>tools<|sep|><|open|>call tool=\"a&amp;f\" index=\"1\"<|sep|><|open|>argument key=\"a\" type=\"number\"<|sep|>1<|close|>argument<|sep|><|close|>call<|sep|><|close|>tools<|sep|>"],
            Some("minimax_m3") => vec!["]<]minimax[>[<tool_call>\n]<]minimax[>[<invoke name=\"f\">]<]minimax[>[<a>]<]minimax[>[<item>1]<]minimax[>[</item>]<]minimax[>[</a>]<]minimax[>[</invoke>\n]<]minimax[>[</tool_call>"],
            Some("granite") => vec!["<|tool_call|>[{\"name\": \"f\", \"arguments\": {\"a\": \"}\"}}, {\"name\": \"g\", \"arguments\": {}}]"],
            Some("hunyuan_a13b") => vec!["<tool_calls>[{\"name\": \"f\", \"arguments\": {\"a\": [1]}}]</tool_calls>"],
            Some("openai") => vec!["<|channel|>analysis<|message|>hm<|end|><|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": 1}<|call|>", "<|channel|>final<|message|>ok<|return|>"],
            _ => vec![],
        }
    }

    fn output(vocab: Vec<&'static str>) -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => proptest::sample::select(vocab).prop_map(str::to_owned),
            3 => "[a-z \\n<>{}\\[\\]\":,=/|]{0,6}",
            1 => "\\PC{0,3}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn vocab(config: &OutputConfig) -> Vec<&'static str> {
        let mut v = markers(config);
        v.extend(samples(config.tools.map(|t| t.name)));
        v.extend(["\"", "{", "}", "null", " ", "\n"]);
        v
    }

    /// A format pairing, a start state, an output made from its vocabulary, and a seed.
    fn case() -> impl Strategy<Value = (OutputConfig, String, u64)> {
        let pairs = pairs();
        (0..pairs.len(), 0..3usize).prop_flat_map(move |(pair, start)| {
            let mut cfg = config(pairs[pair].0, pairs[pair].1);
            cfg.start = [
                StartOverride::FormatDefault,
                StartOverride::InReasoning,
                StartOverride::InContent,
            ][start];
            let text = output(vocab(&cfg));
            (Just(cfg), text, any::<u64>())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Streamed events equal push-all events for random outputs and chunkings, for
        /// every format pairing and start state; no input panics; every call reported as
        /// parsed has valid JSON arguments.
        #[test]
        fn streaming_never_depends_on_chunking((cfg, text, seed) in case()) {
            let whole = event_log(&cfg, &text, Chunking::Whole);
            prop_assert_eq!(&event_log(&cfg, &text, Chunking::Random(seed)), &whole, "text {:?}", text);
            prop_assert_eq!(&event_log(&cfg, &text, Chunking::Chars(1)), &whole, "text {:?}", text);
            let out = parse(&cfg, &text, Chunking::Whole);
            for call in &out.tool_calls {
                if call.outcome == Some(CallOutcome::Parsed) {
                    prop_assert!(serde_json::from_str::<serde_json::Value>(&call.arguments).is_ok(), "{:?}", call);
                }
            }
        }
    }

    use crate::reasoning::StartOverride;

    #[test]
    fn chunks_cover_the_text_on_char_boundaries() {
        let text = "ab東c😀d";
        for chunking in [
            Chunking::Whole,
            Chunking::Chars(2),
            Chunking::Random(3),
            Chunking::SplitAt(3),
        ] {
            assert_eq!(chunks(text, chunking).concat(), text);
        }
        assert_eq!(chunks(text, Chunking::SplitAt(3)), vec!["ab東", "c😀d"]);
        assert_eq!(chunks("", Chunking::Chars(3)), vec![""]);
    }
}
