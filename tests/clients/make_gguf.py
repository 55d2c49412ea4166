#!/usr/bin/env python3
"""Builds a small random-weight Qwen3-shaped GGUF with the real Qwen3 tokenizer, for the
llama.cpp upstream test: llama.cpp's `qwen3` architecture, byte-level BPE vocabulary and
merges from tokenizer.json, EOS from the tokenizer config.

Usage: make_gguf.py --tokenizer DIR --out FILE.gguf [--layers 2 --hidden 64 --seed 0]"""

import argparse
import json

import gguf
import numpy as np


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
    a = p.parse_args()

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
    w.add_context_length(4096)
    w.add_embedding_length(a.hidden)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
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
    h, q, kv = a.hidden, a.heads * a.head_dim, a.kv_heads * a.head_dim
    w.add_tensor("token_embd.weight", rand(n, h))
    w.add_tensor("output_norm.weight", np.ones(h, np.float32))
    w.add_tensor("output.weight", rand(n, h))
    for i in range(a.layers):
        b = f"blk.{i}"
        w.add_tensor(f"{b}.attn_norm.weight", np.ones(h, np.float32))
        w.add_tensor(f"{b}.attn_q.weight", rand(q, h))
        w.add_tensor(f"{b}.attn_k.weight", rand(kv, h))
        w.add_tensor(f"{b}.attn_v.weight", rand(kv, h))
        w.add_tensor(f"{b}.attn_output.weight", rand(h, q))
        w.add_tensor(f"{b}.attn_q_norm.weight", np.ones(a.head_dim, np.float32))
        w.add_tensor(f"{b}.attn_k_norm.weight", np.ones(a.head_dim, np.float32))
        w.add_tensor(f"{b}.ffn_norm.weight", np.ones(h, np.float32))
        w.add_tensor(f"{b}.ffn_gate.weight", rand(a.ffn, h))
        w.add_tensor(f"{b}.ffn_up.weight", rand(a.ffn, h))
        w.add_tensor(f"{b}.ffn_down.weight", rand(h, a.ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {a.out}: {n} tokens, {a.layers} layers, hidden {h}")


if __name__ == "__main__":
    main()
