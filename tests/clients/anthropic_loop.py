#!/usr/bin/env python3
"""The interleaved-thinking weather loop through braid's Anthropic Messages API, driven
with the official `anthropic` Python SDK as an agent drives it: round 1 thinks and calls
get_weather; the client runs the tool and sends the assistant's content blocks back
verbatim (thinking blocks with their signatures) with the tool result; round 2 thinks
and answers. The replay executor behind braid answers round 2 with WITH-REASONING only
when the prompt braid rendered holds round 1's reasoning, so the answer proves what the
model saw.

Usage: anthropic_loop.py --base-url URL --reasoning TEXT [--stream] [--omitted]
                         [--tamper] [--expect with|without]

--omitted asks for `display: "omitted"` (thinking text withheld; the signature alone
carries it back). --tamper changes the signature before sending it back.
Prints one JSON line per round; exits 1 on the first unmet expectation."""

import argparse
import json
import sys

import anthropic

TOOLS = [{
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                     "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def get_weather(city):
    """The tool, run for real by the client."""
    return f"{city}: 21 °C and sunny"


def ask(client, messages, args):
    thinking = {"type": "adaptive", "display": "omitted" if args.omitted else "summarized"}
    body = dict(model="m", max_tokens=32000, system="You are a weather assistant.", messages=messages,
                tools=TOOLS, thinking=thinking)
    if args.stream:
        kinds = []
        with client.messages.stream(**body) as stream:
            for event in stream:
                kinds.append(event.type)
            message = stream.get_final_message()
        for needed in ("message_start", "content_block_start", "content_block_delta", "content_block_stop",
                       "message_delta", "message_stop"):
            if needed not in kinds:
                fail(f"the stream had no {needed} event: {kinds}")
        return message
    return client.messages.create(**body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--reasoning", required=True)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--omitted", action="store_true")
    p.add_argument("--tamper", action="store_true")
    p.add_argument("--expect", choices=["with", "without"], default="with")
    args = p.parse_args()
    client = anthropic.Anthropic(base_url=args.base_url, api_key="braid-test", max_retries=0, timeout=60)

    messages = [{"role": "user", "content": "What's the weather like in Paris today?"}]
    r1 = ask(client, messages, args)
    print(json.dumps({"round": 1, "stop_reason": r1.stop_reason, "content": [b.model_dump() for b in r1.content]}))
    if r1.stop_reason != "tool_use":
        fail(f"round 1 stop_reason {r1.stop_reason}")
    types = [b.type for b in r1.content]
    if types[0] != "thinking" or "tool_use" not in types:
        fail(f"round 1 blocks {types}: thinking first, then a tool_use")
    thinking = r1.content[0]
    if not thinking.signature:
        fail("round 1's thinking block has no signature")
    shown = "" if args.omitted else args.reasoning
    if thinking.thinking.strip() != shown:
        fail(f"round 1 thinking {thinking.thinking!r}, expected {shown!r}")
    if r1.usage.input_tokens <= 0 or r1.usage.output_tokens <= 0:
        fail(f"round 1 usage {r1.usage}")

    # The agent's turn: the assistant's blocks back verbatim, the tool really run.
    assistant = [b.model_dump(exclude_none=True) for b in r1.content]
    if args.tamper:
        sig = assistant[0]["signature"]
        assistant[0]["signature"] = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    results = []
    for block in r1.content:
        if block.type == "tool_use":
            if block.name != "get_weather" or block.input != {"city": "Paris"}:
                fail(f"round 1 called {block.name}({block.input})")
            results.append({"type": "tool_result", "tool_use_id": block.id, "content": get_weather(**block.input)})
    messages += [{"role": "assistant", "content": assistant}, {"role": "user", "content": results}]

    r2 = ask(client, messages, args)
    text = "".join(b.text for b in r2.content if b.type == "text")
    print(json.dumps({"round": 2, "stop_reason": r2.stop_reason, "answer": text}))
    if r2.stop_reason != "end_turn":
        fail(f"round 2 stop_reason {r2.stop_reason}")
    if [b.type for b in r2.content] != ["thinking", "text"]:
        fail(f"round 2 blocks {[b.type for b in r2.content]}")
    marker = "WITH-REASONING" if args.expect == "with" else "WITHOUT-REASONING"
    if not text.startswith(marker):
        fail(f"round 2 answered {text!r}; expected {marker} (what the model saw of round 1's reasoning)")
    if "21 °C" not in text:
        fail(f"round 2 answer {text!r} lacks the tool's result")


if __name__ == "__main__":
    main()
