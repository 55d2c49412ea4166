#!/usr/bin/env python3
"""Builds a Qwen3-shaped GGUF with the real Qwen3 tokenizer: llama.cpp's `qwen3`
architecture, byte-level BPE vocabulary and merges from tokenizer.json, EOS from the
tokenizer config. The weights are random (the llama.cpp upstream test), or, with
--weights, a Qwen3 or Qwen3-MoE model folder's own (`braid fixture qwen3|qwen3-moe`;
llama.cpp's `qwen3moe` with stacked expert tensors), so llama.cpp runs the very model
braid runs (the engine comparison).

--type picks the storage: f32 (default) and f16 as llama.cpp's converter writes them
(1-D tensors stay f32), q8_0 and q4_k_m by llama.cpp's own quantizer
(`llama_model_quantize`, through llama-cpp-python) from the f32 file.

Usage: make_gguf.py --tokenizer DIR --out FILE.gguf [--layers 2 --hidden 64 --seed 0]
       make_gguf.py --tokenizer DIR --out FILE.gguf --weights MODEL_DIR [--type q4_k_m]"""

import argparse
import json
import os

import gguf
import numpy as np

QUANTIZED = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}

from reference_decoder import load_safetensors


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", help="a Qwen3 or Qwen3-MoE model folder whose weights to copy (its shape wins)")
    p.add_argument("--type", default="f32", choices=["f32", "f16", *QUANTIZED])
    a = p.parse_args()
    if a.type in QUANTIZED:
        f32_path = a.out + ".f32.tmp"
        write(a, f32_path, "f32")
        quantize(f32_path, a.out, a.type)
        os.remove(f32_path)
    else:
        write(a, a.out, a.type)


def quantize(src, out, kind):
    """llama.cpp's quantizer, as `llama-quantize SRC OUT Q4_K_M` runs it."""
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZED[kind])
    params.nthread = 2
    if llama_cpp.llama_model_quantize(src.encode(), out.encode(), params) != 0:
        raise SystemExit(f"llama.cpp could not quantize {src} to {kind}")
    print(f"quantized {out}: {kind}")


def write(a, out, kind):
    weights, moe = None, None
    if a.weights:
        c = json.load(open(f"{a.weights}/config.json", encoding="utf-8"))
        archs = c.get("architectures")
        if archs == ["Qwen3MoeForCausalLM"]:
            if c.get("mlp_only_layers") or c.get("decoder_sparse_step", 1) != 1 or not c.get("norm_topk_prob", False):
                raise SystemExit("llama.cpp's qwen3moe has every layer sparse and renormalised top-k weights")
            moe = (c["num_experts"], c["num_experts_per_tok"], c["moe_intermediate_size"])
        elif archs != ["Qwen3ForCausalLM"]:
            raise SystemExit(f"--weights takes a Qwen3ForCausalLM or Qwen3MoeForCausalLM folder, not {archs}")
        a.layers, a.hidden, a.ffn = c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"]
        a.heads, a.kv_heads, a.head_dim = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        weights = {k: v.astype(np.float32) for k, v in load_safetensors(f"{a.weights}/model.safetensors").items()}
        rope_theta, eps, context = c["rope_theta"], c["rms_norm_eps"], c["max_position_embeddings"]
    else:
        rope_theta, eps, context = 1_000_000.0, 1e-6, 4096

    tok = json.load(open(f"{a.tokenizer}/tokenizer.json", encoding="utf-8"))
    cfg = json.load(open(f"{a.tokenizer}/tokenizer_config.json", encoding="utf-8"))
    vocab = dict(tok["model"]["vocab"])
    special = {}
    for t in tok["added_tokens"]:
        vocab[t["content"]] = t["id"]
        special[t["id"]] = t.get("special", False)
    n = max(vocab.values()) + 1
    if weights is not None:
        # llama.cpp's converter pads the vocabulary to the embedding's rows.
        n = max(n, weights["model.embed_tokens.weight"].shape[0])
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = gguf.TokenType.NORMAL
    for i, is_special in special.items():
        types[i] = gguf.TokenType.CONTROL if is_special else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    eos_text = cfg.get("eos_token")
    eos_text = eos_text["content"] if isinstance(eos_text, dict) else eos_text

    w = gguf.GGUFWriter(out, "qwen3moe" if moe else "qwen3")
    w.add_name("braid-random-qwen3")
    w.add_block_count(a.layers)
    w.add_context_length(context)
    w.add_embedding_length(a.hidden)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_rope_freq_base(rope_theta)
    w.add_layer_norm_rms_eps(eps)
    if moe:
        w.add_expert_count(moe[0])
        w.add_expert_used_count(moe[1])
        w.add_expert_feed_forward_length(moe[2])
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if kind == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(vocab[eos_text])
    w.add_pad_token_id(vocab["<|endoftext|>"])
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_add_bos_token(False)
    if cfg.get("chat_template"):
        w.add_chat_template(cfg["chat_template"])

    rng = np.random.default_rng(a.seed)
    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)
    def ones(*shape):
        return np.ones(shape, np.float32)
    h, q, kv = a.hidden, a.heads * a.head_dim, a.kv_heads * a.head_dim

    def stored(t):
        """f16 files keep 1-D tensors (norms) in f32, as llama.cpp's converter does."""
        return t.astype(np.float16) if kind == "f16" and t.ndim > 1 else t

    def tensor(gguf_name, hf_name, make, *shape):
        """The folder's tensor under its Hugging Face name, else a made-up one."""
        w.add_tensor(gguf_name, stored(weights[hf_name] if weights is not None else make(*shape)))

    def experts(gguf_name, layer, proj):
        """Every expert's `proj` of a layer, stacked as llama.cpp's `*_exps` tensors."""
        stack = [weights[f"model.layers.{layer}.mlp.experts.{e}.{proj}.weight"] for e in range(moe[0])]
        w.add_tensor(gguf_name, stored(np.stack(stack)))

    tensor("token_embd.weight", "model.embed_tokens.weight", rand, n, h)
    tensor("output_norm.weight", "model.norm.weight", ones, h)
    if weights is None or "lm_head.weight" in weights:
        tensor("output.weight", "lm_head.weight", rand, n, h)
    for i in range(a.layers):
        b, m = f"blk.{i}", f"model.layers.{i}"
        tensor(f"{b}.attn_norm.weight", f"{m}.input_layernorm.weight", ones, h)
        tensor(f"{b}.attn_q.weight", f"{m}.self_attn.q_proj.weight", rand, q, h)
        tensor(f"{b}.attn_k.weight", f"{m}.self_attn.k_proj.weight", rand, kv, h)
        tensor(f"{b}.attn_v.weight", f"{m}.self_attn.v_proj.weight", rand, kv, h)
        tensor(f"{b}.attn_output.weight", f"{m}.self_attn.o_proj.weight", rand, h, q)
        tensor(f"{b}.attn_q_norm.weight", f"{m}.self_attn.q_norm.weight", ones, a.head_dim)
        tensor(f"{b}.attn_k_norm.weight", f"{m}.self_attn.k_norm.weight", ones, a.head_dim)
        tensor(f"{b}.ffn_norm.weight", f"{m}.post_attention_layernorm.weight", ones, h)
        if moe:
            # The router stays f32 in every llama.cpp file.
            w.add_tensor(f"{b}.ffn_gate_inp.weight", weights[f"{m}.mlp.gate.weight"])
            experts(f"{b}.ffn_gate_exps.weight", i, "gate_proj")
            experts(f"{b}.ffn_up_exps.weight", i, "up_proj")
            experts(f"{b}.ffn_down_exps.weight", i, "down_proj")
            continue
        tensor(f"{b}.ffn_gate.weight", f"{m}.mlp.gate_proj.weight", rand, a.ffn, h)
        tensor(f"{b}.ffn_up.weight", f"{m}.mlp.up_proj.weight", rand, a.ffn, h)
        tensor(f"{b}.ffn_down.weight", f"{m}.mlp.down_proj.weight", rand, h, a.ffn)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}: {n} tokens, {a.layers} layers, hidden {h}, {kind}")


if __name__ == "__main__":
    main()
