//! `braid serve` driven by the official `openai` Python client (from scripts/setup's
//! venv), as users drive it: the real engine on a random-weight Qwen3, and the
//! interleaved weather loop for each model family on the replay executor.

use braid_tests::families::{family_folder, golden_keeps, serve_family, FAMILIES, R};
use braid_tests::{http, qwen3_fixture, run_client, shared_dir};

#[test]
fn the_openai_client_on_the_real_engine() {
    let model = qwen3_fixture("openai-engine");
    let (_serve, port) = braid_tests::serve_engine(
        &model,
        &[
            "--reasoning-parser",
            "qwen3",
            "--tool-call-parser",
            "hermes",
            "--served-model-name",
            "m",
        ],
        "openai-engine",
    );
    run_client(
        "engine.py",
        &["--base-url", &format!("http://127.0.0.1:{port}/v1")],
    );
}

#[test]
fn the_openai_client_on_mixture_of_experts_models() {
    // Qwen3-MoE with every second layer routing each token to 2 of 8 experts; GLM-4.5
    // with a dense first layer, then sigmoid routing inside 2 of 4 groups and a shared
    // expert; DeepSeek-V3 the same experts behind latent attention; MiniMax-M2.
    for (kind, architecture, options) in [
        (
            "qwen3-moe",
            "Qwen3MoeForCausalLM",
            &["--layers", "4", "--decoder-sparse-step", "2"][..],
        ),
        ("glm4-moe", "Glm4MoeForCausalLM", &["--layers", "3"][..]),
        ("deepseek-v3", "DeepseekV3ForCausalLM", &["--layers", "3"][..]),
        ("minimax-m2", "MiniMaxM2ForCausalLM", &["--layers", "2"][..]),
    ] {
        let model = braid_tests::fixture(kind, &format!("openai-{kind}"), options);
        let config = std::fs::read_to_string(model.join("config.json")).unwrap_or_default();
        assert!(config.contains(architecture), "{config}");
        let (_serve, port) = braid_tests::serve_engine(&model, &braid_tests::QWEN3_CHAT, kind);
        let url = format!("http://127.0.0.1:{port}/v1");
        run_client("engine.py", &["--base-url", &url]);
        let out = run_client(
            "structured.py",
            &["tools", "--base-url", &url, "--requests", "10"],
        );
        assert!(out.contains("10 required and 10 named calls"), "{kind}: {out}");
    }
}

#[test]
fn the_interleaved_weather_loop_for_every_family() {
    let shared = shared_dir();
    if shared.is_none() {
        eprintln!("../shared is absent: only qwen3 (whose template ships with its tokenizer) runs");
    }
    for f in FAMILIES {
        let Some(dir) = family_folder(f, shared.as_deref(), "openai-loop") else {
            continue;
        };
        if let Some(keeps) = shared.as_deref().and_then(|s| golden_keeps(s, f.name)) {
            assert_eq!(
                keeps, f.keeps,
                "{}: the golden renders disagree with the test table",
                f.name
            );
        }
        let (_serve, port) = serve_family(f, &dir, &[]);
        let url = format!("http://127.0.0.1:{port}/v1");
        let expect = if f.keeps { "with" } else { "without" };
        let common = [
            "--base-url",
            url.as_str(),
            "--kwargs",
            f.kwargs,
            "--reasoning",
            R,
            "--expect",
            expect,
        ];
        run_client("interleaved.py", &common);
        // The client drops reasoning_content: braid re-injects what it produced.
        let mut dropped = common.to_vec();
        dropped.extend(["--stream", "--drop-reasoning"]);
        run_client("interleaved.py", &dropped);
        let (_, metrics) = http(port, "GET", "/metrics", "");
        assert!(
            metrics.contains("braid_reasoning_reinjections_total"),
            "{}: {metrics}",
            f.name
        );
    }
    // The seeds' own client code sends the streamed tool-call fragments back unmerged,
    // with fields LiteLLM forwards: merged by index, and re-injection still finds the turn.
    let qwen = &FAMILIES[0];
    let dir = family_folder(qwen, shared.as_deref(), "openai-seed").unwrap_or_else(|| panic!("qwen3 folder"));
    let (_serve, port) = serve_family(qwen, &dir, &[]);
    let url = format!("http://127.0.0.1:{port}/v1");
    let expect = if qwen.keeps { "with" } else { "without" };
    run_client(
        "interleaved.py",
        &[
            "--base-url",
            &url,
            "--kwargs",
            qwen.kwargs,
            "--reasoning",
            R,
            "--expect",
            expect,
            "--stream",
            "--drop-reasoning",
            "--seed-client",
        ],
    );
    // With replay off, a dropped reasoning stays dropped.
    let dir =
        family_folder(qwen, shared.as_deref(), "openai-no-replay").unwrap_or_else(|| panic!("qwen3 folder"));
    let (_serve, port) = serve_family(qwen, &dir, &["--reasoning-replay-size", "0"]);
    let url = format!("http://127.0.0.1:{port}/v1");
    run_client(
        "interleaved.py",
        &[
            "--base-url",
            &url,
            "--reasoning",
            R,
            "--expect",
            "without",
            "--stream",
            "--drop-reasoning",
        ],
    );
}
