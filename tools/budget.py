#!/usr/bin/env python3
"""Resource budget of a Convoy node (run by tools/budget.sh; docs/pi.md explains the method).

Starts a leader and a follower, `convoy node` exactly as today, on 127.0.0.1 with virtual
sinks in real time (fast = false), and measures each process:

- startup to playing: from spawning the process to the first status line whose
  `position_s` is > 0 (status every 50 ms; the leader's `--start-in` scheduled start is
  part of it, as it is on a bike);
- peak RSS: `ru_maxrss` of the process from wait4() (native run);
- instructions per second: the whole process under qemu-aarch64 with the counting plugin
  (tools/qemu-insn), divided by its wall time, and that as a share of one Pi Zero 2 W
  core (1 GHz Cortex-A53 at an assumed IPC).

Figures go to stdout as a table and, with --json, to a file. Standard library only.
"""

import argparse
import json
import os
import re
import socket
import secrets
import subprocess
import sys
import threading
import time

# What every node runs with. A feature the lead wires into `convoy node` later (LED
# simulator, web server, OSC control) is one more entry here, or `--set` on the command line.
COMMON_SETS = [
    "audio.sink=virtual",
    "audio.virtual.fast=false",
    "sync.bind=127.0.0.1",
]


def free_port():
    """A UDP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_commands(binary, prefix, track, seconds, status_every, extra_sets):
    """argv of the leader and the follower."""
    osc, sntp = free_port(), free_port()
    sets = COMMON_SETS + list(extra_sets)
    roles = {
        "leader": ["sync.role=leader", f"sync.osc_port={osc}", f"sync.sntp_port={sntp}"],
        "follower": [
            "sync.role=follower",
            f"sync.leader=127.0.0.1:{osc}",
            f"sync.sntp_port={sntp}",
            "node.id=follower",
        ],
    }
    commands = {}
    for role, role_sets in roles.items():
        argv = list(prefix) + [binary, "--log", "warn"]
        for s in sets + role_sets:
            argv += ["--set", s]
        argv += ["node", "--track", track, "--seconds", str(seconds),
                 "--status-every", str(status_every)]
        commands[role] = argv
    return commands


FLEET_KEY = secrets.token_hex(32)


class Node:
    """One running node: its status lines are read as they come, with arrival times."""

    def __init__(self, role, argv, stderr_path):
        self.role = role
        self.stderr = open(stderr_path, "w")
        self.started = time.monotonic()
        # Fleet roles need the pre-shared key: one fresh key per run, as on a real fleet
        # (every bike the same key), given through the environment, never on a command line.
        env = dict(os.environ, CONVOY_KEY=FLEET_KEY)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, env=env)
        self.playing_after_s = None
        self.last = None
        self.lines = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.monotonic()
            try:
                status = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.lines += 1
            self.last = status
            pos = status.get("position_s")
            if self.playing_after_s is None and pos is not None and pos > 0:
                self.playing_after_s = now - self.started

    def wait(self, timeout):
        """Wait for exit: (exit status, wall seconds, peak RSS in KiB)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                wall = time.monotonic() - self.started
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.reader.join(timeout=5)
                self.stderr.close()
                return self.proc.returncode, wall, usage.ru_maxrss
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"{self.role} did not exit within {timeout:.0f} s")
            time.sleep(0.05)


def run_pair(commands, seconds, workdir, tag):
    """Start the leader, then the follower; wait for both. Returns per-role figures."""
    nodes = {}
    for role, argv in commands.items():
        nodes[role] = Node(role, argv, os.path.join(workdir, f"{tag}-{role}.stderr"))
    results = {}
    for role, node in nodes.items():
        code, wall, rss_kib = node.wait(timeout=seconds * 3 + 60)
        if code != 0:
            err = open(os.path.join(workdir, f"{tag}-{role}.stderr")).read()[-2000:]
            raise RuntimeError(f"{tag} {role} exited with status {code}:\n{err}")
        if node.playing_after_s is None:
            raise RuntimeError(f"{tag} {role} never reported a position > 0")
        last = node.last or {}
        results[role] = {
            "wall_s": wall,
            "rss_mib": rss_kib / 1024,
            "startup_s": node.playing_after_s,
            "underruns": last.get("underruns"),
            "locked": (last.get("lock") or {}).get("locked"),
            "status_lines": node.lines,
        }
    return results


def instructions(workdir, tag, role):
    """The plugin's count from the qemu log of one node."""
    text = open(os.path.join(workdir, f"{tag}-{role}.stderr")).read()
    found = re.findall(r"^insns: (\d+)$", text, re.M)
    if not found:
        raise RuntimeError(f"no instruction count in the qemu log of the {role}")
    return int(found[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--native", required=True, help="convoy built for this machine")
    ap.add_argument("--aarch64", help="convoy built for aarch64; no qemu run without it")
    ap.add_argument("--plugin", help="the qemu instruction-counting plugin (insn.so)")
    ap.add_argument("--sysroot", default="/usr/aarch64-linux-gnu")
    ap.add_argument("--track", default="demo")
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--ipc", type=float, default=0.7)
    ap.add_argument("--hz", type=float, default=1e9, help="Pi Zero 2 W core clock")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="extra config override for both nodes (repeatable)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)

    print(f"budget: native run, {a.seconds:.0f} s, leader + follower, track {a.track}",
          file=sys.stderr)
    native = run_pair(node_commands(a.native, [], a.track, a.seconds, 0.05, a.sets),
                      a.seconds, a.workdir, "native")
    emulated = None
    if a.aarch64 and a.plugin:
        print(f"budget: qemu-aarch64 run with the instruction counter, {a.seconds:.0f} s",
              file=sys.stderr)
        # The cross libc first; the cpal build's libasound comes from multiarch.
        libs = f"{a.sysroot}/lib:/usr/lib/aarch64-linux-gnu"
        qemu = ["qemu-aarch64", "-L", a.sysroot, "-E", f"LD_LIBRARY_PATH={libs}",
                "-plugin", a.plugin, "-d", "plugin"]
        emulated = run_pair(node_commands(a.aarch64, qemu, a.track, a.seconds, 1.0, a.sets),
                            a.seconds, a.workdir, "qemu")
        for role, r in emulated.items():
            n = instructions(a.workdir, "qemu", role)
            r["instructions"] = n
            r["insn_per_s"] = n / r["wall_s"]
            r["pi_core_pct"] = 100 * r["insn_per_s"] / (a.hz * a.ipc)

    report = {
        "track": a.track, "seconds": a.seconds, "ipc": a.ipc, "core_hz": a.hz,
        "sets": COMMON_SETS + a.sets, "native": native, "qemu_aarch64": emulated,
    }
    print(f"\n{'node':<9} {'startup s':>9} {'peak RSS MiB':>12} {'underruns':>9} "
          f"{'aarch64 Minsn/s':>15} {'Pi core %':>9} {'startup s (qemu)':>16}")
    for role in ("leader", "follower"):
        r = native[role]
        q = (emulated or {}).get(role, {})
        mips = f"{q['insn_per_s'] / 1e6:.1f}" if q else "-"
        pct = f"{q['pi_core_pct']:.1f}" if q else "-"
        qs = f"{q['startup_s']:.2f}" if q else "-"
        print(f"{role:<9} {r['startup_s']:>9.2f} {r['rss_mib']:>12.1f} {r['underruns']!s:>9} "
              f"{mips:>15} {pct:>9} {qs:>16}")
    print(f"(Pi core % = aarch64 instructions per second / ({a.hz / 1e9:g} GHz x IPC {a.ipc}); "
          f"targets: < 25 %, < 40 MiB, startup < 2 s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        print(f"budget: {e}", file=sys.stderr)
        sys.exit(1)
