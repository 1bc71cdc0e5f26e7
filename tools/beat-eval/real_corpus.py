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
excerpts of commercial releases that the dataset loaders ship as test fixtures, with no
licence that lets Convoy redistribute them, and the annotation repositories carry no licence
file (mirdata describes the Ballroom, Hainsworth and SIMAC datasets as CC BY-NC-SA 4.0 and
has no licence information for GTZAN). `docs/beat-eval.md` lists the same provenance.

The annotations are human beat annotations; where they carry the beat's position in the bar
(`time<TAB>position`), position 1 is a downbeat. Only clips of at least 15 s whose annotation
covers the whole excerpt are used (most dataset-loader fixtures are 1–5 s long, and their own
annotation files are truncated to a few beats, hence the separate annotation repositories).
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
FIX = "tests/resources/mir_datasets/"

# name, genre, (audio repo, path), (annotation repo, path), licence note
CLIPS = [
    ("ballroom_waltz_105901", "ballroom waltz (3/4)",
     (MIRDATA, FIX + "ballroom/B_1.0/audio/Waltz/Media-105901.wav"),
     (BALLROOM_ANN, "Media-105901.beats"),
     "Ballroom dataset (Gouyon et al. 2006), excerpt of a commercial recording; annotations "
     "Krebs et al. 2013; mirdata: CC BY-NC-SA 4.0"),
    ("gtzan_country_00000", "country",
     (MIRDATA, FIX + "gtzan_genre/gtzan_genre/genres/country/country.00000.wav"),
     (GTZAN_ANN, "beats/gtzan_country_00000.beats"),
     "GTZAN (Tzanetakis & Cook 2002), excerpt of a commercial recording, no licence known; "
     "annotations Marchand & Peeters 2015"),
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


def main():
    mirrors, out = sys.argv[1], sys.argv[2]
    clips = os.path.join(out, "clips")
    os.makedirs(clips, exist_ok=True)
    for name, genre, audio, ann, licence in CLIPS:
        data = git_show(mirrors, audio[0], audio[1])
        wav = os.path.join(clips, name + ".wav")
        with tempfile.NamedTemporaryFile(suffix=os.path.splitext(audio[1])[1]) as tmp:
            tmp.write(data)
            tmp.flush()
            subprocess.run(["sox", tmp.name, "-b", "16", "-r", "44100", wav], check=True)
        duration = float(subprocess.run(["soxi", "-D", wav], check=True, capture_output=True,
                                        text=True).stdout)
        beats, downbeats, positions = parse_beats(git_show(mirrors, ann[0], ann[1]))
        ibi = sorted(b - a for a, b in zip(beats, beats[1:]))
        truth = {
            "beats": beats, "downbeats": downbeats, "downbeats_annotated": positions,
            "duration_s": duration, "genre": genre, "tempo": f"{60 / ibi[len(ibi) // 2]:.0f}",
            "source": {"audio": f"{audio[0][0]}@{audio[0][1][:12]}:{audio[1]}",
                       "annotations": f"{ann[0][0]}@{ann[0][1][:12]}:{ann[1]}",
                       "licence": licence},
        }
        with open(os.path.join(clips, name + ".truth.json"), "w") as f:
            json.dump(truth, f, indent=1)
        print(f"{name}: {duration:.1f} s, {len(beats)} beats, {len(downbeats)} downbeats, "
              f"~{truth['tempo']} BPM")


if __name__ == "__main__":
    main()
