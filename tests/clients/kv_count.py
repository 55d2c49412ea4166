#!/usr/bin/env python3
"""Prints how many entries a braid JetStream key-value bucket holds, read with nats-py:
the stream `KV_<bucket>`'s message count. Usage: kv_count.py --url nats://… --bucket B"""

import argparse
import asyncio

import nats


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--bucket", required=True)
    args = p.parse_args()
    nc = await nats.connect(args.url)
    info = await nc.jetstream().stream_info(f"KV_{args.bucket}")
    print(info.state.messages)
    await nc.close()


asyncio.run(main())
