#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on a GGUF, as `braid bench engine` measures braid: the
same deterministic prompt tokens, prefill tokens per second, and single-sequence decode
tokens per second after a 16-token prompt (as braid's decode rows) and, with
--long-context N, after an N-token one (as braid's decode_long_context), on the same
threads; and, with --logits-out, the next-token logits of
every position of the prompt from --logits-from on (to check llama.cpp runs the very
model braid runs); the tokens from --logits-from + 1 on are fed one at a time, as a
decode feeds them.

Usage: llama_bench.py --gguf FILE [--prompt-tokens 512] [--decode-steps 32] [--threads 2]
                      [--long-context 0]
                      [--logits-out FILE --tokens 1,2,3 [--logits-from 0]]
Prints one JSON object."""

import argparse
import json
import time

import llama_cpp
import numpy as np


def prompt(n, salt, vocab):
    """braid bench engine's prompt: ((i * 2654435761 + salt) mod 2^32) >> 7, mod the vocabulary."""
    return [(((i * 2654435761 + salt) & 0xFFFFFFFF) >> 7) % vocab for i in range(n)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", required=True)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--decode-steps", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--long-context", type=int, default=0)
    p.add_argument("--tokens")
    p.add_argument("--logits-out")
    p.add_argument("--logits-from", type=int, default=0)
    a = p.parse_args()
    fixed = [int(t) for t in a.tokens.split(",")] if a.tokens else None
    n_ctx = (len(fixed) if fixed else max(a.prompt_tokens, a.long_context)) + a.decode_steps + 16
    # An f32 KV cache, as braid keeps for f32 weights (llama.cpp's default is f16).
    llm = llama_cpp.Llama(model_path=a.gguf, n_ctx=n_ctx, n_batch=512, n_threads=a.threads,
                          n_threads_batch=a.threads, logits_all=bool(a.logits_out), verbose=False,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    vocab = llm.n_vocab()
    if fixed:
        # The prompt in one batch, then one token per step.
        first = a.logits_from + 1
        llm.eval(fixed[:first])
        for t in fixed[first:]:
            llm.eval([t])
        logits = np.asarray(llm.scores[a.logits_from:len(fixed)], dtype=np.float64)
        with open(a.logits_out, "w") as f:
            json.dump({"logits": logits.tolist()}, f)
        print(json.dumps({"positions": len(fixed), "vocab": vocab}))
        return
    tokens = prompt(a.prompt_tokens, 7, vocab)
    t = time.perf_counter()
    llm.eval(tokens)
    prefill = time.perf_counter() - t
    # Decode as braid's decode rows do: a fresh 16-token prompt (the batch's first), then
    # one token per step.
    llm.reset()
    short = prompt(16, 1, vocab)
    llm.eval(short)
    t = time.perf_counter()
    for step in range(a.decode_steps):
        llm.eval([short[step % len(short)]])
    decode = time.perf_counter() - t
    long_context = long_prefill = None
    if a.long_context > 0:
        llm.reset()
        long = prompt(a.long_context, 1, vocab)
        t = time.perf_counter()
        llm.eval(long)
        long_prefill = round(a.long_context / (time.perf_counter() - t), 2)
        t = time.perf_counter()
        for step in range(a.decode_steps):
            llm.eval([long[step % len(long)]])
        long_context = round(a.decode_steps / (time.perf_counter() - t), 2)
    print(json.dumps({
        "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
        "threads": a.threads,
        "prefill_tokens": a.prompt_tokens,
        "prefill_tok_s": round(a.prompt_tokens / prefill, 2),
        "ttft_ms": round(prefill * 1e3, 2),
        "decode_tok_s": round(a.decode_steps / decode, 2),
        "prefill_long_context_tok_s": long_prefill,
        "decode_long_context_tok_s": long_context,
    }))


if __name__ == "__main__":
    main()
