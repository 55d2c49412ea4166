#!/usr/bin/env python3
"""Builds a Qwen3-shaped GGUF with the real Qwen3 tokenizer: llama.cpp's `qwen3`
architecture, byte-level BPE vocabulary and merges from tokenizer.json, EOS from the
tokenizer config. The weights are random (the llama.cpp upstream test), or, with
--weights, a Qwen3 model folder's own (`braid fixture qwen3`), copied as f32 so
llama.cpp runs the very model braid runs (the engine comparison).

Usage: make_gguf.py --tokenizer DIR --out FILE.gguf [--layers 2 --hidden 64 --seed 0]
       make_gguf.py --tokenizer DIR --out FILE.gguf --weights MODEL_DIR"""

import argparse
import json

import gguf
import numpy as np

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
    p.add_argument("--weights", help="a Qwen3 model folder whose weights to copy (its shape wins)")
    a = p.parse_args()
    weights = None
    if a.weights:
        c = json.load(open(f"{a.weights}/config.json", encoding="utf-8"))
        if c.get("architectures") != ["Qwen3ForCausalLM"]:
            raise SystemExit(f"--weights takes a Qwen3ForCausalLM folder, not {c.get('architectures')}")
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

    w = gguf.GGUFWriter(a.out, "qwen3")
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
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
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

    def tensor(gguf_name, hf_name, make, *shape):
        """The folder's tensor under its Hugging Face name, else a made-up one."""
        w.add_tensor(gguf_name, weights[hf_name] if weights is not None else make(*shape))

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
        tensor(f"{b}.ffn_gate.weight", f"{m}.mlp.gate_proj.weight", rand, a.ffn, h)
        tensor(f"{b}.ffn_up.weight", f"{m}.mlp.up_proj.weight", rand, a.ffn, h)
        tensor(f"{b}.ffn_down.weight", f"{m}.mlp.down_proj.weight", rand, h, a.ffn)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {a.out}: {n} tokens, {a.layers} layers, hidden {h}")


if __name__ == "__main__":
    main()
