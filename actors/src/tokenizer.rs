//! The tokenizer stage: a validated request in, prompt token ids out (to the executor the
//! request is pinned to), and a reply to the ingress saying whether it was taken.
//! Stateless: replicas share work through a queue group.

use std::sync::Arc;

use braid_bus::{
    decode, encode, subject, Admitted, Envelope, Failure, FailureKind, Header, Message, Prefill, Prompt,
    Stage, Start, Submit,
};
use braid_engine::Tokenizer;
use braid_parsers::StartOverride;

use crate::stage::{Logic, Outbox};

/// Tokenizes prompts.
pub(crate) struct TokenizerLogic {
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerLogic {
    pub(crate) fn new(tokenizer: Arc<Tokenizer>) -> Self {
        TokenizerLogic { tokenizer }
    }

    /// The prefill for a request, or why it cannot have one.
    fn prefill(&self, submit: Submit) -> Result<Prefill, String> {
        let Submit {
            prompt,
            sampling,
            mut setup,
        } = submit;
        let (ids, text) = match prompt {
            Prompt::Text(text) => (self.tokenizer.encode(&text).map_err(|e| e.to_string())?, text),
            Prompt::Tokens(ids) => {
                let vocab = self.tokenizer.vocab_size() as u32;
                if let Some(bad) = ids.iter().find(|&&t| t >= vocab) {
                    return Err(format!(
                        "prompt token id {bad} is outside the vocabulary (size {vocab})"
                    ));
                }
                let text = self.tokenizer.decode_lossy(&ids, false);
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
        setup.prompt_tokens = ids.len() as u32;
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
