#!/usr/bin/env python3
"""The interleaved-thinking weather loop through braid's OpenAI Responses API, driven with
the official `openai` Python SDK: round 1 reasons and calls get_weather; the client runs
the tool; round 2 reasons and answers. Round 2 either sends every output item back
verbatim (`store: false`, the reasoning item's `encrypted_content` included, as Codex
does) or only the tool output with `previous_response_id` (`store: true`). The replay
executor behind braid answers round 2 with WITH-REASONING only when the prompt braid
rendered holds round 1's reasoning.

Usage: responses_loop.py --base-url URL --reasoning TEXT [--stream] [--stored]
                         [--strip-reasoning-text] [--expect with|without]

--strip-reasoning-text sends the reasoning item back with `content: null`, so only its
`encrypted_content` carries the reasoning.
Prints one JSON line per round; exits 1 on the first unmet expectation."""

import argparse
import json
import sys

import openai

TOOLS = [{"type": "function", "name": "get_weather", "description": "Get the current weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
          "strict": False},
         {"type": "web_search"}]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def ask(client, args, **body):
    body.update(model="m", tools=TOOLS, reasoning={"summary": "auto"}, store=args.stored,
                include=["reasoning.encrypted_content"])
    if not args.stream:
        return client.responses.create(**body)
    kinds = []
    with client.responses.stream(**body) as stream:
        for event in stream:
            kinds.append(event.type)
        response = stream.get_final_response()
    for needed in ("response.created", "response.output_item.added", "response.output_item.done",
                   "response.completed"):
        if needed not in kinds:
            fail(f"the stream had no {needed} event: {kinds}")
    return response


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--reasoning", required=True)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--stored", action="store_true")
    p.add_argument("--strip-reasoning-text", action="store_true")
    p.add_argument("--expect", choices=["with", "without"], default="with")
    args = p.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="braid-test", max_retries=0)

    question = [{"role": "user", "content": "What's the weather like in Paris today?"}]
    r1 = ask(client, args, input=question, instructions="You are a weather assistant.")
    print(json.dumps({"round": 1, "status": r1.status, "output": [i.model_dump() for i in r1.output]}))
    if r1.status != "completed":
        fail(f"round 1 status {r1.status}")
    types = [i.type for i in r1.output]
    if types != ["reasoning", "function_call"]:
        fail(f"round 1 items {types}: reasoning, then the call")
    reasoning, call = r1.output
    if not reasoning.encrypted_content:
        fail("round 1's reasoning item has no encrypted_content")
    if not reasoning.summary or reasoning.summary[0].text.strip() != args.reasoning:
        fail(f"round 1 summary {reasoning.summary}")
    if call.name != "get_weather" or json.loads(call.arguments) != {"city": "Paris"}:
        fail(f"round 1 called {call.name}({call.arguments})")
    if r1.usage.output_tokens_details.reasoning_tokens <= 0:
        fail(f"round 1 usage {r1.usage}")
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Paris: 21 °C and sunny"}

    if args.stored:
        r2 = ask(client, args, input=[output], previous_response_id=r1.id)
        kept = client.responses.retrieve(r1.id)
        if kept.id != r1.id or [i.type for i in kept.output] != types:
            fail(f"GET /v1/responses/{r1.id} gave {kept}")
    else:
        items = [i.model_dump(exclude_none=True) for i in r1.output]
        if args.strip_reasoning_text:
            items[0]["content"] = None
        r2 = ask(client, args, input=question + items + [output])
    text = r2.output_text
    print(json.dumps({"round": 2, "status": r2.status, "answer": text}))
    if r2.status != "completed":
        fail(f"round 2 status {r2.status}")
    marker = "WITH-REASONING" if args.expect == "with" else "WITHOUT-REASONING"
    if not text.startswith(marker):
        fail(f"round 2 answered {text!r}; expected {marker} (what the model saw of round 1's reasoning)")
    if args.stored:
        client.responses.delete(r1.id)
        try:
            client.responses.retrieve(r1.id)
            fail(f"{r1.id} is still kept after DELETE")
        except openai.NotFoundError:
            pass


if __name__ == "__main__":
    main()
