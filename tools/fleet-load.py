#!/usr/bin/env python3
"""CPU and fleet messages per node per second, for N `convoy node` processes on one machine.

    tools/fleet-load.py [--nodes 20] [--seconds 40] [--group-size 0] [--convoy PATH]

Every node runs `sync.role=auto` on its own loopback address (127.0.0.k), heartbeats go to
every other node's membership port (unicast stand-in for the broadcast), and the fleet
elects its leader and plays the position pilot on a null sink. After a warm-up of a third
of the run, the tool samples each process's CPU time (/proc/PID/stat, user + system) and
the node's own counters from its status lines over the rest of the run, and prints, per
role: CPU as % of one core of this machine, and datagrams per second sent and received by
kind (heartbeats; SNTP requests made or answered; timelines received or sent). CPU time
is what the process consumed, not wall time, so a busy machine inflates it little.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

KEY = "6b0e8f3c2a1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Node:
    def __init__(self, convoy, k, n, base, group_size):
        port = base + 10 * k
        fleet = ",".join(f'"127.0.0.{j + 1}:{base + 10 * j + 2}"' for j in range(n))
        sets = [
            f"node.id=bike-{k + 1:02}",
            "sync.role=auto",
            f"sync.bind=127.0.0.{k + 1}",
            f"sync.osc_port={port}",
            f"sync.sntp_port={port + 1}",
            f"fleet.port={port + 2}",
            f"fleet.priority={200 - k}",
            "fleet.mdns=false",
            f"fleet.broadcast=[{fleet}]",
            f"fleet.group_size={group_size}",
            "audio.sink=null",
        ]
        cmd = [convoy]
        for s in sets:
            cmd += ["--set", s]
        cmd += ["--log", "error", "node", "--track", "pilot", "--status-every", "1"]
        env = dict(os.environ, CONVOY_KEY=KEY)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def last(self):
        return self.lines[-1] if self.lines else None


def counters(v):
    f = v.get("fleet") or {}
    return {
        "hb_sent": f.get("heartbeats_sent", 0),
        "hb_recv": f.get("heartbeats_received", 0),
        "sntp_asked": v.get("sntp_ok", 0) + v.get("sntp_failed", 0),
        "sntp_served": v.get("sntp_served", 0),
        "tl_recv": v.get("timelines", 0),
        "tl_sent": v.get("timelines_sent", 0),
    }


def role(v):
    if v["role"] == "leader":
        return "leader"
    if (v.get("fleet") or {}).get("publishes"):
        return "sub-leader"
    return v["role"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--group-size", type=int, default=0)
    ap.add_argument("--base-port", type=int, default=40_000)
    ap.add_argument("--convoy", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "convoy"))
    a = ap.parse_args()
    nodes = [Node(a.convoy, k, a.nodes, a.base_port, a.group_size) for k in range(a.nodes)]
    try:
        time.sleep(a.seconds / 3)
        t0 = time.monotonic()
        start = [(cpu_s(n.proc.pid), n.last()) for n in nodes]
        time.sleep(a.seconds * 2 / 3)
        dt = time.monotonic() - t0
        rows = []
        for n, (c0, v0) in zip(nodes, start):
            v1 = n.last()
            if v0 is None or v1 is None or n.proc.poll() is not None:
                sys.exit(f"a node stopped or printed nothing: {v1}")
            d0, d1 = counters(v0), counters(v1)
            span = (v1["mono_ns"] - v0["mono_ns"]) / 1e9
            rate = {k: (d1[k] - d0[k]) / span for k in d0}
            rows.append((role(v1), v1["node"], 100 * (cpu_s(n.proc.pid) - c0) / dt, rate))
    finally:
        for n in nodes:
            n.proc.terminate()
        for n in nodes:
            n.proc.wait()
    leaders = {r[0] for r in rows}
    print(f"{a.nodes} nodes, group size {a.group_size}, {dt:.0f} s measured; roles: "
          f"{', '.join(sorted(leaders))}")
    print("| role | nodes | CPU % of one core (mean / max) | heartbeats sent / received per s "
          "| SNTP asked / answered per s | timelines received / sent per s | all datagrams per s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    out = []
    for r in ["leader", "sub-leader", "follower", "solo"]:
        sel = [x for x in rows if x[0] == r]
        if not sel:
            continue
        mean = lambda k: sum(x[3][k] for x in sel) / len(sel)  # noqa: E731
        cpu = [x[2] for x in sel]
        total = (mean("hb_sent") + mean("hb_recv") + 2 * mean("sntp_asked")
                 + 2 * mean("sntp_served") + mean("tl_recv") + mean("tl_sent"))
        print(f"| {r} | {len(sel)} | {sum(cpu) / len(cpu):.2f} / {max(cpu):.2f} "
              f"| {mean('hb_sent'):.1f} / {mean('hb_recv'):.1f} "
              f"| {mean('sntp_asked'):.1f} / {mean('sntp_served'):.1f} "
              f"| {mean('tl_recv'):.1f} / {mean('tl_sent'):.1f} | {total:.0f} |")
        out.append({"role": r, "nodes": len(sel), "cpu_mean_pct": sum(cpu) / len(cpu),
                    "cpu_max_pct": max(cpu), "datagrams_per_s": total})
    print("(SNTP counts twice: a request and its answer.)")
    json.dump(out, open(os.path.join(tempfile.gettempdir(), "fleet-load.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
