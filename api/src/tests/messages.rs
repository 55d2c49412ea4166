//! `/v1/messages` and `/v1/messages/count_tokens` against the stub pipeline: Anthropic's
//! error shape, the typed conversation handed to the bus, content blocks in the model's
//! order, the streamed events, and sealed thinking coming back.

use super::*;

/// A Messages body with `messages` and optional extra fields.
fn body(messages: Value, extra: Value) -> String {
    let mut b = serde_json::Map::new();
    b.insert("model".into(), json!("m"));
    b.insert("max_tokens".into(), json!(64));
    b.insert("messages".into(), messages);
    if let Value::Object(extra) = extra {
        b.extend(extra);
    }
    Value::Object(b).to_string()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// The model's answer in round 1: reasoning, a word, a call.
fn round1() -> Vec<Chunk> {
    done(vec![
        Delta::Reasoning {
            text: "I should ".into(),
        },
        Delta::Reasoning { text: "list.".into() },
        Delta::Content { text: "Sure.".into() },
        Delta::ToolCallStart {
            index: 0,
            id: "toolu_1".into(),
            name: "Bash".into(),
        },
        Delta::ToolCallArguments {
            index: 0,
            fragment: "{\"command\": ".into(),
        },
        Delta::ToolCallArguments {
            index: 0,
            fragment: "\"ls\"}".into(),
        },
        Delta::ToolCallEnd {
            index: 0,
            outcome: "parsed".into(),
        },
    ])
}

const BASH: &str = r#"[{"name": "Bash", "description": "Run", "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]"#;

fn tools() -> Value {
    serde_json::from_str(BASH).unwrap()
}

#[tokio::test]
async fn malformed_messages_requests_get_anthropic_errors_naming_the_field() {
    let cases: &[(&str, String, u16, &str)] = &[
        ("/v1/messages", "{".into(), 400, "not valid JSON"),
        (
            "/v1/messages",
            r#"{"model": "m", "messages": []}"#.into(),
            400,
            "max_tokens",
        ),
        (
            "/v1/messages",
            body(user("x"), json!({"temprature": 1})),
            400,
            "temprature",
        ),
        (
            "/v1/messages",
            body(json!([]), json!({})),
            400,
            "must not be empty",
        ),
        (
            "/v1/messages",
            body(json!([{"role": "robot", "content": "x"}]), json!({})),
            400,
            "messages[0].role",
        ),
        (
            "/v1/messages",
            body(
                json!([{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "AA"}}]}]),
                json!({}),
            ),
            400,
            "messages[0].content[0]: image blocks are not supported",
        ),
        (
            "/v1/messages",
            body(
                json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}]),
                json!({}),
            ),
            400,
            "messages[0].content[0].tool_use_id \"toolu_x\" answers no tool_use block",
        ),
        (
            "/v1/messages",
            body(user("x"), json!({"thinking": {"type": "sometimes"}})),
            400,
            "thinking.type",
        ),
        (
            "/v1/messages",
            body(user("x"), json!({"tool_choice": {"type": "any"}})),
            400,
            "needs tools",
        ),
        (
            "/v1/messages",
            body(
                user("x"),
                json!({"tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]}),
            ),
            400,
            "tools[0].name",
        ),
        (
            "/v1/messages",
            body(
                user("x"),
                json!({"tools": [{"name": "f", "input_schema": {"type": 3}}]}),
            ),
            400,
            "tools[0].input_schema.type",
        ),
        (
            "/v1/messages",
            body(
                json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": "Sure"}]),
                json!({}),
            ),
            400,
            "prefill",
        ),
        (
            "/v1/messages",
            body(user("x"), json!({"model": "other"})),
            404,
            "does not exist",
        ),
        (
            "/v1/messages/count_tokens",
            r#"{"model": "m"}"#.into(),
            400,
            "messages",
        ),
    ];
    for (path, body, status, needle) in cases {
        let stub = Arc::new(Stub {
            chunks: done(Vec::new()),
            ..Stub::default()
        });
        let (got, json, text) = send(state(Arc::clone(&stub)), path, body, &[]).await;
        assert_eq!(got.as_u16(), *status, "{path} {body}: {text}");
        assert_eq!(json["type"], "error", "{text}");
        let kind = if *status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(json["error"]["type"], kind, "{text}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{body}: {text}"
        );
        assert!(
            stub.submitted.lock().unwrap().is_empty(),
            "{body} reached the pipeline"
        );
    }
}

#[tokio::test]
async fn keys_are_taken_from_x_api_key_or_bearer_and_refused_in_anthropic_shape() {
    let stub = Arc::new(Stub {
        chunks: done(Vec::new()),
        ..Stub::default()
    });
    let mut s = state(stub);
    s.api_key = Some("k".into());
    let hi = body(user("hi"), json!({}));
    let (status, json, _) = send(s.clone(), "/v1/messages", &hi, &[("x-api-key", "nope")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"]["type"], "authentication_error");
    assert_eq!(json["type"], "error");
    for header in [
        ("x-api-key", "k"),
        ("authorization", "Bearer k"),
        ("authorization", "bearer k"),
    ] {
        let (status, _, text) = send(s.clone(), "/v1/messages", &hi, &[header]).await;
        assert_eq!(status, StatusCode::OK, "{header:?}: {text}");
    }
    // Chat Completions takes x-api-key too, and still answers in OpenAI's shape.
    let (status, json, _) = send(s.clone(), "/v1/chat/completions", HI, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"]["type"], "authentication_error");
    assert!(json.get("type").is_none());
}

#[tokio::test]
async fn a_message_is_one_typed_conversation_on_the_bus() {
    let stub = Arc::new(Stub {
        chunks: round1(),
        ..Stub::default()
    });
    let messages = json!([
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>r</system-reminder>"}, {"type": "text", "text": "List the files."}]},
        {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
    ]);
    let extra = json!({
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328.56a; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are an agent.", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [serde_json::from_str::<Value>(BASH).unwrap()[0].clone(), {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "thinking": {"type": "enabled", "budget_tokens": 1500, "display": "summarized"},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "{}"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "max_tokens": 32000,
    });
    let response = router(state(Arc::clone(&stub)))
        .oneshot(
            Request::post("/v1/messages?beta=true")
                .header("content-type", "application/json")
                .body(Body::from(body(messages, extra)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-braid-ignored-fields"],
        "metadata, context_management, output_config.effort, tools"
    );
    let submitted = stub.submitted.lock().unwrap();
    let submit = &submitted[0];
    let Prompt::Chat(conv) = &submit.prompt else {
        panic!("not a chat prompt")
    };
    let roles: Vec<Role> = conv.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User]);
    // The billing block is gone; the system turn joined the system prompt.
    assert_eq!(
        conv.messages[0].content.as_deref(),
        Some("You are an agent.\n\n# Environment")
    );
    assert_eq!(
        conv.messages[1].content.as_deref(),
        Some("<system-reminder>r</system-reminder>\nList the files.")
    );
    assert_eq!(conv.tools.len(), 1);
    assert_eq!(conv.tools[0].name, "Bash");
    assert_eq!(conv.kwargs.get("enable_thinking"), Some(&json!(true)));
    assert_eq!(submit.sampling.thinking_token_budget, Some(1500));
    assert_eq!(submit.sampling.max_tokens, 32000);
    assert!(submit.sampling.fit_max_tokens);
    assert_eq!(submit.setup.stop, ["END"]);
    let constraint = submit.constraint.as_ref().expect("tool_choice any is enforced");
    assert_eq!(constraint.param, "tool_choice");
    assert!(matches!(constraint.kind, Constrain::Calls { .. }));
}

#[tokio::test]
async fn content_blocks_come_in_the_order_the_model_wrote_them_with_sealed_thinking() {
    let stub = Arc::new(Stub {
        chunks: round1(),
        ..Stub::default()
    });
    let s = state(Arc::clone(&stub));
    let (status, json, text) = send(
        s.clone(),
        "/v1/messages",
        &body(user("ls"), json!({"tools": tools()})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json["type"], "message");
    assert_eq!(json["id"], "msg_0000000000000007");
    assert_eq!(json["stop_reason"], "tool_use");
    // Of 3 prompt tokens the prefix cache served 1: Anthropic counts them apart.
    assert_eq!(
        json["usage"],
        json!({"input_tokens": 2, "cache_read_input_tokens": 1, "output_tokens": 5})
    );
    let content = json["content"].as_array().unwrap();
    let types: Vec<&str> = content.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(types, ["thinking", "text", "tool_use"]);
    assert_eq!(content[0]["thinking"], "I should list.");
    assert_eq!(
        s.seal.open(content[0]["signature"].as_str().unwrap()).as_deref(),
        Some("I should list.")
    );
    assert_eq!(content[2]["input"], json!({"command": "ls"}));
    assert_eq!(content[2]["id"], "toolu_1");

    // Omitted display: no thinking text, the signature alone carries it; sent back with
    // the tool result, the template sees the reasoning again.
    let (_, omitted, _) = send(
        s.clone(),
        "/v1/messages",
        &body(
            user("ls"),
            json!({"tools": tools(), "thinking": {"type": "adaptive", "display": "omitted"}}),
        ),
        &[],
    )
    .await;
    let block = &omitted["content"][0];
    assert_eq!(block["thinking"], "");
    let round2 = json!([
        {"role": "user", "content": "ls"},
        {"role": "assistant", "content": [block, omitted["content"][1], omitted["content"][2]]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a.txt"}], "is_error": false}]},
    ]);
    let (status, _, text) = send(
        s.clone(),
        "/v1/messages",
        &body(round2, json!({"tools": tools()})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let submitted = stub.submitted.lock().unwrap();
    let Prompt::Chat(conv) = &submitted[2].prompt else {
        panic!("not a chat prompt")
    };
    let assistant = &conv.messages[1];
    assert_eq!(assistant.reasoning.as_deref(), Some("I should list."));
    assert_eq!(assistant.content.as_deref(), Some("Sure."));
    assert_eq!(
        assistant.tool_calls.as_ref().map(|c| c[0].parsed.clone()),
        Some(Some(json!({"command": "ls"})))
    );
    assert_eq!(conv.messages[2].role, Role::Tool);
    assert_eq!(conv.messages[2].tool_call_id.as_deref(), Some("toolu_1"));
    assert_eq!(conv.messages[2].content.as_deref(), Some("a.txt"));
}

#[tokio::test]
async fn a_tampered_signature_is_rendered_as_sent_or_refused_when_strict() {
    let stub = Arc::new(Stub {
        chunks: done(vec![Delta::Content { text: "ok".into() }]),
        ..Stub::default()
    });
    let mut s = state(Arc::clone(&stub));
    let genuine = s.seal.seal("the real reasoning");
    let forged = crate::Seal::from_secret("another key").seal("the real reasoning");
    let turn = |thinking: &str, signature: &str| {
        json!([
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": thinking, "signature": signature}, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "more"},
        ])
    };
    // Sent back unchanged: the sealed reasoning. Edited text, a foreign seal or an empty
    // signature: rendered as sent.
    let cases = [
        (turn("the real reasoning", &genuine), Some("the real reasoning")),
        (turn("", &genuine), Some("the real reasoning")),
        (turn("edited reasoning", &genuine), Some("edited reasoning")),
        (turn("claimed", &forged), Some("claimed")),
        (turn("no seal", ""), Some("no seal")),
        (turn("", "sig-round1-abc"), None),
    ];
    for (i, (messages, expected)) in cases.iter().enumerate() {
        let (status, _, text) =
            send(s.clone(), "/v1/messages", &body(messages.clone(), json!({})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let submitted = stub.submitted.lock().unwrap();
        let Prompt::Chat(conv) = &submitted[i].prompt else {
            panic!("not a chat prompt")
        };
        assert_eq!(conv.messages[1].reasoning.as_deref(), *expected, "case {i}");
    }
    s.strict_signatures = true;
    let (status, json, _) = send(
        s.clone(),
        "/v1/messages",
        &body(turn("claimed", &forged), json!({})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("messages[1].content[0].signature")));
    let (status, _, _) = send(
        s.clone(),
        "/v1/messages",
        &body(turn("", &genuine), json!({})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Redacted thinking: braid's opens to its reasoning; anyone else's is dropped (or,
    // strict, refused).
    let redacted = |data: &str| {
        json!([
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "redacted_thinking", "data": data}, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "more"},
        ])
    };
    let (status, _, _) = send(
        s.clone(),
        "/v1/messages",
        &body(redacted("EqQKPwgC"), json!({})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.strict_signatures = false;
    let before = stub.submitted.lock().unwrap().len();
    for data in [genuine.as_str(), "EqQKPwgC"] {
        let (status, _, _) = send(s.clone(), "/v1/messages", &body(redacted(data), json!({})), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let submitted = stub.submitted.lock().unwrap();
    let reasoning = |i: usize| match &submitted[i].prompt {
        Prompt::Chat(conv) => conv.messages[1].reasoning.clone(),
        Prompt::Text(_) | Prompt::Tokens(_) => None,
    };
    assert_eq!(reasoning(before).as_deref(), Some("the real reasoning"));
    assert_eq!(reasoning(before + 1), None);
}

/// The SSE events of a streamed response, as (event, data).
pub(super) fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_message_sends_anthropics_events_in_order() {
    let stub = Arc::new(Stub {
        chunks: round1(),
        ..Stub::default()
    });
    let s = state(stub);
    let (status, _, text) = send(
        s.clone(),
        "/v1/messages",
        &body(user("ls"), json!({"tools": tools(), "stream": true})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&text);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &ev {
        assert_eq!(data["type"], name.as_str(), "{text}");
    }
    assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], 3);
    assert_eq!(ev[2].1["content_block"]["type"], "thinking");
    assert_eq!(ev[5].1["delta"]["type"], "signature_delta");
    assert_eq!(
        s.seal
            .open(ev[5].1["delta"]["signature"].as_str().unwrap())
            .as_deref(),
        Some("I should list.")
    );
    assert_eq!(
        ev[10].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}})
    );
    assert_eq!(
        ev[11].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"command\": "})
    );
    assert_eq!(
        ev[14].1["delta"],
        json!({"stop_reason": "tool_use", "stop_sequence": null})
    );
    assert_eq!(ev[14].1["usage"]["output_tokens"], 5);

    // A failure mid-stream is an `error` event, its detail kept from the client.
    let mut chunks = round1();
    chunks[1].finish = Some(Finish::Failed(Failure::new(
        FailureKind::Internal,
        Stage::Executor,
        "CUDA secret",
    )));
    let stub = Arc::new(Stub {
        chunks,
        ..Stub::default()
    });
    let (_, _, text) = send(
        state(stub),
        "/v1/messages",
        &body(user("ls"), json!({"stream": true})),
        &[],
    )
    .await;
    let ev = events(&text);
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!text.contains("CUDA secret"));
}

#[tokio::test]
async fn count_tokens_counts_the_rendered_conversation() {
    let stub = Arc::new(Stub::default());
    let (status, json, text) = send(
        state(Arc::clone(&stub)),
        "/v1/messages/count_tokens",
        &json!({"model": "m", "system": "be brief", "messages": user("hi"), "tools": tools()}).to_string(),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json, json!({"input_tokens": 3}));
    let calls = stub.calls.lock().unwrap();
    let TokenizerCall::Tokenize(Prompt::Chat(conv)) = &calls[0] else {
        panic!("not a chat tokenize call")
    };
    assert_eq!(conv.messages[0].role, Role::System);
    assert_eq!(conv.tools[0].name, "Bash");
}

#[tokio::test]
async fn a_matched_stop_sequence_is_the_stop_reason_and_named() {
    let mut chunks = done(vec![Delta::Content {
        text: "one two".into(),
    }]);
    chunks[1].finish = Some(Finish::StopSequence("END".into()));
    let stub = Arc::new(Stub {
        chunks,
        ..Stub::default()
    });
    let s = state(stub);
    let request = |stream: bool| {
        body(
            user("count"),
            json!({"stop_sequences": ["END"], "stream": stream}),
        )
    };
    let (status, json, text) = send(s.clone(), "/v1/messages", &request(false), &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json["stop_reason"], "stop_sequence");
    assert_eq!(json["stop_sequence"], "END");
    let (_, _, text) = send(s.clone(), "/v1/messages", &request(true), &[]).await;
    let ev = events(&text);
    let delta = ev
        .iter()
        .find(|(n, _)| n == "message_delta")
        .map(|(_, d)| d["delta"].clone());
    assert_eq!(
        delta,
        Some(json!({"stop_reason": "stop_sequence", "stop_sequence": "END"}))
    );
    // Chat Completions calls it "stop", as OpenAI does.
    let (_, json, _) = send(s, "/v1/chat/completions", HI, &[]).await;
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn keeping_all_thinking_sets_the_familys_clear_thinking_kwarg() {
    let stub = Arc::new(Stub {
        chunks: done(Vec::new()),
        ..Stub::default()
    });
    let mut s = state(Arc::clone(&stub));
    s.chat.reasoning_parser = "glm45".parse().ok();
    s.chat.tool_parser = "glm47".parse().ok();
    let keep = |keep: Value| json!({"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": keep}]}});
    let response = router(s.clone())
        .oneshot(
            Request::post("/v1/messages")
                .header("content-type", "application/json")
                .body(Body::from(body(user("hi"), keep(json!("all")))))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-braid-ignored-fields").is_none());
    // A partial keep is the template's own choice: nothing set, and the field is named.
    let (status, _, _) = send(
        s,
        "/v1/messages",
        &body(user("hi"), keep(json!({"type": "thinking_turns", "value": 1}))),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let submitted = stub.submitted.lock().unwrap();
    let kwargs = |i: usize| match &submitted[i].prompt {
        Prompt::Chat(conv) => conv.kwargs.get("clear_thinking").cloned(),
        Prompt::Text(_) | Prompt::Tokens(_) => None,
    };
    assert_eq!(kwargs(0), Some(json!(false)));
    assert_eq!(kwargs(1), None);
}
