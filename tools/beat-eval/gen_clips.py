"""Generate the beat-eval corpus: General-MIDI songs with known beats.

Writes `<out>/<clip>.mid` and `<out>/<clip>.truth.json` for each clip. The truth is
read back from the written MIDI file (beat = one quarter note, bar = the time
signature's numerator; tick -> seconds through the file's tempo map), so it is exactly
what fluidsynth will play. Everything is deterministic (seeded), so the corpus can be
regenerated bit-for-bit: `python gen_clips.py OUT_DIR`.
"""

import json
import os
import random
import sys

import mido

TPB = 480  # ticks per beat (quarter note)
DRUMS = 9  # GM percussion channel
KICK, SNARE, SIDE, CLAP, HAT, OHAT, PHAT, RIDE, CRASH, TOM_L, TOM_H, SHAKER, COWBELL = (
    36, 38, 37, 39, 42, 46, 44, 51, 49, 45, 48, 70, 56)


class Song:
    """Collects note events (absolute ticks) per channel plus a tempo map."""

    def __init__(self, name, genre, meter=4, seed=1):
        self.name, self.genre, self.meter = name, genre, meter
        self.events = []  # (tick, order, msg)
        self.tempi = []  # (tick, bpm)
        self.rng = random.Random(seed)
        self.programs = {}

    def program(self, ch, prog):
        self.programs[ch] = prog

    def tempo(self, tick, bpm):
        self.tempi.append((int(round(tick)), bpm))

    def note(self, ch, tick, pitch, vel, dur):
        tick = int(round(tick))
        vel = max(1, min(127, int(vel + self.rng.randint(-6, 6))))
        self.events.append((tick, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=vel)))
        self.events.append((tick + max(1, int(dur)), 0,
                            mido.Message("note_off", channel=ch, note=pitch, velocity=0)))

    def hit(self, tick, pitch, vel):
        self.note(DRUMS, tick, pitch, vel, TPB // 8)

    def save(self, path, end_tick):
        mid = mido.MidiFile(ticks_per_beat=TPB)
        meta = mido.MidiTrack()
        meta.append(mido.MetaMessage("time_signature", numerator=self.meter, denominator=4, time=0))
        last = 0
        for tick, bpm in sorted(self.tempi):
            meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=tick - last))
            last = tick
        meta.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - last)))
        mid.tracks.append(meta)
        notes = mido.MidiTrack()
        for ch, prog in sorted(self.programs.items()):
            notes.append(mido.Message("program_change", channel=ch, program=prog, time=0))
        last = 0
        for tick, _, msg in sorted(self.events, key=lambda e: (e[0], e[1], e[2].channel, e[2].note)):
            if tick > end_tick:
                continue
            notes.append(msg.copy(time=tick - last))
            last = tick
        notes.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - last)))
        mid.tracks.append(notes)
        mid.save(path)


def chord_tones(root, minor):
    return [root, root + (3 if minor else 4), root + 7]


PROG_AM = [(57, True), (53, False), (48, False), (55, False)]  # Am F C G
PROG_E = [(52, True), (48, False), (55, False), (50, False)]  # Em C G D


def pad(s, ch, bar, meter, prog, vel=50):
    root, minor = prog[bar % len(prog)]
    for p in chord_tones(root, minor):
        s.note(ch, bar * meter * TPB, p, vel, meter * TPB - 10)


def bass_line(s, ch, bar, meter, prog, pattern, vel=85):
    """pattern: list of (beat offset, length in beats, semitone offset)."""
    root, _ = prog[bar % len(prog)]
    for off, length, semi in pattern:
        s.note(ch, (bar * meter + off) * TPB, root - 24 + semi, vel, length * TPB - 20)


def drum_bar(s, bar, meter, pattern, vel_scale=1.0):
    """pattern: dict pitch -> list of (beat offset, velocity)."""
    for pitch, hits in pattern.items():
        for off, vel in hits:
            s.hit((bar * meter + off) * TPB, pitch, vel * vel_scale)


def eighths(vel_on=80, vel_off=60, beats=4):
    return [(i / 2, vel_on if i % 2 == 0 else vel_off) for i in range(2 * beats)]


def rock(bpm=120, name="rock_120"):
    s = Song(name, "rock", seed=11)
    s.tempo(0, bpm)
    s.program(0, 33)  # finger bass
    s.program(1, 29)  # overdriven guitar
    bars = 24
    pat = {KICK: [(0, 110), (2, 105), (2.5, 90)], SNARE: [(1, 105), (3, 105)], HAT: eighths()}
    for b in range(bars):
        drum_bar(s, b, 4, pat)
        if b % 8 == 0:
            s.hit(b * 4 * TPB, CRASH, 100)
        bass_line(s, 0, b, 4, PROG_E, [(i / 2, 0.5, 0) for i in range(8)])
        root, minor = PROG_E[b % 4]
        for off in (0, 1.5, 2, 3.5):  # syncopated power chords
            for p in (root - 12, root - 5):
                s.note(1, (b * 4 + off) * TPB, p, 80, TPB * 0.45)
    return s, bars * 4 * TPB


def ballad(bpm=72, name="ballad_72_quiet_intro"):
    s = Song(name, "ballad", seed=12)
    s.tempo(0, bpm)
    s.program(0, 0)  # piano
    s.program(1, 48)  # strings
    s.program(2, 32)  # acoustic bass
    bars = 14
    for b in range(bars):
        intro = b < 4
        root, minor = PROG_AM[b % 4]
        tones = chord_tones(root, minor)
        # Piano arpeggio in eighths, very soft in the intro.
        for i in range(8):
            s.note(0, (b * 4 + i / 2) * TPB, tones[i % 3] + (12 if i % 4 == 3 else 0),
                   28 if intro else 60, TPB * 0.9)
        if intro:
            continue
        pad(s, 1, b, 4, PROG_AM, 45)
        bass_line(s, 2, b, 4, PROG_AM, [(0, 1.5, 0), (1.5, 0.5, 7), (2, 2, 0)], 75)
        drum_bar(s, b, 4, {KICK: [(0, 90), (2.5, 70)], SIDE: [(1, 70), (3, 75)],
                           HAT: [(i, 50) for i in range(4)]})
    return s, bars * 4 * TPB


def hiphop(bpm=90, name="hiphop_90_swing"):
    s = Song(name, "hip-hop", seed=13)
    s.tempo(0, bpm)
    s.program(0, 38)  # synth bass
    s.program(1, 4)  # e-piano
    bars = 18
    sw = 0.58  # swung eighths: the off-beat eighth sits at 58 % of the beat
    hats = []
    for i in range(8):
        hats.append((i / 2, 75 if i % 2 == 0 else 55))
    pat = {KICK: [(0, 110), (1.75, 90), (2.5, 100), (3.25, 80)],
           SNARE: [(1, 110), (3, 110)], HAT: [(o + (sw - 0.5) if (o * 2) % 2 == 1 else o, v) for o, v in hats]}
    for b in range(bars):
        drum_bar(s, b, 4, pat)
        bass_line(s, 0, b, 4, PROG_AM, [(0, 0.75, 0), (1.75, 0.5, 0), (2.5, 1, 3), (3.25, 0.5, 5)], 95)
        root, minor = PROG_AM[b % 4]
        for off in (0.5, 2.75):
            for p in chord_tones(root, minor):
                s.note(1, (b * 4 + off) * TPB, p + 12, 55, TPB * 0.4)
    return s, bars * 4 * TPB


def house(bpm=126, name="house_126_quiet_intro"):
    s = Song(name, "house", seed=14)
    s.tempo(0, bpm)
    s.program(0, 81)  # saw lead as a stab
    s.program(1, 89)  # warm pad
    s.program(2, 38)
    bars = 28
    for b in range(bars):
        pad(s, 1, b, 4, PROG_AM, 40 if b < 8 else 55)
        if b < 8:  # quiet intro: pad and a soft off-beat open hat only
            drum_bar(s, b, 4, {OHAT: [(i + 0.5, 45) for i in range(4)]})
            continue
        drum_bar(s, b, 4, {KICK: [(i, 115) for i in range(4)], CLAP: [(1, 95), (3, 95)],
                           OHAT: [(i + 0.5, 80) for i in range(4)], HAT: [(i + 0.25, 40) for i in range(4)]})
        bass_line(s, 2, b, 4, PROG_AM, [(i + 0.5, 0.4, 12 if i % 2 else 0) for i in range(4)], 90)
        root, minor = PROG_AM[b % 4]
        for off in (0.75, 2.25, 3.5):
            for p in chord_tones(root, minor):
                s.note(0, (b * 4 + off) * TPB, p + 12, 60, TPB * 0.2)
    return s, bars * 4 * TPB


def dnb(bpm=174, name="dnb_174_break"):
    s = Song(name, "drum & bass", seed=15)
    s.tempo(0, bpm)
    s.program(0, 38)
    s.program(1, 89)
    bars = 32
    # Two-step break: kick 1 and the "and" of 3, snare 2 and 4, ghost snares.
    pat = {KICK: [(0, 115), (2.5, 105)], SNARE: [(1, 115), (3, 115), (1.75, 45), (3.75, 40)],
           HAT: [(i / 2, 70 if i % 2 == 0 else 50) for i in range(8)], RIDE: [(i, 50) for i in range(4)]}
    for b in range(bars):
        if b % 2 == 0:
            pad(s, 1, b // 2, 4, PROG_E, 45)
        if b < 2:
            continue
        drum_bar(s, b, 4, pat)
        if b % 2 == 0:
            root, _ = PROG_E[(b // 2) % 4]
            s.note(0, b * 4 * TPB, root - 24, 100, 6 * TPB)
            s.note(0, (b * 4 + 6.5) * TPB, root - 24 + 3, 90, 1.5 * TPB)
    return s, bars * 4 * TPB


def funk(bpm=104, name="funk_104_syncopated"):
    s = Song(name, "funk", seed=16)
    s.tempo(0, bpm)
    s.program(0, 36)  # slap bass
    s.program(1, 27)  # clean guitar
    bars = 20
    pat = {KICK: [(0, 110), (0.75, 80), (2.25, 95), (2.75, 85)],
           SNARE: [(1, 110), (3, 110), (1.75, 40), (2.5, 35), (3.25, 40)],
           HAT: [(i / 4, 70 if i % 2 == 0 else 45) for i in range(16)]}
    for b in range(bars):
        drum_bar(s, b, 4, pat)
        bass_line(s, 0, b, 4, PROG_E, [(0, 0.25, 0), (0.75, 0.25, 12), (1.5, 0.25, 10),
                                       (2.25, 0.25, 0), (2.75, 0.25, 7), (3.5, 0.25, 12)], 100)
        root, minor = PROG_E[b % 4]
        for i in range(16):  # muted 16th guitar scratch, accents off the beat
            if i % 4 in (1, 3) or i in (6, 14):
                for p in chord_tones(root, minor):
                    s.note(1, (b * 4 + i / 4) * TPB, p + 12, 70 if i % 4 == 3 else 45, TPB * 0.1)
    return s, bars * 4 * TPB


def reggae(bpm=76, name="reggae_76_one_drop"):
    s = Song(name, "reggae", seed=17)
    s.tempo(0, bpm)
    s.program(0, 33)
    s.program(1, 16)  # organ skank
    bars = 14
    for b in range(bars):
        # One drop: kick and rim only on beat 3; hats in eighths.
        drum_bar(s, b, 4, {KICK: [(2, 110)], SIDE: [(2, 95)],
                           HAT: [(i / 2, 55 if i % 2 == 0 else 40) for i in range(8)]})
        root, minor = PROG_AM[b % 4]
        for off in (0.5, 1.5, 2.5, 3.5):  # skank on the off-beats
            for p in chord_tones(root, minor):
                s.note(1, (b * 4 + off) * TPB, p + 12, 75, TPB * 0.25)
        bass_line(s, 0, b, 4, PROG_AM, [(0.5, 0.5, 0), (1, 1, 7), (2.5, 0.5, 5), (3, 1, 3)], 95)
    return s, bars * 4 * TPB


def swing(bpm=180, name="jazz_180_swing"):
    s = Song(name, "jazz swing", seed=18)
    s.tempo(0, bpm)
    s.program(0, 32)  # acoustic bass
    s.program(1, 0)
    bars = 40
    sw = 2 / 3
    for b in range(bars):
        drum_bar(s, b, 4, {RIDE: [(0, 90), (1, 95), (1 + sw, 70), (2, 90), (3, 95), (3 + sw, 70)],
                           PHAT: [(1, 70), (3, 70)], KICK: [(i, 35) for i in range(4)]})
        root, _ = PROG_AM[(b // 2) % 4]
        walk = [0, 4, 7, 9] if b % 2 == 0 else [12, 10, 7, 5]
        for i, semi in enumerate(walk):
            s.note(0, (b * 4 + i) * TPB, root - 24 + semi, 95, TPB * 0.9)
        if b % 2 == 1:  # comping, anticipating the next bar
            root2, minor = PROG_AM[((b + 1) // 2) % 4]
            for p in chord_tones(root2, minor):
                s.note(1, (b * 4 + 3 + sw) * TPB, p, 65, TPB * 0.3)
    return s, bars * 4 * TPB


def waltz(bpm=150, name="waltz_150_3-4"):
    s = Song(name, "waltz (3/4)", meter=3, seed=19)
    s.tempo(0, bpm)
    s.program(0, 32)
    s.program(1, 0)
    bars = 32
    for b in range(bars):
        root, minor = PROG_AM[(b // 2) % 4]
        s.note(0, b * 3 * TPB, root - 24, 100, TPB * 0.9)
        for beat in (1, 2):
            for p in chord_tones(root, minor):
                s.note(1, (b * 3 + beat) * TPB, p, 60, TPB * 0.6)
        drum_bar(s, b, 3, {KICK: [(0, 100)], HAT: [(1, 60), (2, 60)]})
    return s, bars * 3 * TPB


def accel(name="pop_100-140_ramp"):
    """Tempo ramps 100 -> 140 BPM over 16 bars (a new tempo every beat), then holds."""
    s = Song(name, "pop (tempo ramp)", seed=20)
    s.program(0, 33)
    s.program(1, 0)
    bars = 28
    for beat in range(bars * 4):
        frac = min(1.0, max(0.0, (beat - 16) / 64))
        s.tempo(beat * TPB, 100 + 40 * frac)
    for b in range(bars):
        drum_bar(s, b, 4, {KICK: [(0, 110), (2, 105)], SNARE: [(1, 100), (3, 100)], HAT: eighths(70, 50)})
        bass_line(s, 0, b, 4, PROG_AM, [(0, 1, 0), (1, 1, 0), (2, 1, 7), (3, 1, 5)], 90)
        pad(s, 1, b, 4, PROG_AM, 50)
    return s, bars * 4 * TPB


def step(name="rock_132-108_step"):
    """Tempo jumps from 132 to 108 BPM at bar 12 (a half-time feel change)."""
    s = Song(name, "rock (tempo step)", seed=21)
    s.program(0, 33)
    s.program(1, 29)
    s.tempo(0, 132)
    s.tempo(12 * 4 * TPB, 108)
    bars = 24
    for b in range(bars):
        drum_bar(s, b, 4, {KICK: [(0, 110), (1.5, 85), (2, 105)], SNARE: [(1, 105), (3, 105)],
                           HAT: eighths(75, 55)})
        if b in (0, 12):
            s.hit(b * 4 * TPB, CRASH, 105)
        bass_line(s, 0, b, 4, PROG_E, [(i / 2, 0.5, 0) for i in range(8)])
        root, _ = PROG_E[b % 4]
        for p in (root - 12, root - 5):
            s.note(1, b * 4 * TPB, p, 75, 4 * TPB - 20)
    return s, bars * 4 * TPB


CLIPS = [rock, ballad, hiphop, house, dnb, funk, reggae, swing, waltz, accel, step]


def truth_from_midi(path):
    """Beat and downbeat times (s) of a MIDI file from its tempo map and time signature."""
    mid = mido.MidiFile(path)
    tempo_map = [(0, 500000)]
    meter = 4
    end_tick = 0
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo_map.append((tick, msg.tempo))
            elif msg.type == "time_signature" and tick == 0:
                meter = msg.numerator
        end_tick = max(end_tick, tick)
    tempo_map.sort(key=lambda x: x[0])
    # Later entries at the same tick win.
    dedup = {}
    for t, v in tempo_map:
        dedup[t] = v
    tempo_map = sorted(dedup.items())

    def seconds(tick):
        t, sec = 0.0, 0.0
        for i, (start, us) in enumerate(tempo_map):
            stop = tempo_map[i + 1][0] if i + 1 < len(tempo_map) else float("inf")
            if tick <= start:
                break
            span = min(tick, stop) - start
            sec += span * us / 1e6 / mid.ticks_per_beat
        return sec

    beats, downbeats = [], []
    for k in range(end_tick // mid.ticks_per_beat):
        t = seconds(k * mid.ticks_per_beat)
        beats.append(round(t, 6))
        if k % meter == 0:
            downbeats.append(round(t, 6))
    return {"beats": beats, "downbeats": downbeats, "meter": meter,
            "duration_s": seconds(end_tick)}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for make in CLIPS:
        song, end = make()
        mid = os.path.join(out, song.name + ".mid")
        song.save(mid, end)
        truth = truth_from_midi(mid)
        bpms = sorted({round(b, 1) for _, b in song.tempi})
        truth.update(genre=song.genre, tempo=f"{bpms[0]:g}" if len(bpms) == 1 else f"{bpms[0]:g}-{bpms[-1]:g}")
        with open(os.path.join(out, song.name + ".truth.json"), "w") as f:
            json.dump(truth, f, indent=1)
        print(f"{song.name}: {len(truth['beats'])} beats, {truth['duration_s']:.1f} s")


if __name__ == "__main__":
    main()
