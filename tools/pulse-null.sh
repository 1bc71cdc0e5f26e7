#!/usr/bin/env bash
# Start a PulseAudio daemon with a real-time paced null sink (`convoy_null`) and make it the
# default, so ALSA's default device (via libasound2-plugins) has a "sound card" to play
# into and `parec -d convoy_null.monitor` can record what was played. Idempotent.
#
# A null sink that nothing listens to at low latency renders in blocks of up to 2 s
# (module-null-sink's idle block). A stream that starts then gets its first three periods
# taken and then waits for the sink's next block: 0.4–2 s of a stalled stream, which a
# sound card never does (Convoy's leader then catches up again and again, and the pulse
# test lost seconds of tone). So a low-latency reader of the monitor is kept running
# beside the daemon: the sink then renders every ~10 ms, like a card's DMA period.
set -euo pipefail
keeper=(parec --latency-msec=10 -d convoy_null.monitor --raw)
if ! pactl info >/dev/null 2>&1 || ! pactl list short sinks 2>/dev/null | grep -q convoy_null; then
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
fi
if ! pgrep -f -x "${keeper[*]}" >/dev/null; then
  setsid "${keeper[@]}" </dev/null >/dev/null 2>&1 &
  echo "pulse-null: keeping convoy_null paced at ~10 ms (${keeper[*]})" >&2
fi
