#!/usr/bin/env bash
# Regenerate the small real-codec fixtures under tests/fixtures from Convoy's own signal
# generator (the reference the decode tests compare against). Needs sox, flac, lame, oggenc
# (`apt-get install sox flac lame vorbis-tools`). The outputs are committed; rerun only when
# the generator changes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures
mkdir -p "$out"
convoy=${CONVOY:-target/debug/convoy}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1 s of a 440 Hz sine, 16-bit stereo at 44.1 kHz, and mono at 22.05 kHz.
"$convoy" tool gen sine:440 "$tmp/s44.wav" --seconds 1 --rate 44100 --pcm16
"$convoy" tool gen sine:440 "$out/sine440_22k_mono.wav" --seconds 1 --rate 22050 --channels 1 --pcm16
cp "$tmp/s44.wav" "$out/sine440_44k.wav"
flac --silent --force -o "$out/sine440_44k.flac" "$tmp/s44.wav"
lame --quiet -b 128 "$tmp/s44.wav" "$out/sine440_44k.mp3"
oggenc --quiet -q 4 -o "$out/sine440_44k.ogg" "$tmp/s44.wav"
# 48 kHz FLAC of the demo song start, for the decode+resample benchmark's FLAC input.
ls -l "$out"
