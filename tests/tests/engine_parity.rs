//! The engine's logits against an independent reference: `tests/clients/reference_decoder.py`,
//! NumPy in float64 written from the published Hugging Face modeling code, recomputing
//! the whole sequence each time. It shares nothing with the engine but the weight files,
//! so agreement checks the architecture as published, not one implementation against a
//! copy of itself. (Qwen3 and Qwen3-MoE are also checked against candle-transformers in
//! the engine's own tests; they run here too, which checks the reference.)

use braid_engine::fixture::{ModelSpec, MoeSpec};
use braid_engine::load_model;
use candle_core::{DType, Device, Tensor};

const PROMPT: [u32; 7] = [3, 141, 59, 26, 5, 358, 97];
const STEPS: usize = 16;

/// Writes `spec`'s fixture, runs the prompt and 16 greedy steps on the engine, has the
/// reference recompute the same tokens, and compares every step's logits.
fn matches_the_reference(name: &str, spec: &ModelSpec) {
    matches_the_reference_with(name, spec, serde_json::Value::Null);
}

/// As [`matches_the_reference`], with `rope_scaling` set in `config.json` (unless null).
fn matches_the_reference_with(name: &str, spec: &ModelSpec, rope_scaling: serde_json::Value) {
    let dir = std::env::temp_dir().join(format!("braid-parity-{name}-{}", std::process::id()));
    spec.write(&dir, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    if !rope_scaling.is_null() {
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default();
        config["rope_scaling"] = rope_scaling;
        std::fs::write(&path, config.to_string()).unwrap_or_else(|e| panic!("{e}"));
    }
    let model = load_model(&dir, DType::F32, &Device::Cpu, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    // The prompt and 16 greedy steps: 17 rows of logits; the reference sees the prompt
    // and the 16 tokens chosen from the first 16 rows.
    let (ours, chosen) = braid_tests::greedy_on_engine(&model, &PROMPT, STEPS + 1);
    let tokens: Vec<u32> = PROMPT.iter().chain(&chosen[..STEPS]).copied().collect();

    let out = dir.join("reference.json");
    let list: Vec<String> = tokens.iter().map(u32::to_string).collect();
    braid_tests::run_client(
        "reference_decoder.py",
        &[
            &dir.to_string_lossy(),
            "--tokens",
            &list.join(","),
            "--start",
            &PROMPT.len().to_string(),
            "--out",
            &out.to_string_lossy(),
        ],
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap_or_default()).unwrap_or_default();
    let rows = reference["logits"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), ours.len(), "{name}: reference rows");
    let mut worst = 0f32;
    for (step, (row, mine)) in rows.iter().zip(&ours).enumerate() {
        let theirs: Vec<f32> = row
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_f64()).map(|v| v as f32).collect())
            .unwrap_or_default();
        assert_eq!(theirs.len(), mine.len(), "{name}: vocabulary at step {step}");
        let diff = theirs
            .iter()
            .zip(mine)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(diff);
        assert!(diff <= 1e-3, "{name}: step {step} logits differ by {diff}");
        assert_eq!(
            argmax(&theirs),
            argmax(mine),
            "{name}: greedy choice differs at step {step}"
        );
    }
    let distinct: std::collections::HashSet<&u32> = tokens[PROMPT.len()..].iter().collect();
    assert!(distinct.len() > 3, "{name}: degenerate decode {tokens:?}");
    eprintln!("{name}: {} steps, max abs logit difference {worst:e}", ours.len());
    let _ = std::fs::remove_dir_all(&dir);
}

fn argmax(row: &[f32]) -> u32 {
    let t = Tensor::new(row, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
    braid_engine::model::argmax(&t).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn glm4_moe_matches_an_independent_numpy_reference() {
    // Three layers: the first dense, two sparse; 8 experts in 4 groups, 2 groups allowed,
    // a shared expert, scaling 2.5, q/k/v biases, half of each head rotated.
    let spec = ModelSpec {
        layers: 3,
        ..ModelSpec::glm4_moe_tiny(512)
    };
    matches_the_reference("glm4-moe", &spec);
}

#[test]
fn deepseek_v3_latent_attention_matches_an_independent_numpy_reference() {
    // Three layers (the first dense), compressed queries, a 32-wide latent, 8 rotary
    // dimensions rotated in interleaved pairs; sigmoid experts in groups. The engine runs
    // the absorbed path over latent-only cache rows; the reference expands keys and values.
    matches_the_reference("deepseek-v3", &ModelSpec::deepseek_v3_tiny(512));
    // Without query compression (q_lora_rank null, as in DeepSeek-V2-Lite).
    let mut spec = ModelSpec::deepseek_v3_tiny(512);
    if let Some(m) = spec.mla.as_mut() {
        m.q_lora_rank = None;
    }
    matches_the_reference("deepseek-v3-plain-query", &spec);
}

#[test]
fn minimax_m2_matches_an_independent_numpy_reference() {
    // q and k normed over all heads together, half of each head rotated, sigmoid experts
    // with a routing bias on every layer, in Mixtral's checkpoint names.
    let spec = ModelSpec {
        layers: 3,
        ..ModelSpec::minimax_m2_tiny(512)
    };
    matches_the_reference("minimax-m2", &spec);
}

#[test]
fn yarn_scaled_rope_matches_the_numpy_reference() {
    // DeepSeek-V3's published settings (factor 40, mscale = mscale_all_dim = 1: cos/sin
    // unscaled, the softmax scale times (0.1 ln 40 + 1)^2), on a short original context so
    // the ramp reaches the rotated dimensions; and Qwen3's long-context YaRN (cos/sin
    // times 0.1 ln 4 + 1).
    matches_the_reference_with(
        "deepseek-v3-yarn",
        &ModelSpec::deepseek_v3_tiny(512),
        serde_json::json!({"type": "yarn", "factor": 40, "original_max_position_embeddings": 64,
            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}),
    );
    matches_the_reference_with(
        "qwen3-yarn",
        &ModelSpec::tiny(512),
        serde_json::json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}),
    );
}

#[test]
fn qwen3_and_qwen3_moe_match_the_numpy_reference_too() {
    matches_the_reference("qwen3", &ModelSpec::tiny(512));
    let spec = ModelSpec {
        layers: 3,
        moe: Some(MoeSpec {
            mlp_only_layers: vec![1],
            ..MoeSpec::tiny()
        }),
        ..ModelSpec::tiny(512)
    };
    matches_the_reference("qwen3-moe", &spec);
}
