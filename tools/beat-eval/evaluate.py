"""Score Convoy (offline and live) and the peer trackers against the MIDI ground truth.

    python evaluate.py WORK_DIR REPORT.md [REAL_WORK_DIR]
    python evaluate.py --tables WORK_DIR      # one corpus's tables only, printed

WORK_DIR holds clips/*.wav + *.truth.json (gen_clips.py + fluidsynth), convoy/*.beatmap.json
and convoy-summary.txt (`convoy analyze`), live/*.json (examples/live_beats) and
peers/*.json (peers.py), and versions.txt (run.sh). Beats are scored with mir_eval
(F-measure ±70 ms, CMLt, AMLt; beats before 5 s ignored, as mir_eval.beat.evaluate does);
downbeats with mir_eval's F-measure on the same trimmed sequences. fluidsynth renders the
reverb tail after the last note; estimated beats later than half a beat after the last
reference beat (in silence) are dropped for every tracker alike. The report is printed
and written as markdown.
"""

import glob
import json
import os
import sys

import mir_eval
import numpy as np

LIVE_SETTLE_S = 8.0


def load(path):
    with open(path) as f:
        return json.load(f)


def until_end(ref, est):
    """Estimated beats up to half a beat after the last reference beat."""
    if est is None or len(ref) < 2:
        return est
    end = ref[-1] + 0.5 * (ref[-1] - ref[-2])
    return [e for e in est if e <= end]


def scores(ref_beats, ref_down, beats, downbeats):
    ref = np.asarray(ref_beats, dtype=float)
    beats, downbeats = until_end(ref_beats, beats), until_end(ref_beats, downbeats)
    est = np.asarray(beats, dtype=float)
    r = mir_eval.beat.evaluate(ref, est)
    out = {"F": r["F-measure"], "CMLt": r["Correct Metric Level Total"],
           "AMLt": r["Any Metric Level Total"], "DbF": None}
    if downbeats is not None and len(ref_down) > 0:  # real clips may have no bar annotation
        rd = mir_eval.beat.trim_beats(np.asarray(ref_down, dtype=float))
        ed = mir_eval.beat.trim_beats(np.asarray(downbeats, dtype=float))
        out["DbF"] = mir_eval.beat.f_measure(rd, ed)
    return out


def convoy_rt(summary_path):
    """Per clip ×real-time from `convoy analyze`'s summary table (last column)."""
    rt = {}
    if not os.path.exists(summary_path):
        return rt
    for line in open(summary_path):
        parts = line.split()
        if len(parts) >= 7 and parts[0].endswith(".wav"):
            try:
                rt[os.path.splitext(os.path.basename(parts[0]))[0]] = float(parts[-1])
            except ValueError:
                pass
    return rt


def phase_errors(ref, est, after):
    """|estimated beat - nearest reference beat| (s) and as a fraction of the local period."""
    ref = np.asarray(ref, dtype=float)
    out_s, out_frac = [], []
    for e in until_end(list(ref), est):
        if e < after or len(ref) < 2:
            continue
        i = int(np.clip(np.searchsorted(ref, e), 1, len(ref) - 1))
        j = i - 1 if abs(e - ref[i - 1]) <= abs(e - ref[i]) else i
        period = ref[min(j + 1, len(ref) - 1)] - ref[max(j - 1, 0)]
        period /= (min(j + 1, len(ref) - 1) - max(j - 1, 0))
        out_s.append(abs(e - ref[j]))
        out_frac.append(abs(e - ref[j]) / period)
    return out_s, out_frac


def at_level(ref, est, after):
    """Whether the estimated beats after `after` run at the reference's metrical level: their
    median interval within 10 % of the reference's over the same span (as
    examples/analysis_eval.rs decides it). A tracker at half or double tempo, whose every other
    beat is half a beat off by construction, is out; one at the right tempo on the wrong phase
    stays in."""
    e = [b for b in until_end(list(ref), est) if b >= after]
    if len(e) < 2:
        return False
    r = [b for b in ref if e[0] <= b <= e[-1]]
    if len(r) < 2:
        return False
    return abs(np.median(np.diff(e)) / np.median(np.diff(r)) - 1.0) <= 0.1


# Tempo ratios (estimated / annotated) that have a name, and how they are written.
LEVELS = ((1.0, "="), (2.0, "×2"), (0.5, "×½"), (1.5, "×3/2"), (2 / 3, "×2/3"), (3.0, "×3"),
          (1 / 3, "×⅓"), (4.0, "×4"), (0.25, "×¼"))


def metrical_level(ref, est, after=5.0):
    """Where a tracker's beats sit against the annotation, after `after` seconds (the span
    mir_eval scores): its tempo (60 / median beat interval), the ratio to the reference tempo
    over the same span named when within 6 % of one of LEVELS, and at the reference tempo
    whether the beats are on the reference beats or between them (median distance to the
    nearest reference beat above a quarter of a period: "off-beat"). Returns (bpm, label)."""
    e = [b for b in until_end(list(ref), est) if b >= after]
    r = [b for b in ref if b >= after]
    if len(e) < 3 or len(r) < 3:
        return None, "no beats"
    bpm, ref_bpm = 60 / np.median(np.diff(e)), 60 / np.median(np.diff(r))
    ratio = bpm / ref_bpm
    name = next((n for v, n in LEVELS if abs(ratio / v - 1) <= 0.06), f"×{ratio:.2f}")
    if name == "=":
        _, frac = phase_errors(ref, est, after)
        name = "off-beat" if frac and np.median(frac) > 0.25 else "ok"
    return bpm, name


def fmt(v):
    return "–" if v is None else f"{v:.3f}"


def corpus_section(work):
    """The tables for one corpus folder (clips/, convoy/, live/, peers/): lines and notes."""
    clips = sorted(os.path.splitext(os.path.basename(p))[0]
                   for p in glob.glob(os.path.join(work, "clips", "*.wav")))
    truth = {c: load(os.path.join(work, "clips", c + ".truth.json")) for c in clips}

    est = {}  # tracker -> clip -> {"beats", "downbeats", "seconds"} or {"error"}
    notes = []
    est["convoy offline"] = {}
    rt = convoy_rt(os.path.join(work, "convoy-summary.txt"))
    for c in clips:
        p = os.path.join(work, "convoy", c + ".wav.beatmap.json")  # <file name>.beatmap.json
        if os.path.exists(p):
            m = load(p)
            est["convoy offline"][c] = {"beats": m["beats"], "downbeats": m["downbeats"],
                                        "rt": rt.get(c)}
        else:
            est["convoy offline"][c] = {"error": "no beatmap"}
    est["convoy live"] = {}
    for c in clips:
        p = os.path.join(work, "live", c + ".json")
        est["convoy live"][c] = ({"beats": load(p)["beats"], "downbeats": None}
                                 if os.path.exists(p) else {"error": "no output"})
    for name in ("aubio", "librosa", "madmom", "beat_this"):
        p = os.path.join(work, "peers", name + ".json")
        status = os.path.join(work, "peers", name + ".status")
        if os.path.exists(p):
            est[name] = load(p)
            errs = {v["error"] for v in est[name].values() if "error" in v}
            if errs:
                notes.append(f"- **{name}** failed on some clips: {'; '.join(sorted(errs))}")
        elif os.path.exists(status):
            notes.append(f"- **{name}** did not run: {open(status).read().strip()}")
    trackers = [t for t in est if any("beats" in v for v in est[t].values())]

    res = {t: {} for t in trackers}
    for t in trackers:
        for c in clips:
            e = est[t].get(c, {"error": "missing"})
            if "beats" in e:
                res[t][c] = scores(truth[c]["beats"], truth[c]["downbeats"], e["beats"],
                                   e.get("downbeats"))

    lines = []
    lines.append("Corpus: " + ", ".join(
        f"`{c}` ({truth[c]['genre']}, {truth[c]['tempo']} BPM, {truth[c]['duration_s']:.0f} s)"
        for c in clips) + ".")
    lines.append("")
    for metric, title in (("F", "Beat F-measure (±70 ms)"), ("CMLt", "CMLt"), ("AMLt", "AMLt"),
                          ("DbF", "Downbeat F-measure (±70 ms)")):
        cols = [t for t in trackers if any(r[metric] is not None for r in res[t].values())]
        if not cols:
            continue
        lines.append(f"### {title}")
        lines.append("")
        lines.append("| clip | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for c in clips:
            vals = [res[t].get(c, {}).get(metric) for t in cols]
            best = max((v for v in vals if v is not None), default=None)
            cells = [("**" + fmt(v) + "**") if v is not None and v == best else fmt(v)
                     for v in vals]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        means = []
        for t in cols:
            scored = [c for c in clips if metric != "DbF" or truth[c]["downbeats"]]
            vals = [res[t][c][metric] for c in scored
                    if c in res[t] and res[t][c][metric] is not None]
            means.append(float(np.mean(vals)) if vals and len(vals) == len(scored) else None)
        lines.append("| **mean** | " + " | ".join(fmt(m) for m in means) + " |")
        lines.append("")

    # Each tracker's tempo and metrical level per clip (after the 5 s mir_eval trims).
    lines.append("### Metrical level (tempo after 5 s, and its relation to the reference)")
    lines.append("")
    lines.append("Tempo is 60 / the median beat interval after 5 s; `ok` is the reference "
                 "tempo (MIDI or human annotation) on the reference beats, `off-beat` the "
                 "reference tempo between them, `×2`, `×½`, `×3/2` … a tempo that many times "
                 "the reference one (within 6 %); a tempo that is none of these is written "
                 "as its ratio.")
    lines.append("")
    lines.append("| clip | reference | " + " | ".join(trackers) + " |")
    lines.append("|---|---:|" + "---:|" * len(trackers))
    wrong = {t: 0 for t in trackers}
    for c in clips:
        ref = truth[c]["beats"]
        r = [b for b in ref if b >= 5.0]
        cells = []
        for t in trackers:
            e = est[t].get(c, {})
            if "beats" not in e:
                cells.append("–")
                continue
            bpm, name = metrical_level(ref, e["beats"])
            wrong[t] += name != "ok"
            cells.append(name if bpm is None else
                         (f"{bpm:.0f} {name}" if name == "ok" else f"**{bpm:.0f} {name}**"))
        lines.append(f"| {c} | {60 / np.median(np.diff(r)):.0f} | " + " | ".join(cells) + " |")
    lines.append("| **not ok** | | " + " | ".join(str(wrong[t]) for t in trackers) + " |")
    lines.append("")

    # Phase error after the tracker has heard LIVE_SETTLE_S of music, for any tracker.
    def phase_stats(t):
        """All errors (s and fraction of a period), the errors on the clips at the reference's
        level, how many such clips, and each clip's p95."""
        all_s, all_f, level_s, n_level, per_clip = [], [], [], 0, []
        for c in clips:
            e = est[t].get(c, {})
            if "beats" not in e:
                continue
            s, f = phase_errors(truth[c]["beats"], e["beats"], LIVE_SETTLE_S)
            all_s += s
            all_f += f
            if at_level(truth[c]["beats"], e["beats"], LIVE_SETTLE_S):
                level_s += s
                n_level += 1
            if s:
                per_clip.append(f"{c} {1000 * np.percentile(s, 95):.0f} ms")
        return all_s, all_f, level_s, n_level, per_clip

    all_s, all_f, ok_s, _, per_clip = phase_stats("convoy live")
    lines.append(f"### Convoy live: beat-phase error after {LIVE_SETTLE_S:.0f} s")
    lines.append("")
    if all_s:
        lines.append(
            f"Over {len(all_s)} predicted beats: median {1000 * np.median(all_s):.1f} ms, "
            f"p95 {1000 * np.percentile(all_s, 95):.1f} ms "
            f"({100 * np.percentile(all_f, 95):.1f} % of a beat period). Per clip p95: "
            + ", ".join(per_clip) + ". The error is to the nearest reference beat, so a "
            "tracker at double or half tempo or on the off-beat shows up as half a period. "
            + (f"On the clips where the live tempo is at the reference's level (median beat "
               f"interval within 10 %; {len(ok_s)} beats): p95 "
               f"{1000 * np.percentile(ok_s, 95):.1f} ms." if ok_s else ""))
    lines.append("")
    # The same statistics for every tracker's beats, the offline ones included: how much of
    # the error is the corpus (the soundfont's attacks put the audible onset a few ms after
    # the MIDI note-on) rather than tracking live.
    lines.append(f"The same after {LIVE_SETTLE_S:.0f} s for every tracker (the peers and Convoy's "
                 "offline tracker see the whole track, the live one only the past):")
    lines.append("")
    lines.append("| tracker | beats | median | p95 | clips at the reference's level | their beats | median | p95 |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in trackers:
        a_s, _, l_s, n_level, _ = phase_stats(t)
        ms = lambda v, q: f"{1000 * np.percentile(v, q):.1f} ms" if v else "–"
        lines.append(f"| {t} | {len(a_s)} | {ms(a_s, 50)} | {ms(a_s, 95)} | {n_level} | "
                     f"{len(l_s)} | {ms(l_s, 50)} | {ms(l_s, 95)} |")
    lines.append("")

    lines.append("### Cost (× real time on this machine, one thread)")
    lines.append("")
    lines.append("| tracker | mean × real time | slowest clip |")
    lines.append("|---|---:|---:|")
    for t in trackers:
        xs = []
        for c in clips:
            e = est[t].get(c, {})
            dur = truth[c]["duration_s"]
            if e.get("rt"):
                xs.append(e["rt"])
            elif e.get("seconds"):
                xs.append(dur / e["seconds"])
        if xs:
            lines.append(f"| {t} | {np.mean(xs):.1f} | {min(xs):.1f} |")
    lines.append("")
    lines.append("Convoy offline includes decoding (symphonia) and the whole beatmap (sections, "
                 "envelopes); peers are timed around their Python call, including loading the "
                 "file (librosa's first call also compiles its numba code, hence its slowest "
                 "clip).")
    lines.append("")
    return lines, notes


def main():
    if sys.argv[1] == "--tables":  # only one corpus's tables, printed (no versions, no history)
        body, notes = corpus_section(sys.argv[2])
        print("\n".join(body + notes))
        return
    work, report = sys.argv[1], sys.argv[2]
    real = sys.argv[3] if len(sys.argv) > 3 else None
    lines = [open(os.path.join(work, "versions.txt")).read().rstrip(), ""]
    body, notes = corpus_section(work)
    lines += body
    if real:
        truths = sorted(glob.glob(os.path.join(real, "clips", "*.truth.json")))
        lines.append("## Real recordings (human annotations)")
        lines.append("")
        lines.append(
            "Scored separately from the synthetic corpus above, by the same rules, with every "
            "tracker on the same clips. The corpus is assembled by `tools/beat-eval/"
            "real_corpus.py` from local copies of public repositories (neither audio nor "
            "annotations are committed). Sources and licences per clip:")
        lines.append("")
        for t in truths:
            src = load(t).get("source", {})
            name = os.path.basename(t)[:-len(".truth.json")]
            lines.append(f"- `{name}`: audio {src.get('audio', '?')}; annotations "
                         f"{src.get('annotations', '?')}; {src.get('licence', '')}")
        lines.append("")
        lines.append("Downbeat F is over the clips with bar annotations only; a clip "
                     "without them shows –.")
        lines.append("")
        real_versions = os.path.join(real, "versions.txt")
        if os.path.exists(real_versions):  # when and with what the real set was scored
            lines.append(open(real_versions).read().rstrip())
            lines.append("")
        body, real_notes = corpus_section(real)
        lines += body
        notes += [f"{n} (real recordings)" for n in real_notes]
    if notes:
        lines.append("### Peers that did not run everywhere")
        lines.append("")
        lines += notes
        lines.append("")
    history = os.path.join(os.path.dirname(os.path.abspath(__file__)), "history.md")
    if os.path.exists(history):
        lines.append(open(history).read().rstrip())
        lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(report, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
