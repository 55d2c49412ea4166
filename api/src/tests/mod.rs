//! The HTTP surface without a socket: `router()` driven with `oneshot` against a stub
//! pipeline that records what reached it and answers as told. These cover the error
//! paths and the typed request each protocol hands the bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use braid_bus::{
    Chunk, Constrain, Delta, Failure, FailureKind, Finish, InstanceId, Pipeline, Prompt, RequestId, Response,
    Role, Stage, Submit, TokenizerAnswer, TokenizerCall, Usage,
};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{router, AppState, ChatSettings, ReasoningCache};

/// A pipeline that records what it is given and answers with `answer`.
#[derive(Default)]
struct Stub {
    submitted: Mutex<Vec<Submit>>,
    calls: Mutex<Vec<TokenizerCall>>,
    refuse: Option<Failure>,
    chunks: Vec<Chunk>,
    missing: Vec<Stage>,
}

impl Pipeline for Stub {
    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Response, Failure>> {
        self.submitted.lock().unwrap().push(submit);
        let result = match &self.refuse {
            Some(f) => Err(f.clone()),
            None => Ok(Response::from_chunks(RequestId(7), 3, self.chunks.clone())),
        };
        Box::pin(std::future::ready(result))
    }

    fn call(&self, call: TokenizerCall) -> BoxFuture<'_, Result<TokenizerAnswer, Failure>> {
        let answer = match (&self.refuse, &call) {
            (Some(f), _) => TokenizerAnswer::Refused(f.clone()),
            (None, TokenizerCall::Tokenize(_)) => TokenizerAnswer::Tokens {
                tokens: vec![1, 2, 3],
                max_model_len: Some(64),
            },
            (None, TokenizerCall::Detokenize(_)) => TokenizerAnswer::Text("hi".into()),
        };
        self.calls.lock().unwrap().push(call);
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn missing(&self) -> Vec<Stage> {
        self.missing.clone()
    }

    fn instance(&self) -> InstanceId {
        InstanceId(42)
    }
}

fn state(stub: Arc<Stub>) -> AppState {
    AppState {
        pipeline: stub,
        model: "m".into(),
        chat: ChatSettings {
            reasoning_parser: "qwen3".parse().ok(),
            tool_parser: "hermes".parse().ok(),
            ..ChatSettings::default()
        },
        replay: Some(Arc::new(ReasoningCache::new(braid_bus::SharedMap::memory(
            "braid_reasoning",
            16,
            std::time::Duration::from_secs(60),
        )))),
        responses: Some(Arc::new(crate::ResponseStore::new(braid_bus::SharedMap::memory(
            "braid_responses",
            16,
            std::time::Duration::from_secs(60),
        )))),
        max_model_len: None,
        api_key: None,
        max_body_bytes: 1 << 16,
        seal: Arc::new(crate::Seal::from_secret("test")),
        strict_signatures: false,
    }
}

async fn send(
    state: AppState,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, String) {
    let mut req = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = router(state)
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

fn done(deltas: Vec<Delta>) -> Vec<Chunk> {
    vec![
        Chunk {
            deltas,
            finish: None,
            usage: None,
        },
        Chunk {
            deltas: Vec::new(),
            finish: Some(Finish::Stop),
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
                reasoning_tokens: 2,
                cached_tokens: 1,
            }),
        },
    ]
}

const HI: &str = r#"{"messages": [{"role": "user", "content": "hi"}]}"#;

#[tokio::test]
async fn malformed_requests_get_openai_errors_naming_the_field() {
    let cases: &[(&str, &str, u16, Option<&str>, &str)] = &[
        ("/v1/chat/completions", "{", 400, None, "not valid JSON"),
        (
            "/v1/chat/completions",
            r#"{"messages": [], "temprature": 1}"#,
            400,
            None,
            "temprature",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": []}"#,
            400,
            Some("messages"),
            "must not be empty",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
            400,
            Some("messages"),
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            r#"{"model": "other", "messages": [{"role": "user", "content": "x"}]}"#,
            404,
            Some("model"),
            "does not exist",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}"#,
            400,
            Some("tool_choice"),
            "needs tools",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}"#,
            400,
            Some("response_format"),
            "xml",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "temperature": 500}"#,
            400,
            Some("temperature"),
            "between",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
            400,
            Some("messages"),
            "image_url",
        ),
        (
            "/v1/completions",
            r#"{"prompt": {"a": 1}}"#,
            400,
            Some("prompt"),
            "prompt must be",
        ),
        (
            "/tokenize",
            r#"{"prompt": "a", "messages": []}"#,
            400,
            None,
            "either prompt or messages",
        ),
        ("/v1/nothing", "{}", 404, None, "no route /v1/nothing"),
        // Values of the wrong type are refused, not read as empty.
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": [{"type": "text"}]}]}"#,
            400,
            Some("messages"),
            "messages[0].content[0].text must be a string",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}"#,
            400,
            Some("messages"),
            "content[0].text must be a string",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "assistant", "tool_calls": [{"id": 7, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}"#,
            400,
            Some("messages"),
            "id must be a string",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": 5}}]}]}"#,
            400,
            Some("messages"),
            "arguments must be a string",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"dog": 1}}"#,
            400,
            Some("logit_bias"),
            "not a token id",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": "up"}}"#,
            400,
            Some("logit_bias"),
            "must be a number",
        ),
        // The fields the two OpenAI text endpoints share are checked alike.
        (
            "/v1/completions",
            r#"{"prompt": "x", "best_of": 0}"#,
            400,
            Some("best_of"),
            "best_of = 1",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "x", "best_of": 3}"#,
            400,
            Some("best_of"),
            "best_of = 1",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "x", "n": 2}"#,
            400,
            Some("n"),
            "n = 1",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "x", "max_tokens": 0}"#,
            400,
            Some("max_tokens"),
            "at least 1",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "x", "top_p": 0}"#,
            400,
            Some("top_p"),
            "(0, 1]",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "x", "suffix": "y"}"#,
            400,
            Some("suffix"),
            "not supported",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "x", "temprature": 1}"#,
            400,
            None,
            "unknown field `temprature`",
        ),
        (
            "/v1/completions",
            r#"[1, 2]"#,
            400,
            None,
            "expected a JSON object",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "best_of": 2}"#,
            400,
            Some("best_of"),
            "best_of = 1",
        ),
        (
            "/tokenize",
            r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
            400,
            Some("messages"),
            "messages[0].role \"wizard\"",
        ),
        (
            "/tokenize",
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": "x"}"#,
            400,
            Some("tools"),
            "tools must be an array",
        ),
    ];
    for &(path, body, status, param, needle) in cases {
        let stub = Arc::new(Stub::default());
        let (got, json, text) = send(state(Arc::clone(&stub)), path, body, &[]).await;
        assert_eq!(got.as_u16(), status, "{path} {body}: {text}");
        assert_eq!(json["error"]["param"].as_str(), param, "{path} {body}: {text}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{path} {body}: {text}"
        );
        assert!(
            stub.submitted.lock().unwrap().is_empty(),
            "{path} {body} reached the pipeline"
        );
    }
}

#[tokio::test]
async fn keys_body_limits_and_health_answer_in_openai_shape() {
    let stub = Arc::new(Stub {
        missing: vec![Stage::Executor],
        chunks: done(Vec::new()),
        ..Stub::default()
    });
    let mut s = state(Arc::clone(&stub));
    s.api_key = Some("k".into());
    let (status, json, _) = send(s.clone(), "/v1/chat/completions", HI, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"]["type"], "authentication_error");
    let (status, _, _) = send(
        s.clone(),
        "/v1/chat/completions",
        HI,
        &[("authorization", "Bearer k")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let big = format!(
        r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(1 << 17)
    );
    let (status, json, _) = send(
        s.clone(),
        "/v1/chat/completions",
        &big,
        &[("authorization", "Bearer k")],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("too large")));
    let response = router(s)
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-braid-ingress"], InstanceId(42).to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["missing_stages"], json!(["executor"]));
}

#[tokio::test]
async fn pipeline_refusals_keep_their_field_and_internal_errors_hide_their_detail() {
    let refused = Failure::new(
        FailureKind::BadRequest,
        Stage::Tokenizer,
        "response_format: bad schema",
    )
    .with_param("response_format");
    let stub = Arc::new(Stub {
        refuse: Some(refused),
        ..Stub::default()
    });
    let (status, json, _) = send(state(stub), "/v1/chat/completions", HI, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"]["param"], "response_format");
    let secret = Failure::new(
        FailureKind::Internal,
        Stage::Executor,
        "CUDA error at /src/secret.rs:12",
    );
    for path in ["/v1/chat/completions", "/tokenize"] {
        let stub = Arc::new(Stub {
            refuse: Some(secret.clone()),
            ..Stub::default()
        });
        let (status, json, text) = send(state(stub), path, HI, &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(!text.contains("secret.rs"), "{path}: {text}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("internal error (reference ")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_chat_request_reaches_the_bus_typed_once_and_its_answer_is_assembled() {
    let stub = Arc::new(Stub {
        chunks: done(vec![
            Delta::Reasoning { text: "think".into() },
            Delta::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "get_weather".into(),
            },
            Delta::ToolCallArguments {
                index: 0,
                fragment: "{\"city\": \"Paris\"}".into(),
            },
        ]),
        ..Stub::default()
    });
    let s = state(Arc::clone(&stub));
    let body = json!({
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "chat_template_kwargs": {"enable_thinking": false},
        "stop": "END",
    });
    let (status, json, text) = send(s.clone(), "/v1/chat/completions", &body.to_string(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let message = &json["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "think");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\": \"Paris\"}"
    );
    assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
    let submitted = stub.submitted.lock().unwrap().remove(0);
    let Prompt::Chat(conv) = &submitted.prompt else {
        panic!("not a chat prompt: {:?}", submitted.prompt)
    };
    assert_eq!(conv.messages[0].role, Role::System);
    assert_eq!(conv.tools[0].name, "get_weather");
    assert_eq!(conv.kwargs["enable_thinking"], json!(false));
    assert!(
        !submitted.setup.thinking,
        "the thinking switch is read once, at the edge"
    );
    assert_eq!(submitted.setup.stop, vec!["END".to_owned()]);
    assert_eq!(submitted.setup.tools.len(), 1);
    let constraint = submitted
        .constraint
        .expect("tool_choice required is a constraint");
    assert_eq!(constraint.param, "tool_choice");
    assert!(matches!(constraint.kind, Constrain::Calls { .. }));

    // The model's reasoning comes back on the next turn, and /tokenize renders exactly
    // that conversation.
    let next = json!({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]});
    let (status, json, text) = send(s, "/tokenize", &next.to_string(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json["tokens"], json!([1, 2, 3]));
    let call = stub.calls.lock().unwrap().remove(0);
    let TokenizerCall::Tokenize(Prompt::Chat(conv)) = call else {
        panic!("not a chat tokenize: {call:?}")
    };
    assert_eq!(conv.messages[1].reasoning.as_deref(), Some("think"));
    assert_eq!(conv.messages[1].tool_calls.as_ref().map(Vec::len), Some(1));
    assert!(conv.add_generation_prompt);
}

#[tokio::test]
async fn a_streamed_chat_ends_with_the_finish_usage_and_done() {
    let stub = Arc::new(Stub {
        chunks: done(vec![Delta::Content { text: "Hello".into() }]),
        ..Stub::default()
    });
    let body = r#"{"messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": {"include_usage": true}}"#;
    let (status, _, text) = send(state(stub), "/v1/chat/completions", body, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let parsed: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    assert_eq!(parsed[1]["choices"][0]["delta"]["content"], "Hello");
    assert_eq!(parsed[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(parsed[3]["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn real_clients_fields_are_accepted_and_the_ignored_ones_named() {
    let stub = Arc::new(Stub {
        chunks: done(vec![Delta::Content { text: "ok".into() }]),
        ..Stub::default()
    });
    // What LiteLLM forwards from Claude Code and Codex, and what OpenAI's SDK may send.
    let body = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "prompt_cache_key": "k", "web_search_options": {}, "service_tier": "auto",
        "safety_identifier": "u", "prediction": {"type": "content", "content": "x"},
        "modalities": ["text"], "verbosity": "low", "store": false, "metadata": {"a": "b"},
        "reasoning_effort": "none", "max_completion_tokens": 5,
    });
    let request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router(state(Arc::clone(&stub))).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = response.headers()["x-braid-ignored-fields"]
        .to_str()
        .unwrap()
        .to_owned();
    for field in [
        "prompt_cache_key",
        "web_search_options",
        "service_tier",
        "safety_identifier",
        "prediction",
        "modalities",
        "verbosity",
        "store",
        "metadata",
    ] {
        assert!(header.contains(field), "{field} not in {header:?}");
    }
    assert!(
        !header.contains("reasoning_effort"),
        "qwen3 has a thinking switch: {header:?}"
    );
    let submitted = stub.submitted.lock().unwrap().remove(0);
    let Prompt::Chat(conv) = &submitted.prompt else {
        panic!("not a chat prompt")
    };
    assert_eq!(
        conv.kwargs["enable_thinking"],
        json!(false),
        "reasoning_effort none turns thinking off"
    );
    assert_eq!(
        conv.kwargs["reasoning_effort"],
        json!("none"),
        "the level reaches templates that read it (gpt-oss, DeepSeek-V4)"
    );
    assert!(!submitted.setup.thinking);
    assert_eq!(submitted.sampling.max_tokens, 5);

    // logit_bias changes the output: it reaches the bus, clamped to ±100 and sorted; the
    // same fields on /v1/completions reach it alike, and `user` is named as ignored.
    let bias = r#""logit_bias": {"9": 300, "4": -2.5}, "stop": ["a", "b"], "seed": 3"#;
    for (path, body) in [
        (
            "/v1/chat/completions",
            format!(r#"{{"messages": [{{"role": "user", "content": "hi"}}], {bias}}}"#),
        ),
        (
            "/v1/completions",
            format!(r#"{{"prompt": "hi", "user": "u1", {bias}}}"#),
        ),
    ] {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = router(state(Arc::clone(&stub))).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let ignored = response
            .headers()
            .get("x-braid-ignored-fields")
            .map(|h| h.to_str().unwrap().to_owned());
        assert_eq!(
            ignored.is_some(),
            path == "/v1/completions",
            "{path}: {ignored:?}"
        );
        let submitted = stub.submitted.lock().unwrap().remove(0);
        assert_eq!(
            submitted.sampling.logit_bias,
            vec![(4, -2.5), (9, 100.0)],
            "{path}"
        );
        assert_eq!(
            (submitted.setup.stop.len(), submitted.sampling.seed),
            (2, Some(3)),
            "{path}"
        );
    }

    // Explicit template kwargs win over reasoning_effort; a typo is still refused.
    let body = r#"{"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": true}}"#;
    let (status, _, _) = send(state(Arc::clone(&stub)), "/v1/chat/completions", body, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let submitted = stub.submitted.lock().unwrap().remove(0);
    assert!(submitted.setup.thinking);
    let (status, json, _) = send(
        state(Arc::clone(&stub)),
        "/v1/chat/completions",
        r#"{"messages": [], "prompt_cache_kye": "k"}"#,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("prompt_cache_kye")));
    let (status, json, _) = send(
        state(stub),
        "/v1/chat/completions",
        r#"{"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"}"#,
        &[],
    )
    .await;
    assert_eq!(
        (status, json["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reasoning_effort"))
    );
}

mod fuzz;
mod messages;
mod responses;

/// One request of any method, answered by the router: status and JSON body.
async fn call(state: AppState, method: &str, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = router(state)
        .oneshot(req.body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_unkeyed_tokenizing_answer_in_the_protocols_shape() {
    let mut s = state(Arc::new(Stub::default()));
    s.api_key = Some("k".into());
    let key = [("authorization", "Bearer k")];
    for (method, path) in [
        ("GET", "/v1/chat/completions"),
        ("PUT", "/tokenize"),
        ("DELETE", "/v1/completions"),
    ] {
        let (status, json) = call(s.clone(), method, path, &key).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(json["error"]["code"], 405, "{method} {path}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(method)),
            "{json}"
        );
    }
    let (status, json) = call(s.clone(), "GET", "/v1/messages", &key).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json["type"], "error", "Anthropic's shape: {json}");
    let (status, json) = call(s.clone(), "POST", "/v1/nothing", &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["type"], "not_found_error", "{json}");
    // Work that costs something needs the key; probes do not.
    for path in ["/tokenize", "/detokenize"] {
        let (status, json) = call(s.clone(), "POST", path, &[("authorization", "bearer wrong")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {json}");
    }
    let (status, _) = call(s.clone(), "POST", "/tokenize", &[("authorization", "bearer k")]).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED, "the scheme in any case");
    let (status, _) = call(s, "GET", "/health", &[]).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
}
