"""Compare convoy's trackers with aubio on the synthetic corpus (optional).

Run `cargo run --release --example eval_table -- --dump /tmp/corpus` first,
then `python tools/compare_aubio.py /tmp/corpus` (needs numpy, mir_eval, aubio).
It re-scores convoy's beats with mir_eval as a cross-check of eval.rs.
"""
import sys, glob, os
import numpy as np
import mir_eval, aubio

d = sys.argv[1]
sr = 44100
hop, win = 512, 1024
print(f"{'clip':<14} {'aubio bpm':>9} {'F':>6} {'CMLt':>6} {'AMLt':>6} | convoy offline F/CMLt/AMLt (mir_eval) | live F/CMLt/AMLt")
for f in sorted(glob.glob(os.path.join(d, "*.f32"))):
    name = os.path.basename(f)[:-4]
    x = np.fromfile(f, dtype="<f4")
    ref = np.loadtxt(os.path.join(d, name + ".beats"))
    t = aubio.tempo("default", win, hop, sr)
    beats = []
    for i in range(0, len(x) - hop, hop):
        if t(x[i:i + hop].astype(np.float32))[0]:
            beats.append(t.get_last_s())
    est = np.array(beats)
    def sc(e):
        r = mir_eval.beat.evaluate(ref, e)
        return r["F-measure"], r["Correct Metric Level Total"], r["Any Metric Level Total"]
    a = sc(est)
    o = sc(np.atleast_1d(np.loadtxt(os.path.join(d, name + ".offline"))))
    l = sc(np.atleast_1d(np.loadtxt(os.path.join(d, name + ".live"))))
    print(f"{name:<14} {t.get_bpm():9.2f} {a[0]:6.3f} {a[1]:6.3f} {a[2]:6.3f} | {o[0]:.3f} {o[1]:.3f} {o[2]:.3f} | {l[0]:.3f} {l[1]:.3f} {l[2]:.3f}")
