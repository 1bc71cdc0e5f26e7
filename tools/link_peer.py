#!/usr/bin/env python3
"""A real Ableton Link peer for Convoy's tests: the `aalink` package (PyPI; its wheel bundles
Ableton's Link library) driven over stdin and reporting over stdout. Never linked into
Convoy: it runs as its own process, in the tests' network namespace.

Prints one JSON line every --every-ms: mono_ns (CLOCK_MONOTONIC, midpoint of the read),
beat, phase (in --quantum), tempo, playing, peers. Reads commands on stdin, one a line:
`tempo BPM`, `play`, `stop`, `quit`. Each command is echoed as {"did": ..., "mono_ns": ...}.
"""
import argparse
import asyncio
import json
import sys
import threading
import time

import aalink


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--quantum", type=float, default=4.0)
    ap.add_argument("--every-ms", type=float, default=10.0)
    args = ap.parse_args()

    async def run():
        loop = asyncio.get_running_loop()
        link = aalink.Link(args.bpm, loop)
        link.quantum = args.quantum
        link.start_stop_sync_enabled = True
        link.enabled = True
        cmds = asyncio.Queue()

        def reader():
            for line in sys.stdin:
                loop.call_soon_threadsafe(cmds.put_nowait, line.strip())
            loop.call_soon_threadsafe(cmds.put_nowait, "quit")

        threading.Thread(target=reader, daemon=True).start()
        out = sys.stdout
        while True:
            while not cmds.empty():
                c = cmds.get_nowait().split()
                if not c:
                    continue
                if c[0] == "quit":
                    link.enabled = False
                    return
                if c[0] == "tempo":
                    link.tempo = float(c[1])
                elif c[0] == "play":
                    link.playing = True
                elif c[0] == "stop":
                    link.playing = False
                print(json.dumps({"did": " ".join(c), "mono_ns": time.monotonic_ns()}), file=out)
            a = time.monotonic_ns()
            beat = link.beat
            b = time.monotonic_ns()
            print(json.dumps({
                "mono_ns": (a + b) // 2, "read_ns": b - a, "beat": beat, "phase": link.phase,
                "tempo": link.tempo, "playing": link.playing, "peers": link.num_peers,
            }), file=out, flush=True)
            await asyncio.sleep(args.every_ms / 1000.0)

    asyncio.run(run())


if __name__ == "__main__":
    main()
