//! The tokenizer stage: everything that needs the tokenizer or the chat template. A
//! validated request in, prompt token ids out (to the executor the request is pinned
//! to), with a reply to the ingress saying whether it was taken; and `/tokenize` and
//! `/detokenize` answered over the bus. A request's constraint is written as a grammar
//! and compiled here, once. Stateless: replicas share work through a queue group.

use std::sync::Arc;

use braid_bus::{
    decode, subject, Admitted, ChatMessage, Conversation, Envelope, Failure, FailureKind, Header, Members,
    Message, Prefill, Prompt, RequestId, Stage, Submit, TokenizerAnswer, TokenizerCall,
};
use braid_engine::chat::ArgumentsAs;
use braid_engine::{ChatRenderer, Tokenizer};
use serde_json::{json, Map, Value};

use crate::constraints::{Grammars, GuideHandoff};
use crate::router::Router;
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
    /// Grammar writing and checking for constraints.
    pub(crate) grammars: Grammars,
    /// Where compiled guides go for this process's engine (`None`: no engine here).
    pub(crate) handoff: Option<GuideHandoff>,
}

/// Output length when neither the request nor the model sets one.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Tokenizes prompts.
pub(crate) struct TokenizerLogic {
    config: PromptConfig,
    /// Chooses each request's executor by its prompt (`None`: the ingress's pick stands).
    router: Option<(Arc<Router>, Members)>,
}

/// Answers a request/reply message (the ingress waits on its reply subject).
fn reply<B: serde::Serialize>(msg: &Message, out: &mut Outbox, id: RequestId, body: &B) {
    if let Some(to) = &msg.reply {
        out.send(&Arc::from(to.as_str()), Header::new(id, 0, true), body);
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::BadRequest, Stage::Tokenizer, message)
}

/// A message as chat templates read it (OpenAI's shape, reasoning under every name
/// templates read: `reasoning_content`, `reasoning`, and gpt-oss's `thinking`).
fn message_view(m: &ChatMessage, arguments_as: ArgumentsAs) -> Value {
    let mut obj = Map::new();
    obj.insert("role".into(), json!(m.role.as_str()));
    obj.insert(
        "content".into(),
        m.content.as_deref().map_or(Value::Null, |c| json!(c)),
    );
    if let Some(r) = &m.reasoning {
        obj.insert("reasoning_content".into(), json!(r));
        obj.insert("reasoning".into(), json!(r));
        obj.insert("thinking".into(), json!(r));
    }
    if let Some(calls) = &m.tool_calls {
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| {
                let arguments = match (arguments_as, &c.parsed) {
                    (ArgumentsAs::Object, Some(parsed)) => parsed.clone(),
                    _ => json!(c.arguments),
                };
                json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": arguments}})
            })
            .collect();
        obj.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        obj.insert("tool_call_id".into(), json!(id));
    }
    if let Some(name) = &m.name {
        obj.insert("name".into(), json!(name));
    }
    Value::Object(obj)
}

/// The tools as chat templates read them (OpenAI's shape).
fn tools_view(conv: &Conversation) -> Option<Value> {
    if conv.tools.is_empty() {
        return None;
    }
    let tools = conv
        .tools
        .iter()
        .map(|t| {
            let mut f = Map::new();
            f.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                f.insert("description".into(), json!(d));
            }
            if let Some(p) = &t.parameters {
                f.insert("parameters".into(), p.clone());
            }
            if t.strict {
                f.insert("strict".into(), json!(true));
            }
            json!({"type": "function", "function": f})
        })
        .collect();
    Some(Value::Array(tools))
}

/// The prompt a conversation renders to: the template's view of it (see
/// [`braid_engine::chat`]) through `chat`. `braid render` uses this too, so the golden
/// renders test the path requests take.
pub fn render(chat: &ChatRenderer, conv: &Conversation) -> Result<String, braid_engine::Error> {
    let arguments_as = chat.arguments_as();
    let messages = Value::Array(
        conv.messages
            .iter()
            .map(|m| message_view(m, arguments_as))
            .collect(),
    );
    let tools = tools_view(conv);
    let kwargs = Value::Object(conv.kwargs.clone());
    chat.render(&braid_engine::Conversation {
        messages: &messages,
        tools: tools.as_ref(),
        kwargs: Some(&kwargs),
        add_generation_prompt: conv.add_generation_prompt,
    })
}

impl TokenizerLogic {
    pub(crate) fn new(config: PromptConfig, router: Option<(Arc<Router>, Members)>) -> Self {
        TokenizerLogic { config, router }
    }

    /// Renders a conversation through the chat template.
    fn render(&self, conv: &Conversation) -> Result<String, Failure> {
        let chat = self.config.chat.as_ref().ok_or_else(|| {
            bad("this model has no chat template; use /v1/completions or start braid with --chat-template")
        })?;
        render(chat, conv).map_err(|e| bad(e.to_string()).with_param("messages"))
    }

    /// A prompt's token ids and text. A text longer than the model's context is refused
    /// as soon as that is known, without tokenizing it whole.
    fn tokens(&self, prompt: &Prompt) -> Result<(Vec<u32>, String), Failure> {
        let tokenizer = &self.config.tokenizer;
        let param = match prompt {
            Prompt::Chat(_) => "messages",
            _ => "prompt",
        };
        // A prompt must leave room for one token of output; without a model length, any
        // length goes.
        let max = self.config.max_model_len;
        let limit = max.map_or(usize::MAX, |m| m.saturating_sub(1) as usize);
        let encode = |text: String| match tokenizer.encode_within(&text, limit) {
            Ok(Some(ids)) => Ok((ids, text)),
            Ok(None) => Err(bad(format!(
                "this model's maximum context length is {} tokens; the prompt has more",
                max.unwrap_or_default()
            ))
            .with_param(param)),
            Err(e) => Err(bad(e.to_string()).with_param("prompt")),
        };
        match prompt {
            Prompt::Text(text) => encode(text.clone()),
            Prompt::Chat(conv) => encode(self.render(conv)?),
            Prompt::Tokens(ids) => {
                self.check_ids(ids.iter().copied(), "prompt")?;
                Ok((ids.clone(), tokenizer.decode_lossy(ids, false)))
            }
        }
    }

    /// Refuses a token id outside the vocabulary, naming the request field it came from.
    fn check_ids(&self, ids: impl IntoIterator<Item = u32>, param: &str) -> Result<(), Failure> {
        let vocab = self.config.tokenizer.vocab_size() as u32;
        match ids.into_iter().find(|&t| t >= vocab) {
            Some(bad_id) => Err(bad(format!(
                "token id {bad_id} is outside the vocabulary (size {vocab})"
            ))
            .with_param(param)),
            None => Ok(()),
        }
    }

    /// The prefill for a request, or why it cannot have one.
    fn prefill(&self, id: u64, submit: Submit) -> Result<Prefill, Failure> {
        let Submit {
            prompt,
            mut sampling,
            constraint,
            mut setup,
        } = submit;
        let (ids, text) = self.tokens(&prompt)?;
        self.check_ids(sampling.logit_bias.iter().map(|&(t, _)| t), "logit_bias")?;
        if ids.is_empty() {
            return Err(bad("the prompt is empty").with_param("prompt"));
        }
        if let Some(parser) = &setup.reasoning_parser {
            setup.start = parser.format().start_from_prompt(&text);
        }
        let prompt_len = ids.len() as u32;
        if let Some(max) = self.config.max_model_len {
            if prompt_len >= max {
                return Err(bad(format!(
                    "this model's maximum context length is {max} tokens; the prompt has {prompt_len}"
                ))
                .with_param("messages"));
            }
            let over = prompt_len + sampling.max_tokens > max;
            if sampling.max_tokens == 0 || (over && sampling.fit_max_tokens) {
                sampling.max_tokens = max - prompt_len;
            } else if over {
                return Err(bad(format!(
                    "this model's maximum context length is {max} tokens; the request asks for {} ({prompt_len} in the prompt, {} to generate): lower max_tokens",
                    prompt_len + sampling.max_tokens,
                    sampling.max_tokens
                ))
                .with_param("max_tokens"));
            }
        } else if sampling.max_tokens == 0 {
            sampling.max_tokens = DEFAULT_MAX_TOKENS;
        }
        sampling.guide = None;
        sampling.guide_param = constraint.as_ref().map(|c| c.param.clone());
        if let Some(c) = &constraint {
            let tools = match &prompt {
                Prompt::Chat(conv) => conv.tools.as_slice(),
                _ => &[],
            };
            let (lark, guide) = self
                .config
                .grammars
                .compile(c, tools, setup.tool_parser)
                .map_err(|r| bad(r.message).with_param(r.param))?;
            if let Some(handoff) = &self.config.handoff {
                handoff.put(id, guide);
            }
            sampling.guide = Some(lark);
        }
        setup.prompt_tokens = prompt_len;
        Ok(Prefill {
            prompt: ids,
            sampling,
            setup,
        })
    }

    /// Answers a call that starts no generation.
    fn answer(&self, call: &TokenizerCall) -> TokenizerAnswer {
        let result = match call {
            TokenizerCall::Tokenize(prompt) => {
                self.tokens(prompt).map(|(tokens, _)| TokenizerAnswer::Tokens {
                    tokens,
                    max_model_len: self.config.max_model_len,
                })
            }
            TokenizerCall::Detokenize(ids) => self.check_ids(ids.iter().copied(), "tokens").and_then(|()| {
                self.config
                    .tokenizer
                    .decode(ids)
                    .map(TokenizerAnswer::Text)
                    .map_err(|e| bad(e.to_string()).with_param("tokens"))
            }),
        };
        result.unwrap_or_else(TokenizerAnswer::Refused)
    }
}

impl Logic for TokenizerLogic {
    fn handle(&mut self, msg: &Message, out: &mut Outbox) -> Result<(), braid_bus::Error> {
        if &*msg.subject == subject::TOKENIZER_CALL {
            let env: Envelope<TokenizerCall> = decode(&msg.subject, &msg.payload)?;
            reply(msg, out, env.header.id, &self.answer(&env.body));
            return Ok(());
        }
        let env: Envelope<Submit> = decode(&msg.subject, &msg.payload)?;
        out.sent_ns = Some(env.header.sent_ns);
        let id = env.header.id;
        let route = env.body.setup.route;
        let answer = match (route, self.prefill(id.0, env.body)) {
            (Some(mut route), Ok(mut prefill)) => {
                if let Some((router, members)) = &self.router {
                    if let Some((executor, _)) = router.pick(&prefill.prompt, &members.live(Stage::Executor))
                    {
                        route.executor = executor;
                        prefill.setup.route = Some(route);
                    }
                }
                let to = Arc::from(subject::instance(Stage::Executor, route.executor));
                let prompt_tokens = prefill.setup.prompt_tokens;
                out.send(&to, Header::new(id, 0, true), &prefill);
                Admitted::Accepted {
                    prompt_tokens,
                    executor: route.executor,
                }
            }
            (None, _) => Admitted::Refused(Failure::new(
                FailureKind::Internal,
                Stage::Tokenizer,
                "request arrived without a route",
            )),
            (_, Err(f)) => Admitted::Refused(f),
        };
        reply(msg, out, id, &answer);
        Ok(())
    }

    fn load(&self) -> u32 {
        0
    }
}
