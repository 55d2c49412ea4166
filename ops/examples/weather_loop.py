#!/usr/bin/env python3
"""The interleaved-thinking weather loop against a braid server, with the official
`openai` client: round 1 reasons and calls get_weather; the tool result goes back with
the assistant turn (its reasoning_content included); round 2 reasons and answers.

    .fixtures/venv/bin/python ops/examples/weather_loop.py --base-url http://127.0.0.1:8000/v1
"""

import argparse
import json

import openai

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def show(round_no, message, finish):
    print(f"--- round {round_no} (finish_reason: {finish})")
    print("reasoning_content:", json.dumps(getattr(message, "reasoning_content", None)))
    for call in message.tool_calls or []:
        print(f"tool_call: {call.id} {call.function.name}({call.function.arguments})")
    print("content:", json.dumps(message.content))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None)
    args = p.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="none")
    model = args.model or client.models.list().data[0].id
    messages = [{"role": "user", "content": "What's the weather like in Paris?"}]
    r1 = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    m1 = r1.choices[0].message
    show(1, m1, r1.choices[0].finish_reason)
    call = m1.tool_calls[0]
    messages.append({"role": "assistant", "content": m1.content, "reasoning_content": getattr(m1, "reasoning_content", None),
                     "tool_calls": [{"id": call.id, "type": "function",
                                     "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp": 21, "sky": "sunny"})})
    r2 = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    show(2, r2.choices[0].message, r2.choices[0].finish_reason)
    print("usage:", r2.usage.model_dump_json())


if __name__ == "__main__":
    main()
