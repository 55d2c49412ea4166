//! `braid render`: prints the prompt a conversation renders to, for debugging templates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use braid_bus::Conversation;
use braid_engine::chat::{ChatRenderer, JinjaTemplate};
use serde_json::Value;

/// Options of `braid render`.
#[derive(Debug, clap::Args)]
pub(crate) struct RenderArgs {
    /// A model folder (its chat template and special tokens).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A Jinja chat template file (overrides the model folder's).
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// The request: a JSON object with `messages` and optionally `tools` and
    /// `chat_template_kwargs` (an OpenAI chat request body works).
    #[arg(long)]
    request: PathBuf,
    /// Template kwargs (a JSON object), over the request's own.
    #[arg(long)]
    chat_template_kwargs: Option<String>,
    /// Leave the assistant turn unopened.
    #[arg(long)]
    no_generation_prompt: bool,
}

pub(crate) fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let renderer = match (&args.model, &args.chat_template) {
        (Some(dir), template) => ChatRenderer::from_dir(dir, template.as_deref())?,
        (None, Some(file)) => {
            let source =
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            ChatRenderer::Jinja(Box::new(JinjaTemplate::new(
                source,
                Default::default(),
                &file.display().to_string(),
            )?))
        }
        (None, None) => bail!("give --model DIR or --chat-template FILE"),
    };
    let text = std::fs::read_to_string(&args.request)
        .with_context(|| format!("reading {}", args.request.display()))?;
    let request: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", args.request.display()))?;
    let Some(messages) = request.get("messages") else {
        bail!("{}: the request has no `messages`", args.request.display());
    };
    let mut kwargs = match request.get("chat_template_kwargs") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(k)) => k.clone(),
        Some(_) => bail!("chat_template_kwargs must be a JSON object"),
    };
    if let Some(extra) = &args.chat_template_kwargs {
        match serde_json::from_str(extra).context("--chat-template-kwargs is not valid JSON")? {
            Value::Object(e) => kwargs.extend(e),
            _ => bail!("chat template kwargs must be JSON objects"),
        }
    }
    // The same decoding and template view a chat request gets.
    let refused = |e: braid_api::ApiError| anyhow::anyhow!("{}", e.message);
    let conversation = Conversation {
        messages: braid_api::decode_messages(messages).map_err(refused)?,
        tools: match request.get("tools").filter(|t| !t.is_null()) {
            Some(t) => braid_api::decode_tools(t).map_err(refused)?,
            None => Vec::new(),
        },
        kwargs,
        add_generation_prompt: !args.no_generation_prompt,
    };
    let prompt = braid_actors::tokenizer::render(&renderer, &conversation)?;
    std::io::stdout().write_all(prompt.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
