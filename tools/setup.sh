#!/usr/bin/env bash
# Install what Convoy needs on a fresh Debian machine (idempotent; uses sudo when not root).
#   tools/setup.sh          build + run dependencies
#   tools/setup.sh --test   plus what the test suite uses (PulseAudio null sink, socat, …)
set -euo pipefail
pkgs=(pkg-config libasound2-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(pulseaudio pulseaudio-utils libasound2-plugins alsa-utils socat sox
         chrony liblo-tools python3-pip
         arduino-mk arduino-core-avr simavr libsimavr-dev)
  # fleet membership tests: network namespaces, veth and a bridge (tests/util/netns.rs)
  pkgs+=(iproute2)
  # Pi installer tests (tests/pi.rs): systemd-analyze verifies the systemd units.
  pkgs+=(systemd)
  # Web app browser test (tests/web_browser.rs, an ignored test): headless Chromium.
  pkgs+=(chromium chromium-driver fonts-dejavu-core)
fi
# OSC interop tests (tests/osc_tools.rs): python-osc, the reference Python OSC library.
py_osc=0
[[ "${1:-}" == "--test" ]] && ! python3 -c 'import pythonosc' 2>/dev/null && py_osc=1
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Ableton Link interop tests (tests/link.rs): aalink, a Python Link peer (never linked).
py_link=0
[[ "${1:-}" == "--test" ]] && ! python3 -c 'import aalink' 2>/dev/null && py_link=1
if ((py_link)); then
  echo "setup: installing aalink" >&2
  python3 -m pip install -q --break-system-packages 'aalink==0.2.3' \
    || python3 -m pip install -q 'aalink==0.2.3'
fi
if ((py_osc)); then
  echo "setup: installing python-osc" >&2
  python3 -m pip install -q --break-system-packages 'python-osc>=1.9,<2' \
    || python3 -m pip install -q 'python-osc>=1.9,<2'
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and rerun" >&2
  exit 1
fi
