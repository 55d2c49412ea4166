//! The pipeline in one process, end to end, on the replay executor and the real Qwen3
//! tokenizer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_bus::{
    encode, subject, Bus, Collected, FailureKind, Finish, Prompt, Sampling, Setup, Stage, Submit, ToolSpec,
};
use braid_engine::Tokenizer;
use braid_parsers::testkit::{parse, Chunking};
use braid_parsers::OutputConfig;

use crate::executor::replay::{Pace, ReplayExecutor};
use crate::{ExecutorFactory, Node, NodeConfig};

/// The real Qwen3 tokenizer, which the test command installs.
fn tokenizer() -> Arc<Tokenizer> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.fixtures/tokenizer-qwen3");
    assert!(
        dir.join("tokenizer.json").exists(),
        "the Qwen3 tokenizer is missing: run scripts/setup"
    );
    Arc::new(Tokenizer::from_dir(&dir).unwrap())
}

async fn node(
    tok: &Arc<Tokenizer>,
    outputs: Vec<(Option<String>, String)>,
    pace: Pace,
    max_inflight: usize,
) -> Node {
    let t = Arc::clone(tok);
    let factory: ExecutorFactory = Arc::new(move || {
        let pairs: Vec<(Option<&str>, &str)> =
            outputs.iter().map(|(m, o)| (m.as_deref(), o.as_str())).collect();
        Ok(crate::Executing::Stepped(Box::new(ReplayExecutor::from_outputs(
            &pairs,
            Arc::clone(&t),
            pace,
        )?)))
    });
    let config = NodeConfig {
        stages: NodeConfig::all_stages(),
        tokenizer: Some(Arc::clone(tok)),
        executor: Some(factory),
        chat: None,
        max_model_len: None,
        guides: None,
        handoff: None,
        max_inflight,
        submit_timeout: Duration::from_secs(10),
        routing: crate::Routing::default(),
    };
    let node = Node::start(Bus::in_process(), config).await.unwrap();
    assert!(
        node.wait_ready(Duration::from_secs(5)).await,
        "stages did not come up"
    );
    node
}

fn submit(prompt: &str, reasoning: Option<&str>, tools: Option<&str>) -> Submit {
    Submit {
        prompt: Prompt::Text(prompt.to_owned()),
        sampling: Sampling {
            max_tokens: 4096,
            ..Sampling::default()
        },
        constraint: None,
        setup: Setup {
            reasoning_parser: reasoning.map(|r| r.parse().unwrap()),
            tool_parser: tools.map(|t| t.parse().unwrap()),
            tools: weather_tools(),
            skip_special_tokens: true,
            ..Setup::default()
        },
    }
}

fn weather_tools() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "get_weather".into(),
        description: None,
        parameters: Some(serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}})),
        strict: false,
    }]
}

async fn run(node: &Node, s: Submit) -> Collected {
    let mut response = node.ingress.as_ref().unwrap().submit(s).await.unwrap();
    let mut all = Collected::default();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), response.next())
        .await
        .unwrap()
    {
        all.push(&chunk);
    }
    all
}

const QWEN: &str = "<think>\nThe user wants Paris weather; I will call the tool.\n</think>\n\n\
<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
const KIMI: &str = "Paris weather needed.◁/think▷Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_together_matches_the_parsers_alone() {
    let tok = tokenizer();
    let cases = [
        ("qwen3", "hermes", QWEN),
        ("deepseek_r1", "hermes", "abc</think>The answer is 42."),
        ("kimi_k2", "kimi_k2", KIMI),
    ];
    for tokens_per_step in [1, 3, 7] {
        for (reasoning, tools, output) in cases {
            let pace = Pace {
                tokens_per_step,
                interval: Duration::ZERO,
            };
            let node = node(&tok, vec![(None, output.to_owned())], pace, 16).await;
            let got = run(&node, submit("hi", Some(reasoning), Some(tools))).await;
            let mut config = OutputConfig::from_names(Some(reasoning), Some(tools)).unwrap();
            config.schemas = Arc::new(braid_parsers::ToolSchemas::from_specs(&weather_tools()));
            let want = parse(&config, output, Chunking::Whole);
            let case = format!("{reasoning}/{tools} at {tokens_per_step} tokens per step");
            assert_eq!(got.reasoning, want.reasoning, "{case}");
            assert_eq!(got.content, want.content, "{case}");
            let calls: Vec<(&str, &str)> = got
                .tool_calls
                .iter()
                .map(|c| (c.name.as_str(), c.arguments.as_str()))
                .collect();
            let want_calls: Vec<(&str, &str)> = want
                .tool_calls
                .iter()
                .map(|c| (c.name.as_str(), c.arguments.as_str()))
                .collect();
            assert_eq!(calls, want_calls, "{case}");
            assert_eq!(got.finish, Some(Finish::Stop), "{case}");
            let usage = got.usage.unwrap();
            assert_eq!(
                usage.completion_tokens as usize,
                tok.encode(output).unwrap().len(),
                "{case}"
            );
            assert_eq!(usage.prompt_tokens, 1, "{case}");
            node.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_streams_each_get_their_own_output() {
    let tok = tokenizer();
    let outputs = (0..200)
        .map(|i| {
            (
                Some(format!("[req {i}]")),
                format!(
                    "<think>thinking about {i}</think>answer for {i}: {}",
                    "x ".repeat(i % 17)
                ),
            )
        })
        .collect();
    let pace = Pace {
        tokens_per_step: 2,
        interval: Duration::from_millis(2),
    };
    let node = Arc::new(node(&tok, outputs, pace, 256).await);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let node = Arc::clone(&node);
        tasks.push(tokio::spawn(async move {
            (
                i,
                run(
                    &node,
                    submit(&format!("question [req {i}]"), Some("deepseek_r1"), None),
                )
                .await,
            )
        }));
    }
    for t in tasks {
        let (i, got) = t.await.unwrap();
        assert_eq!(got.reasoning, format!("thinking about {i}"));
        assert_eq!(got.content, format!("answer for {i}: {}", "x ".repeat(i % 17)));
        assert_eq!(got.finish, Some(Finish::Stop));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_end_the_output_and_the_rest_of_the_pipeline_finishes() {
    let tok = tokenizer();
    let pace = Pace {
        tokens_per_step: 1,
        interval: Duration::from_millis(1),
    };
    let long = format!("one two three STOP four {}", "five ".repeat(500));
    let node = node(&tok, vec![(None, long)], pace, 16).await;
    let mut s = submit("hi", None, None);
    s.setup.stop = vec!["STOP".into()];
    let started = Instant::now();
    let got = run(&node, s).await;
    assert_eq!(got.content, "one two three ");
    assert_eq!(
        got.finish,
        Some(Finish::StopSequence("STOP".into())),
        "the finish names the stop string"
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the executor kept playing after the stop string"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_admission_and_a_panicking_stage_restarts() {
    let tok = tokenizer();
    let pace = Pace {
        tokens_per_step: 1,
        interval: Duration::from_millis(20),
    };
    let node = node(&tok, vec![(None, "word ".repeat(200))], pace, 2).await;
    let ingress = node.ingress.clone().unwrap();
    let mut a = ingress.submit(submit("a", None, None)).await.unwrap();
    let _b = ingress.submit(submit("b", None, None)).await.unwrap();
    let refused = ingress.submit(submit("c", None, None)).await.err().unwrap();
    assert_eq!(refused.kind, FailureKind::Overloaded);
    // Garbage and a wrong-version message on the detokenizer's subject kill nothing.
    let detok = node
        .replicas()
        .into_iter()
        .find(|(s, _)| *s == Stage::Detokenizer)
        .unwrap()
        .1;
    node.bus
        .publish(
            &subject::instance(Stage::Detokenizer, detok),
            bytes::Bytes::from_static(b"\x93garbage"),
        )
        .await
        .unwrap();
    let mut wrong = encode(&braid_bus::Envelope {
        header: braid_bus::Header::new(a.id, 9, false),
        body: braid_bus::Step {
            tokens: vec![1],
            text: None,
            finish: None,
            setup: None,
            reported: None,
        },
    })
    .to_vec();
    wrong[2] = 0x63; // version 99
    node.bus
        .publish(&subject::instance(Stage::Detokenizer, detok), wrong.into())
        .await
        .unwrap();
    assert!(
        a.next().await.unwrap().finish.is_none(),
        "request a still streams"
    );
    // A panic in the detokenizer: its requests end with a clear error, the stage restarts.
    assert!(node.panic_stage(Stage::Detokenizer));
    let started = Instant::now();
    let mut end = None;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), a.next())
        .await
        .unwrap()
    {
        end = chunk.finish;
    }
    match end {
        Some(Finish::Failed(f)) => {
            assert_eq!(f.kind, FailureKind::Unavailable);
            assert!(f.message.contains("detokenizer"), "{}", f.message);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(a);
    drop(_b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = run(&node, submit("again", None, None)).await;
    assert_eq!(got.content, "word ".repeat(200));
    assert_eq!(got.finish, Some(Finish::Stop));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_outside_the_vocabulary_are_refused_naming_their_field() {
    let tok = tokenizer();
    let node = node(&tok, vec![(None, "ok".into())], Pace::default(), 16).await;
    let vocab = tok.vocab_size() as u32;
    let mut biased = submit("hi", None, None);
    biased.sampling.logit_bias = vec![(1, 5.0), (vocab, -1.0)];
    let mut tokens = submit("hi", None, None);
    tokens.prompt = Prompt::Tokens(vec![1, vocab + 7]);
    for (s, param) in [(biased, "logit_bias"), (tokens, "prompt")] {
        let refused = node.ingress.as_ref().unwrap().submit(s).await.err();
        let refused = refused.expect("an id outside the vocabulary is refused");
        assert_eq!(
            (refused.kind, refused.param.as_deref()),
            (FailureKind::BadRequest, Some(param))
        );
        assert!(
            refused.message.contains("outside the vocabulary"),
            "{}",
            refused.message
        );
    }
    let mut fine = submit("hi", None, None);
    fine.sampling.logit_bias = vec![(vocab - 1, 100.0)];
    assert_eq!(run(&node, fine).await.content, "ok");
}
