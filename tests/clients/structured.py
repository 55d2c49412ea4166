#!/usr/bin/env python3
"""Structured outputs on braid's real engine (a random-weight Qwen3, which writes noise
unless constrained) through the official `openai` client.

Modes:
  outputs  100 seeded requests each for a JSON schema, a regex and a choice, mixed with
           unconstrained ones in the same batches, whole and streamed; bad constraints
           get 400s that name the field.
  tools    tool_choice "required" and named calls in the server's tool format: always a
           parseable call of the right function with schema-valid arguments.
  budget   (a template that opens reasoning) thinking_token_budget ends reasoning at
           the budget, the reasoning is what the unconstrained model writes, the answer
           after it is valid; the server's default budget applies when a request has none.

Usage: structured.py MODE --base-url URL [--requests N] [--default-budget N].
Exits 1 on the first failure."""

import argparse
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai

OFF = {"chat_template_kwargs": {"enable_thinking": False}}

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 9999},
        "kind": {"enum": ["cat", "dog", "bird"]},
        "owner": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 8},
                "verified": {"type": "boolean"},
            },
            "required": ["name", "verified"],
            "additionalProperties": False,
        },
        "tags": {
            "type": "array",
            "items": {"enum": ["a", "b", "c"]},
            "minItems": 1,
            "maxItems": 3,
        },
        "rank": {"type": "integer", "minimum": -5, "maximum": 5},
    },
    "required": ["id", "kind", "owner", "tags"],
    "additionalProperties": False,
}
REGEX = r"[A-Z]{2}-[0-9]{3}( (ok|late))?"
CHOICES = ["red", "green", "blue", "ultraviolet"]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "minLength": 1, "maxLength": 12},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_table",
            "parameters": {
                "type": "object",
                "properties": {
                    "people": {"type": "integer", "minimum": 1, "maximum": 12},
                    "window": {"type": "boolean"},
                    "notes": {
                        "type": "object",
                        "properties": {"diet": {"enum": ["vegan", "none"]}},
                        "required": ["diet"],
                        "additionalProperties": False,
                    },
                },
                "required": ["people", "notes"],
            },
        },
    },
]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ask(client, seed, **kw):
    kw.setdefault("max_tokens", 200)
    kw.setdefault("temperature", 1.0)
    return client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": f"Request {seed}: answer in the required shape."}],
        seed=seed,
        **kw,
    )


def stream(client, content, **kw):
    """The chunks of one streamed request (seeded, thinking off)."""
    return client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}], max_tokens=200, stream=True, extra_body=OFF, **kw
    )


def check_json(text, where):
    try:
        value = json.loads(text)
        jsonschema.validate(value, SCHEMA)
    except Exception as e:  # noqa: BLE001 - any failure is the test's
        fail(f"{where}: {text!r} is not valid: {e}")


def outputs(client, n):
    def one(seed):
        a = ask(client, seed, response_format={"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA, "strict": True}}, extra_body=OFF)
        b = ask(client, seed, max_tokens=40, extra_body={"structured_outputs": {"regex": REGEX}, **OFF})
        c = ask(client, seed, max_tokens=20, extra_body={"structured_outputs": {"choice": CHOICES}, **OFF})
        # An unconstrained neighbour in the same batch.
        d = ask(client, seed, max_tokens=12, extra_body={"ignore_eos": True, **OFF})
        return seed, a, b, c, d

    with ThreadPoolExecutor(8) as pool:
        for seed, a, b, c, d in pool.map(one, range(n)):
            for r, kind in [(a, "json"), (b, "regex"), (c, "choice")]:
                if r.choices[0].finish_reason != "stop":
                    fail(f"seed {seed} {kind}: finish {r.choices[0].finish_reason}: {r.choices[0].message.content!r}")
                if r.choices[0].message.reasoning_content:
                    fail(f"seed {seed} {kind}: thinking is off but reasoning came back")
            check_json(a.choices[0].message.content, f"seed {seed} json")
            if not re.fullmatch(REGEX, b.choices[0].message.content or ""):
                fail(f"seed {seed}: {b.choices[0].message.content!r} does not match {REGEX}")
            if c.choices[0].message.content not in CHOICES:
                fail(f"seed {seed}: {c.choices[0].message.content!r} is not a choice")
            if d.usage.completion_tokens != 12:
                fail(f"seed {seed}: the unconstrained neighbour got {d.usage.completion_tokens} tokens")
    print(f"{n} JSON schema, {n} regex and {n} choice answers valid")

    # json_object: an object (free-form strings may run to max_tokens on noise, so a
    # cut-short answer need only start as one).
    for seed in range(5):
        obj = ask(client, seed, max_tokens=60, response_format={"type": "json_object"}, extra_body=OFF)
        text = obj.choices[0].message.content or ""
        if not text.startswith("{") or (obj.choices[0].finish_reason == "stop" and not isinstance(json.loads(text), dict)):
            fail(f"json_object gave {text!r}")

    # Streamed: the deltas join to a valid answer.
    chunks = stream(client, "stream it", seed=3, response_format={"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA}})
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    check_json(text, "streamed")

    # A schema given as a string, vLLM's way.
    s = ask(client, 5, extra_body={"structured_outputs": {"json": json.dumps(SCHEMA)}, **OFF})
    check_json(s.choices[0].message.content, "structured_outputs.json")

    # Bad constraints are 400s naming the field, and the server goes on.
    bad = [
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frob"}}}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"extra_body": {"structured_outputs": {"regex": "(unclosed"}}}, "structured_outputs"),
        ({"extra_body": {"structured_outputs": {"choice": []}}}, "structured_outputs"),
        ({"extra_body": {"structured_outputs": {"grammar": "start: nope"}}}, "structured_outputs"),
        ({"extra_body": {"structured_outputs": {"regex": "a", "choice": ["a"]}}}, "structured_outputs"),
        ({"extra_body": {"structured_outputs": {"yaml": "a"}}}, "structured_outputs"),
        ({"response_format": {"type": "json_object"}, "extra_body": {"structured_outputs": {"regex": "a"}}}, "structured_outputs"),
    ]
    for kw, param in bad:
        try:
            ask(client, 1, **kw)
            fail(f"{kw} was accepted")
        except openai.BadRequestError as e:
            body = e.body if isinstance(e.body, dict) else {}
            got = body.get("param") or body.get("error", {}).get("param")
            if got != param:
                fail(f"{kw}: param {got!r}, wanted {param!r} ({e})")
            print(f"400 {param}: {body.get('message') or body}")
    ok = ask(client, 2, extra_body={"structured_outputs": {"grammar": 'start: "yes" | "no"'}, **OFF})
    if ok.choices[0].message.content not in ("yes", "no"):
        fail(f"a Lark grammar gave {ok.choices[0].message.content!r}")


def check_call(r, want, where):
    msg = r.choices[0].message
    if r.choices[0].finish_reason != "tool_calls" or not msg.tool_calls:
        fail(f"{where}: no tool call (finish {r.choices[0].finish_reason}, content {msg.content!r})")
    for call in msg.tool_calls:
        name = call.function.name
        if want is not None and name != want:
            fail(f"{where}: called {name}, wanted {want}")
        try:
            args = json.loads(call.function.arguments)
            jsonschema.validate(args, PARAMS[name])
        except Exception as e:  # noqa: BLE001
            fail(f"{where}: {name}({call.function.arguments}) is not valid: {e}")
    return msg.tool_calls


def tools(client, n):
    def one(seed):
        named = "get_weather" if seed % 2 else "book_table"
        a = ask(client, seed, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, extra_body=OFF)
        b = ask(client, seed, tools=TOOLS, tool_choice={"type": "function", "function": {"name": named}}, extra_body=OFF)
        return seed, named, a, b

    with ThreadPoolExecutor(8) as pool:
        for seed, named, a, b in pool.map(one, range(n)):
            check_call(a, None, f"seed {seed} required")
            check_call(b, named, f"seed {seed} named {named}")
    # Streamed, the call arrives as deltas.
    chunks = stream(client, "stream a call", seed=1, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    args, names = "", set()
    for ch in chunks:
        for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
            names.add(tc.function.name) if tc.function and tc.function.name else None
            args += (tc.function.arguments or "") if tc.function else ""
    jsonschema.validate(json.loads(args), PARAMS["get_weather"])
    if names != {"get_weather"}:
        fail(f"streamed call names {names}")
    # A call cut short by max_tokens is no call: 422, as without enforcement.
    try:
        ask(client, 1, max_tokens=4, tools=TOOLS, tool_choice="required", extra_body=OFF)
        fail("a call cut short at 4 tokens was accepted")
    except openai.UnprocessableEntityError as e:
        print(f"422: {e}")
    print(f"{n} required and {n} named calls parsed, schema-valid")


def budget(client, default_budget):
    for seed in range(10):
        # Hot, so that the reasoning is varied noise rather than one repeated token.
        free_kw = dict(max_tokens=15, temperature=2.0, extra_body={"ignore_eos": True, "thinking_token_budget": 1000})
        # Once first, so that both compared runs below read the prompt from the prefix
        # cache alike (a cold prefill's logits differ in the last bits).
        ask(client, seed, **free_kw)
        kw = dict(max_tokens=300, temperature=2.0, response_format={"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA}})
        r = ask(client, seed, extra_body={"thinking_token_budget": 16}, **kw)
        u = r.usage
        msg = r.choices[0].message
        if u.completion_tokens_details.reasoning_tokens != 16:
            fail(f"seed {seed}: reasoning_tokens {u.completion_tokens_details.reasoning_tokens}, budget 16")
        if not msg.reasoning_content:
            fail(f"seed {seed}: no reasoning")
        check_json(msg.content, f"seed {seed} answer after the budget")
        # The reasoning is not constrained: the same seed without a constraint reasons the
        # same 15 tokens.
        free = ask(client, seed, **free_kw)
        if free.choices[0].message.reasoning_content != msg.reasoning_content:
            fail(f"seed {seed}: reasoning {msg.reasoning_content!r} differs from the free model's {free.choices[0].message.reasoning_content!r}")
    # The server's default budget.
    r = ask(client, 99, max_tokens=300, response_format={"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA}})
    got = r.usage.completion_tokens_details.reasoning_tokens
    if got != default_budget:
        fail(f"default budget {default_budget}, reasoning_tokens {got}")
    check_json(r.choices[0].message.content, "answer after the default budget")
    # A budget without a constraint: reasoning stops, the answer is free.
    r = ask(client, 4, max_tokens=30, extra_body={"thinking_token_budget": 5, "ignore_eos": True})
    if r.usage.completion_tokens_details.reasoning_tokens != 5 or r.usage.completion_tokens != 30:
        fail(f"budget 5 without a constraint: {r.usage}")
    print("budgets end reasoning exactly; answers after them are valid")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["outputs", "tools", "budget"])
    p.add_argument("--base-url", required=True)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--default-budget", type=int, default=0)
    args = p.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="none", max_retries=0, timeout=120)
    if args.mode == "outputs":
        outputs(client, args.requests)
    elif args.mode == "tools":
        tools(client, args.requests)
    else:
        budget(client, args.default_budget)
    print("ok")


if __name__ == "__main__":
    main()
