"""Run one peer beat tracker over WAV files and write its beats as JSON.

    python peers.py TRACKER OUT.json a.wav b.wav ...

TRACKER is aubio, librosa, madmom or beat_this. The output maps each clip name to
{"beats": [...], "downbeats": [...] or null, "seconds": wall time}; on failure it is
{"error": "..."} so the report can say what happened. Each tracker runs in whichever
Python environment it installs into (run.sh picks it).
"""

import json
import os
import sys
import time


def track_aubio(path):
    import aubio
    import numpy as np  # noqa: F401  (aubio needs it loaded)

    hop, win = 512, 1024
    src = aubio.source(path, 0, hop)  # 0: the file's own rate, mixed to mono
    tempo = aubio.tempo("default", win, hop, src.samplerate)
    beats = []
    while True:
        samples, read = src()
        if tempo(samples)[0]:
            beats.append(float(tempo.get_last_s()))
        if read < hop:
            break
    return beats, None


def track_librosa(path):
    import librosa

    y, sr = librosa.load(path, sr=22050, mono=True)
    _, beats = librosa.beat.beat_track(y=y, sr=sr, units="time")
    return [float(b) for b in beats], None


def track_madmom(path):
    import collections
    import collections.abc

    # madmom 0.16.1 predates Python 3.10, which moved these ABCs out of `collections`.
    for name in ("MutableSequence", "Sequence", "Iterable", "Mapping", "MutableMapping"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

    beats = DBNBeatTrackingProcessor(fps=100)(RNNBeatProcessor()(path))
    act = RNNDownBeatProcessor()(path)
    bars = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)(act)
    downbeats = [float(t) for t, pos in bars if int(pos) == 1]
    return [float(b) for b in beats], downbeats


def track_beat_this(path):
    from beat_this.inference import File2Beats

    f2b = File2Beats(checkpoint_path="final0", device="cpu", dbn=False)
    beats, downbeats = f2b(path)
    return [float(b) for b in beats], [float(d) for d in downbeats]


TRACKERS = {
    "aubio": track_aubio,
    "librosa": track_librosa,
    "madmom": track_madmom,
    "beat_this": track_beat_this,
}


def main():
    name, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    fn = TRACKERS[name]
    result = {}
    for path in files:
        clip = os.path.splitext(os.path.basename(path))[0]
        t0 = time.perf_counter()
        try:
            beats, downbeats = fn(path)
        except Exception as e:  # noqa: BLE001  (any failure is reported, not fatal)
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            print(f"{name}: {clip}: {msg}", file=sys.stderr)
            result[clip] = {"error": msg}
            continue
        result[clip] = {"beats": beats, "downbeats": downbeats,
                        "seconds": time.perf_counter() - t0}
        print(f"{name}: {clip}: {len(beats)} beats", file=sys.stderr)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
