#!/usr/bin/env python3
"""braid in front of llama.cpp's OpenAI server (llama-cpp-python), through the official
`openai` client: usage agrees with the tokenizer, streaming equals non-streaming.
Usage: upstream_llama.py --base-url URL.
Exits 1 on the first failure."""

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
    client = openai.OpenAI(base_url=args.base_url, api_key="none", timeout=60)
    messages = [{"role": "user", "content": "Say something."}]
    kw = dict(model="m", messages=messages, max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**kw)
    text = whole.choices[0].message.content or ""
    base = args.base_url.rsplit("/v1", 1)[0]
    req = urllib.request.Request(base + "/tokenize", json.dumps({"messages": messages}).encode(),
                                 {"Content-Type": "application/json"})
    count = json.load(urllib.request.urlopen(req))["count"]
    u = whole.usage
    print(json.dumps({"text": text, "usage": u.model_dump(), "braid_prompt_tokens": count}))
    if u.prompt_tokens != count:
        fail(f"llama.cpp counted {u.prompt_tokens} prompt tokens, braid's tokenizer {count}")
    if u.completion_tokens != 8 or whole.choices[0].finish_reason != "length":
        fail(f"max_tokens=8 gave {u.completion_tokens} tokens ({whole.choices[0].finish_reason})")
    pieces, usage = [], None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        usage = chunk.usage or usage
        for ch in chunk.choices:
            pieces.append(ch.delta.content or "")
    if "".join(pieces) != text or usage is None or usage.completion_tokens != 8:
        fail(f"streamed {''.join(pieces)!r} ({usage}) vs {text!r}")

    print("ok")


if __name__ == "__main__":
    main()
