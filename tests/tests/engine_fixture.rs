//! `braid fixture qwen3` builds a model folder in the real layout with the real Qwen3
//! tokenizer, and the engine loads and runs it as it would a downloaded checkpoint.

use std::path::PathBuf;
use std::process::Command;

use braid_engine::{load_model, Tokenizer};
use braid_tests::braid_bin;

use candle_core::{DType, Device};

fn build_fixture(name: &str) -> PathBuf {
    braid_tests::qwen3_fixture(name)
}

#[test]
fn a_fixture_loads_tokenizes_and_decodes_like_a_checkpoint() {
    let dir = build_fixture("qwen3");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    let tok = Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let model = load_model(&dir, DType::F32, &Device::Cpu, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.config().vocab_size, tok.vocab_size());
    let im_end = tok.token_id("<|im_end|>");
    assert!(
        im_end.is_some_and(|id| tok.eos_token_ids().contains(&id)),
        "{:?}",
        tok.eos_token_ids()
    );

    let prompt =
        "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n<think>\n";
    let ids = tok.encode(prompt).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tok.decode(&ids).unwrap_or_default(), prompt, "round trip");
    assert_eq!(
        ids[0],
        tok.token_id("<|im_start|>").unwrap_or(u32::MAX),
        "special tokens are single ids"
    );

    let run = || braid_tests::greedy_on_engine(&model, &ids, 8).1;
    let first = run();
    assert!(first.iter().all(|&t| (t as usize) < tok.vocab_size()));
    assert_eq!(first, run(), "greedy decoding is deterministic");
    assert!(tok.decode(&first).is_ok());
}

#[test]
fn bench_engine_prints_the_figures_with_the_reference() {
    let dir = build_fixture("bench");
    let out = Command::new(braid_bin())
        .args(["bench", "engine", "--model"])
        .arg(&dir)
        .args([
            "--prompt-tokens",
            "32",
            "--decode-steps",
            "4",
            "--batches",
            "1,2",
            "--shared-prefix",
            "64",
            "--repeat",
            "3",
        ])
        .args(["--kv-cache-mib", "32"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run braid: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    for key in [
        "prefill_tok_s",
        "ttft_ms",
        "peak_rss_mb",
        "kv_bytes_per_token",
        "params",
    ] {
        assert!(json[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {json}");
    }
    assert_eq!(json["decode"].as_array().map(Vec::len), Some(2), "{json}");
    assert!(json["reference"]["decode_tok_s"]
        .as_f64()
        .is_some_and(|v| v > 0.0));
    assert_eq!(json["reference"]["greedy_tokens_match"], true, "{json}");
    assert_eq!(json["prefix_cache"]["hit_tokens"], 64, "{json}");
    // Three runs of each timed figure, the report giving their median.
    let values = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    let middle = |mut v: Vec<f64>| {
        assert_eq!(v.len(), 3, "{json}");
        v.sort_by(f64::total_cmp);
        v[1]
    };
    assert_eq!(json["repeat"], 3, "{json}");
    let prefill = middle(values(&json["runs"]["prefill_tok_s"]));
    let reported = json["prefill_tok_s"].as_f64().unwrap_or_default();
    assert!(
        (prefill - reported).abs() <= 0.02 * reported,
        "{prefill} vs {json}"
    );
    let batch2 = middle(values(&json["runs"]["decode"][1]["tok_s"]));
    assert_eq!(json["decode"][1]["tok_s"].as_f64(), Some(batch2), "{json}");
}
