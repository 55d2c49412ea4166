//! The tokenizer stage: a validated request in, prompt token ids out (to the executor the
//! request is pinned to), and a reply to the ingress saying whether it was taken.
//! Stateless: replicas share work through a queue group.

use std::sync::Arc;

use braid_bus::{
    decode, encode, subject, Admitted, Envelope, Failure, FailureKind, Header, Message, Prefill, Prompt,
    Stage, Start, Submit,
};
use braid_engine::{ChatRenderer, Conversation, Tokenizer};
use braid_parsers::StartOverride;

use crate::stage::{Logic, Outbox};

/// What the tokenizer stage renders and checks prompts with.
#[derive(Clone)]
pub(crate) struct PromptConfig {
    /// The model's tokenizer.
    pub(crate) tokenizer: Arc<Tokenizer>,
    /// The model's chat template (chat requests need it).
    pub(crate) chat: Option<Arc<ChatRenderer>>,
    /// Prompt plus output, at most (prompts at or over it are refused).
    pub(crate) max_model_len: Option<u32>,
}

/// Output length when neither the request nor the model sets one.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Tokenizes prompts.
pub(crate) struct TokenizerLogic {
    config: PromptConfig,
}

impl TokenizerLogic {
    pub(crate) fn new(config: PromptConfig) -> Self {
        TokenizerLogic { config }
    }

    /// Renders a conversation through the chat template.
    fn render(&self, messages: &str, tools: Option<&str>, kwargs: Option<&str>) -> Result<String, String> {
        let chat = self.config.chat.as_ref().ok_or(
            "this model has no chat template; use /v1/completions or start braid with --chat-template",
        )?;
        let parse = |what: &str, json: &str| {
            serde_json::from_str::<serde_json::Value>(json)
                .map_err(|e| format!("{what} is not valid JSON: {e}"))
        };
        let messages = parse("messages", messages)?;
        let tools = tools.map(|t| parse("tools", t)).transpose()?;
        let kwargs = kwargs.map(|k| parse("chat_template_kwargs", k)).transpose()?;
        chat.render(&Conversation {
            messages: &messages,
            tools: tools.as_ref(),
            kwargs: kwargs.as_ref(),
            add_generation_prompt: true,
        })
        .map_err(|e| e.to_string())
    }

    /// The prefill for a request, or why it cannot have one.
    fn prefill(&self, submit: Submit) -> Result<Prefill, String> {
        let Submit {
            prompt,
            sampling,
            mut setup,
        } = submit;
        let tokenizer = &self.config.tokenizer;
        let (ids, text) = match prompt {
            Prompt::Text(text) => (tokenizer.encode(&text).map_err(|e| e.to_string())?, text),
            Prompt::Chat {
                messages_json,
                tools_json,
                kwargs_json,
            } => {
                let text = self.render(&messages_json, tools_json.as_deref(), kwargs_json.as_deref())?;
                (tokenizer.encode(&text).map_err(|e| e.to_string())?, text)
            }
            Prompt::Tokens(ids) => {
                let vocab = tokenizer.vocab_size() as u32;
                if let Some(bad) = ids.iter().find(|&&t| t >= vocab) {
                    return Err(format!(
                        "prompt token id {bad} is outside the vocabulary (size {vocab})"
                    ));
                }
                let text = tokenizer.decode_lossy(&ids, false);
                (ids, text)
            }
        };
        if ids.is_empty() {
            return Err("the prompt is empty".into());
        }
        if let Some(name) = &setup.reasoning_parser {
            let format = braid_parsers::reasoning_format(name).map_err(|e| e.to_string())?;
            setup.start = match format.start_from_prompt(&text) {
                StartOverride::FormatDefault => Start::FormatDefault,
                StartOverride::InReasoning => Start::InReasoning,
                StartOverride::InContent => Start::InContent,
            };
        }
        if let Some(name) = &setup.tool_parser {
            braid_parsers::tool_format(name).map_err(|e| e.to_string())?;
        }
        let prompt_len = ids.len() as u32;
        let mut sampling = sampling;
        if let Some(max) = self.config.max_model_len {
            if prompt_len >= max {
                return Err(format!(
                    "this model's maximum context length is {max} tokens; the prompt has {prompt_len}"
                ));
            }
            if sampling.max_tokens == 0 {
                sampling.max_tokens = max - prompt_len;
            } else if prompt_len + sampling.max_tokens > max {
                return Err(format!(
                    "this model's maximum context length is {max} tokens; the request asks for {} ({prompt_len} in the prompt, {} to generate): lower max_tokens",
                    prompt_len + sampling.max_tokens,
                    sampling.max_tokens
                ));
            }
        } else if sampling.max_tokens == 0 {
            sampling.max_tokens = DEFAULT_MAX_TOKENS;
        }
        setup.prompt_tokens = prompt_len;
        Ok(Prefill {
            prompt: ids,
            sampling,
            setup,
        })
    }
}

impl Logic for TokenizerLogic {
    fn handle(&mut self, msg: &Message, out: &mut Outbox) -> Result<(), braid_bus::Error> {
        let env: Envelope<Submit> = decode(&msg.subject, &msg.payload)?;
        out.sent_ns = Some(env.header.sent_ns);
        let id = env.header.id;
        let route = env.body.setup.route;
        let answer = match (route, self.prefill(env.body)) {
            (Some(route), Ok(prefill)) => {
                let to = Arc::from(subject::instance(Stage::Executor, route.executor));
                let prompt_tokens = prefill.setup.prompt_tokens;
                out.send(&to, Header::new(id, 0, true), &prefill);
                Admitted::Accepted { prompt_tokens }
            }
            (None, _) => refused(FailureKind::Internal, "request arrived without a route".into()),
            (_, Err(message)) => refused(FailureKind::BadRequest, message),
        };
        if let Some(reply) = &msg.reply {
            out.raw(
                Arc::from(reply.as_str()),
                encode(&Envelope {
                    header: Header::new(id, 0, true),
                    body: answer,
                }),
            );
        }
        Ok(())
    }

    fn load(&self) -> u32 {
        0
    }
}

fn refused(kind: FailureKind, message: String) -> Admitted {
    Admitted::Refused(Failure {
        kind,
        stage: Stage::Tokenizer,
        message,
    })
}
