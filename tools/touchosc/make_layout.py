#!/usr/bin/env python3
"""Writes tools/touchosc/convoy.touchosc, a classic TouchOSC (Mk1) layout for Convoy.

A Mk1 `.touchosc` file is a zip archive holding one `index.xml`: a `<layout>` of
`<tabpage>`s of `<control>`s, with names, label texts and OSC addresses (`osc_cs`)
base64-encoded. Mk1 sends every value as an OSC float (`f`): buttons send `scalet` on
press, faders send a value between `scalef` and `scalet`. So only addresses that accept
one float appear here (the address table is in docs/osc.md; tests/touchosc.rs checks
every address against Convoy's own parser).

Usage: python3 tools/touchosc/make_layout.py [--secret S] [-o OUT]
With --secret, every address the layout *sends* is prefixed with /S (the control-port
secret, needed to drive a bike from another host); feedback addresses stay unprefixed.
Python 3 standard library only. The zip entry is stored (not deflated) so the Rust test
can read it without a zip crate.
"""
import argparse
import base64
import os
import sys
import zipfile
from xml.sax.saxutils import quoteattr

# iPad portrait canvas (mode="1"): 768 x 1024.
W, H = 768, 1024
M = 16  # margin


def b64(s):
    return base64.b64encode(s.encode("utf-8")).decode("ascii")


class Page:
    def __init__(self, secret):
        self.controls = []
        self.prefix = "/" + secret if secret else ""
        self.n = 0

    def _add(self, ctype, x, y, w, h, color, **attrs):
        self.n += 1
        a = {"name": b64(f"{ctype}{self.n}"), "x": x, "y": y, "w": w, "h": h,
             "color": color, "type": ctype}
        a.update(attrs)
        self.controls.append(
            "<control " + " ".join(f"{k}={quoteattr(str(v))}" for k, v in a.items()) + "></control>")

    def label(self, text, x, y, w, h, color="gray", osc=None, size=14):
        """A label: static text, or (osc=feedback address) a display Convoy writes to."""
        extra = {"osc_cs": b64(osc)} if osc else {}
        self._add("labelh", x, y, w, h, color, text=b64(text), size=size,
                  background="true", outline="false", **extra)

    def led(self, osc, x, y, w, h, color):
        self._add("led", x, y, w, h, color, scalef="0.0", scalet="1.0", osc_cs=b64(osc))

    def push(self, addr, text, x, y, w, h, color):
        # sp: send on press (scalet = 1.0, a trigger); sr="false": no release message
        # (Convoy would ignore the 0.0 anyway).
        self._add("push", x, y, w, h, color, scalef="0.0", scalet="1.0",
                  osc_cs=b64(self.prefix + addr), local_off="false", sp="true", sr="false")
        self.label(text, x + 8, y + h // 2 - 15, w - 16, 30, color)

    def toggle(self, addr, text, x, y, w, h, color):
        self._add("toggle", x, y, w, h, color, scalef="0.0", scalet="1.0",
                  osc_cs=b64(self.prefix + addr), local_off="false")
        self.label(text, x + 8, y + h // 2 - 15, w - 16, 30, color)

    def fader(self, addr, text, lo, hi, x, y, w, h, color):
        self._add("faderh", x, y, w, h, color, scalef=f"{lo:.1f}", scalet=f"{hi:.1f}",
                  osc_cs=b64(self.prefix + addr), response="absolute",
                  inverted="false", centered="false")
        self.label(text, x, y - 34, w, 30, color)

    def xy(self, addr, text, x, y, w, h, color):
        # Sends `addr x y`, both 0..1 (rev_xy="false": x first, as Convoy reads it).
        self._add("xy", x, y, w, h, color, scalef="0.0", scalet="1.0",
                  osc_cs=b64(self.prefix + addr), inverted_x="false", inverted_y="false",
                  rev_xy="false")
        self.label(text, x, y - 34, w, 30, color)


def build(secret):
    p = Page(secret)
    cw = W - 2 * M
    y = M
    # Status: what is playing, where, which cue and pattern, this bike's role.
    p.label("CONVOY", M, y, 200, 40, "yellow", size=24)
    p.led("/convoy/fb/playing", M + 216, y + 8, 24, 24, "green")
    p.label("playing", M + 248, y + 5, 100, 30)
    p.led("/convoy/fb/locked", M + 370, y + 8, 24, 24, "blue")
    p.label("sync locked", M + 402, y + 5, 140, 30)
    # Feedback to this phone (a float press subscribes the sender itself; docs/osc.md).
    p.push("/convoy/subscribe", "FEEDBACK", W - M - 176, y, 176, 40, "gray")
    y += 56
    p.label("-", M, y, cw, 40, "gray", osc="/convoy/fb/track", size=20)
    y += 48
    half = (cw - M) // 2
    p.label("-", M, y, half, 36, "gray", osc="/convoy/fb/position")
    p.label("-", M + half + M, y, half, 36, "gray", osc="/convoy/fb/cue")
    y += 44
    p.label("-", M, y, half, 36, "gray", osc="/convoy/fb/pattern")
    p.label("-", M + half + M, y, half, 36, "gray", osc="/convoy/fb/role")
    y += 60
    # Transport.
    bw = (cw - 3 * M) // 4
    for i, (addr, text, color) in enumerate([
        ("/convoy/play", "PLAY", "green"),
        ("/convoy/pause", "PAUSE", "yellow"),
        ("/convoy/stop", "STOP", "red"),
        ("/convoy/next", "NEXT", "blue"),
    ]):
        p.push(addr, text, M + i * (bw + M), y, bw, 110, color)
    y += 110 + M
    p.push("/go", "GO (next cue)", M, y, cw, 110, "green")
    y += 110 + M
    # Cues of the loaded show (QLab style): the show's cues set patterns and colours.
    for i in range(4):
        p.push(f"/cue/{i + 1}/start", f"CUE {i + 1}", M + i * (bw + M), y, bw, 90, "purple")
    y += 90 + M + 40
    # Colour: an XY pad (hue across, brightness up) beside three 0..1 faders.
    pad = 300
    p.xy("/convoy/color/xy", "hue (x) / brightness (y)", M, y, pad, 260, "purple")
    fx, fw = M + pad + M, cw - pad - M
    p.fader("/convoy/bright", "brightness (0..1)", 0.0, 1.0, fx, y, fw, 50, "orange")
    p.fader("/convoy/hue/norm", "hue (0..1 = 0..360 deg)", 0.0, 1.0, fx, y + 94, fw, 50, "red")
    # 0..1 of the playing track's length, whatever its length.
    p.fader("/convoy/seek/norm", "seek (0..1 of the track)", 0.0, 1.0, fx, y + 188, fw, 50, "blue")
    y += 260 + M
    p.toggle("/convoy/fleet/lead", "LEAD the fleet", M, y, cw, 80, "red")
    y += 80
    assert y <= H, f"layout overflows the page: y = {y}"

    tab = (f'<tabpage name="{b64("convoy")}" scalef="0.0" scalet="1.0" '
           f'li_t="{b64("Convoy")}" li_c="gray" li_s="14" li_o="false" li_b="false">')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<layout version="16" mode="1" orientation="vertical">\n'
            + tab + "\n" + "\n".join(p.controls) + "\n</tabpage>\n</layout>\n")


def write(path, xml):
    # A fixed timestamp keeps the committed file byte-identical across regenerations.
    info = zipfile.ZipInfo("index.xml", date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(info, xml.encode("utf-8"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secret", default="", help="control-port secret (security.control.secret)")
    ap.add_argument("-o", "--out", default=os.path.join(here, "convoy.touchosc"))
    args = ap.parse_args()
    if "/" in args.secret:
        sys.exit("--secret must be one address segment (no '/')")
    write(args.out, build(args.secret))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
