#!/usr/bin/env python3
"""Clients that leave: opens N streaming chat requests at once (ignore_eos, a long
max_tokens), reads each one's first SSE event and hangs up; KEEP of them read to the
end instead. Prints how many hung up and how many finished.
Usage: hangups.py --port P --streams N [--keep K] [--max-tokens M]"""

import argparse
import asyncio
import json


async def one(port, body, keep):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return "ended"
        if line.startswith(b"data:"):
            break
    if not keep:
        writer.transport.abort()
        return "hung up"
    while await reader.read(65536):
        pass
    writer.close()
    return "finished"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--streams", type=int, required=True)
    p.add_argument("--keep", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=1900)
    args = p.parse_args()
    body = {"messages": [{"role": "user", "content": "go on forever"}], "stream": True,
            "max_tokens": args.max_tokens, "ignore_eos": True}
    outcomes = await asyncio.gather(*(one(args.port, body, i < args.keep) for i in range(args.streams)))
    print(json.dumps({o: outcomes.count(o) for o in set(outcomes)}))


asyncio.run(main())
