//! braid in front of an engine nobody here wrote: llama.cpp's OpenAI server
//! (llama-cpp-python, built by scripts/setup) on a random-weight Qwen3-shaped GGUF this
//! test builds with the real Qwen3 tokenizer. The official `openai` client, streaming and
//! not: usage agrees, and killing the upstream mid-stream gives the client a clear error.
//! (That braid drops the upstream stream of a cancelled request is shown against the stub
//! in `upstream.rs`, which sees the connection close; llama-cpp-python 0.3 keeps
//! generating after its client leaves, so it cannot show it.)

use std::time::Duration;

use braid_tests::{free_port, http, make_gguf, repo_root, sse_data, wait_healthy, wait_port, Proc};
use serde_json::{json, Value};

#[test]
fn braid_in_front_of_llama_cpp() {
    let python = braid_tests::venv_python();
    let dir = std::env::temp_dir().join(format!("braid-llama-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let gguf = dir.join("qwen3-random.gguf");
    let tok = repo_root().join(".fixtures/tokenizer-qwen3");
    make_gguf(&gguf, &[]);
    let up = free_port();
    let mut llama = Proc::start(
        &python,
        &[
            "-m".into(),
            "llama_cpp.server".into(),
            "--model".into(),
            gguf.display().to_string(),
            "--port".into(),
            up.to_string(),
            "--n_ctx".into(),
            "4096".into(),
        ],
        "llama-cpp",
    );
    assert!(
        wait_port(up, Duration::from_secs(60)),
        "llama.cpp did not start: {}",
        llama.output()
    );
    let port = free_port();
    let t = tok.display().to_string();
    let upstream = format!("upstream:http://127.0.0.1:{up}");
    let _braid = Proc::braid(
        &[
            "serve",
            &t,
            "--executor",
            &upstream,
            "--upstream-prompt",
            "text",
            "--reasoning-parser",
            "qwen3",
            "--tool-call-parser",
            "hermes",
            "--served-model-name",
            "m",
            "--port",
            &port.to_string(),
        ],
        "llama-braid",
    );
    assert!(wait_healthy(port, Duration::from_secs(30)));
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("tests/clients/upstream_llama.py"))
        .args(["--base-url", &format!("http://127.0.0.1:{port}/v1")])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(out.status.success(), "{report}");

    // Killing the upstream mid-stream: a final error event, then [DONE]; no hang.
    let client = std::thread::spawn(move || {
        let body = json!({"messages": [{"role": "user", "content": "go"}], "max_tokens": 1500, "ignore_eos": true, "stream": true});
        http(port, "POST", "/v1/chat/completions", &body.to_string())
    });
    std::thread::sleep(Duration::from_millis(1500));
    llama.kill();
    let (status, text) = client.join().unwrap_or_else(|_| panic!("client"));
    assert_eq!(status, 200);
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let error: Value = serde_json::from_str(&events[events.len() - 2]).unwrap_or(Value::Null);
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream")),
        "{text}"
    );
}

/// llama.cpp runs the very model braid runs: a `braid fixture qwen3` folder converted to
/// GGUF (`make_gguf.py --weights`, f32) gives llama.cpp's `qwen3` the same next-token
/// logits at every position of a prompt as braid's engine. This is what makes the two
/// engines' speeds comparable (`llama_bench.py` beside `braid bench engine`), and a third
/// parity reference for the dense architecture.
#[test]
fn llama_cpp_scores_a_converted_fixture_as_braid_does() {
    use braid_engine::{load_model, BlockAllocator, KvCache, SeqInput};
    use candle_core::{DType, Device};

    let model = braid_tests::qwen3_fixture("llama-parity");
    let gguf = model.join("model.gguf");
    make_gguf(&gguf, &["--weights", &model.to_string_lossy()]);

    let prompt: Vec<u32> = vec![9707, 11, 1879, 0, 151644, 872, 198, 3838, 374, 279, 9104, 30];
    let theirs = braid_tests::llama_cpp_logits(&gguf, &prompt, 0);
    let engine =
        load_model(&model, DType::F32, &Device::Cpu, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    let cache =
        KvCache::new(engine.config(), 4, 16, DType::F32, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    let mut alloc = BlockAllocator::new(4);
    let blocks: Vec<u32> = (0..4).filter_map(|_| alloc.allocate()).collect();
    let mut worst = 0f64;
    for (pos, row) in theirs.iter().enumerate() {
        let ours = engine
            .forward(
                &[SeqInput {
                    tokens: &prompt[pos..pos + 1],
                    start: pos,
                    blocks: &blocks,
                }],
                &cache,
            )
            .and_then(|l| Ok(l.flatten_all()?.to_vec1::<f32>()?))
            .unwrap_or_else(|e| panic!("{e}"));
        worst = worst.max(braid_tests::max_abs_diff(row, &ours));
        assert_eq!(
            braid_tests::argmax(row),
            braid_tests::argmax(&ours),
            "greedy choice at position {pos}"
        );
    }
    eprintln!(
        "llama.cpp vs braid: max abs logit difference {worst:e} over {} positions",
        prompt.len()
    );
    assert!(worst < 1e-3, "llama.cpp's logits differ from braid's by {worst}");
}
