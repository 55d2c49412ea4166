//! `/v1/responses` against the stub pipeline: OpenAI's error shape naming the field, the
//! typed conversation handed to the bus, output items in the model's order, the streamed
//! events, sealed reasoning coming back, and stored responses.

use super::messages::events;
use super::*;

fn body(extra: Value) -> String {
    let mut b = serde_json::Map::new();
    b.insert("model".into(), json!("m"));
    if let Value::Object(extra) = extra {
        b.extend(extra);
    }
    Value::Object(b).to_string()
}

/// Round 1 of Codex's loop: reasoning, whitespace, a call.
fn round1() -> Vec<Chunk> {
    done(vec![
        Delta::Reasoning {
            text: "I should list.".into(),
        },
        Delta::Content { text: "\n\n".into() },
        Delta::ToolCallStart {
            index: 0,
            id: "call_1".into(),
            name: "exec_command".into(),
        },
        Delta::ToolCallArguments {
            index: 0,
            fragment: "{\"cmd\": \"ls\"}".into(),
        },
        Delta::ToolCallEnd {
            index: 0,
            outcome: "parsed".into(),
        },
    ])
}

fn tools() -> Value {
    json!([
        {"type": "function", "name": "exec_command", "strict": false, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "namespace", "name": "multi_agent_v1", "tools": []},
        {"type": "web_search", "external_web_access": false},
    ])
}

fn conversation(stub: &Stub, i: usize) -> braid_bus::Conversation {
    match &stub.submitted.lock().unwrap()[i].prompt {
        Prompt::Chat(conv) => conv.clone(),
        Prompt::Text(_) | Prompt::Tokens(_) => panic!("not a chat prompt"),
    }
}

#[tokio::test]
async fn malformed_responses_requests_get_openai_errors_naming_the_field() {
    let cases: &[(Value, u16, &str, &str)] = &[
        (json!({}), 400, "", "input"),
        (json!({"input": 3}), 400, "input", "string or a list"),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
            400,
            "input",
            "input[0].content[0]: input_image parts are not supported",
        ),
        (
            json!({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]}),
            400,
            "input",
            "input[0].call_id \"call_x\" answers no function_call",
        ),
        (
            json!({"input": [{"role": "robot", "content": "x"}]}),
            400,
            "input",
            "input[0].role",
        ),
        (
            json!({"input": [{"type": "web_search_call"}]}),
            400,
            "input",
            "web_search_call",
        ),
        (
            json!({"input": "x", "background": true}),
            400,
            "background",
            "background",
        ),
        (
            json!({"input": "x", "include": ["file_search_call.results"]}),
            400,
            "include",
            "file_search_call.results",
        ),
        (
            json!({"input": "x", "text": {"format": {"type": "xml"}}}),
            400,
            "text.format",
            "json_schema",
        ),
        (
            json!({"input": "x", "tool_choice": "required"}),
            400,
            "tool_choice",
            "needs tools",
        ),
        (
            json!({"input": "x", "reasoning": {"effort": "huge"}}),
            400,
            "reasoning.effort",
            "huge",
        ),
        (
            json!({"input": "x", "previous_response_id": "resp_gone"}),
            404,
            "previous_response_id",
            "resp_gone",
        ),
        (json!({"input": "x", "temprature": 1}), 400, "", "temprature"),
    ];
    for (extra, status, param, needle) in cases {
        let stub = Arc::new(Stub {
            chunks: done(Vec::new()),
            ..Stub::default()
        });
        let b = body(extra.clone());
        let (got, json, text) = send(state(Arc::clone(&stub)), "/v1/responses", &b, &[]).await;
        assert_eq!(got.as_u16(), *status, "{b}: {text}");
        if !param.is_empty() {
            assert_eq!(json["error"]["param"], *param, "{text}");
        }
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{b}: {text}"
        );
        assert!(
            stub.submitted.lock().unwrap().is_empty(),
            "{b} reached the pipeline"
        );
    }
}

#[tokio::test]
async fn codex_round_two_is_one_typed_conversation_with_its_sealed_reasoning() {
    let stub = Arc::new(Stub {
        chunks: round1(),
        ..Stub::default()
    });
    let s = state(Arc::clone(&stub));
    let sealed = s.seal.seal("I should list.");
    let input = json!([
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Skills."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files."}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I should list."}], "content": null, "encrypted_content": sealed},
        {"type": "function_call", "status": "completed", "id": "fc_1", "name": "exec_command", "arguments": "{\"cmd\": \"ls\"}", "call_id": "call_1"},
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "a.txt\n"},
    ]);
    let request = json!({
        "instructions": "", "input": input, "tools": tools(), "tool_choice": "auto", "parallel_tool_calls": true,
        "reasoning": {"summary": "auto"}, "store": false, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k", "client_metadata": {"turn_id": "t"}, "stream": false,
    });
    let response = router(s.clone())
        .oneshot(
            Request::post("/v1/responses")
                .header("content-type", "application/json")
                .body(Body::from(body(request)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-braid-ignored-fields"],
        "prompt_cache_key, client_metadata, tools"
    );
    let conv = conversation(&stub, 0);
    let roles: Vec<Role> = conv.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::Tool]);
    assert_eq!(
        conv.messages[0].content.as_deref(),
        Some("You are Codex.\n\nSkills.")
    );
    assert_eq!(conv.messages[2].reasoning.as_deref(), Some("I should list."));
    assert_eq!(
        conv.messages[2].tool_calls.as_ref().map(|c| c[0].id.as_str()),
        Some("call_1")
    );
    assert_eq!(conv.messages[3].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(conv.tools.len(), 1, "namespace and web_search tools are skipped");
    // The answer: items in the model's order, the reasoning summarised as itself and sealed.
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["object"], "response");
    assert_eq!(json["status"], "completed");
    assert_eq!(json["store"], false);
    let output = json["output"].as_array().unwrap();
    let types: Vec<&str> = output.iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(types, ["reasoning", "function_call"]);
    assert_eq!(output[0]["summary"][0]["text"], "I should list.");
    assert_eq!(
        s.seal
            .open(output[0]["encrypted_content"].as_str().unwrap())
            .as_deref(),
        Some("I should list.")
    );
    assert_eq!(output[1]["arguments"], "{\"cmd\": \"ls\"}");
    assert_eq!(json["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
    assert_eq!(json["usage"]["input_tokens_details"]["cached_tokens"], 1);
}

#[tokio::test]
async fn tampered_encrypted_content_is_rendered_as_sent_or_refused_when_strict() {
    let stub = Arc::new(Stub {
        chunks: done(vec![Delta::Content { text: "ok".into() }]),
        ..Stub::default()
    });
    let mut s = state(Arc::clone(&stub));
    let forged = crate::Seal::from_secret("another").seal("claimed");
    let input = |content: Value, sealed: &str| {
        json!({"input": [
            {"role": "user", "content": "q"},
            {"type": "reasoning", "summary": [], "content": content, "encrypted_content": sealed},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
            {"role": "user", "content": "more"},
        ]})
    };
    let (status, _, text) = send(
        s.clone(),
        "/v1/responses",
        &body(input(
            json!([{"type": "reasoning_text", "text": "shown"}]),
            &forged,
        )),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        conversation(&stub, 0).messages[1].reasoning.as_deref(),
        Some("shown")
    );
    s.strict_signatures = true;
    let (status, json, _) = send(
        s.clone(),
        "/v1/responses",
        &body(input(Value::Null, &forged)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"]["param"], "input");
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("input[1].encrypted_content")));
}

#[tokio::test]
async fn a_stored_response_rebuilds_the_conversation_with_its_reasoning() {
    let stub = Arc::new(Stub {
        chunks: round1(),
        ..Stub::default()
    });
    let s = state(Arc::clone(&stub));
    let first = json!({"instructions": "Be brief.", "input": "List the files.", "tools": tools()});
    let (status, r1, text) = send(s.clone(), "/v1/responses", &body(first), &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(r1["store"], true);
    let id = r1["id"].as_str().unwrap().to_owned();
    let (status, got, _) = get(s.clone(), &format!("/v1/responses/{id}"), "GET").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, r1);
    // Round 2 sends only the tool's output: the stored conversation supplies the rest,
    // reasoning and call included; the earlier instructions are not inherited.
    let call_id = r1["output"][1]["call_id"].as_str().unwrap();
    let second = json!({
        "previous_response_id": id, "tools": tools(),
        "input": [{"type": "function_call_output", "call_id": call_id, "output": "a.txt"}],
    });
    let (status, r2, text) = send(s.clone(), "/v1/responses", &body(second), &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(r2["previous_response_id"], id.as_str());
    let conv = conversation(&stub, 1);
    let roles: Vec<Role> = conv.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool]);
    assert_eq!(conv.messages[1].reasoning.as_deref(), Some("I should list."));
    assert_eq!(
        conv.messages[1].tool_calls.as_ref().map(|c| c[0].name.as_str()),
        Some("exec_command")
    );
    assert_eq!(conv.messages[2].content.as_deref(), Some("a.txt"));
    let (status, deleted, _) = get(s.clone(), &format!("/v1/responses/{id}"), "DELETE").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["deleted"], true);
    for method in ["GET", "DELETE"] {
        let (status, json, _) = get(s.clone(), &format!("/v1/responses/{id}"), method).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| m.contains(&id)));
    }
}

async fn get(state: AppState, path: &str, method: &str) -> (StatusCode, Value, String) {
    let response = router(state)
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

#[tokio::test]
async fn a_streamed_response_numbers_its_events_and_ends_with_the_whole_response() {
    let stub = Arc::new(Stub {
        chunks: round1(),
        ..Stub::default()
    });
    let request = json!({"input": "ls", "tools": tools(), "stream": true, "reasoning": {"summary": "auto"}});
    let (status, _, text) = send(state(stub), "/v1/responses", &body(request), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&text);
    for (i, (name, data)) in ev.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i, "{text}");
    }
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added"
        ]
    );
    let done: Vec<&Value> = ev
        .iter()
        .filter(|(n, _)| n == "response.output_item.done")
        .map(|(_, d)| &d["item"])
        .collect();
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(
        data["response"]["output"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        done
    );
    assert!(names.contains(&"response.reasoning_summary_text.delta"));
    assert!(names.contains(&"response.function_call_arguments.done"));

    // A failure mid-stream ends in response.failed, its detail kept from the client.
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
        "/v1/responses",
        &body(json!({"input": "ls", "stream": true})),
        &[],
    )
    .await;
    let ev = events(&text);
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "response.failed");
    assert_eq!(data["response"]["status"], "failed");
    assert!(!text.contains("CUDA secret"));
}
