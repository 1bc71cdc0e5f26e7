"""Issue #26's held-out tempo-level clips: grooves whose metrical level is easy to get wrong,
at tempi and seeds that no setting was tuned on (the tuned clips are `gen_clips.py` and
`gen_dance.py`). Render them with a different soundfont from the tuned corpus (run.sh uses
MuseScore_General.sf3 when it is installed) so they are new sounds as well as new grooves.

- dnb_176_break: a busier two-step break at 176 (kick on 1 and the "and" of 2, snare on 2 and
  4 with ghost notes, sixteenth hats at 176's eighths), a sub bass in whole notes;
- dnb_168_sparse: kick on 1 and the "and" of 3, snare on 2 and 4, a ride on the beats only, a
  sub bass that changes every bar;
- halftime_150_trap: kick on 1, the "a" of 1 and the "and" of 3, a clap on 3 only, eighth hats
  with sixteenth rolls, an 808 bass on the kicks (counted at 150);
- halftime_136_dub: kick on 1, snare on 3, quarter hats, an eighth-note wobble bass (at 136);
- country_88_boomchick: bass on 1 and 3, a strummed chord on 2 and 4, a brushed snare on 2
  and 4 and an eighth shaker (counted at 88, not 176);
- waltz_78_drums: a slow waltz with a soft kick on 1, hi-hats on 2 and 3, piano arpeggio in
  eighths, strings (3/4 at 78, not 156);
- ballad_66_arpeggio: 4/4 at 66 with an eighth-note piano arpeggio, a kick on 1 and the
  "and" of 2, a rim on 2 and 4 (at 66, not 132).

    python gen_levels.py OUT_DIR     # writes OUT_DIR/<clip>.mid and .truth.json
"""

import json
import os
import sys

import gen_clips as g
from gen_clips import (CLAP, HAT, KICK, OHAT, PROG_AM, PROG_E, RIDE, SHAKER, SIDE, SNARE, TPB,
                       Song)


def dnb_break(bpm=176, name="dnb_176_break"):
    s = Song(name, "drum & bass (break)", seed=31)
    s.tempo(0, bpm)
    s.program(0, 38)
    s.program(1, 81)  # saw lead as a pad stab
    bars = 40
    for b in range(bars):
        ghosts = [(1.75, 40), (2.75, 35)] if b % 2 else [(3.5, 40)]
        g.drum_bar(s, b, 4, {KICK: [(0, 115), (1.5, 100)],
                             SNARE: [(1, 118), (3, 118)] + ghosts,
                             HAT: [(i / 2, 62 if i % 2 == 0 else 44) for i in range(8)]})
        root, _ = PROG_E[(b // 2) % 4]
        if b % 2 == 0:
            s.note(0, b * 4 * TPB, root - 24, 100, 8 * TPB - 20)
        if b % 4 == 3:
            for p in g.chord_tones(root, True):
                s.note(1, (b * 4 + 2.5) * TPB, p + 12, 50, TPB)
    return s, bars * 4 * TPB


def dnb_sparse(bpm=168, name="dnb_168_sparse"):
    s = Song(name, "drum & bass (sparse)", seed=32)
    s.tempo(0, bpm)
    s.program(0, 38)
    s.program(1, 89)
    bars = 40
    for b in range(bars):
        g.drum_bar(s, b, 4, {KICK: [(0, 112), (2.5, 100)], SNARE: [(1, 112), (3, 112)],
                             RIDE: [(i, 55) for i in range(4)]})
        root, _ = PROG_AM[b % 4]
        s.note(0, b * 4 * TPB, root - 24, 100, 4 * TPB - 20)
        if b % 2 == 0:
            g.pad(s, 1, b // 2, 4, PROG_AM, 40)
    return s, bars * 4 * TPB


def halftime_trap(bpm=150, name="halftime_150_trap"):
    s = Song(name, "half-time (trap)", seed=33)
    s.tempo(0, bpm)
    s.program(0, 38)
    s.program(1, 89)
    bars = 32
    for b in range(bars):
        hats = [(i / 2, 60 if i % 2 == 0 else 45) for i in range(8)]
        if b % 2 == 1:
            hats += [(3.25, 45), (3.75, 45)]
        g.drum_bar(s, b, 4, {KICK: [(0, 115), (0.75, 90), (2.5, 100)], CLAP: [(2, 115)],
                             HAT: hats})
        g.bass_line(s, 0, b, 4, PROG_AM, [(0, 0.7, 0), (0.75, 1.5, 0), (2.5, 1.4, 0)], 100)
        g.pad(s, 1, b, 4, PROG_AM, 40)
    return s, bars * 4 * TPB


def halftime_dub(bpm=136, name="halftime_136_dub"):
    s = Song(name, "half-time (dubstep)", seed=34)
    s.tempo(0, bpm)
    s.program(0, 39)  # synth bass 2
    bars = 32
    for b in range(bars):
        g.drum_bar(s, b, 4, {KICK: [(0, 118)], SNARE: [(2, 118)],
                             HAT: [(i, 55) for i in range(4)]})
        g.bass_line(s, 0, b, 4, PROG_E, [(i / 2, 0.4, 12 * (i % 2)) for i in range(8)], 90)
    return s, bars * 4 * TPB


def country(bpm=88, name="country_88_boomchick"):
    s = Song(name, "country (boom-chick)", seed=35)
    s.tempo(0, bpm)
    s.program(0, 32)  # acoustic bass
    s.program(1, 25)  # steel guitar
    bars = 24
    for b in range(bars):
        root, minor = PROG_E[b % 4]
        g.bass_line(s, 0, b, 4, PROG_E, [(0, 0.9, 0), (2, 0.9, 7)], 95)
        for beat in (1, 3):
            for k, p in enumerate(g.chord_tones(root, minor)):
                s.note(1, (b * 4 + beat) * TPB + 12 * k, p, 70, TPB * 0.5)
        g.drum_bar(s, b, 4, {SIDE: [(1, 80), (3, 80)],
                             SHAKER: [(i / 2, 55 if i % 2 == 0 else 40) for i in range(8)]})
    return s, bars * 4 * TPB


def waltz_drums(bpm=78, name="waltz_78_drums"):
    s = Song(name, "waltz (3/4, drums)", meter=3, seed=36)
    s.tempo(0, bpm)
    s.program(0, 0)
    s.program(1, 48)
    s.program(2, 32)
    bars = 22
    for b in range(bars):
        root, minor = PROG_AM[b % 4]
        s.note(2, b * 3 * TPB, root - 24, 90, TPB * 0.9)
        tones = g.chord_tones(root, minor)
        arp = [tones[0], tones[1], tones[2], tones[1] + 12, tones[2], tones[1]]
        for i, p in enumerate(arp):
            s.note(0, (b * 3 + i / 2) * TPB, p, 58 if i % 2 == 0 else 46, TPB * 0.45)
        for p in tones:
            s.note(1, b * 3 * TPB, p + 12, 38, 3 * TPB - 20)
        g.drum_bar(s, b, 3, {KICK: [(0, 85)], HAT: [(1, 55), (2, 55)]})
    return s, bars * 3 * TPB


def ballad_arpeggio(bpm=66, name="ballad_66_arpeggio"):
    s = Song(name, "ballad (arpeggio)", seed=37)
    s.tempo(0, bpm)
    s.program(0, 0)
    s.program(1, 33)
    bars = 16
    for b in range(bars):
        root, minor = PROG_AM[b % 4]
        tones = g.chord_tones(root, minor)
        arp = [tones[0], tones[2], tones[1] + 12, tones[2]] * 2
        for i, p in enumerate(arp):
            s.note(0, (b * 4 + i / 2) * TPB, p, 60 if i % 2 == 0 else 50, TPB * 0.45)
        g.bass_line(s, 1, b, 4, PROG_AM, [(0, 1.4, 0), (1.5, 2.4, 7)], 85)
        g.drum_bar(s, b, 4, {KICK: [(0, 90), (1.5, 75)], SIDE: [(1, 70), (3, 70)]})
    return s, bars * 4 * TPB


CLIPS = [dnb_break, dnb_sparse, halftime_trap, halftime_dub, country, waltz_drums,
         ballad_arpeggio]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for make in CLIPS:
        song, end = make()
        mid = os.path.join(out, song.name + ".mid")
        song.save(mid, end)
        truth = g.truth_from_midi(mid)
        truth.update(genre=song.genre, tempo=f"{song.tempi[0][1]:g}")
        with open(os.path.join(out, song.name + ".truth.json"), "w") as f:
            json.dump(truth, f, indent=1)
        print(f"{song.name}: {len(truth['beats'])} beats, {truth['duration_s']:.1f} s")


if __name__ == "__main__":
    main()
