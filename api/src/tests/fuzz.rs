//! Property tests of the request decoders: any JSON body, built from the names the
//! protocols use so that it reaches past the first check, is answered by every endpoint
//! with a success or a client error, never a server error or a panic, and a body that
//! gets a 4xx never reaches the pipeline.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

use super::{done, send, state, Stub};
use braid_bus::Delta;

/// Field names of every protocol's requests and of the values inside them.
const NAMES: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "input",
    "system",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "stop_sequences",
    "stream",
    "stream_options",
    "include_usage",
    "n",
    "best_of",
    "logit_bias",
    "logprobs",
    "response_format",
    "structured_outputs",
    "thinking",
    "reasoning",
    "reasoning_effort",
    "chat_template_kwargs",
    "text",
    "format",
    "type",
    "role",
    "content",
    "name",
    "arguments",
    "id",
    "tool_call_id",
    "tool_calls",
    "function",
    "parameters",
    "json_schema",
    "schema",
    "budget_tokens",
    "enable_thinking",
    "tokens",
    "call_id",
    "output",
    "input_schema",
    "tool_use_id",
    "signature",
    "previous_response_id",
];

/// Words the decoders match on, so that a generated value sometimes takes a known branch.
const WORDS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "function",
    "text",
    "thinking",
    "tool_use",
    "tool_result",
    "json_object",
    "json_schema",
    "auto",
    "required",
    "none",
    "enabled",
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "m",
    "",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..70_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        select(WORDS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(select(NAMES), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A request body: an object of protocol field names, as often as not with a message
/// list that starts right.
fn body() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(select(NAMES), json(), 0..8),
        any::<bool>(),
        json(),
    )
        .prop_map(|(fields, well_formed, content)| {
            let mut body: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if well_formed {
                body.insert(
                    "messages".into(),
                    serde_json::json!([{"role": "user", "content": content}]),
                );
            }
            Value::Object(body)
        })
}

const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/tokenize",
    "/detokenize",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_body_gets_an_answer_in_the_protocols_shape_never_a_server_error(
        body in body(),
        path in select(PATHS),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stub = Arc::new(Stub {
            chunks: done(vec![Delta::Content { text: "ok".into() }]),
            ..Stub::default()
        });
        let (status, json, text) = runtime.block_on(send(state(Arc::clone(&stub)), path, &body.to_string(), &[]));
        prop_assert!(status.is_success() || status.is_client_error(), "{path} {body}: {status} {text}");
        if status.is_client_error() {
            // OpenAI's and Anthropic's error bodies both carry `error.message`.
            prop_assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path} {body}: {text}");
            prop_assert!(stub.submitted.lock().unwrap().is_empty(), "{path} {body}: refused but submitted");
        }
    }
}
