#!/usr/bin/env python3
"""Run the hostile-conditions probe (issue #21) against a live 3-bike fleet and print a table.

    sudo tools/hostile-fleet.py [--convoy target/debug/convoy] [--out DIR] [--only ATTACK]…

Three `convoy node` processes (sync.role = auto, bike-1 preferred as leader) play the
position pilot on recording virtual sinks, each with its OSC control port and web app on,
on their own loopback addresses inside a private network namespace (the tool re-executes
itself under `unshare -n`, so it needs root; spoofed datagrams use a raw socket). Then it
runs, one after the other:

  1 path-as-track     remote `/convoy/play` of /etc/passwd, /etc/shadow, a missing file,
                      a FIFO and a pty: all refused alike, the node answers at once after
  2 leader-restart    SIGKILL the leader, restart it 2 s later with the same id: followers
                      re-join it and never report "locked" while > 50 ms away
  3 spoofed-junk      200 pkt/s of 64-byte junk from the leader's address at a follower's
                      membership port for 10 s: the follower keeps its leader and term
  4 uploads           three concurrent 199 MB "show" uploads and a comments-only show
  5 cross-site        a text/plain POST /api/transport/pause with Origin: evil.example
  6 reflection        spoofed /convoy/status + /convoy/subscribe from a victim address:
                      bytes delivered to the victim vs bytes the attacker sent
  7 slow-clients      200 idle HTTP connections and 200 WebSocket upgrades
  8 defaults          remote control from another private address with no secret or PIN

Evidence is measured at the edges: OSC replies and HTTP answers on the wire, the victim's
received bytes, /proc RSS and file descriptors, and the true playback offsets between the
bikes from their virtual-sink recordings (position pilot, shared monotonic clock), per
phase. The summary JSON goes to OUT/hostile.json.
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

KEY = "9c2e4b7d1a0f3e5c6b8a7d9e0f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c"
RATE = 44_100.0
BASE = 47_000
VICTIM = ("10.99.0.2", 47_999)  # private, not loopback: an unverified address
OUTSIDER = "10.99.0.1"  # a private address on lo that is not loopback


# ---------------------------------------------------------------- OSC (just enough)

def _pad(b):
    return b + b"\0" * (4 - len(b) % 4)


def osc(addr, *args):
    tags, data = ",", b""
    for a in args:
        if isinstance(a, int):
            tags, data = tags + "i", data + struct.pack(">i", a)
        elif isinstance(a, float):
            tags, data = tags + "f", data + struct.pack(">f", a)
        else:
            tags, data = tags + "s", data + _pad(a.encode())
    return _pad(addr.encode()) + _pad(tags.encode()) + data


def osc_strings(packet):
    """The address and string arguments of a reply message."""
    try:
        end = packet.index(b"\0")
        addr = packet[:end].decode()
        off = (end // 4 + 1) * 4
        tend = packet.index(b"\0", off)
        tags = packet[off + 1:tend].decode()
        off = (tend // 4 + 1) * 4
        out = []
        for t in tags:
            if t == "s":
                e = packet.index(b"\0", off)
                out.append(packet[off:e].decode(errors="replace"))
                off = (e // 4 + 1) * 4
            elif t in "if":
                off += 4
            elif t in "hd":
                off += 8
        return addr, out
    except (ValueError, UnicodeDecodeError):
        return "?", []


def ask(sock, to, packet, timeout=2.0):
    """Send and wait for the reply to it (`/reply<address>`); returns (seconds, reply
    address or None on timeout, its strings). Anything else that arrives is skipped."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65536)
    except OSError:
        pass
    sock.settimeout(timeout)
    want = "/reply" + osc_strings(packet)[0]
    t0 = time.monotonic()
    sock.sendto(packet, to)
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return time.monotonic() - t0, None, []
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65536)
        except socket.timeout:
            return time.monotonic() - t0, None, []
        a, s = osc_strings(data)
        if a == want:
            return time.monotonic() - t0, a, s
        # Anything else (feedback, an earlier request's late reply) is not the answer.


# ---------------------------------------------------------------- spoofing

def _csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def spoofed(src, dst, payload):
    """An IPv4/UDP datagram from `src` to `dst` ((ip, port) pairs) for a raw socket."""
    s_ip, d_ip = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    ulen = 8 + len(payload)
    pseudo = s_ip + d_ip + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", src[1], dst[1], ulen, 0)
    udp = struct.pack("!HHHH", src[1], dst[1], ulen, _csum(pseudo + udp + payload) or 0xFFFF)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, 64, 17, 0, s_ip, d_ip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + udp + payload


class Spoofer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.sent_bytes = 0

    def send(self, src, dst, payload):
        self.sock.sendto(spoofed(src, dst, payload), (dst[0], 0))
        self.sent_bytes += len(payload)


# ---------------------------------------------------------------- nodes

def ip(k):
    return f"127.0.0.{k + 1}"


def ports(k):
    p = BASE + 20 * k
    return {"osc": p, "sntp": p + 1, "fleet": p + 2, "control": p + 3, "web": p + 4}


class Node:
    def __init__(self, a, k, out, extra=(), run=0):
        self.k, self.a, self.out = k, a, out
        self.name = f"bike-{k + 1}"
        self.extra = list(extra)
        self.statuses = []
        self.rss_kib = 0
        self.proc = None
        self.recs = []
        self.start(run)

    def start(self, run):
        p = ports(self.k)
        fleet = ",".join(f'"{ip(j)}:{ports(j)["fleet"]}"' for j in range(3))
        rec = os.path.join(self.out, f"{self.name}.{run}.csv")
        self.recs.append(rec)
        sets = [
            f"node.id={self.name}", "sync.role=auto", f"sync.bind={ip(self.k)}",
            f"sync.osc_port={p['osc']}", f"sync.sntp_port={p['sntp']}",
            f"fleet.port={p['fleet']}", f"fleet.priority={200 - self.k}", "fleet.mdns=false",
            f"fleet.broadcast=[{fleet}]", "audio.sink=virtual",
            f"audio.virtual.record={rec}", "audio.virtual.pilot=true",
            f"audio.virtual.rate_error_ppm={(self.k - 1) * 60}",
            f"clock.offset_ms={(self.k - 1) * 700}", f"clock.ppm={(1 - self.k) * 80}",
            "osc.enabled=true", "osc.bind=0.0.0.0", f"osc.port={p['control']}",
            "osc.reply=true", "web.enabled=true", "web.bind=0.0.0.0", f"web.port={p['web']}",
            f"web.library={os.path.join(self.out, self.name + '-library')}",
        ] + self.extra
        cmd = [self.a.convoy]
        for s in sets:
            cmd += ["--set", s]
        cmd += ["--log", "warn", "node", "--track", "pilot", "--status-every", "0.5"]
        err = open(os.path.join(self.out, f"{self.name}.{run}.err"), "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                     env=dict(os.environ, CONVOY_KEY=KEY))
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            self.statuses.append(v)
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for ln in f:
                        if ln.startswith("VmRSS:"):
                            self.rss_kib = max(self.rss_kib, int(ln.split()[1]))
            except OSError:
                pass

    def last(self):
        return self.statuses[-1] if self.statuses else {}

    def alive(self):
        return self.proc.poll() is None

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def fleet_of(v):
    f = v.get("fleet") or {}
    return f.get("leader", v.get("leader")), f.get("term", v.get("term"))


def locked(v):
    return bool((v.get("lock") or {}).get("locked"))


# ---------------------------------------------------------------- recordings

def trace(path):
    pts = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("#", "heard")) or not line.strip():
                    continue
                c = line.split(",")
                if len(c) >= 4 and c[3].strip():
                    try:
                        pts.append((int(c[0]), float(c[3])))
                    except ValueError:
                        pass
    except OSError:
        pass
    return pts


def position_at(pts, t):
    """Track seconds heard at monotonic ns `t` (linear between periods), or None."""
    lo, hi = 0, len(pts) - 1
    if hi < 1 or t < pts[0][0] or t > pts[-1][0]:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pts[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, f0), (t1, f1) = pts[lo], pts[hi]
    if t1 - t0 > 100_000_000 or abs(f1 - f0) > RATE:  # a gap or a seek: no reading
        return None
    return (f0 + (f1 - f0) * (t - t0) / max(t1 - t0, 1)) / RATE


def offsets_ms(traces, t0, t1, step=20_000_000, need=2):
    """Largest pairwise playback offset (ms) among the bikes at each instant in [t0, t1]
    at which at least `need` of them have a reading."""
    out = []
    for t in range(int(t0), int(t1), step):
        pos = [p for p in (position_at(tr, t) for tr in traces) if p is not None]
        if len(pos) >= max(need, 2):
            out.append((t, (max(pos) - min(pos)) * 1e3))
    return out


def q(vals, p):
    if not vals:
        return float("nan")
    s = sorted(vals)
    return s[min(len(s) - 1, int(p * len(s)))]


# ---------------------------------------------------------------- the attacks

class Probe:
    def __init__(self, a, out):
        self.a, self.out = a, out
        self.rows, self.phases = [], []
        self.nodes = [Node(a, k, out) for k in range(3)]
        self.spoof = Spoofer()

    def row(self, n, attack, ok, evidence):
        self.rows.append((n, attack, "refused/survived" if ok else "FAILED", evidence))
        print(f"[{n}] {attack}: {'ok' if ok else 'FAILED'} — {evidence}", flush=True)

    def phase(self, name, fn):
        t0 = time.monotonic_ns()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a broken probe is a row, not a crash
            self.row("?", name, False, f"probe error: {e!r}")
        self.phases.append((name, t0, time.monotonic_ns()))

    def udp(self, bind_ip="127.0.0.1"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind_ip, 0))
        return s

    def wait_fleet(self, secs=20):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            v = [n.last() for n in self.nodes]
            if all(fleet_of(x)[0] == "bike-1" for x in v) and all(
                    locked(x) for x in v[1:]):
                return True
            time.sleep(0.25)
        return False

    # 1
    def path_as_track(self):
        lead = ("127.0.0.1", ports(0)["control"])
        d = tempfile.mkdtemp(dir=self.out)
        fifo = os.path.join(d, "fifo.wav")
        os.mkfifo(fifo)
        pty_master, pty_slave = os.openpty()
        pty = os.ttyname(pty_slave)
        s = self.udp()
        replies = {}
        worst = 0.0
        for what in ["/etc/passwd", "/etc/shadow", "/no/such/file.wav", fifo, pty,
                     "../../../../etc/hostname"]:
            dt, addr, strings = ask(s, lead, osc("/convoy/play", what), timeout=3)
            # The refusal may name what was asked for; it must say nothing else about it.
            replies[what] = (addr, strings[0].replace(what, "NAME")[:120] if strings else None)
            sdt, saddr, _ = ask(s, lead, osc("/convoy/status"), timeout=3)
            worst = max(worst, dt, sdt)
            if saddr is None:
                replies[what] = (addr, "NODE STOPPED ANSWERING")
        os.close(pty_master)
        os.close(pty_slave)
        texts = {r[1] for r in replies.values()}
        playing = self.nodes[0].last().get("track")
        ok = (len(texts) == 1 and None not in texts and "NODE STOPPED ANSWERING" not in texts
              and playing == "pilot" and worst < 2.5)
        self.row(1, "path as track (6 paths incl. FIFO, pty, ..)", ok,
                 f"{len(replies)} paths, {len(texts)} distinct replies "
                 f"{sorted(map(str, texts))}; slowest answer {worst * 1e3:.0f} ms; still "
                 f"playing {playing}")

    # 2
    def leader_restart(self):
        lead = self.nodes[0]
        lead.proc.send_signal(signal.SIGKILL)
        lead.proc.wait()
        self.killed_at = time.monotonic_ns()
        time.sleep(2.0)
        lead.start(run=1)
        self.restarted_at = time.monotonic_ns()
        time.sleep(self.a.settle)
        # Judged in report(), from the recordings: see `restart_row`.

    # 3
    def spoofed_junk(self):
        f = self.nodes[1]
        before = fleet_of(f.last())
        src, dst = ("127.0.0.1", ports(0)["fleet"]), ("127.0.0.2", ports(1)["fleet"])
        end, k, seen = time.monotonic() + 10, 0, set()
        while time.monotonic() < end:
            self.spoof.send(src, dst, os.urandom(64))
            k += 1
            seen.add(fleet_of(f.last()))
            time.sleep(1 / 200)
        time.sleep(1.0)
        seen.add(fleet_of(f.last()))
        ok = seen == {before} and f.last().get("role") == "follower"
        self.row(3, "spoofed junk 200 pkt/s from the leader's address, 10 s", ok,
                 f"{k} datagrams; follower saw (leader, term) {sorted(map(str, seen))}")

    # 4
    def uploads(self):
        node = self.nodes[2]
        host, port = "127.0.0.3", ports(2)["web"]
        disk0 = du(os.path.join(self.out, node.name + "-library"))
        rss0 = node.rss_kib
        results = [None] * 3

        def big(i):
            results[i] = http_stream(host, port, f"/api/upload?kind=show&name=big{i}.toml",
                                     199 << 20)

        th = [threading.Thread(target=big, args=(i,)) for i in range(3)]
        for t in th:
            t.start()
        for t in th:
            t.join(120)
        comments = http(host, port, "POST", "/api/upload?kind=show&name=c.toml",
                        b"# nothing but a comment\n" * 100, {"Content-Type": "text/plain"})
        disk = du(os.path.join(self.out, node.name + "-library")) - disk0
        ok = (all(r and r[0] >= 400 for r in results) and comments[0] >= 400
              and node.rss_kib < 64 * 1024 and disk < 1 << 20 and node.alive())
        self.row(4, "3 × 199 MB show uploads + a comments-only show", ok,
                 f"answers {[r[0] if r else None for r in results]}, comments-only "
                 f"{comments[0]}; RSS {rss0 / 1024:.1f} → max {node.rss_kib / 1024:.1f} MiB; "
                 f"library grew {disk / 1024:.0f} KiB")

    # 5
    def cross_site(self):
        node = self.nodes[0]
        host, port = "127.0.0.1", ports(0)["web"]
        st, body = http(host, port, "POST", "/api/transport/pause", b"{}",
                        {"Origin": "http://evil.example", "Content-Type": "text/plain"})
        time.sleep(1.0)
        playing = node.last().get("playing")
        ok = st == 403 and playing
        self.row(5, "cross-site text/plain POST /api/transport/pause", ok,
                 f"HTTP {st} {body[:80]!r}; fleet still playing: {playing}")

    # 6
    def reflection(self):
        victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        victim.bind(VICTIM)
        victim.settimeout(0.2)
        node = ("127.0.0.2", ports(1)["control"])
        sent0 = self.spoof.sent_bytes
        self.spoof.send(VICTIM, node, osc("/convoy/status"))
        self.spoof.send(VICTIM, node, osc("/convoy/subscribe", VICTIM[1]))
        sent = self.spoof.sent_bytes - sent0
        got, end = 0, time.monotonic() + 20
        while time.monotonic() < end:
            try:
                got += len(victim.recv(65536))
            except socket.timeout:
                pass
        victim.close()
        ok = got <= sent
        self.row(6, "spoofed /convoy/status + /convoy/subscribe (reflection)", ok,
                 f"attacker sent {sent} B, victim received {got} B in 20 s "
                 f"(amplification {got / max(sent, 1):.1f}×)")

    # 7
    def slow_clients(self):
        node = self.nodes[1]
        host, port = "127.0.0.2", ports(1)["web"]
        fd0 = node.fds()
        idle = []
        for _ in range(200):
            c = socket.socket()
            c.settimeout(2)
            try:
                c.connect((host, port))
                c.send(b"GET /api/status HTTP/1.1\r\n")  # and never finish the headers
                idle.append(c)
            except OSError:
                c.close()
        fd_peak = node.fds()
        time.sleep(self.a.idle_wait)
        still = 0
        for c in idle:
            c.setblocking(False)
            try:
                still += c.recv(1) != b"" and 0  # data: the server answered (not idle)
            except BlockingIOError:
                still += 1
            except OSError:
                pass
            c.close()
        fd_after = node.fds()
        ws_ok = 0
        socks = []
        for _ in range(200):
            c = socket.socket()
            c.settimeout(2)
            try:
                c.connect((host, port))
                key = base64.b64encode(os.urandom(16)).decode()
                c.send((f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
                if c.recv(64).startswith(b"HTTP/1.1 101"):
                    ws_ok += 1
                socks.append(c)
            except OSError:
                c.close()
        for c in socks:
            c.close()
        ok = still == 0 and ws_ok <= 64 and node.alive()
        self.row(7, "200 idle HTTP connections, 200 WebSocket upgrades", ok,
                 f"fds {fd0} → {fd_peak} with 200 idle → {fd_after} after "
                 f"{self.a.idle_wait:.0f} s; idle still open {still}; WebSockets accepted {ws_ok}")

    # 8
    def defaults(self):
        p = {"osc": BASE + 200, "web": BASE + 201}
        d = os.path.join(self.out, "defaults")
        os.makedirs(d, exist_ok=True)
        cmd = [self.a.convoy, "--set", "osc.enabled=true", "--set", f"osc.port={p['osc']}",
               "--set", "osc.reply=true", "--set", "web.enabled=true", "--set",
               f"web.port={p['web']}", "--set", "audio.sink=null", "--set",
               f"web.library={d}", "--log", "warn", "node", "--track", "pilot"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(2.0)
            s = self.udp(OUTSIDER)
            _, addr, strings = ask(s, ("127.0.0.1", p["osc"]), osc("/convoy/pause"), timeout=2)
            st, body = http_from(OUTSIDER, "127.0.0.1", p["web"], "POST", "/api/transport/pause",
                                 b"{}", {"Content-Type": "application/json"})
            osc_refused = addr is None or (strings and "ok" not in strings[0].lower())
            ok = osc_refused and st == 403
            self.row(8, f"default config: control from {OUTSIDER} (private, not loopback)", ok,
                     f"OSC /convoy/pause → {'no reply' if addr is None else strings[:1]}; "
                     f"HTTP pause → {st} {body[:60]!r}")
        finally:
            proc.terminate()
            proc.wait(10)


# ---------------------------------------------------------------- HTTP helpers

def http_from(src, host, port, method, path, body=b"", headers=None):
    c = socket.socket()
    c.settimeout(10)
    try:
        if src:
            c.bind((src, 0))
        c.connect((host, port))
        h = {"Host": f"{host}:{port}", "Content-Length": str(len(body)), "Connection": "close"}
        h.update(headers or {})
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        c.sendall(req.encode() + b"\r\n" + body)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        return -1, str(e).encode()
    finally:
        c.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    try:
        return int(head.split()[1]), rest
    except (IndexError, ValueError):
        return -1, data[:80]


def http(host, port, method, path, body=b"", headers=None):
    return http_from(None, host, port, method, path, body, headers)


def http_stream(host, port, path, size):
    """POST `size` bytes of TOML comments as fast as the server takes them."""
    c = socket.socket()
    c.settimeout(30)
    try:
        c.connect((host, port))
        c.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
                   f"application/octet-stream\r\nContent-Length: {size}\r\n"
                   "Connection: close\r\n\r\n").encode())
        chunk = (b"# " + b"x" * 61 + b"\n") * 1024
        sent = 0
        while sent < size:
            n = min(len(chunk), size - sent)
            c.sendall(chunk[:n])
            sent += n
        data = c.recv(4096)
    except OSError:
        # The server closed on us mid-body: read its answer if it left one.
        try:
            data = c.recv(4096)
        except OSError:
            data = b""
    finally:
        c.close()
    try:
        return int(data.split()[1]), data
    except (IndexError, ValueError):
        return 499, data  # closed without an answer: refused, not accepted


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


# ---------------------------------------------------------------- main

# The attacks in the order they run (the leader restart last: it disturbs the fleet).
PHASES = [("path-as-track", "path_as_track"), ("spoofed-junk", "spoofed_junk"),
          ("cross-site", "cross_site"), ("reflection", "reflection"),
          ("slow-clients", "slow_clients"), ("uploads", "uploads"), ("defaults", "defaults"),
          ("leader-restart", "leader_restart")]


def inside(a):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for addr in (OUTSIDER, VICTIM[0]):
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    os.makedirs(a.out, exist_ok=True)
    p = Probe(a, a.out)
    try:
        if not p.wait_fleet(30):
            sys.exit("the fleet never formed (bike-1 leading, two locked followers): "
                     f"{[n.last() for n in p.nodes]}")
        time.sleep(a.baseline)
        p.phases.append(("baseline", time.monotonic_ns() - int(a.baseline * 1e9),
                         time.monotonic_ns()))
        for name, attack in PHASES:
            if not a.only or name in a.only:
                p.phase(name, getattr(p, attack))
    finally:
        for n in p.nodes:
            n.stop()
    report(a, p)


def report(a, p):
    traces = {n.name: [pt for r in n.recs for pt in trace(r)] for n in p.nodes}
    for t in traces.values():
        t.sort()
    names = [n.name for n in p.nodes]
    per_phase = []
    for name, t0, t1 in p.phases:
        offs = [o for _, o in offsets_ms([traces[x] for x in names], t0, t1)]
        per_phase.append((name, len(offs), q(offs, 0.5), q(offs, 0.99), max(offs or [0])))
    # "Locked" must be true: count status samples that said locked while the bike was
    # > 50 ms from the others.
    false_locks = 0
    lead = traces["bike-1"]
    for n in p.nodes[1:]:
        for v in n.statuses:
            if not locked(v):
                continue
            t = v.get("mono_ns", 0)
            a_ = position_at(traces[n.name], t)
            b_ = position_at(lead, t)
            if a_ is not None and b_ is not None and abs(a_ - b_) > 0.050:
                false_locks += 1
    rejoin = None
    if hasattr(p, "restarted_at"):
        # From the restart until all three bikes play within 5 ms of one another, for good.
        series = offsets_ms([traces[x] for x in names], p.restarted_at, p.phases[-1][2],
                            need=3)
        good = None
        for t, off in series:
            if off >= 5.0:
                good = None
            elif good is None:
                good = t
        rejoin = None if good is None else (good - p.restarted_at) / 1e9
        # The restarted bike plays alone from its own start until it hears the fleet, then
        # joins it (and, preferred by priority, takes the lead back without a jump).
        p.row(2, "leader SIGKILL, restarted 2 s later with the same id",
              rejoin is not None and rejoin < a.rejoin_bound and false_locks == 0,
              f"fleet within 5 ms again {'never' if rejoin is None else f'{rejoin:.2f} s'} "
              f"after the restart; status samples saying 'locked' while > 50 ms off: "
              f"{false_locks}")
    seeks = {n.name: (n.last().get("lock") or {}).get("seeks_after_lock") for n in p.nodes}
    p.rows.sort(key=lambda r: str(r[0]))
    print("\n| # | attack | result | evidence |\n|---|---|---|---|")
    for r in p.rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    print("\n| phase | samples | offset p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name, k, p50, p99, mx in per_phase:
        print(f"| {name} | {k} | {p50:.3f} | {p99:.3f} | {mx:.1f} |")
    print("(leader-restart: the restarted bike plays its own track from the start until it "
          "hears the fleet, so its offset is large until it joins; row 2 judges how fast and "
          "how truthfully it re-joins.)")
    print("RSS max per bike (MiB): " + ", ".join(
        f"{n.name} {n.rss_kib / 1024:.1f}" for n in p.nodes)
        + f"; crashed: {[n.name for n in p.nodes if n.proc.returncode not in (0, -15, None)]}"
        + f"; seeks after lock: {seeks}")
    json.dump({"rows": p.rows, "phases": per_phase, "false_locks": false_locks,
               "rejoin_s": rejoin, "rss_mib": {n.name: n.rss_kib / 1024 for n in p.nodes}},
              open(os.path.join(a.out, "hostile.json"), "w"), indent=1)
    if any(r[2] == "FAILED" for r in p.rows):
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--convoy", default=os.path.abspath(os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "convoy")))
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "hostile-fleet"))
    ap.add_argument("--baseline", type=float, default=10.0, help="quiet seconds measured first")
    ap.add_argument("--settle", type=float, default=12.0, help="seconds after the restart")
    ap.add_argument("--idle-wait", type=float, default=15.0,
                    help="seconds to leave idle connections before checking them")
    ap.add_argument("--rejoin-bound", type=float, default=15.0,
                    help="seconds the restarted leader may take to play with the fleet again")
    ap.add_argument("--only", action="append", choices=[n for n, _ in PHASES],
                    help="run only this attack (repeatable), e.g. --only leader-restart")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.convoy = os.path.abspath(a.convoy)
    if a.inside:
        return inside(a)
    if os.geteuid() != 0:
        sys.exit("needs root: it runs the fleet in its own network namespace (unshare -n) "
                 "and spoofs source addresses with a raw socket")
    if not os.access(a.convoy, os.X_OK):
        sys.exit(f"no convoy binary at {a.convoy}: cargo build first, or pass --convoy")
    shutil.rmtree(a.out, ignore_errors=True)
    os.execvp("unshare", ["unshare", "-n", sys.executable, os.path.abspath(__file__),
                          "--inside"] + sys.argv[1:])


if __name__ == "__main__":
    main()
