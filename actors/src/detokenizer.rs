//! The detokenizer stage: each engine step's token ids (or an upstream engine's text) in,
//! whole UTF-8 text out, special tokens skipped as the request asks, stop strings applied
//! (and the executor told to stop when one matches).

use std::sync::Arc;

use braid_bus::{subject, Cancel, Finish, Header, InstanceId, RequestId, Setup, Stage, Step, Text};
use braid_engine::{IncrementalDecoder, StopMatcher, Tokenizer};

use crate::stage::{Outbox, Stateful};

/// Decodes tokens for many requests.
pub(crate) struct Detokenizer {
    tokenizer: Arc<Tokenizer>,
}

impl Detokenizer {
    pub(crate) fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Detokenizer { tokenizer }
    }
}

/// One request's decoding state.
pub(crate) struct DetokState {
    decoder: IncrementalDecoder,
    stops: StopMatcher,
    executor: InstanceId,
    raw: String,
    /// Tokens consumed since the last output.
    tokens: u32,
}

impl Stateful for Detokenizer {
    type In = Step;
    type Out = Text;
    type State = DetokState;
    const STAGE: Stage = Stage::Detokenizer;

    fn open(&self, _id: RequestId, setup: &Setup) -> DetokState {
        DetokState {
            decoder: IncrementalDecoder::new(Arc::clone(&self.tokenizer), setup.skip_special_tokens),
            stops: StopMatcher::new(&setup.stop, setup.include_stop_str),
            executor: setup.route.map_or(InstanceId(0), |r| r.executor),
            raw: String::new(),
            tokens: 0,
        }
    }

    fn on(
        &self,
        id: RequestId,
        st: &mut DetokState,
        step: Step,
        setup: Option<Box<Setup>>,
        out: &mut Outbox,
    ) -> Option<(Text, bool)> {
        st.raw.clear();
        match &step.text {
            Some(t) => {
                st.tokens += t.tokens;
                st.decoder.push_text(&t.text, &mut st.raw);
            }
            None => {
                st.tokens += step.tokens.len() as u32;
                st.decoder.push(&step.tokens, &mut st.raw);
            }
        }
        let mut finish = step.finish;
        if finish.is_some() {
            st.decoder.finish(&mut st.raw);
        }
        let mut text = String::with_capacity(st.raw.len());
        if let Some(stop) = st.stops.push(&st.raw, &mut text) {
            let stop = stop.to_owned();
            if finish.is_none() {
                // Only the executor stops; the stages after us finish with this text.
                let cancel = Cancel {
                    reason: "stop string".into(),
                };
                out.send(
                    &Arc::from(subject::stop(st.executor)),
                    Header::new(id, 0, true),
                    &cancel,
                );
            }
            finish = Some(Finish::StopSequence(stop));
        } else if finish.is_some() {
            st.stops.finish(&mut text);
        }
        if text.is_empty() && finish.is_none() && setup.is_none() {
            return None;
        }
        let ends = finish.is_some();
        let tokens = std::mem::take(&mut st.tokens);
        Some((
            Text {
                text,
                tokens,
                finish,
                setup,
                reported: step.reported,
            },
            ends,
        ))
    }
}
