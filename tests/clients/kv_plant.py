#!/usr/bin/env python3
"""Overwrites every entry of a braid JetStream key-value bucket with a foreign value (as
another program sharing the NATS account might), read and written with nats-py; prints
how many entries it overwrote. Usage: kv_plant.py --url nats://… --bucket B --value TEXT"""

import argparse
import asyncio

import nats


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--value", required=True)
    args = p.parse_args()
    nc = await nats.connect(args.url)
    kv = await nc.jetstream().key_value(args.bucket)
    keys = await kv.keys()
    for k in keys:
        await kv.put(k, args.value.encode())
    print(len(keys))
    await nc.close()


asyncio.run(main())
