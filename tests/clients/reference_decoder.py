#!/usr/bin/env python3
"""An independent reference for braid's engine: the decoders it runs, written in NumPy
from the published Hugging Face modeling code (modeling_qwen3.py, modeling_qwen3_moe.py,
modeling_glm4_moe.py, modeling_deepseek_v3.py, modeling_minimax_m2.py), in float64, recomputing the whole
sequence (no cache, no paging, no batching), so it shares nothing with the engine but the
weight files. DeepSeek's latent attention is computed the published way, with keys and
values expanded per head (the engine keeps only the latent and absorbs the weights).

Usage: reference_decoder.py MODEL_DIR --tokens 1,2,3,... --start N --out FILE
Writes {"logits": [...]} to FILE: the next-token logits after each of tokens[N-1:], one
row per position.
"""

import argparse
import json
import math
import struct

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        raw = data[start:end]
        if meta["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif meta["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif meta["dtype"] == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        else:
            raise SystemExit(f"{name}: dtype {meta['dtype']} is not handled")
        tensors[name] = arr.astype(np.float64).reshape(meta["shape"])
    return tensors


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


class Decoder:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            self.cfg = json.load(f)
        self.w = load_safetensors(f"{model_dir}/model.safetensors")
        c = self.cfg
        self.kind = c["model_type"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads", self.heads)
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        factor = c.get("partial_rotary_factor", 0.5 if self.kind == "glm4_moe" else 1.0)
        self.rotary_dim = int(self.head_dim * factor)
        if self.kind == "deepseek_v3":
            self.rotary_dim = c["qk_rope_head_dim"]
        if "rotary_dim" in c:
            self.rotary_dim = c["rotary_dim"]
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.qk_norm = self.kind in ("qwen3", "qwen3_moe") or c.get("use_qk_norm", False)
        # MiniMax-M2 norms all heads of q (and of k) together, before splitting them.
        self.qk_norm_whole = self.kind == "minimax_m2" and c.get("qk_norm_type", "per_layer") == "per_layer"
        # MiniMax-M2 keeps Mixtral's names for its sparse blocks.
        self.moe_module, self.expert_names = (("block_sparse_moe", ("w1", "w3", "w2")) if self.kind == "minimax_m2"
                                              else ("mlp", ("gate_proj", "up_proj", "down_proj")))

    def sparse(self, layer):
        c = self.cfg
        if self.kind == "qwen3_moe":
            return layer not in c.get("mlp_only_layers", []) and (layer + 1) % c.get("decoder_sparse_step", 1) == 0
        if self.kind == "glm4_moe":
            return layer >= c.get("first_k_dense_replace", 1)
        if self.kind == "deepseek_v3":
            return layer >= c.get("first_k_dense_replace", 1) and layer % c.get("moe_layer_freq", 1) == 0
        return self.kind == "minimax_m2"

    def linear(self, x, name):
        y = x @ self.w[f"{name}.weight"].T
        bias = self.w.get(f"{name}.bias")
        return y if bias is None else y + bias

    def mlp(self, x, prefix, names=("gate_proj", "up_proj", "down_proj")):
        gate, up, down = names
        return self.linear(silu(self.linear(x, f"{prefix}.{gate}")) * self.linear(x, f"{prefix}.{up}"),
                           f"{prefix}.{down}")

    def route(self, logits, prefix):
        """Per token: the chosen experts and their weights."""
        c = self.cfg
        k = c["num_experts_per_tok"]
        if self.kind == "qwen3_moe":
            p = np.exp(logits - logits.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            idx = np.argsort(-p, axis=-1, kind="stable")[:, :k]
            weights = np.take_along_axis(p, idx, axis=-1)
            if c.get("norm_topk_prob", False):
                weights /= weights.sum(axis=-1, keepdims=True)
            return idx, weights
        scores = 1.0 / (1.0 + np.exp(-logits))
        if self.kind == "minimax_m2":
            # Sigmoid scores, choice steered by the bias, chosen weights renormalised.
            choice = scores + self.w.get(f"{prefix}.e_score_correction_bias", 0.0)
            idx = np.argsort(-choice, axis=-1, kind="stable")[:, :k]
            weights = np.take_along_axis(scores, idx, axis=-1)
            weights /= weights.sum(axis=-1, keepdims=True)
            return idx, weights * c.get("routed_scaling_factor", 1.0)
        # GLM-4.5 / DeepSeek-V3: sigmoid scores, biased choice inside the best groups.
        choice = scores + self.w[f"{prefix}.gate.e_score_correction_bias"]
        n, experts = choice.shape
        groups, keep = c.get("n_group", 1), c.get("topk_group", 1)
        grouped = choice.reshape(n, groups, experts // groups)
        group_scores = np.sort(grouped, axis=-1)[..., ::-1][..., :2].sum(axis=-1)
        best = np.argsort(-group_scores, axis=-1, kind="stable")[:, :keep]
        mask = np.zeros((n, groups), dtype=bool)
        np.put_along_axis(mask, best, True, axis=-1)
        # Experts of unchosen groups are ruled out with -inf, as in DeepSeek's inference code,
        # vLLM and SGLang (transformers fills 0.0; they differ only for negative scores).
        choice = np.where(np.repeat(mask, experts // groups, axis=-1), choice, -np.inf)
        idx = np.argsort(-choice, axis=-1, kind="stable")[:, :k]
        weights = np.take_along_axis(scores, idx, axis=-1)
        if c.get("norm_topk_prob", True):
            weights /= weights.sum(axis=-1, keepdims=True) + 1e-20
        return idx, weights * c.get("routed_scaling_factor", 1.0)

    def experts(self, x, prefix):
        idx, weights = self.route(self.linear(x, f"{prefix}.gate"), prefix)
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            for e, w in zip(idx[t], weights[t]):
                out[t] += w * self.mlp(x[t:t + 1], f"{prefix}.experts.{e}", self.expert_names)[0]
        if f"{prefix}.shared_experts.gate_proj.weight" in self.w:
            out += self.mlp(x, f"{prefix}.shared_experts")
        return out

    def attention(self, x, prefix, cos, sin):
        t = x.shape[0]
        q, k = self.linear(x, f"{prefix}.q_proj"), self.linear(x, f"{prefix}.k_proj")
        if self.qk_norm_whole:
            q = rms_norm(q, self.w[f"{prefix}.q_norm.weight"], self.eps)
            k = rms_norm(k, self.w[f"{prefix}.k_norm.weight"], self.eps)
        q = q.reshape(t, self.heads, self.head_dim)
        k = k.reshape(t, self.kv_heads, self.head_dim)
        v = self.linear(x, f"{prefix}.v_proj").reshape(t, self.kv_heads, self.head_dim)
        if self.qk_norm and not self.qk_norm_whole:
            q = rms_norm(q, self.w[f"{prefix}.q_norm.weight"], self.eps)
            k = rms_norm(k, self.w[f"{prefix}.k_norm.weight"], self.eps)
        r = self.rotary_dim

        def rope(a):
            rot = a[..., :r] * cos[:, None, :] + rotate_half(a[..., :r]) * sin[:, None, :]
            return np.concatenate([rot, a[..., r:]], axis=-1)

        q, k = rope(q), rope(k)
        group = self.heads // self.kv_heads
        causal = np.triu(np.full((t, t), -np.inf), k=1)
        out = np.zeros((t, self.heads, self.head_dim))
        for h in range(self.heads):
            s = q[:, h] @ k[:, h // group].T / np.sqrt(self.head_dim) + causal
            p = np.exp(s - s.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            out[:, h] = p @ v[:, h // group]
        return self.linear(out.reshape(t, -1), f"{prefix}.o_proj")

    def latent_attention(self, x, prefix, cos, sin):
        """DeepSeek-V3's attention as published: per-head keys and values expanded from the
        latent, the rotary part of query and key de-interleaved then rotated by halves."""
        c = self.cfg
        t, heads = x.shape[0], self.heads
        nope, rope, vdim, rank = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
        if c.get("q_lora_rank"):
            q = self.linear(rms_norm(self.linear(x, f"{prefix}.q_a_proj"), self.w[f"{prefix}.q_a_layernorm.weight"],
                                     self.eps), f"{prefix}.q_b_proj")
        else:
            q = self.linear(x, f"{prefix}.q_proj")
        q = q.reshape(t, heads, nope + rope)
        compressed = self.linear(x, f"{prefix}.kv_a_proj_with_mqa")
        kv = self.linear(rms_norm(compressed[:, :rank], self.w[f"{prefix}.kv_a_layernorm.weight"], self.eps),
                         f"{prefix}.kv_b_proj").reshape(t, heads, nope + vdim)
        k_rot = compressed[:, rank:].reshape(t, 1, rope)

        def rotate(a):
            if c.get("rope_interleave", True):
                a = a.reshape(*a.shape[:-1], rope // 2, 2).swapaxes(-1, -2).reshape(a.shape)
            return a * cos[:, None, :] + rotate_half(a) * sin[:, None, :]

        query = np.concatenate([q[..., :nope], rotate(q[..., nope:])], axis=-1)
        key = np.concatenate([kv[..., :nope], np.broadcast_to(rotate(k_rot), (t, heads, rope))], axis=-1)
        value = kv[..., nope:]
        causal = np.triu(np.full((t, t), -np.inf), k=1)
        out = np.zeros((t, heads, vdim))
        for h in range(heads):
            s = query[:, h] @ key[:, h].T / np.sqrt(nope + rope) * self.softmax_scale_factor() + causal
            p = np.exp(s - s.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            out[:, h] = p @ value[:, h]
        return self.linear(out.reshape(t, -1), f"{prefix}.o_proj")

    def inverse_frequencies(self):
        """RoPE's inverse frequencies and the factor on cos/sin: plain, or YaRN as in
        transformers' _compute_yarn_parameters (`factor` as given; the max/original ratio
        only where `factor` is absent)."""
        c = self.cfg
        r, base = self.rotary_dim, c.get("rope_theta", 10000.0)
        plain = 1.0 / (base ** (np.arange(0, r, 2) / r))
        y = c.get("rope_scaling") or {}
        if y.get("rope_type", y.get("type")) != "yarn":
            return plain, 1.0
        original = y["original_max_position_embeddings"]
        factor = y.get("factor") or c["max_position_embeddings"] / original

        def mag(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        attention = y.get("attention_factor")
        if attention is None:
            attention = (mag(factor, y["mscale"]) / mag(factor, y["mscale_all_dim"])
                         if y.get("mscale") and y.get("mscale_all_dim") else mag(factor))

        def dim_of(rotations):
            return r * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low, high = dim_of(y.get("beta_fast") or 32), dim_of(y.get("beta_slow") or 1)
        if y.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, r - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(r // 2) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp
        return plain / factor * (1 - extrapolation) + plain * extrapolation, attention

    def softmax_scale_factor(self):
        """DeepSeek-V3 multiplies its softmax scale by mscale(factor, mscale_all_dim)**2."""
        y = self.cfg.get("rope_scaling") or {}
        if y.get("rope_type", y.get("type")) != "yarn" or not y.get("mscale_all_dim"):
            return 1.0
        factor = y.get("factor") or self.cfg["max_position_embeddings"] / y["original_max_position_embeddings"]
        return (0.1 * y["mscale_all_dim"] * math.log(factor) + 1.0) ** 2 if factor > 1 else 1.0

    def logits(self, tokens):
        c = self.cfg
        t = len(tokens)
        x = self.w["model.embed_tokens.weight"][tokens]
        inv, factor = self.inverse_frequencies()
        freqs = np.arange(t)[:, None] * inv[None, :]
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb) * factor, np.sin(emb) * factor
        for layer in range(c["num_hidden_layers"]):
            p = f"model.layers.{layer}"
            attention = self.latent_attention if self.kind == "deepseek_v3" else self.attention
            x = x + attention(rms_norm(x, self.w[f"{p}.input_layernorm.weight"], self.eps), f"{p}.self_attn", cos, sin)
            h = rms_norm(x, self.w[f"{p}.post_attention_layernorm.weight"], self.eps)
            x = x + (self.experts(h, f"{p}.{self.moe_module}") if self.sparse(layer) else self.mlp(h, f"{p}.mlp"))
        x = rms_norm(x, self.w["model.norm.weight"], self.eps)
        head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        return x @ head.T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("--tokens", required=True)
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    tokens = [int(x) for x in args.tokens.split(",")]
    logits = Decoder(args.model_dir).logits(tokens)
    with open(args.out, "w") as f:
        json.dump({"logits": logits[args.start - 1:].tolist()}, f)


if __name__ == "__main__":
    main()
