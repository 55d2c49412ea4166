#!/usr/bin/env python3
"""A connection burst: opens N connections at once, each sending one small chat request,
and counts how each ended: its HTTP status, or how the connection failed (refused,
reset, no answer within the time limit). Prints the counts as JSON.
Usage: burst.py --port P --connections N [--timeout S]"""

import argparse
import asyncio
import json

BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           + f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode() + BODY)


async def one(port, start):
    await start.wait()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await writer.drain()
        status = await reader.readline()
        while await reader.read(65536):
            pass
        writer.close()
        parts = status.split()
        return parts[1].decode() if len(parts) > 1 else "no status line"
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return f"error {e.errno}"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    start = asyncio.Event()
    tasks = [asyncio.ensure_future(one(args.port, start)) for _ in range(args.connections)]
    await asyncio.sleep(0)
    start.set()
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    outcomes = [t.result() for t in done] + ["no answer in time"] * len(pending)
    print(json.dumps({o: outcomes.count(o) for o in sorted(set(outcomes))}))


asyncio.run(main())
