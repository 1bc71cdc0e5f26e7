#!/usr/bin/env python3
"""Resource budget of a Convoy node (run by tools/budget.sh; docs/pi.md explains the method).

Starts a leader and one or more followers (`--followers N`), `convoy node` exactly as
today, on loopback with virtual sinks in real time (fast = false), and measures each
process. With `--profile P` every follower reaches the leader through its own pair of
impairment relays (`convoy tool impair --profile P`, native, one for the timeline and
one for SNTP, each follower at its own address 127.3.0.k and reaching the leader from
127.2.0.k, so that the leader's per-address limits see one bike each), so the figures include what
a harsh network costs: retries, the clock filter's bigger hull, resubscriptions. Under
qemu only the leader and the first follower are emulated (the others run native), so the
leader's count is what serving N followers costs it.

- startup to playing: from spawning the process to the first status line whose
  `position_s` is > 0 (status every 50 ms; the leader's `--start-in` scheduled start is
  part of it, as it is on a bike);
- peak RSS: `ru_maxrss` of the process from wait4() (native run);
- CPU: user + system time of the process from wait4() over its wall time (native run, this
  machine's cores: a cross-check of the instruction count, not a Pi figure);
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


def node_commands(binary, prefix, track, seconds, status_every, extra_sets, ports,
                  followers=1, relays=None, native_binary=None):
    """argv of the leader (timeline on `ports[0]`, SNTP on `ports[1]`) and the followers
    ("follower", "follower-2", ...). `relays` maps a follower to the (osc, sntp) addresses
    it reaches the leader through; followers after the first run `native_binary` without
    `prefix` when given (see the module doc)."""
    osc, sntp = ports
    sets = COMMON_SETS + list(extra_sets)
    roles = {"leader": ["sync.role=leader", f"sync.osc_port={osc}", f"sync.sntp_port={sntp}"]}
    for k in range(1, followers + 1):
        name = "follower" if k == 1 else f"follower-{k}"
        via_osc, via_sntp = (relays or {}).get(name, (f"127.0.0.1:{osc}", None))
        role_sets = ["sync.role=follower", f"sync.leader={via_osc}", f"node.id={name}"]
        role_sets.append(f"sync.sntp_port={via_sntp.rsplit(':', 1)[1] if via_sntp else sntp}")
        roles[name] = role_sets
    commands = {}
    for role, role_sets in roles.items():
        emulated = role in ("leader", "follower") or native_binary is None
        argv = (list(prefix) + [binary] if emulated else [native_binary]) + ["--log", "warn"]
        for s in sets + role_sets:
            argv += ["--set", s]
        argv += ["node", "--track", track, "--seconds", str(seconds),
                 "--status-every", str(status_every)]
        commands[role] = argv
    return commands


class Relays:
    """Impairment relays between every follower and the leader (`convoy tool impair`)."""

    def __init__(self, native, profile, followers, osc, sntp, workdir, tag):
        self.procs = []
        self.addresses = {}
        for k in range(1, followers + 1):
            name = "follower" if k == 1 else f"follower-{k}"
            host = f"127.3.0.{k}"
            pair = []
            for i, upstream in enumerate((osc, sntp)):
                port = free_port()
                log = open(os.path.join(workdir, f"{tag}-relay-{name}-{i}.stderr"), "w")
                self.procs.append(subprocess.Popen(
                    [native, "--log", "warn", "tool", "impair", f"{host}:{port}",
                     f"127.0.0.1:{upstream}", "--profile", profile, "--seed", str(10 * k + i + 1),
                     "--from", f"127.2.0.{k}"],
                    stdout=subprocess.DEVNULL, stderr=log))
                pair.append(f"{host}:{port}")
            self.addresses[name] = tuple(pair)
        time.sleep(0.3)
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"an impairment relay exited at once ({p.args})")

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


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
        """Wait for exit: (exit status, wall seconds, peak RSS in KiB, CPU seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                wall = time.monotonic() - self.started
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.reader.join(timeout=5)
                self.stderr.close()
                cpu = usage.ru_utime + usage.ru_stime
                return self.proc.returncode, wall, usage.ru_maxrss, cpu
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"{self.role} did not exit within {timeout:.0f} s")
            time.sleep(0.05)


def run_pair(commands, seconds, workdir, tag):
    """Start the leader, then the followers; wait for all. Returns per-role figures."""
    nodes = {}
    for role, argv in commands.items():
        nodes[role] = Node(role, argv, os.path.join(workdir, f"{tag}-{role}.stderr"))
    results = {}
    for role, node in nodes.items():
        code, wall, rss_kib, cpu_s = node.wait(timeout=seconds * 3 + 60)
        if code != 0:
            err = open(os.path.join(workdir, f"{tag}-{role}.stderr")).read()[-2000:]
            raise RuntimeError(f"{tag} {role} exited with status {code}:\n{err}")
        if node.playing_after_s is None:
            raise RuntimeError(f"{tag} {role} never reported a position > 0; its last status "
                               f"line: {json.dumps(node.last)}")
        last = node.last or {}
        results[role] = {
            "wall_s": wall,
            "cpu_pct": 100 * cpu_s / wall if wall > 0 else None,
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
    ap.add_argument("--followers", type=int, default=1, help="followers of the one leader")
    ap.add_argument("--profile", help="impairment profile between each follower and the "
                    "leader (convoy tool impair --profile; needs the native build's rig feature)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)

    who = f"leader + {a.followers} follower{'s' if a.followers > 1 else ''}"
    net = f", network profile {a.profile}" if a.profile else ", no impairment"
    print(f"budget: native run, {a.seconds:.0f} s, {who}, track {a.track}{net}",
          file=sys.stderr)

    def run(binary, prefix, status_every, tag, native_binary=None):
        ports = (free_port(), free_port())
        relays = None
        try:
            if a.profile:
                relays = Relays(a.native, a.profile, a.followers, *ports, a.workdir, tag)
            commands = node_commands(binary, prefix, a.track, a.seconds, status_every, a.sets,
                                     ports, a.followers, relays and relays.addresses,
                                     native_binary)
            return run_pair(commands, a.seconds, a.workdir, tag)
        finally:
            if relays:
                relays.stop()

    native = run(a.native, [], 0.05, "native")
    emulated = None
    if a.aarch64 and a.plugin:
        print(f"budget: qemu-aarch64 run with the instruction counter, {a.seconds:.0f} s",
              file=sys.stderr)
        # The cross libc first; the cpal build's libasound comes from multiarch.
        libs = f"{a.sysroot}/lib:/usr/lib/aarch64-linux-gnu"
        qemu = ["qemu-aarch64", "-L", a.sysroot, "-E", f"LD_LIBRARY_PATH={libs}",
                "-plugin", a.plugin, "-d", "plugin"]
        emulated = run(a.aarch64, qemu, 1.0, "qemu", native_binary=a.native)
        for role, r in emulated.items():
            if role not in ("leader", "follower"):
                continue  # native, not counted
            n = instructions(a.workdir, "qemu", role)
            r["instructions"] = n
            r["insn_per_s"] = n / r["wall_s"]
            r["pi_core_pct"] = 100 * r["insn_per_s"] / (a.hz * a.ipc)

    report = {
        "track": a.track, "seconds": a.seconds, "ipc": a.ipc, "core_hz": a.hz,
        "sets": COMMON_SETS + a.sets, "followers": a.followers, "profile": a.profile,
        "native": native, "qemu_aarch64": emulated,
    }
    print(f"\n{'node':<11} {'startup s':>9} {'peak RSS MiB':>12} {'CPU % (x86)':>11} "
          f"{'underruns':>9} {'locked':>6} {'aarch64 Minsn/s':>15} {'Pi core %':>9} "
          f"{'startup s (qemu)':>16}")
    for role, r in native.items():
        q = (emulated or {}).get(role, {})
        mips = f"{q['insn_per_s'] / 1e6:.1f}" if "insn_per_s" in q else "-"
        pct = f"{q['pi_core_pct']:.1f}" if "pi_core_pct" in q else "-"
        qs = f"{q['startup_s']:.2f}" if "insn_per_s" in q else "-"
        locked = "-" if role == "leader" else str(r["locked"])
        print(f"{role:<11} {r['startup_s']:>9.2f} {r['rss_mib']:>12.1f} {r['cpu_pct']:>11.2f} "
              f"{r['underruns']!s:>9} {locked:>6} {mips:>15} {pct:>9} {qs:>16}")
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
