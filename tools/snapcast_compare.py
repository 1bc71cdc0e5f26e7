#!/usr/bin/env python3
"""Snapcast and Convoy side by side through the same impairment (issue #23).

Run by tools/snapcast-compare.sh (as root: network namespaces and TUN devices). Python 3
standard library only.

Snapcast side: snapserver reads a position-coded raw source (s16le stereo 48 kHz, each
frame carries its own frame counter: left = counter >> 16, right = counter & 0xffff;
codec pcm, so lossless). One reference snapclient runs in the server's namespace
(unimpaired, like Convoy's leader); every other client runs in a namespace of its own
whose only route to the server is a TUN device relayed by `convoy tool impair-tun`, the
Rust `Model` of src/rig/impair.rs (one model per client, seeded like the scenario's
followers). Each client plays with `--player file` into a FIFO; the recorder timestamps
every 50 ms chunk the file player writes on CLOCK_MONOTONIC and decodes the frame it
starts with. Convoy side: `convoy tool scenario` with the same profile and seed, its
virtual sinks' recordings read by the same code.

Offsets are computed like src/rig/measure.rs (`position_at`, `offsets`, `lock_time`,
`quantile`, ported below): a player's position at an instant is interpolated between its
two neighbouring recorded points, and `client - reference` is sampled every 100 ms.

Subcommands: run (everything), gen (the source), record (the FIFO recorder), analyse
(recordings -> table), selftest (the pure parts).
"""

import argparse
import json
import math
import os
import select
import signal
import struct
import subprocess
import sys
import time

RATE = 48_000
FRAME_BYTES = 4  # s16le stereo
CHUNK_FRAMES = 2400  # snapclient 0.26 FilePlayer: 50 ms per write, fflush after each
CHUNK_BYTES = CHUNK_FRAMES * FRAME_BYTES
FIRST = 1 << 20  # first frame counter: silence (0, 0) never decodes as a position
STEP_NS = 100_000_000


# ---------------------------------------------------------------- position code (pure)

def encode(counter):
    """One frame: left = counter >> 16, right = counter & 0xffff (as s16le)."""
    return struct.pack("<HH", (counter >> 16) & 0x7FFF, counter & 0xFFFF)


def decode(frame):
    """The counter a frame carries, or None (silence, or not a coded frame)."""
    hi, lo = struct.unpack("<HH", frame)
    if hi < (FIRST >> 16) or hi > 0x7FFF:
        return None
    return (hi << 16) | lo


def chunk_start(chunk):
    """(position of the chunk's first frame, clean) for one file-player chunk.

    The position is the first decodable frame's counter minus its index (None: silence
    only). Clean: the chunk is one run of consecutive counters (no silence, no frame the
    client's soft sync inserted or dropped)."""
    n = len(chunk) // FRAME_BYTES
    first = None
    for i in range(n):
        c = decode(chunk[i * FRAME_BYTES:(i + 1) * FRAME_BYTES])
        if c is not None:
            first = (i, c)
            break
    if first is None:
        return None, False
    last = decode(chunk[(n - 1) * FRAME_BYTES:n * FRAME_BYTES])
    clean = first[0] == 0 and last is not None and last - first[1] == n - 1
    return first[1] - first[0], clean


def block(counter, frames):
    """`frames` coded frames from `counter` on (the source, and the tests)."""
    return b"".join(encode(counter + i) for i in range(frames))


# ------------------------------------------------------- src/rig/measure.rs, ported (pure)

class Trace:
    """A player's (t_ns, position frames) points, time-ordered (measure::Trace)."""

    def __init__(self, points, rate, max_dt_s=0.05):
        self.points = points
        self.rate = rate
        # measure.rs takes 0.05 s: Convoy's sink records every period (~5 ms). The
        # Snapcast file player writes every 50 ms, so its traces allow 0.15 s.
        self.max_dt_s = max_dt_s
        self.times = [p[0] for p in points]

    def span(self):
        if not self.points:
            return None
        return self.points[0][0], self.points[-1][0]

    def position_at(self, t):
        """Position at t, linear between the neighbours, if playback was continuous."""
        import bisect
        i = bisect.bisect_right(self.times, t)
        if i == 0 or i >= len(self.points):
            return None
        t0, f0 = self.points[i - 1]
        t1, f1 = self.points[i]
        dt = (t1 - t0) * 1e-9
        if dt <= 0.0 or dt > self.max_dt_s:
            return None
        expected = dt * self.rate
        if abs((f1 - f0) - expected) > expected * 0.01 + 2.0:
            return None  # a seek or a gap
        return f0 + (f1 - f0) * ((t - t0) * 1e-9 / dt)


def offsets(lead, follower, step_ns=STEP_NS):
    """follower - leader offset, s, every step_ns over the common span."""
    a, b = lead.span(), follower.span()
    if a is None or b is None:
        return []
    start, end = max(a[0], b[0]), min(a[1], b[1])
    out = []
    t = start
    while t <= end:
        lp, fp = lead.position_at(t), follower.position_at(t)
        if lp is not None and fp is not None:
            out.append((t, (fp - lp) / lead.rate))
        t += max(step_ns, 1)
    return out


def lock_time(series, threshold_s=1e-3, hold_ns=2_000_000_000):
    start = None
    for t, off in series:
        if abs(off) < threshold_s:
            if start is None:
                start = t
            if t - start >= hold_ns:
                return start
        else:
            start = None
    return None


def quantile(values, q):
    if not values:
        return math.nan
    v = sorted(values)
    idx = min(max(math.ceil(q * len(v)), 1), len(v)) - 1
    return v[idx]


# ------------------------------------------------------------ recorder points -> trace

def envelope(points, rate, window=10):
    """Take the recorder's own wake-up latency out of a Snapcast trace.

    Each point is (t_read, chunk start). The file player asks its stream for the frames to
    play *now* at every 50 ms tick, so t - pos/rate is constant while the client does not
    correct; the recorder only adds (positive) latency to t. Within a continuous run of
    chunks, each point's t is replaced by pos/rate plus the smallest t - pos/rate of the
    chunks within +-`window` (+-0.5 s). A client's own correction (soft sync, a few
    frames per chunk at most) passes through, blurred by the window; a jump splits
    runs."""
    runs, run = [], []
    for p in points:
        if run:
            t0, f0 = run[-1]
            jump = abs((p[1] - f0) - (p[0] - t0) * 1e-9 * rate) > 0.02 * rate
            if jump or p[0] - t0 > 300_000_000:
                runs.append(run)
                run = []
        run.append(p)
    if run:
        runs.append(run)
    out = []
    for run in runs:
        c = [t - f * 1e9 / rate for t, f in run]
        for i, (t, f) in enumerate(run):
            lo, hi = max(0, i - window), min(len(run), i + window + 1)
            out.append((int(f * 1e9 / rate + min(c[lo:hi])), f))
    return out


def load_snapcast(path):
    """Recorder CSV (t_ns,position,clean) -> points of the chunks that carried audio."""
    pts = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("#") or line.startswith("t_ns"):
                continue
            f = line.strip().split(",")
            if len(f) >= 2 and f[1] != "":
                pts.append((int(f[0]), float(f[1])))
    return pts


def load_convoy(path):
    """A Convoy virtual-sink CSV (heard_at_ns, …, frame): measure::Trace::load."""
    pts = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("#") or line.startswith("heard_at") or not line.strip():
                continue
            f = line.split(",")
            try:
                pts.append((int(f[0]), float(f[3])))
            except (ValueError, IndexError):
                continue
    return pts


# ------------------------------------------------------------------------ figures (pure)

def figures(ref, followers, starts, steady_after_s=30.0):
    """Lock and |offset| figures for followers against ref.

    starts: each follower's process start (monotonic ns, None: unknown). Lock: |offset|
    < 1 ms held 2 s (measure::after_lock_ms). 'after lock' pools every follower's |offset|
    from its lock on (the scenario's summary p50/p99/max); 'steady' pools every sample
    from 30 s after the follower's first played frame on."""
    locks, after, steady, unlocked, whole = [], [], [], 0, []
    for tr, start in zip(followers, starts):
        series = offsets(ref, tr)
        whole.extend(abs(o) * 1e3 for _, o in series)
        lk = lock_time(series)
        if lk is None:
            unlocked += 1
        else:
            after.extend(abs(o) * 1e3 for t, o in series if t >= lk)
            if start is not None:
                locks.append((lk - start) * 1e-9)
        span = tr.span()
        if span:
            cut = span[0] + int(steady_after_s * 1e9)
            steady.extend(abs(o) * 1e3 for t, o in series if t >= cut)
    mx = lambda v: max(v) if v else math.nan
    return {
        "followers": len(followers),
        "unlocked": unlocked,
        "lock_median_s": quantile(locks, 0.5),
        "lock_max_s": mx(locks),
        "after_p50_ms": quantile(after, 0.5),
        "after_p99_ms": quantile(after, 0.99),
        "after_max_ms": mx(after),
        "whole_p99_ms": quantile(whole, 0.99),
        "whole_max_ms": mx(whole),
        "steady_p50_ms": quantile(steady, 0.5),
        "steady_p99_ms": quantile(steady, 0.99),
        "steady_max_ms": mx(steady),
        "steady_samples": len(steady),
    }


# ------------------------------------------------------------------ gen and record (I/O)

def cmd_gen(a):
    """Write the coded source to a FIFO at about real time (a second ahead at most; the
    server paces its reads, a full pipe blocks us)."""
    fd = os.open(a.fifo, os.O_WRONLY)
    counter, t0 = FIRST, time.monotonic()
    frames = RATE // 50
    try:
        while True:
            ahead = (counter - FIRST) / RATE - (time.monotonic() - t0)
            if ahead > 1.0:
                time.sleep(0.02)
                continue
            os.write(fd, block(counter, frames))
            counter += frames
    except (BrokenPipeError, KeyboardInterrupt):
        pass


def cmd_record(a):
    """Read every client's FIFO; one CSV line per 50 ms chunk: when its last byte arrived
    (CLOCK_MONOTONIC ns), the position it starts with, whether it was clean."""
    fds, outs, bufs, keep = {}, {}, {}, []
    for fifo, csv in zip(a.fifos, a.csvs):
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        # A writer of our own, never used: the FIFO never reads as EOF before the
        # client opens it or after it exits.
        keep.append(os.open(fifo, os.O_WRONLY))
        fds[fd] = fifo
        outs[fd] = open(csv, "w", buffering=1 << 16)
        outs[fd].write("t_ns,position,clean\n")
        bufs[fd] = bytearray()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        try:
            ready, _, _ = select.select(list(fds), [], [], 0.5)
        except InterruptedError:
            continue
        for fd in ready:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            t = time.monotonic_ns()
            if not data:
                continue
            b = bufs[fd]
            b.extend(data)
            while len(b) >= CHUNK_BYTES:
                pos, clean = chunk_start(bytes(b[:CHUNK_BYTES]))
                del b[:CHUNK_BYTES]
                outs[fd].write(f"{t},{'' if pos is None else pos},{int(clean)}\n")
    for fh in outs.values():
        fh.close()


# ------------------------------------------------------------------------ run (I/O, root)

def sh(*args, check=True, quiet=False):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


def spread(k, n):
    """scenario.rs `spread`: deterministic, distinct values in [-1, 1] per node."""
    if n <= 1:
        return 0.0
    return 2.0 * (((k * 7 + 3) % n) / (n - 1)) - 1.0


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def netns_names(n):
    return ["scsrv"] + [f"sc{k}" for k in range(1, n)]


def teardown(n):
    for ns in netns_names(n):
        sh("ip", "netns", "del", ns, check=False)


def wait_for_link(name, seconds=10.0):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if sh("ip", "link", "show", name, check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise SystemExit(f"TUN {name} did not appear (see impair-tun.log)")


def run_snapcast(a, out, ppm):
    """One Snapcast run, client k's clock (all of its clocks: libfaketime) running
    ppm * spread(k + 1) fast, as the scenario's node k; returns the analysed figures."""
    n = a.nodes
    os.makedirs(out, exist_ok=True)
    teardown(n)
    procs = []
    logs = []

    def spawn(name, argv):
        log = open(os.path.join(out, f"{name}.log"), "w")
        logs.append(log)
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        procs.append((name, p))
        return p

    try:
        for ns in netns_names(n):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        tuns = ["scs"] + [f"scc{k}" for k in range(1, n)]
        relay_start = time.monotonic_ns()
        spawn("impair-tun", [a.convoy, "tool", "impair-tun", *tuns,
                             "--profile", a.profile, "--seed", str(a.seed)])
        for t in tuns:
            wait_for_link(t)
        for k, (ns, t) in enumerate(zip(netns_names(n), tuns)):
            addr = "10.77.0.1/16" if k == 0 else f"10.77.{k}.2/16"
            sh("ip", "link", "set", t, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", addr, "dev", t)
            sh("ip", "-n", ns, "link", "set", t, "up")
        conf = os.path.join(out, "snapserver.conf")
        fifo = os.path.join(out, "source.fifo")
        os.mkfifo(fifo)
        os.makedirs(os.path.join(out, "snapserver-data"), exist_ok=True)
        with open(conf, "w") as fh:
            fh.write(f"""[server]
datadir = {out}/snapserver-data
[http]
enabled = false
[tcp]
enabled = false
[stream]
bind_to_address = 0.0.0.0
port = 1704
source = pipe://{fifo}?name=pos&mode=read&sampleformat=48000:16:2&codec=pcm
buffer = {a.snap_buffer_ms}
[logging]
filter = *:info
""")
        spawn("snapserver", ["ip", "netns", "exec", "scsrv", "snapserver", "-c", conf])
        spawn("gen", [sys.executable, __file__, "gen", fifo])
        fifos = [os.path.join(out, f"client{k}.fifo") for k in range(n)]
        csvs = [os.path.join(out, f"client{k}.csv") for k in range(n)]
        for f in fifos:
            os.mkfifo(f)
        # The recorder a little ahead of the players: its latency only blurs (envelope).
        spawn("record", ["nice", "-n", "-5", sys.executable, __file__, "record",
                         "--fifos", *fifos, "--csvs", *csvs])
        time.sleep(a.join_after_s)
        starts = {}
        for k in range(n):
            ns = netns_names(n)[k]
            host = "127.0.0.1" if k == 0 else "10.77.0.1"
            starts[k] = time.monotonic_ns()
            fake = []
            if ppm:
                rate = 1.0 + ppm * spread(k + 1, n) * 1e-6
                fake = ["env", f"LD_PRELOAD={FAKETIME_LIB}", f"FAKETIME=+0 x{rate:.9f}"]
            spawn(f"client{k}", ["ip", "netns", "exec", ns, *fake, "snapclient", "-h", host,
                                 "-p", "1704", "--hostID", f"convoy-cmp-{k}",
                                 "--instance", str(k + 1),
                                 "--player", f"file:filename={fifos[k]}",
                                 "--logsink", "stderr"])
        print(f"snapcast: {n} clients ({n - 1} behind impair-tun --profile {a.profile}) "
              f"for {a.seconds:.0f} s", file=sys.stderr)
        time.sleep(a.seconds)
    finally:
        for name, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
        teardown(n)
    with open(os.path.join(out, "starts.json"), "w") as fh:
        json.dump({"relay_start_ns": relay_start, "client_start_ns": starts}, fh)
    return analyse_snapcast(out, n)


def analyse_snapcast(out, n):
    with open(os.path.join(out, "starts.json")) as fh:
        starts = json.load(fh)["client_start_ns"]
    traces = []
    for k in range(n):
        pts = envelope(load_snapcast(os.path.join(out, f"client{k}.csv")), RATE)
        traces.append(Trace(pts, RATE, max_dt_s=0.15))
    return figures(traces[0], traces[1:], [starts.get(str(k)) for k in range(1, n)])


def run_convoy(a, out, perfect):
    argv = [a.convoy, "tool", "scenario", "--nodes", str(a.nodes), "--seconds",
            str(a.seconds), "--profile", a.profile, "--seed", str(a.seed),
            "--out", out, "--base-port", str(a.base_port)]
    # The same clocks as the Snapcast clients get: drift only (no offset, no DAC error).
    argv += ["--clock-ppm", "0" if perfect else str(a.clock_ppm), "--clock-offset-s", "0",
             "--dac-ppm", "0"]
    print("convoy:", " ".join(argv), file=sys.stderr)
    with open(out + ".log", "w") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=True)
    return analyse_convoy(out, a.nodes)


def analyse_convoy(out, n):
    rate = 44_100.0  # the pilot track (scenario.rs)
    ref = Trace(load_convoy(os.path.join(out, "leader.csv")), rate)
    followers = [Trace(load_convoy(os.path.join(out, f"bike-{k}.csv")), rate)
                 for k in range(1, n)]
    fig = figures(ref, followers, [None] * (n - 1))
    with open(os.path.join(out, "summary.json")) as fh:
        s = json.load(fh)
    # Lock from process start comes from the scenario (it knows when it spawned each node);
    # its after-lock quantiles cross-check this port of measure.rs.
    locks = [x["join_to_lock_s"] for x in s["nodes"] if x["join_to_lock_s"] is not None]
    fig["lock_median_s"] = quantile(locks, 0.5)
    fig["lock_max_s"] = max(locks) if locks else math.nan
    fig["summary_p50_ms"], fig["summary_p99_ms"] = s["p50_ms"], s["p99_ms"]
    return fig


def loadavg():
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def fmt(x, d=2):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def row(system, clocks, f, load):
    lock = f"{fmt(f['lock_median_s'], 1)} / {fmt(f['lock_max_s'], 1)}"
    if f["unlocked"]:
        lock += f" ({f['unlocked']} never)"
    return (f"| {system} | {clocks} | {lock} | {fmt(f['after_p50_ms'], 3)} / "
            f"{fmt(f['after_p99_ms'])} / {fmt(f['after_max_ms'])} | "
            f"{fmt(f['steady_p50_ms'], 3)} / {fmt(f['steady_p99_ms'])} / "
            f"{fmt(f['steady_max_ms'])} | {load} |")


HEADER = ("| system | clocks | lock s (median / max) | after lock p50 / p99 / max ms | "
          "steady (≥ 30 s) p50 / p99 / max ms | load (1/5/15) |\n|---|---|---|---|---|---|")


def cmd_run(a):
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces, TUN devices)")
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    rows, results = [], {}
    for clocks in [c for c in a.clocks.split(",") if c]:
        if clocks not in ("perfect", "drift"):
            raise SystemExit(f"--clocks: perfect or drift, not {clocks!r}")
        perfect = clocks == "perfect"
        label = "perfect" if perfect else f"±{a.clock_ppm:g} ppm"
        if not perfect and not os.path.exists(FAKETIME_LIB):
            raise SystemExit(f"drifting Snapcast clocks need libfaketime ({FAKETIME_LIB})")
        load0 = loadavg()
        snap = run_snapcast(a, os.path.join(out, f"snapcast-{clocks}"),
                            0.0 if perfect else a.clock_ppm)
        rows.append(row("Snapcast 0.26", label, snap, f"{load0} → {loadavg()}"))
        results[f"snapcast-{clocks}"] = snap
        load0 = loadavg()
        conv = run_convoy(a, os.path.join(out, f"convoy-{clocks}"), perfect)
        rows.append(row("Convoy", label, conv, f"{load0} → {loadavg()}"))
        results[f"convoy-{clocks}"] = conv
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"\nprofile {a.profile}, {a.nodes} players ({a.nodes - 1} impaired), "
          f"{a.seconds:.0f} s, seed {a.seed}\n")
    print(HEADER)
    print("\n".join(rows))
    for k, v in results.items():
        if "summary_p99_ms" in v:
            print(f"\n{k}: scenario summary after-lock p50/p99 "
                  f"{fmt(v['summary_p50_ms'], 3)} / {fmt(v['summary_p99_ms'])} ms "
                  "(cross-check of this port of measure.rs)")


# ---------------------------------------------------------------------------- selftest

def cmd_selftest(_a):
    # Round trip of the code, silence rejected.
    for c in (FIRST, FIRST + 1, FIRST + 65535, FIRST + 65536, (1 << 31) - 1):
        assert decode(encode(c)) == c, c
    assert decode(b"\0\0\0\0") is None
    # A clean chunk, one with leading silence, one with a dropped frame.
    assert chunk_start(block(FIRST + 100, 2400)) == (FIRST + 100, True)
    padded = b"\0" * 40 + block(FIRST + 110, 2390)
    assert chunk_start(padded) == (FIRST + 100, False)
    dropped = block(FIRST, 1000) + block(FIRST + 1001, 1400)
    assert chunk_start(dropped) == (FIRST, False)
    assert chunk_start(b"\0" * CHUNK_BYTES) == (None, False)
    # Envelope: recorder latency (0..8 ms, never 0 twice in a row) is taken out.
    truth = [(1_000_000_000 + i * 50_000_000, FIRST + i * 2400) for i in range(200)]
    late = [(t + (i * 7919 % 9) * 1_000_000 + 1000, f) for i, (t, f) in enumerate(truth)]
    env = envelope(late, RATE)
    assert all(abs(e[0] - (t + 1000)) < 2000 for e, (t, _) in zip(env, truth)), env[:3]
    # Offsets: a follower 24 frames ahead is +0.5 ms, constant; it locks at once.
    lead = Trace(truth, RATE, 0.15)
    ahead = Trace([(t, f + 24) for t, f in truth], RATE, 0.15)
    o = offsets(lead, ahead)
    assert o and all(abs(x - 0.0005) < 1e-9 for _, x in o), o[:3]
    assert lock_time(o) == o[0][0]
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    # A 30 ms jump is a gap, not an offset.
    jumped = [(t, f + (1440 if i >= 100 else 0)) for i, (t, f) in enumerate(truth)]
    jt = Trace(jumped, RATE, 0.15)
    assert jt.position_at(truth[99][0] + 10_000_000) is None
    print("selftest ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--convoy", required=True, help="the convoy binary (rig feature)")
    r.add_argument("--profile", default="default")
    r.add_argument("--nodes", type=int, default=5)
    r.add_argument("--seconds", type=float, default=60.0)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--out", default="target/snapcast-compare")
    r.add_argument("--base-port", type=int, default=19_400)
    r.add_argument("--join-after-s", type=float, default=2.0)
    r.add_argument("--snap-buffer-ms", type=int, default=1000,
                   help="snapserver end-to-end buffer (its default)")
    r.add_argument("--clocks", default="perfect,drift",
                   help="perfect, drift, or both (comma-separated): one run of each system")
    r.add_argument("--clock-ppm", type=float, default=200.0,
                   help="drift: largest clock error, spread over the players as in the "
                        "scenario (Snapcast clients: libfaketime)")
    g = sub.add_parser("gen")
    g.add_argument("fifo")
    rec = sub.add_parser("record")
    rec.add_argument("--fifos", nargs="+", required=True)
    rec.add_argument("--csvs", nargs="+", required=True)
    an = sub.add_parser("analyse")
    an.add_argument("dir")
    an.add_argument("--nodes", type=int, default=5)
    sub.add_parser("selftest")
    a = ap.parse_args()
    if a.cmd == "run":
        cmd_run(a)
    elif a.cmd == "gen":
        cmd_gen(a)
    elif a.cmd == "record":
        cmd_record(a)
    elif a.cmd == "analyse":
        print(json.dumps(analyse_snapcast(a.dir, a.nodes), indent=1))
    else:
        cmd_selftest(a)


if __name__ == "__main__":
    main()
