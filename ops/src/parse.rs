//! `braid parse`: raw model output on stdin → one JSON object on stdout, exactly as the
//! conformance contract (`shared/conformance/README.md`) describes.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use braid_parsers::testkit::{self, Chunking};
use braid_parsers::{OutputConfig, ParsedOutput, StartOverride, ToolSchemas};
use serde_json::{json, Value};

/// Options of `braid parse`.
#[derive(Debug, clap::Args)]
pub(crate) struct ParseArgs {
    /// Reasoning parser (vLLM's names, or a format file `FILE.toml`); none means no
    /// reasoning split.
    #[arg(long, value_parser = crate::formats::reasoning)]
    reasoning_parser: Option<braid_parsers::ReasoningParser>,
    /// Tool-call parser (vLLM's names, or a format file `FILE.toml`); none means no tool
    /// extraction.
    #[arg(long, value_parser = crate::formats::tools)]
    tool_parser: Option<braid_parsers::ToolParser>,
    /// A JSON file holding the request's `tools` array (types XML argument values).
    #[arg(long, value_name = "FILE.json")]
    tools: Option<std::path::PathBuf>,
    /// The request's `chat_template_kwargs`, as a JSON object.
    #[arg(long, value_name = "JSON")]
    chat_template_kwargs: Option<String>,
    /// The rendered prompt ended inside an open reasoning block.
    #[arg(long)]
    start_in_reasoning: bool,
    /// Stream the text in pieces: N chars, `all` (every single split point is checked),
    /// or `random:SEED`. The streamed result must equal the non-streamed one.
    #[arg(long, value_name = "N|all|random:SEED")]
    chunks: Option<String>,
}

enum ChunkPlan {
    Fixed(Chunking),
    EverySplit,
}

fn chunk_plan(spec: &str) -> anyhow::Result<ChunkPlan> {
    if spec == "all" {
        return Ok(ChunkPlan::EverySplit);
    }
    if let Some(seed) = spec.strip_prefix("random:") {
        let seed = seed
            .parse::<u64>()
            .with_context(|| format!("--chunks random:SEED needs a whole number, got {seed:?}"))?;
        return Ok(ChunkPlan::Fixed(Chunking::Random(seed)));
    }
    match spec.parse::<usize>() {
        Ok(n) if n > 0 => Ok(ChunkPlan::Fixed(Chunking::Chars(n))),
        _ => bail!("--chunks takes a positive number, `all` or `random:SEED`, got {spec:?}"),
    }
}

fn config(args: &ParseArgs) -> anyhow::Result<OutputConfig> {
    let mut config = OutputConfig::from_names(
        args.reasoning_parser.map(|r| r.name()),
        args.tool_parser.map(|t| t.name()),
    )?;
    if let Some(path) = &args.tools {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading --tools {}", path.display()))?;
        let tools: Value = serde_json::from_str(&text)
            .with_context(|| format!("--tools {} is not valid JSON", path.display()))?;
        if !tools.is_array() {
            bail!(
                "--tools {} must hold a JSON array of tool definitions",
                path.display()
            );
        }
        config.schemas = Arc::new(ToolSchemas::from_tools(&tools));
    }
    if let Some(kwargs) = &args.chat_template_kwargs {
        let value: Value =
            serde_json::from_str(kwargs).context("--chat-template-kwargs is not valid JSON")?;
        if !value.is_object() {
            bail!("--chat-template-kwargs must be a JSON object, got {kwargs}");
        }
        config.chat_template_kwargs = Some(value);
    }
    if args.start_in_reasoning {
        config.start = StartOverride::InReasoning;
    }
    Ok(config)
}

/// The OpenAI-shaped JSON for a parsed output.
pub(crate) fn to_json(out: &ParsedOutput) -> Value {
    json!({
        "reasoning_content": out.reasoning_content(),
        "content": out.content(),
        "tool_calls": out.tool_calls.iter().map(|c| json!({
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        })).collect::<Vec<_>>(),
        "fallbacks": out.fallbacks.iter().map(|(reason, text)| json!({
            "reason": reason.as_str(),
            "text": text,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn run(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    let config = config(args)?;
    let plan = args.chunks.as_deref().map(chunk_plan).transpose()?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading stdin")?;
    let text = String::from_utf8(bytes).context("stdin is not valid UTF-8")?;

    let whole = testkit::parse(&config, &text, Chunking::Whole);
    let streamed = match plan {
        None => whole.clone(),
        Some(ChunkPlan::Fixed(chunking)) => testkit::parse(&config, &text, chunking),
        Some(ChunkPlan::EverySplit) => {
            if let Some(at) = testkit::first_bad_split(&config, &text) {
                let split = testkit::parse(&config, &text, Chunking::SplitAt(at));
                eprintln!(
                    "braid: streaming differs from non-streaming when split before char {at}:\n  streamed: {}\n  whole:    {}",
                    to_json(&split),
                    to_json(&whole)
                );
                return Ok(ExitCode::from(1));
            }
            whole.clone()
        }
    };
    if streamed != whole {
        eprintln!(
            "braid: streaming differs from non-streaming:\n  streamed: {}\n  whole:    {}",
            to_json(&streamed),
            to_json(&whole)
        );
        return Ok(ExitCode::from(1));
    }
    println!("{}", to_json(&streamed));
    Ok(ExitCode::SUCCESS)
}
