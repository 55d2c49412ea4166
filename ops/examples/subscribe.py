#!/usr/bin/env python3
"""Follow braid token streams on NATS: one JSON line per chunk.

Every request's output is published on `braid.out.<request id>` (16 hex digits) as
MessagePack; see "Subscribing to token streams" in the README for the schema. This
subscriber needs `nats-py` and `msgpack` (scripts/setup installs both into
.fixtures/venv):

    .fixtures/venv/bin/python ops/examples/subscribe.py --url nats://127.0.0.1:4222

Options: --subject (default braid.out.*, or braid.out.<id> for one request),
--requests N (exit after N requests ended), --creds FILE.
"""

import argparse
import asyncio
import json
import sys

import msgpack
import nats

SCHEMA_VERSION = 8
DELTAS = ("reasoning", "content", "tool_call_start", "tool_call_arguments",
          "tool_call_end", "tool_call_aborted", "fallback")
FIELDS = {
    "reasoning": ("text",), "content": ("text",),
    "tool_call_start": ("index", "id", "name"),
    "tool_call_arguments": ("index", "fragment"),
    "tool_call_end": ("index", "outcome"),
    "tool_call_aborted": ("index",),
    "fallback": ("reason", "text", "content"),
}


def variant(value):
    """An enum value as (name, fields): a bare name, [name, fields] or {name: fields}."""
    if isinstance(value, str):
        return value, []
    if isinstance(value, dict):
        (name, fields), = value.items()
    else:
        name, fields = value
    return name, fields if isinstance(fields, list) else [fields]


def chunk_to_json(subject, data):
    (version, request, seq, last, sent_ns), body = msgpack.unpackb(data, raw=False)
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema version {version}, this subscriber reads {SCHEMA_VERSION}")
    deltas, finish, usage = body
    out = {"request": subject.rsplit(".", 1)[-1], "seq": seq, "reasoning": "", "content": "",
           "tool_calls": [], "finish": None, "usage": None}
    for raw in deltas:
        name, fields = variant(raw)
        delta = dict(zip(FIELDS[name], fields))
        if name in ("reasoning", "content"):
            out[name] += delta["text"]
        elif name == "fallback" and delta["content"]:
            out["content"] += delta["text"]
        elif name.startswith("tool_call"):
            out["tool_calls"].append({"event": name, **delta})
    if finish is not None:
        name, fields = variant(finish)
        if name == "Failed":
            kind, stage, message, param = fields[0] if len(fields) == 1 else fields
            out["finish"] = {"error": message, "kind": kind, "stage": stage, "param": param}
        elif name == "StopSequence":
            out["finish"] = {"stop_sequence": fields[0]}
        else:
            out["finish"] = name.lower()
    if usage is not None:
        out["usage"] = dict(zip(("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens"), usage))
    return out, last


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--subject", default="braid.out.*")
    parser.add_argument("--requests", type=int, default=0, help="exit after this many requests ended")
    parser.add_argument("--creds", help="NATS credentials file")
    args = parser.parse_args()
    options = {"user_credentials": args.creds} if args.creds else {}
    nc = await nats.connect(args.url, **options)
    ended = 0
    done = asyncio.Event()

    async def on_message(msg):
        nonlocal ended
        try:
            chunk, last = chunk_to_json(msg.subject, msg.data)
        except Exception as e:  # a message this subscriber cannot read: say so, go on
            print(f"unreadable message on {msg.subject}: {e}", file=sys.stderr)
            return
        print(json.dumps(chunk), flush=True)
        if last:
            ended += 1
            if args.requests and ended >= args.requests:
                done.set()

    await nc.subscribe(args.subject, cb=on_message)
    print(f"subscribed to {args.subject}", file=sys.stderr, flush=True)
    await done.wait()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
