#!/usr/bin/env python3
"""The interleaved-thinking weather loop (vLLM's example), driven through braid with the
official `openai` client: round 1 reasoning + a tool call; the client appends the
assistant turn (with or without its reasoning) and the tool result; round 2 reasoning +
answer. The replay executor behind braid answers round 2 with WITH-REASONING when the
prompt braid rendered holds round 1's reasoning verbatim, else WITHOUT-REASONING.

Usage: interleaved.py --base-url URL --expect with|without [--stream] [--drop-reasoning]
                      [--kwargs JSON] [--reasoning TEXT] [--seed-client]
                      [--round2-base-url URL] [--save FILE | --resume FILE]

--seed-client (with --stream) behaves as the seeds' client code does (SiliconFlow's and
MyTokenGate's interleaved-thinking guides): it sends the streamed `delta.tool_calls`
fragments back as the assistant's `tool_calls`, unmerged, and adds fields LiteLLM
forwards (`prompt_cache_key`, `web_search_options`).
--save FILE stops after round 1, writing the conversation so far (round 2's messages) to
FILE; --resume FILE starts from such a file and runs round 2 only: a conversation can
outlive the ingress (or nats-server) that served its first round.
Prints one JSON line per round; exits 1 on the first unmet expectation."""

import argparse
import json
import sys

import openai

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def extra(obj, name):
    value = getattr(obj, name, None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name)
    return value


def ask(client, messages, stream, kwargs, seed_client=False):
    extra_body = {"chat_template_kwargs": kwargs}
    if seed_client:
        extra_body.update(prompt_cache_key="conversation-1", web_search_options={})
    body = dict(model="m", messages=messages, tools=TOOLS, extra_body=extra_body)
    if not stream:
        r = client.chat.completions.create(**body)
        m = r.choices[0].message
        calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in (m.tool_calls or [])]
        return {"reasoning": extra(m, "reasoning_content") or "", "content": m.content or "", "calls": calls,
                "finish": r.choices[0].finish_reason, "usage": r.usage.model_dump()}
    out = {"reasoning": "", "content": "", "calls": [], "fragments": [], "finish": None, "usage": None, "role": None}
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **body):
        if chunk.usage is not None:
            out["usage"] = chunk.usage.model_dump()
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        d = choice.delta
        out["role"] = out["role"] or d.role
        out["reasoning"] += extra(d, "reasoning_content") or ""
        out["content"] += d.content or ""
        for tc in d.tool_calls or []:
            out["fragments"].append(tc.model_dump(exclude_none=True))
            while len(out["calls"]) <= tc.index:
                out["calls"].append({"id": None, "name": "", "arguments": ""})
            c = out["calls"][tc.index]
            c["id"] = c["id"] or tc.id
            if tc.function and tc.function.name:
                c["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                c["arguments"] += tc.function.arguments
        if choice.finish_reason:
            out["finish"] = choice.finish_reason
    if out["role"] != "assistant":
        fail(f"the first streamed delta carries no assistant role: {out}")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--expect", choices=["with", "without"], required=True)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--drop-reasoning", action="store_true")
    p.add_argument("--kwargs", default="{}")
    p.add_argument("--reasoning", required=True, help="round 1's reasoning, as the recording has it")
    p.add_argument("--seed-client", action="store_true")
    p.add_argument("--round2-base-url", help="send round 2 here (another ingress) instead")
    p.add_argument("--save", help="stop after round 1, writing round 2's messages here")
    p.add_argument("--resume", help="run round 2 only, on the messages --save wrote")
    args = p.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="none")
    kwargs = json.loads(args.kwargs)
    if args.resume:
        with open(args.resume) as f:
            messages = json.load(f)
    else:
        messages = round1(client, args, kwargs)
        if args.save:
            with open(args.save, "w") as f:
                json.dump(messages, f)
            return
    if args.round2_base_url:
        client = openai.OpenAI(base_url=args.round2_base_url, api_key="none")
    r2 = ask(client, messages, args.stream, kwargs, args.seed_client)
    print(json.dumps({"round": 2, **r2}))
    want = "WITH-REASONING" if args.expect == "with" else "WITHOUT-REASONING"
    if want not in r2["content"]:
        fail(f"round 2 answered {r2['content']!r}; expected {want}")
    if r2["calls"] or r2["finish"] != "stop":
        fail(f"round 2 should answer without calls: {r2}")


def round1(client, args, kwargs):
    """Round 1 and its checks; returns round 2's messages."""
    messages = [{"role": "user", "content": "What's the weather like in Paris?"}]
    r1 = ask(client, messages, args.stream, kwargs, args.seed_client)
    print(json.dumps({"round": 1, **r1}))
    if args.reasoning not in r1["reasoning"]:
        fail(f"round 1 reasoning {r1['reasoning']!r} lacks {args.reasoning!r}")
    if len(r1["calls"]) != 1 or r1["calls"][0]["name"] != "get_weather":
        fail(f"round 1 should call get_weather once: {r1['calls']}")
    if json.loads(r1["calls"][0]["arguments"]) != {"city": "Paris"}:
        fail(f"round 1 arguments: {r1['calls'][0]['arguments']}")
    if r1["finish"] != "tool_calls":
        fail(f"round 1 finish_reason {r1['finish']}")
    u = r1["usage"]
    if not u or u["completion_tokens_details"]["reasoning_tokens"] <= 0 or u["completion_tokens"] <= u["completion_tokens_details"]["reasoning_tokens"]:
        fail(f"round 1 usage: {u}")
    call = r1["calls"][0]
    assistant = {"role": "assistant", "content": r1["content"] or None, "tool_calls": [
        {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]}
    if args.seed_client:
        if len(r1["fragments"]) < 2:
            fail(f"round 1 streamed its call in one fragment; nothing to merge: {r1['fragments']}")
        assistant["tool_calls"] = r1["fragments"]
    if not args.drop_reasoning:
        assistant["reasoning_content"] = r1["reasoning"]
    messages += [assistant, {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21, "sky": "sunny"}'}]
    return messages


if __name__ == "__main__":
    main()
