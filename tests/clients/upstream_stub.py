#!/usr/bin/env python3
"""A tiny OpenAI-compatible upstream for braid's upstream-executor tests: `POST
/v1/completions` with `stream: true` replays recordings (JSONL `{"match", "output"}`,
matched against the prompt text) in small chunks, reports a usage it makes up
(`completion_tokens` = 700 + chunks, so a test can tell it from braid's own count), and
logs each stream's start (`start`) and end (`done` or `client gone`) to --log. Not an engine: random
weights cannot produce tool calls, so the multi-round loop needs recorded outputs.

Usage: upstream_stub.py --port P --recordings FILE --log FILE [--delay-ms 5]"""

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None


def pick(prompt):
    recs = [json.loads(l) for l in open(ARGS.recordings, encoding="utf-8") if l.strip()]
    for r in recs:
        if r.get("match") and r["match"] in prompt:
            return r["output"]
    for r in recs:
        if not r.get("match"):
            return r["output"]
    return ""


def log(line):
    with open(ARGS.log, "a", encoding="utf-8") as f:
        f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            self.send_response(400)
            msg = json.dumps({"error": {"message": "this stub reads text prompts"}}).encode()
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        out = pick(prompt)
        max_tokens = int(body.get("max_tokens") or 10**9)
        chunks = [out[i:i + 3] for i in range(0, len(out), 3)]
        finish = "stop"
        if len(chunks) > max_tokens:
            chunks, finish = chunks[:max_tokens], "length"
        log("start")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(obj):
            data = f"data: {obj}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            for i, c in enumerate(chunks):
                last = i == len(chunks) - 1
                send(json.dumps({"id": "cmpl-stub", "object": "text_completion", "choices": [
                    {"index": 0, "text": c, "finish_reason": finish if last else None}]}))
                time.sleep(ARGS.delay_ms / 1000)
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": 700 + len(chunks),
                     "total_tokens": 700 + len(chunks) + len(prompt.split())}
            send(json.dumps({"id": "cmpl-stub", "object": "text_completion", "choices": [], "usage": usage}))
            send("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            log(f"done {len(chunks)}")
        except (BrokenPipeError, ConnectionResetError):
            log("client gone")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--recordings", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--delay-ms", type=float, default=5)
    ARGS = p.parse_args()
    ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
