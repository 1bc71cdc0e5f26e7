"""Issue #26's development clips: General-MIDI grooves where the beat's phase or level is easy
to get wrong, rendered like the main corpus (`gen_clips.py`, same Song class and truth).

- house_128_offbeat: a kick on every beat, an open hat and a bass stab on every off-beat, no
  clap (the most common house/techno groove: the full band carries as much flux off the beat
  as on it);
- techno_132_rolling: a kick on every beat, clap on 2 and 4, a rolling off-beat bass and
  sixteenth hats;
- dnb_172_pads: a two-step break at 172 under a bass and pads that change every two bars;
- halftime_140: kick on 1, snare on 3, eighth hats, long bass notes (counted at 140);
- waltz_84_ballroom: a slow waltz without drums: bass on 1, piano chords on 2 and 3, strings;
- rock_120_gap: a rock groove, 6 s of silence, the groove again (the truth has no beats in
  the silence).

    python gen_dance.py OUT_DIR     # writes OUT_DIR/<clip>.mid and .truth.json
"""

import json
import os
import sys

import gen_clips as g
from gen_clips import CLAP, HAT, KICK, OHAT, PROG_AM, PROG_E, SNARE, TPB, Song


def house_offbeat(bpm=128, name="house_128_offbeat"):
    s = Song(name, "house (off-beat hats and stab)", seed=21)
    s.tempo(0, bpm)
    s.program(0, 38)  # synth bass stab
    s.program(1, 89)  # warm pad
    bars = 32
    for b in range(bars):
        g.pad(s, 1, b, 4, PROG_AM, 45)
        g.drum_bar(s, b, 4, {KICK: [(i, 112) for i in range(4)],
                             OHAT: [(i + 0.5, 95) for i in range(4)]})
        g.bass_line(s, 0, b, 4, PROG_AM, [(i + 0.5, 0.35, 12) for i in range(4)], 100)
    return s, bars * 4 * TPB


def techno_rolling(bpm=132, name="techno_132_rolling"):
    s = Song(name, "techno", seed=22)
    s.tempo(0, bpm)
    s.program(0, 38)
    bars = 32
    for b in range(bars):
        g.drum_bar(s, b, 4, {KICK: [(i, 115) for i in range(4)], CLAP: [(1, 85), (3, 85)],
                             HAT: [(i / 4, 70 if i % 2 else 45) for i in range(16)]})
        g.bass_line(s, 0, b, 4, PROG_E,
                    [(i + o, 0.2, 0) for i in range(4) for o in (0.5, 0.75)], 95)
    return s, bars * 4 * TPB


def dnb_pads(bpm=172, name="dnb_172_pads"):
    s = Song(name, "drum & bass", seed=23)
    s.tempo(0, bpm)
    s.program(0, 38)
    s.program(1, 89)
    bars = 40
    pat = {KICK: [(0, 115), (2.5, 105)], SNARE: [(1, 115), (3, 115)],
           HAT: [(i / 2, 60 if i % 2 == 0 else 45) for i in range(8)]}
    for b in range(bars):
        g.drum_bar(s, b, 4, pat)
        if b % 2 == 0:
            root, minor = PROG_AM[(b // 2) % 4]
            s.note(0, b * 4 * TPB, root - 24, 100, 8 * TPB - 20)
            for p in g.chord_tones(root, minor):
                s.note(1, b * 4 * TPB, p, 55, 8 * TPB - 20)
    return s, bars * 4 * TPB


def halftime(bpm=140, name="halftime_140"):
    s = Song(name, "half-time", seed=24)
    s.tempo(0, bpm)
    s.program(0, 38)
    s.program(1, 89)
    bars = 32
    pat = {KICK: [(0, 115), (1.75, 95)], SNARE: [(2, 115)],
           HAT: [(i / 2, 65 if i % 2 == 0 else 45) for i in range(8)]}
    for b in range(bars):
        g.drum_bar(s, b, 4, pat)
        g.bass_line(s, 0, b, 4, PROG_E, [(0, 1.5, 0), (1.75, 2, 0)], 100)
        g.pad(s, 1, b, 4, PROG_E, 45)
    return s, bars * 4 * TPB


def ballroom_waltz(bpm=84, name="waltz_84_ballroom"):
    s = Song(name, "waltz (3/4, no drums)", meter=3, seed=25)
    s.tempo(0, bpm)
    s.program(0, 0)  # piano
    s.program(1, 48)  # strings
    s.program(2, 32)  # acoustic bass
    bars = 24
    for b in range(bars):
        root, minor = PROG_AM[b % 4]
        s.note(2, b * 3 * TPB, root - 24, 90, TPB * 0.9)
        for beat in (1, 2):
            for p in g.chord_tones(root, minor):
                s.note(0, (b * 3 + beat) * TPB, p, 62, TPB * 0.6)
        for p in g.chord_tones(root, minor):
            s.note(1, b * 3 * TPB, p + 12, 40, 3 * TPB - 20)
    return s, bars * 3 * TPB


GAP_BARS = (12, 15)  # bars [12, 15) are silent: 6 s at 120 BPM


def rock_gap(bpm=120, name="rock_120_gap"):
    s = Song(name, "rock (6 s of silence)", seed=26)
    s.tempo(0, bpm)
    s.program(0, 33)
    bars = 27
    pat = {KICK: [(0, 110), (2, 105)], SNARE: [(1, 105), (3, 105)], HAT: g.eighths()}
    for b in range(bars):
        if GAP_BARS[0] <= b < GAP_BARS[1]:
            continue
        g.drum_bar(s, b, 4, pat)
        g.bass_line(s, 0, b, 4, PROG_E, [(i / 2, 0.45, 0) for i in range(8)])
    return s, bars * 4 * TPB


CLIPS = [house_offbeat, techno_rolling, dnb_pads, halftime, ballroom_waltz, rock_gap]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for make in CLIPS:
        song, end = make()
        mid = os.path.join(out, song.name + ".mid")
        song.save(mid, end)
        truth = g.truth_from_midi(mid)
        if make is rock_gap:
            # No beats while nothing plays (from the last bar's end to the next bar).
            lo = GAP_BARS[0] * 4 * 60.0 / 120.0
            hi = GAP_BARS[1] * 4 * 60.0 / 120.0
            truth["beats"] = [t for t in truth["beats"] if not lo <= t < hi]
            truth["downbeats"] = [t for t in truth["downbeats"] if not lo <= t < hi]
        truth.update(genre=song.genre, tempo=f"{song.tempi[0][1]:g}")
        with open(os.path.join(out, song.name + ".truth.json"), "w") as f:
            json.dump(truth, f, indent=1)
        print(f"{song.name}: {len(truth['beats'])} beats, {truth['duration_s']:.1f} s")


if __name__ == "__main__":
    main()
