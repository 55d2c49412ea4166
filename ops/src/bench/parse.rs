//! `braid bench parse`: streams long synthetic outputs through every parser in small
//! chunks and reports the per-chunk cost.
//!
//! Reasoning rows: a long reasoning block of words, its close marker and a short answer.
//! Tool rows: a shorter reasoning block and two calls with ~1 KB of arguments each, in the
//! format's own markup; `tool_us_per_chunk` times only the chunks from the tool markup on,
//! where arguments stream. Per-chunk cost at 64k tokens over the cost at 4k shows whether
//! a parser rescans what it already parsed (it should stay near 1).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_parsers::testkit::{chunks, Chunking, SplitMix};
use braid_parsers::{Event, OutputConfig, OutputParser, StreamParser, ToolSchemas};
use serde_json::{json, Value};

use super::round;

/// Options of `braid bench parse`.
#[derive(Debug, clap::Args)]
pub(crate) struct ParseBenchArgs {
    /// Output sizes in tokens (about 4.7 bytes of text each).
    #[arg(long, value_delimiter = ',', default_value = "4096,65536")]
    tokens: Vec<usize>,
    /// Characters per streamed chunk.
    #[arg(long, default_value_t = 4)]
    chunk_chars: usize,
    /// Minimum measuring time per row, in milliseconds.
    #[arg(long, default_value_t = 300)]
    min_ms: u64,
    /// Only rows whose parser name contains this.
    #[arg(long)]
    filter: Option<String>,
}

const BYTES_PER_TOKEN: f64 = 4.7;

/// One benchmark row to run.
struct Row {
    parser: &'static str,
    kind: &'static str,
    config: OutputConfig,
    text: String,
    /// Byte offset where tool markup begins (tool rows).
    tools_from: Option<usize>,
}

fn words(bytes: usize, seed: u64) -> String {
    const WORDS: &[&str] = &[
        "the",
        "user",
        "wants",
        "weather",
        "for",
        "two",
        "cities",
        "so",
        "I",
        "should",
        "call",
        "tool",
        "first",
        "then",
        "compare",
        "results",
        "carefully",
        "<",
        "maybe",
        "check",
        "units",
        "Celsius",
        "東京",
        "naïve",
        "42",
        "{x}",
        "think",
        "step",
    ];
    let mut rng = SplitMix::new(seed);
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        out.push_str(WORDS[rng.range(0, WORDS.len() - 1)]);
        out.push(if rng.range(0, 11) == 0 { '\n' } else { ' ' });
    }
    out
}

fn big_arguments(n: usize) -> Value {
    json!({
        "city": format!("City {n}"),
        "notes": words(900, n as u64 + 7),
        "days": 5,
    })
}

/// Two calls with ~1 KB of arguments each, in the format's own markup.
fn calls_markup(format: &str) -> String {
    let a = [big_arguments(1), big_arguments(2)];
    braid_parsers::tool_format(format)
        .map(|f| f.markup.write(&[("get_weather", &a[0]), ("get_weather", &a[1])]))
        .unwrap_or_default()
}

/// The reasoning parser each tool format is served with (its family's).
fn pairing(tool: &str) -> &'static str {
    braid_parsers::family::of_tools(tool).map_or("glm45", |f| f.reasoning)
}

/// A parser configuration with the format's thinking switch on, so that its reasoning is
/// read (formats whose switch defaults to off: DeepSeek-V3.x/V4, Granite).
fn config(reasoning: &str, tools: Option<&str>) -> anyhow::Result<OutputConfig> {
    let mut config = OutputConfig::from_names(Some(reasoning), tools)?;
    if let Some(switch) = config.reasoning.and_then(|r| r.switch).filter(|s| !s.default_on) {
        config.chat_template_kwargs = Some(json!({ switch.key: true }));
    }
    Ok(config)
}

/// Reasoning text in the format's own markers.
fn reasoning_block(parser: &str, body: &str) -> String {
    match braid_parsers::reasoning_format(parser) {
        Ok(f) => format!("{}{body}{}", f.open, f.close),
        Err(_) => body.to_owned(),
    }
}

fn schema() -> Arc<ToolSchemas> {
    Arc::new(ToolSchemas::from_tools(
        &json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
        "notes": {"type": "string"}, "days": {"type": "integer"}}}}}]),
    ))
}

fn rows(tokens: usize) -> anyhow::Result<Vec<Row>> {
    let bytes = (tokens as f64 * BYTES_PER_TOKEN) as usize;
    let mut rows = Vec::new();
    for &parser in &braid_parsers::reasoning_names() {
        let config = config(parser, None)?;
        let text = reasoning_block(parser, &words(bytes.saturating_sub(40), 1)) + "\n\nThe answer is 42.";
        rows.push(Row {
            parser,
            kind: "reasoning",
            config,
            text,
            tools_from: None,
        });
    }
    for &tool in &braid_parsers::tool_names() {
        let reasoning = pairing(tool);
        let mut config = config(reasoning, Some(tool))?;
        config.schemas = schema();
        let calls = calls_markup(tool);
        let mut text = reasoning_block(reasoning, &words(bytes.saturating_sub(calls.len()), 2));
        let tools_from = text.len();
        text.push_str(&calls);
        rows.push(Row {
            parser: tool,
            kind: "tool",
            config,
            text,
            tools_from: Some(tools_from),
        });
    }
    Ok(rows)
}

/// A sink that only counts, so the work cannot be optimised away.
#[derive(Default)]
struct Count {
    bytes: usize,
    events: usize,
}

impl braid_parsers::Sink for Count {
    fn event(&mut self, event: Event<'_>) {
        self.events += 1;
        if let Event::Reasoning(t) | Event::Content(t) | Event::ToolCallArguments { fragment: t, .. } = event
        {
            self.bytes += t.len();
        }
    }
}

fn run_once(config: &OutputConfig, pieces: &[&str], split: usize) -> (Duration, Duration, Count) {
    let mut parser = OutputParser::new(config);
    let mut sink = Count::default();
    let t0 = Instant::now();
    for p in &pieces[..split] {
        parser.push(p, &mut sink);
    }
    let t1 = Instant::now();
    for p in &pieces[split..] {
        parser.push(p, &mut sink);
    }
    parser.finish(&mut sink);
    let t2 = Instant::now();
    (t1 - t0, t2 - t1, sink)
}

fn measure(row: &Row, tokens: usize, chunk_chars: usize, min: Duration) -> Value {
    let pieces = chunks(&row.text, Chunking::Chars(chunk_chars));
    let split = row.tools_from.map_or(pieces.len(), |from| {
        let mut at = 0;
        pieces
            .iter()
            .take_while(|p| {
                at += p.len();
                at <= from
            })
            .count()
    });
    // Allocations, counted on one run.
    let (allocs_before, bytes_before) = crate::GLOBAL.totals();
    let (_, _, sink) = run_once(&row.config, &pieces, split);
    let (allocs_after, bytes_after) = crate::GLOBAL.totals();
    let (allocations, allocated_bytes) = (allocs_after - allocs_before, bytes_after - bytes_before);
    // Time: the best of repeated runs.
    let started = Instant::now();
    let (mut best_all, mut best_tail) = (Duration::MAX, Duration::MAX);
    let mut runs = 0;
    while runs < 3 || started.elapsed() < min {
        let (head, tail, _) = run_once(&row.config, &pieces, split);
        best_all = best_all.min(head + tail);
        best_tail = best_tail.min(tail);
        runs += 1;
    }
    let n = pieces.len() as f64;
    let us = best_all.as_secs_f64() * 1e6;
    let mut out = json!({
        "parser": row.parser,
        "kind": row.kind,
        "tokens": tokens,
        "bytes": row.text.len(),
        "chunks": pieces.len(),
        "us_per_chunk": round(us / n, 4),
        "mb_per_s": round(row.text.len() as f64 / best_all.as_secs_f64() / 1e6, 1),
        "allocs_per_chunk": round(allocations as f64 / n, 4),
        "alloc_bytes_per_chunk": round(allocated_bytes as f64 / n, 2),
        "runs": runs,
        "events": sink.events,
    });
    if row.tools_from.is_some() {
        let tail_chunks = (pieces.len() - split).max(1) as f64;
        out["tool_chunks"] = json!(pieces.len() - split);
        out["tool_us_per_chunk"] = json!(round(best_tail.as_secs_f64() * 1e6 / tail_chunks, 4));
    }
    out
}

pub(crate) fn run(args: &ParseBenchArgs) -> anyhow::Result<ExitCode> {
    if args.chunk_chars == 0 || args.tokens.is_empty() || args.tokens.contains(&0) {
        anyhow::bail!("--chunk-chars and every --tokens size must be positive");
    }
    let mut plan = Vec::new();
    for &tokens in &args.tokens {
        for row in rows(tokens)? {
            if args.filter.as_deref().is_none_or(|f| row.parser.contains(f)) {
                plan.push((tokens, row));
            }
        }
    }
    let bar = crate::progress_bar(plan.len() as u64, "{bar:30} {pos}/{len} {msg}");
    let min = Duration::from_millis(args.min_ms);
    let mut results = Vec::new();
    for (tokens, row) in &plan {
        bar.set_message(format!("{} {} {}", row.kind, row.parser, tokens));
        results.push(measure(row, *tokens, args.chunk_chars, min));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let scaling: Vec<Value> = results
        .iter()
        .filter(|r| r["tokens"] == json!(args.tokens.iter().max()))
        .filter_map(|big| {
            let small = results.iter().find(|r| {
                r["parser"] == big["parser"]
                    && r["kind"] == big["kind"]
                    && r["tokens"] == json!(args.tokens.iter().min())
            })?;
            let ratio = big["us_per_chunk"].as_f64()? / small["us_per_chunk"].as_f64()?;
            (args.tokens.len() > 1)
                .then(|| json!({"parser": big["parser"], "kind": big["kind"], "ratio": round(ratio, 3)}))
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "chunk_chars": args.chunk_chars,
            "results": results,
            "scaling_largest_over_smallest": scaling,
        }))?
    );
    Ok(ExitCode::SUCCESS)
}
