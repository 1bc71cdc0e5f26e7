#!/usr/bin/env bash
# Start a PulseAudio daemon with a real-time paced null sink (`convoy_null`) and make it the
# default, so ALSA's default device (via libasound2-plugins) has a "sound card" to play
# into and `parec -d convoy_null.monitor` can record what was played. Idempotent.
set -euo pipefail
if pactl info >/dev/null 2>&1 && pactl list short sinks 2>/dev/null | grep -q convoy_null; then
  exit 0
fi
pulseaudio --daemonize=yes --exit-idle-time=-1 --disallow-exit -n \
  --load="module-native-protocol-unix" \
  --load="module-null-sink sink_name=convoy_null rate=48000" \
  --log-target=stderr 2>/dev/null || true
for _ in $(seq 50); do
  pactl info >/dev/null 2>&1 && break
  sleep 0.1
done
pactl set-default-sink convoy_null
echo "pulse-null: PulseAudio null sink convoy_null is the default output" >&2
