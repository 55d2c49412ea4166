#!/usr/bin/env python3
"""braid's real engine (a random-weight Qwen3) through the official `openai` client:
usage agrees with the tokenizer, max_tokens, stop and seed behave, streaming equals
non-streaming. Usage: engine.py --base-url URL. Exits 1 on the first failure."""

import argparse
import json
import sys
import urllib.request

import openai


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    args = p.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="none")
    messages = [{"role": "user", "content": "Name three colours."}]
    # A random-weight model is sharply peaked: sample hot so seeds matter.
    kw = dict(model="m", messages=messages, max_tokens=8, temperature=1.5, extra_body={"ignore_eos": True})

    a = client.chat.completions.create(seed=11, **kw)
    b = client.chat.completions.create(seed=11, **kw)
    text = a.choices[0].message.content or ""
    print(json.dumps({"a": text, "usage": a.usage.model_dump()}))
    if a.choices[0].finish_reason != "length" or a.usage.completion_tokens != 8:
        fail(f"max_tokens=8 gave {a.usage.completion_tokens} tokens, finish {a.choices[0].finish_reason}")
    if text != (b.choices[0].message.content or ""):
        fail("the same seed gave different text")
    # A repeated long prompt finds its full blocks in the prefix cache, and says so.
    long = dict(kw, messages=[{"role": "user", "content": "Name the colours of " + "the rainbow, " * 40}])
    cold = client.chat.completions.create(seed=1, **long).usage
    warm = client.chat.completions.create(seed=1, **long).usage
    cached = warm.prompt_tokens_details.cached_tokens if warm.prompt_tokens_details else None
    if cold.prompt_tokens_details.cached_tokens != 0 or not cached or cached > warm.prompt_tokens:
        fail(f"a repeated {warm.prompt_tokens}-token prompt reports cached_tokens {cached} "
             f"(the first time {cold.prompt_tokens_details.cached_tokens})")
    others = [client.chat.completions.create(seed=s, **kw).choices[0].message.content for s in range(12, 20)]
    if all(o == text for o in others):
        fail(f"eight other seeds all gave {text!r}")

    # Usage agrees with the tokenizer: the server's own /tokenize of the same messages.
    base = args.base_url.rsplit("/v1", 1)[0]
    req = urllib.request.Request(base + "/tokenize", json.dumps({"messages": messages}).encode(),
                                 {"Content-Type": "application/json"})
    count = json.load(urllib.request.urlopen(req))["count"]
    if a.usage.prompt_tokens != count:
        fail(f"prompt_tokens {a.usage.prompt_tokens}, /tokenize counts {count}")
    detok = urllib.request.Request(base + "/detokenize", json.dumps({"tokens": [9707, 11, 1879]}).encode(),
                                   {"Content-Type": "application/json"})
    if json.load(urllib.request.urlopen(detok))["prompt"] != "Hello, world":
        fail("/detokenize")

    # Streaming gives the same text, a role first, and usage last.
    pieces, usage, role = [], None, None
    for chunk in client.chat.completions.create(seed=11, stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            role = role or ch.delta.role
            pieces.append(ch.delta.content or "")
    if "".join(pieces) != text or role != "assistant" or usage is None or usage.completion_tokens != 8:
        fail(f"streamed {''.join(pieces)!r} (role {role}, usage {usage}) vs {text!r}")

    # A stop string taken from the output ends it there.
    if len(text) >= 4:
        mid = len(text) // 2
        stop = text[mid:mid + 2]
        cut = text.index(stop)
        s = client.chat.completions.create(seed=11, stop=[stop], **kw)
        got = s.choices[0].message.content or ""
        if got != text[:cut] or s.choices[0].finish_reason != "stop":
            fail(f"stop {stop!r}: got {got!r} ({s.choices[0].finish_reason}), want {text[:cut]!r}")

    # Completions too.
    comp = client.completions.create(model="m", prompt="Hello", max_tokens=4, seed=3, extra_body={"ignore_eos": True})
    if comp.usage.completion_tokens != 4 or comp.usage.prompt_tokens != 1:
        fail(f"completions usage {comp.usage}")
    print("ok")


if __name__ == "__main__":
    main()
