"""Assemble the real-music development corpus from local copies of public repositories.

    python real_corpus.py MIRRORS OUT

MIRRORS is a folder holding git copies of the repositories named in CLIPS below, one per
repository, as `MIRRORS/<owner>+<name>/repo` (a bare or ordinary git directory: files are read
with `git show COMMIT:PATH`, so the working tree does not matter). Nothing here reaches the
network: bring the repositories onto the machine first. OUT receives, per clip,
`OUT/clips/<name>.wav` (16-bit PCM at 44.1 kHz, via sox: madmom reads other rates only through ffmpeg) and
`OUT/clips/<name>.truth.json` ({"beats", "downbeats", "duration_s", "genre", "tempo",
"downbeats_annotated", "source"}), the same layout as the synthetic corpus, so
`evaluate.py`, `run.sh` (`BEAT_EVAL_REAL=OUT`) and `examples/analysis_eval.rs --corpus OUT`
read it as they read the MIDI corpus.

Neither the recordings nor the annotations are committed to Convoy: the recordings are
excerpts of commercial releases (GTZAN and Ballroom excerpts, a pop song, a guitar
performance, a candombe recording) that the repositories below carry as test fixtures,
listening examples or course material, with no licence that lets Convoy redistribute them;
the annotation repositories carry no licence file (mirdata describes the Ballroom, Hainsworth
and SIMAC datasets as CC BY-NC-SA 4.0 and has no licence information for GTZAN), and one
audio repository's Apache-2.0 licence covers its code, not the recording. `docs/beat-eval.md`
lists the same provenance. GTZAN and Ballroom excerpts are found in public repositories by
their dataset file names (`genre.000NN.wav`, `Albums-…`/`Media-…`); both datasets have
human beat and bar annotations for every excerpt, so any such file can join the corpus.

The annotations are human beat annotations; where they carry the beat's position in the bar
(`time<TAB>position`), position 1 is a downbeat.
Only clips of at least 15 s whose annotation covers the whole excerpt are used (most
dataset-loader fixtures are 1–5 s long, and their own annotation files are truncated to a
few beats, hence the separate annotation repositories). Some annotations start after a
non-musical intro or stop up to 2 s before the end; `evaluate.py` ignores the first 5 s and
the estimates later than half a beat after the last annotated beat.
"""

import json
import os
import subprocess
import sys
import tempfile

MIRDATA = ("mir-dataset-loaders/mirdata", "b95bf3893616ff16082beed7869f144bb711c163")
BALLROOM_ANN = ("CPJKU/BallroomAnnotations", "1db08914a8ae15edb01f104046e30bad88effe67")
GTZAN_ANN = ("TempoBeatDownbeat/gtzan_tempo_beat", "fd9cafdebb6426fee41c3718791be61306323dd7")
ISMIR2019 = ("superbock/ISMIR2019", "8a40d5dc1a6d43ff3de65de9cd5d1435973a8da2")
# GTZAN excerpts as the dataset has them (the same bytes as mirdata's country.00000.wav,
# checked), committed as listening examples of a paper's results page.
PECMAE = ("palonso/pecmae-samples", "98c8665bc55416af2f75b1dad5f7be2c1c4f60b8")
# GTZAN hiphop.00018 re-encoded as MP3 (its decoded length is the original's to the sample:
# the encoder's delay is in the file's Info tag and is removed on decoding).
TRALIE = ("ctralie/GeometricBeatTracking", "2c35183f638c4afb51808c09e46da0f74384cba6")
# A Ballroom excerpt committed as test data of a student beat tracker.
KUPFERSCHMID = ("SamuelKupferschmid/beat-tracker", "6dcd2a40270ea05ed7af188801f0963bac2a9561")
# The ISMIR 2021 tempo/beat/downbeat tutorial's three sound examples and its authors'
# annotations (beat and bar position).
TUTORIAL = ("TempoBeatDownbeat/tutorial", "afb0ee92db696e5444ce51ddf1646d137059c79a")
FIX = "tests/resources/mir_datasets/"
TUT = "book/assets/ch2_basics/audio/"

GTZAN_NOTE = ("GTZAN (Tzanetakis & Cook 2002), excerpt of a commercial recording, no licence "
              "known; annotations Marchand & Peeters 2015")
BALLROOM_NOTE = ("Ballroom dataset (Gouyon et al. 2006), excerpt of a commercial recording; "
                 "annotations Krebs et al. 2013; mirdata: CC BY-NC-SA 4.0")
TUTORIAL_NOTE = ("; annotations by the tutorial's authors (Davies, Böck, Fuentes 2021); the "
                 "tutorial repository has no licence file")


def gtzan(genre, label):
    """One of the GTZAN excerpts in PECMAE."""
    return (f"gtzan_{genre}_00000", label,
            (PECMAE, f"gtzan/samples/{genre}.00000.wav"),
            (GTZAN_ANN, f"beats/gtzan_{genre}_00000.beats"), GTZAN_NOTE)


# name, genre, (audio repo, path), (annotation repo, path), licence note
CLIPS = [
    ("ballroom_waltz_105901", "ballroom waltz (3/4)",
     (MIRDATA, FIX + "ballroom/B_1.0/audio/Waltz/Media-105901.wav"),
     (BALLROOM_ANN, "Media-105901.beats"), BALLROOM_NOTE),
    ("gtzan_country_00000", "country",
     (MIRDATA, FIX + "gtzan_genre/gtzan_genre/genres/country/country.00000.wav"),
     (GTZAN_ANN, "beats/gtzan_country_00000.beats"), GTZAN_NOTE),
    ("hainsworth_001", "hainsworth (rock/pop)",
     (MIRDATA, FIX + "hainsworth/H_1.0/audio/hains001.flac"),
     (ISMIR2019, "hainsworth/annotations/beats/hainsworth_001.beats"),
     "Hainsworth dataset (2004), excerpt of a commercial recording; annotations Hainsworth, "
     "as republished by Böck et al. 2019; mirdata: CC BY-NC-SA 4.0"),
    ("simac_greek_01", "greek folk (no bar annotations)",
     (MIRDATA, FIX + "simac/S_1.0/audio/simac_01_H_mikri_Rallou.flac"),
     (ISMIR2019, "simac/annotations/beats/simac_greek_01_H_mikri_Rallou.beats"),
     "SIMAC dataset (Gouyon 2005), excerpt of a commercial recording; annotations as "
     "republished by Böck et al. 2019; mirdata: CC BY-NC-SA 4.0"),
    gtzan("blues", "blues"),
    gtzan("classical", "classical"),
    gtzan("disco", "disco"),
    gtzan("hiphop", "hip-hop"),
    gtzan("jazz", "jazz"),
    gtzan("metal", "metal"),
    gtzan("pop", "pop"),
    gtzan("reggae", "reggae"),
    gtzan("rock", "rock"),
    ("gtzan_hiphop_00018", "hip-hop",
     (TRALIE, "notebooks/hiphop.00018.mp3"),
     (GTZAN_ANN, "beats/gtzan_hiphop_00018.beats"),
     GTZAN_NOTE + "; audio re-encoded as MP3 in a repository whose Apache-2.0 licence covers "
     "its code, not the recording"),
    ("ballroom_classics4_01", "ballroom (3/4)",
     (KUPFERSCHMID, "BeatTracker/data/Albums-Ballroom_Classics4-01.wav"),
     (BALLROOM_ANN, "Albums-Ballroom_Classics4-01.beats"),
     BALLROOM_NOTE.replace("; mirdata: CC BY-NC-SA 4.0", "; the repository has no licence "
                           "file")),
    ("tutorial_pop_shampoo", "pop (tutorial's easy example)",
     (TUTORIAL, TUT + "easy_example.flac"), (TUTORIAL, TUT + "easy_example.beats"),
     "Yuko Tomita, \"Shampoo\", excerpt of a commercial recording" + TUTORIAL_NOTE),
    ("tutorial_guitar_choros", "solo classical guitar, rubato (tutorial's expressive example)",
     (TUTORIAL, TUT + "expressive_example.flac"),
     (TUTORIAL, TUT + "expressive_example.beats"),
     "H. Villa-Lobos, Choros No. 1, played by Kyuhee Park, excerpt of a published "
     "performance" + TUTORIAL_NOTE),
    ("tutorial_candombe", "Uruguayan candombe (tutorial's non-western example)",
     (TUTORIAL, TUT + "nonwestern_example.flac"),
     (TUTORIAL, TUT + "nonwestern_example.beats"),
     "excerpt of a recording of the Candombe dataset (Nunes et al. 2015; mirdata: CC BY "
     "4.0, but which recording and excerpt the tutorial took is not stated, so it is not "
     "committed either)" + TUTORIAL_NOTE),
]


def git_show(mirrors, repo_commit, path):
    repo, commit = repo_commit
    gitdir = os.path.join(mirrors, repo.replace("/", "+"), "repo")
    if not os.path.isdir(gitdir):
        raise SystemExit(f"{repo} is not in {mirrors} (expected {gitdir})")
    return subprocess.run(["git", "-C", gitdir, "show", f"{commit}:{path}"], check=True,
                          capture_output=True).stdout


def parse_beats(text):
    beats, downbeats, positions = [], [], False
    for line in text.decode().splitlines():
        parts = line.split()
        if not parts:
            continue
        t = float(parts[0])
        beats.append(t)
        if len(parts) > 1:
            positions = True
            if int(float(parts[1])) == 1:
                downbeats.append(t)
    return beats, downbeats, positions


def to_wav(data, suffix, wav):
    """The repository's file (WAV, FLAC or MP3 bytes) as 16-bit PCM at 44.1 kHz in `wav`.
    sox reads WAV and FLAC; MP3 is decoded by soundfile (libsndfile >= 1.1, whose mpg123
    removes the encoder delay named in the file's Info tag) and then handed to sox. `-R`: the
    same dither every run, so the same repository gives the same WAV bytes."""
    with tempfile.TemporaryDirectory() as tmpdir:
        src = os.path.join(tmpdir, "in" + suffix)
        with open(src, "wb") as f:
            f.write(data)
        if suffix.lower() == ".mp3":
            import soundfile

            samples, rate = soundfile.read(src)
            src = os.path.join(tmpdir, "decoded.wav")
            soundfile.write(src, samples, rate, subtype="PCM_16")
        subprocess.run(["sox", "-R", src, "-b", "16", "-r", "44100", wav], check=True)


def main():
    mirrors, out = sys.argv[1], sys.argv[2]
    clips = os.path.join(out, "clips")
    os.makedirs(clips, exist_ok=True)
    for name, genre, audio, ann, licence in CLIPS:
        wav = os.path.join(clips, name + ".wav")
        # Written under another name and renamed when its truth is in place: a reader that
        # globs clips/*.wav while the corpus grows never sees half a clip.
        part = os.path.join(clips, "." + name + ".part.wav")
        to_wav(git_show(mirrors, audio[0], audio[1]), os.path.splitext(audio[1])[1], part)
        duration = float(subprocess.run(["soxi", "-D", part], check=True, capture_output=True,
                                        text=True).stdout)
        beats, downbeats, positions = parse_beats(git_show(mirrors, ann[0], ann[1]))
        ibi = sorted(b - a for a, b in zip(beats, beats[1:]))
        period = ibi[len(ibi) // 2]
        truth = {
            "beats": beats, "downbeats": downbeats, "downbeats_annotated": positions,
            "duration_s": duration, "genre": genre, "tempo": f"{60 / period:.0f}",
            "source": {"audio": f"{audio[0][0]}@{audio[0][1][:12]}:{audio[1]}",
                       "annotations": f"{ann[0][0]}@{ann[0][1][:12]}:{ann[1]}",
                       "licence": licence},
        }
        with open(os.path.join(clips, name + ".truth.json"), "w") as f:
            json.dump(truth, f, indent=1)
        os.replace(part, wav)
        print(f"{name}: {duration:.1f} s, {len(beats)} beats {beats[0]:.2f}–{beats[-1]:.2f} s, "
              f"{len(downbeats)} downbeats, ~{truth['tempo']} BPM")


if __name__ == "__main__":
    main()
