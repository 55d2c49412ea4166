//! Parser choice that checks itself: with no `--reasoning-parser`/`--tool-call-parser`,
//! braid picks a family from the model folder and proves it against the chat template
//! before serving, where peers guess (TensorRT-LLM's `auto` once picked a parser that
//! returned 0 of 4 tool calls with HTTP 200).
//!
//! Candidates are the families of [`braid_parsers::family::FAMILIES`], those whose
//! `model_type` matches `config.json`'s first. A candidate passes when the template's
//! rendering of a probe tool call reads back as that call with its tool parser, and its
//! reasoning format shows in the template: a probe turn's reasoning rendered between the
//! format's markers, or (for templates that drop reasoning from history) the markers in
//! the prompt of a thinking turn. The first that passes is served; none passing is said,
//! with the flags to set. `braid parsers MODEL_DIR` prints the choice.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use braid_bus::{ChatMessage, Conversation, Role, ToolCall};
use braid_engine::ChatRenderer;
use braid_parsers::family::{Family, FAMILIES};
use braid_parsers::{ReasoningParser, ToolParser};
use serde_json::{json, Map, Value};

/// Options of `braid parsers`.
#[derive(Debug, clap::Args)]
pub(crate) struct ParsersArgs {
    /// The model folder (its `config.json` and chat template).
    model: PathBuf,
    /// A Jinja chat template file (overrides the model folder's).
    #[arg(long)]
    chat_template: Option<PathBuf>,
}

/// `braid parsers MODEL_DIR`: prints the parsers braid would serve the model with, as
/// JSON; exits 1 with the reason when none fits.
pub(crate) fn run(args: &ParsersArgs) -> anyhow::Result<ExitCode> {
    let renderer = ChatRenderer::from_dir(&args.model, args.chat_template.as_deref())?;
    match choose(&args.model, &renderer) {
        Ok(choice) => {
            let out = json!({
                "family": choice.family.name,
                "reasoning_parser": choice.reasoning.map(|r| r.name()),
                "tool_call_parser": choice.tools.name(),
                "model_type": choice.model_type,
                "tried": choice.tried,
            });
            println!("{}", serde_json::to_string_pretty(&out).context("writing JSON")?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("braid: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A family proved against the template.
#[derive(Debug)]
pub(crate) struct Choice {
    /// The family.
    pub family: &'static Family,
    /// Its reasoning parser; `None` where the template never shows reasoning (a
    /// non-thinking model of the family, such as Kimi-K2-Instruct).
    pub reasoning: Option<ReasoningParser>,
    /// Its tool parser.
    pub tools: ToolParser,
    /// `config.json`'s `model_type`, if any.
    pub model_type: Option<String>,
    /// The families tried before it, each with why it did not fit.
    pub tried: Vec<String>,
}

/// The family, `model_type` matches first, whose parsers the template proves: the first
/// whose markup writes the probe call exactly as the template does, else the first whose
/// parser reads it back (parsers that read more than their own markup, such as glm47's
/// reading GLM-4.5 calls, then do not win over the exact one).
pub(crate) fn choose(dir: &Path, renderer: &ChatRenderer) -> Result<Choice, String> {
    let model_type = model_type(dir);
    let matches = |f: &&Family| model_type.as_deref().is_some_and(|t| f.model_types.contains(&t));
    let ordered = FAMILIES
        .iter()
        .filter(matches)
        .chain(FAMILIES.iter().filter(|f| !matches(f)));
    let mut tried = Vec::new();
    let mut fallback = None;
    for family in ordered {
        match prove(renderer, family) {
            Ok((reasoning, tools, fit)) => {
                let choice = (family, reasoning, tools);
                if fit == Fit::Exact {
                    fallback = Some(choice);
                    break;
                }
                tried.push(format!(
                    "{}: reads the probe call back, but writes it differently",
                    family.name
                ));
                fallback = fallback.or(Some(choice));
            }
            Err(why) => tried.push(format!("{}: {why}", family.name)),
        }
    }
    match fallback {
        Some((family, reasoning, tools)) => Ok(Choice {
            family,
            reasoning,
            tools,
            model_type,
            tried: tried
                .into_iter()
                .filter(|t| !t.starts_with(&format!("{}:", family.name)))
                .collect(),
        }),
        None => Err(format!(
            "no parser family fits this model's chat template (model_type {}): no family's parsers \
             read back a probe tool call and its reasoning. Give --reasoning-parser and \
             --tool-call-parser (see `braid serve --help`). Tried:\n  {}",
            model_type.as_deref().unwrap_or("not given"),
            tried.join("\n  ")
        )),
    }
}

/// `config.json`'s `model_type`.
fn model_type(dir: &Path) -> Option<String> {
    let (config, _) = braid_engine::config::config_json(dir).ok()?;
    config.get("model_type")?.as_str().map(str::to_owned)
}

/// Both probes for one family.
fn prove(
    renderer: &ChatRenderer,
    family: &Family,
) -> Result<(Option<ReasoningParser>, ToolParser, Fit), String> {
    let tools: ToolParser = family.tools.parse().map_err(|e| format!("{e}"))?;
    let reasoning: ReasoningParser = family.reasoning.parse().map_err(|e| format!("{e}"))?;
    let fit = tool_fit(renderer, tools)?;
    let shown = reasoning_shows(renderer, reasoning)?;
    Ok((shown.then_some(reasoning), tools, fit))
}

/// How well a tool parser fits the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// The template writes the probe call as the format's markup does, byte for byte.
    Exact,
    /// The parser reads the probe call back, or (for a template that drops calls from
    /// its history) the template's instructions name the format's opener.
    Reads,
}

const PROBE_TURN: &str = "BRAID-PROBE-TURN";
const PROBE_THOUGHT: &str = "BRAID-PROBE-THOUGHT";
const PROBE_ANSWER: &str = "BRAID-PROBE-ANSWER";

/// Template kwargs that switch the format's thinking on.
fn thinking_on(reasoning: ReasoningParser) -> Map<String, Value> {
    let mut kwargs = Map::new();
    if let Some(switch) = reasoning.format().switch {
        kwargs.insert(switch.key.to_owned(), Value::Bool(true));
    }
    kwargs
}

/// Whether the template writes the format's reasoning. A probe turn's reasoning must be
/// followed by one of the format's close markers before its answer (other markers mean
/// another format: an error). Where the template drops that reasoning, the format's
/// markers must show elsewhere (an emptied `<think></think>`, a generation prompt that
/// opens or closes a block, thinking on or off); if they never do, the model does not
/// think (`false`: no reasoning parser).
fn reasoning_shows(renderer: &ChatRenderer, reasoning: ReasoningParser) -> Result<bool, String> {
    let f = reasoning.format();
    let turn = ChatMessage {
        reasoning: Some(PROBE_THOUGHT.into()),
        ..ChatMessage::text(Role::Assistant, PROBE_ANSWER)
    };
    let history = Conversation {
        messages: vec![ChatMessage::text(Role::User, PROBE_TURN), turn],
        tools: Vec::new(),
        kwargs: thinking_on(reasoning),
        add_generation_prompt: false,
    };
    let text = braid_actors::tokenizer::render(renderer, &history).map_err(|e| e.to_string())?;
    if let Some((_, after)) = text.split_once(PROBE_THOUGHT) {
        let between = after.split(PROBE_ANSWER).next().unwrap_or_default();
        return match f.all_closes().any(|c| between.contains(c)) {
            true => Ok(true),
            false => Err(format!(
                "the template does not close reasoning with {:?}",
                f.close
            )),
        };
    }
    let markers: Vec<&str> = f.all_opens().chain(f.all_closes()).collect();
    let after_turn = text.rsplit(PROBE_TURN).next().unwrap_or_default();
    if markers.iter().any(|m| after_turn.contains(m)) {
        return Ok(true);
    }
    let mut kwargs = vec![history.kwargs];
    if let Some(switch) = f.switch {
        kwargs.push(Map::from_iter([(switch.key.to_owned(), Value::Bool(false))]));
    }
    for kwargs in kwargs {
        let fresh = Conversation {
            messages: vec![ChatMessage::text(Role::User, PROBE_TURN)],
            tools: Vec::new(),
            kwargs,
            add_generation_prompt: true,
        };
        // The whole prompt: a system prompt that asks for the markers (Granite 3.3's
        // "between <think></think>") counts too.
        let prompt = braid_actors::tokenizer::render(renderer, &fresh).map_err(|e| e.to_string())?;
        if markers.iter().any(|m| prompt.contains(m)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Renders a probe conversation with one tool call through the template and checks the
/// tool parser reads the call back; a template and parser that disagree would make every
/// replayed tool call unreadable to the model's own format.
pub(crate) fn self_test(renderer: &ChatRenderer, tool_parser: ToolParser) -> Result<(), String> {
    tool_fit(renderer, tool_parser).map(|_| ())
}

fn tool_fit(renderer: &ChatRenderer, tool_parser: ToolParser) -> Result<Fit, String> {
    // Templates differ on an empty tool-call turn's content: some render the calls only
    // for `null` (DeepSeek-R1), some cannot read `null` (Qwen3). Either may pass.
    let empty = probe(renderer, tool_parser, Some(""));
    empty.or_else(|first| probe(renderer, tool_parser, None).map_err(|_| first))
}

fn probe(renderer: &ChatRenderer, tool_parser: ToolParser, content: Option<&str>) -> Result<Fit, String> {
    let args = json!({"x": 1});
    let call = ToolCall {
        id: "functions.braid_probe:0".into(),
        name: "braid_probe".into(),
        arguments: args.to_string(),
        parsed: Some(args),
    };
    let turn = ChatMessage {
        content: content.map(str::to_owned),
        tool_calls: Some(vec![call]),
        ..ChatMessage::text(Role::Assistant, "")
    };
    let tools = json!([{"type": "function", "function": {"name": "braid_probe",
        "description": "A probe.",
        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]);
    let conversation = Conversation {
        messages: vec![ChatMessage::text(Role::User, PROBE_TURN), turn],
        tools: braid_parsers::tools::grammar::ToolSpec::list(&tools),
        kwargs: Map::new(),
        add_generation_prompt: false,
    };
    let text = braid_actors::tokenizer::render(renderer, &conversation).map_err(|e| e.to_string())?;
    let after = text.rsplit(PROBE_TURN).next().unwrap_or_default();
    let mut config =
        braid_parsers::OutputConfig::from_names(None, Some(tool_parser.name())).map_err(|e| e.to_string())?;
    config.schemas = Arc::new(braid_parsers::ToolSchemas::from_tools(&tools));
    let parsed = braid_parsers::testkit::parse(&config, after, braid_parsers::testkit::Chunking::Whole);
    let ok = parsed.tool_calls.iter().any(|c| {
        c.name == "braid_probe" && serde_json::from_str::<Value>(&c.arguments).ok() == Some(json!({"x": 1}))
    });
    // A template that drops calls from the history (Granite 3.3) cannot show how it
    // writes them: then its instructions must name the format's opener.
    let dropped = !after.contains("braid_probe");
    let opener = tool_parser
        .format()
        .opens
        .first()
        .is_some_and(|o| text.contains(o));
    // The call as the format's markup writes it, without the block around it.
    let markup = tool_parser.format().markup;
    let written = markup.write(&[("braid_probe", &json!({"x": 1}))]);
    let call = written
        .strip_prefix(markup.begin)
        .and_then(|w| w.strip_suffix(markup.end))
        .unwrap_or(&written)
        .trim();
    if ok && after.contains(call) {
        Ok(Fit::Exact)
    } else if ok || (dropped && opener) {
        Ok(Fit::Reads)
    } else {
        Err(format!(
            "the {tool_parser} parser finds no braid_probe(x=1) call in the template's rendering of one"
        ))
    }
}
