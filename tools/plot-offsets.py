#!/usr/bin/env python3
"""Plot a sync scenario's offsets.csv (t_s,node,offset_ms) to a PNG: one line per follower.
Needs matplotlib (`pip install matplotlib`); without it, says so and exits 0."""
import csv
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("plot-offsets: matplotlib not installed; skipping the PNG", file=sys.stderr)
    sys.exit(0)

src, dst = sys.argv[1], sys.argv[2]
series = {}
with open(src) as f:
    for row in csv.DictReader(f):
        series.setdefault(row["node"], ([], []))
        series[row["node"]][0].append(float(row["t_s"]))
        series[row["node"]][1].append(float(row["offset_ms"]))
fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
for node, (t, o) in sorted(series.items()):
    ax.plot(t, o, lw=0.8, label=node)
ax.set_xlabel("time since leader start (s)")
ax.set_ylabel("playback offset vs leader (ms)")
ax.set_ylim(-1.0, 1.0)
ax.axhline(0, color="k", lw=0.5)
ax.grid(alpha=0.3)
ax.legend(loc="upper right", fontsize=8)
ax.set_title("Convoy: measured inter-node playback offset (virtual sinks, pilot-decoded)")
fig.tight_layout()
fig.savefig(dst)
print(f"plot-offsets: wrote {dst}", file=sys.stderr)
