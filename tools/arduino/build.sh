#!/usr/bin/env bash
# Build the Convoy LED firmware (arduino-mk) and the simavr runner used by
# the firmware-in-the-loop test (tests/led_firmware.rs).
#
#   tools/arduino/build.sh [--install-deps]
#
# Outputs in tools/arduino/build/ (or $CONVOY_FW_BUILD_DIR):
#   convoy_led.elf, convoy_led.hex, size.txt, simrun
# Exit code 3 means the toolchain is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${CONVOY_FW_BUILD_DIR:-$here/build}"
deps=(arduino-mk arduino-core-avr gcc-avr avr-libc simavr libsimavr-dev gcc make)

if [[ "${1:-}" == "--install-deps" ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${deps[@]}" socat
fi

missing=()
for f in /usr/share/arduino/Arduino.mk /usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h \
         /usr/bin/avr-gcc /usr/include/simavr/sim_avr.h /usr/include/simavr/avr_uart.h; do
    [[ -e "$f" ]] || missing+=("$f")
done
if (( ${#missing[@]} )); then
    echo "build.sh: firmware toolchain missing (${missing[*]})." >&2
    echo "build.sh: install it with: $0 --install-deps  (apt-get install ${deps[*]})" >&2
    exit 3
fi

mkdir -p "$out/fw"
if ! make -C "$here/convoy_led" OBJDIR="$out/fw" >"$out/make.log" 2>&1; then
    cat "$out/make.log" >&2
    echo "build.sh: firmware build failed" >&2
    exit 1
fi
cp "$out/fw/convoy_led.elf" "$out/fw/convoy_led.hex" "$out/"
avr-size --mcu=atmega328p -C --format=avr "$out/convoy_led.elf" | grep -E 'Program|Data' | tee "$out/size.txt"

if [[ ! -x "$out/simrun" || "$here/simrun.c" -nt "$out/simrun" ]]; then
    gcc -O2 -Wall "$here/simrun.c" -o "$out/simrun" \
        -I/usr/include/simavr -lsimavr -lutil
fi
echo "build.sh: ok: $out/convoy_led.elf $out/simrun"
