#!/usr/bin/env bash
# Install Convoy on a Raspberry Pi (Raspberry Pi OS / Debian with systemd; docs/pi.md).
#
#   sudo tools/pi/install.sh [--binary FILE] [--wifi ADDRESS/PREFIX | --mesh ADDRESS/PREFIX]
#                            [--ssid NAME] [--channel N] [--iface IFACE] [--rt-priority N]
#                            [--key FILE] [--prefix DIR] [--root DIR] [--dry-run]
#
# Installs the binary (PREFIX/bin/convoy), the configuration (/etc/convoy: the documented
# defaults as default.toml, a starter convoy.toml and convoy.env that are never
# overwritten), the systemd unit convoy.service (restart on failure, real-time priority,
# hardened), the udev rule for the Arduino (group dialout, /dev/convoy-led) and, on
# request, the fleet network: --wifi writes a NetworkManager ad-hoc profile, --mesh a
# batman-adv mesh service for large groups.
#
# The fleet key is /etc/convoy/fleet.key (root only, mode 600); the service reads it through
# systemd's LoadCredential= as /run/credentials/convoy.service/fleet.key. Every bike of a
# fleet needs the same key: the first install generates one, the others get a copy with
# --key. The starter convoy.toml gets a fresh web PIN and OSC control secret, printed once
# at the end.
#
#   --binary FILE     the convoy binary (default: target/release/convoy, or the
#                     aarch64/armv7 build from tools/cross.sh that matches this machine)
#   --wifi CIDR       ad-hoc WiFi profile with this bike's address, e.g. 10.42.0.12/24
#   --mesh CIDR       batman-adv mesh instead (installs batctl and iw), same address form
#   --ssid NAME       fleet network name (default convoy-mesh)
#   --channel N       2.4 GHz channel (default 6)
#   --iface IFACE     WiFi interface (default wlan0)
#   --rt-priority N   SCHED_RR priority of the service, 1-49 (default 20)
#   --key FILE        the fleet key to install (copy /etc/convoy/fleet.key from the first
#                     bike); without it an existing key is kept, else a new one is made
#   --prefix DIR      install prefix (default /usr/local)
#   --root DIR        install into a staging root (created if missing): files only,
#                     nothing is started, no package is installed (what CI tests)
#   --dry-run         print every action, change nothing
#
# Idempotent: a file is written only when its content or mode differs, systemd and udev
# are reloaded only when something they read changed, so a second run changes nothing.
# Every action is printed as one line: `install PATH`, `unchanged PATH`, `keep PATH`,
# `run COMMAND` (prefixed with `would` under --dry-run, `skip` for system commands in a
# staging root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

binary=""
root=""
prefix=/usr/local
dry=0
net=""
address=""
ssid=convoy-mesh
channel=6
iface=wlan0
rt_priority=20
key=""

die() { echo "install: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while (($#)); do
  case "$1" in
    --binary) need_value "$@"; binary=$2; shift 2 ;;
    --root) need_value "$@"; root=$2; shift 2 ;;
    --prefix) need_value "$@"; prefix=$2; shift 2 ;;
    --key) need_value "$@"; key=$2; shift 2 ;;
    --wifi|--mesh)
      need_value "$@"
      [[ -z $net ]] || die "--wifi and --mesh both use the WiFi interface: choose one"
      net=${1#--}; address=$2; shift 2 ;;
    --ssid) need_value "$@"; ssid=$2; shift 2 ;;
    --channel) need_value "$@"; channel=$2; shift 2 ;;
    --iface) need_value "$@"; iface=$2; shift 2 ;;
    --rt-priority) need_value "$@"; rt_priority=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

# --- validate everything before touching anything --------------------------------------
[[ $prefix == /* ]] || die "--prefix must be an absolute path, got '$prefix'"
if [[ -n $root ]]; then
  [[ $root == /* ]] || root=$PWD/$root
  [[ -d $root || ! -e $root ]] || die "--root $root is not a directory"
fi
[[ $rt_priority =~ ^[0-9]+$ ]] && ((rt_priority >= 1 && rt_priority <= 49)) ||
  die "--rt-priority must be 1-49 (below the kernel's IRQ threads at 50), got '$rt_priority'"
if [[ -n $net ]]; then
  [[ $address =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] ||
    die "--$net needs ADDRESS/PREFIX such as 10.42.0.12/24, got '$address'"
  for i in 1 2 3 4; do ((BASH_REMATCH[i] <= 255)) || die "--$net: '$address' is not an IPv4 address"; done
  ((BASH_REMATCH[5] >= 8 && BASH_REMATCH[5] <= 30)) || die "--$net: prefix length must be 8-30 in '$address'"
  [[ $channel =~ ^[0-9]+$ ]] && ((channel >= 1 && channel <= 13)) ||
    die "--channel must be a 2.4 GHz channel 1-13, got '$channel'"
  [[ $ssid =~ ^[A-Za-z0-9._-]{1,32}$ ]] || die "--ssid must be 1-32 letters, digits, '.', '_' or '-', got '$ssid'"
  [[ $iface =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--iface '$iface' is not an interface name"
fi
if [[ -z $binary ]]; then
  dist=${CARGO_TARGET_DIR:-$repo/target}
  case "$(uname -m)" in
    aarch64) candidates=("$dist/release/convoy" "$dist/cross-dist/convoy-aarch64.stripped") ;;
    armv7l) candidates=("$dist/release/convoy" "$dist/cross-dist/convoy-armv7.stripped") ;;
    *) candidates=("$dist/release/convoy") ;;
  esac
  for c in "${candidates[@]}"; do [[ -x $c ]] && { binary=$c; break; }; done
  [[ -n $binary ]] || die "no convoy binary found (looked at ${candidates[*]}); build one or pass --binary"
fi
[[ -f $binary && -x $binary ]] || die "--binary $binary is not an executable file"
if [[ -n $key ]]; then
  [[ -f $key && -r $key ]] || die "--key $key is not a readable file"
  k=$(tr -d ' \t\r\n' <"$key")
  [[ $k =~ ^[0-9a-fA-F]{32,128}$ || $k =~ ^[A-Za-z0-9+/]{22,}={0,2}$ ]] ||
    die "--key $key holds no hex or base64 key (make one with: convoy tool keygen FILE)"
fi
if [[ -z $root ]] && ((!dry)) && [[ $(id -u) -ne 0 ]]; then
  die "installing into / needs root: run with sudo, or use --root DIR / --dry-run"
fi

# Everything is valid: only now may the staging root be created.
if [[ -n $root ]]; then
  if [[ ! -d $root ]]; then
    say_root="create $root"
    if ((dry)); then echo "would $say_root"; else mkdir -p "$root"; echo "$say_root"; fi
  fi
  [[ -d $root ]] && root=$(cd "$root" && pwd)
  [[ $root == / ]] && root=""
fi

bindir=$prefix/bin
libdir=$prefix/lib/convoy
staging=0
[[ -n $root ]] && staging=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() { if ((dry)); then echo "would $*"; else echo "$*"; fi; }

# put SRC DEST MODE: install SRC as ROOT/DEST unless identical (content and mode). Returns 0
# when DEST changed (or would change), 1 when it was already right.
put() {
  local src=$1 dest=$2 mode=$3 path=$root$2
  if [[ -f $path ]] && cmp -s "$src" "$path" && [[ $(stat -c %a "$path") == "$mode" ]]; then
    echo "unchanged $dest"
    return 1
  fi
  say "install $dest (mode $mode)"
  if ((!dry)); then
    mkdir -p "$(dirname "$path")"
    # Write beside the target and rename, so a running service never sees half a file.
    install -m "$mode" "$src" "$path.convoy-new"
    mv -f "$path.convoy-new" "$path"
  fi
  return 0
}

# keep SRC DEST MODE: install only when DEST does not exist (the user's own settings).
keep() {
  local src=$1 dest=$2 mode=$3
  if [[ -e $root$dest ]]; then
    echo "keep $dest (exists; yours to edit)"
    return 1
  fi
  put "$src" "$dest" "$mode"
}

# system COMMAND…: a command that changes the running system (not files under the root).
system() {
  if ((dry)); then
    echo "would run $*"
  elif ((staging)); then
    echo "skip $* (staging root)"
  else
    echo "run $*"
    "$@"
  fi
}

render() { # render TEMPLATE OUT: fill in the @NAME@ placeholders
  sed -e "s|@BINDIR@|$bindir|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@RT_PRIORITY@|$rt_priority|g" \
    -e "s|@IFACE@|$iface|g" -e "s|@SSID@|$ssid|g" -e "s|@CHANNEL@|$channel|g" \
    -e "s|@ADDRESS@|$address|g" -e "s|@UUID@|${uuid:-}|g" "$1" >"$2"
}

# --- files -------------------------------------------------------------------------------
unit_changed=0
restart=0
udev_changed=0

put "$binary" "$bindir/convoy" 755 && restart=1

put "$repo/config/default.toml" /etc/convoy/default.toml 644 || true
# Fresh secrets for a new starter file (a kept file keeps its own).
pin=$(printf '%06d' $(($(od -An -tu4 -N4 /dev/urandom | tr -d ' ') % 1000000)))
secret=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
cat >"$tmp/convoy.toml" <<EOF
# This bike's Convoy settings: any key of /etc/convoy/default.toml (which documents them
# all) can be set here; \`sudo convoy --config /etc/convoy/convoy.toml config\` shows the
# result. Mode 600 (root only): it holds the web PIN and the OSC secret. The service reads a
# copy (systemd LoadCredential=); restart it after an edit: \`sudo systemctl restart convoy\`.
# A reinstall never overwrites this file.

[audio]
# The USB speaker through ALSA ("auto" falls back to silence when it is unplugged).
sink = "auto"
# The cheap resampler: ~3 % of a Pi Zero 2 W core instead of ~6 % (docs/benchmarks.md).
resampler = "fast"

[led]
# The Arduino on the USB link the udev rule makes (99-convoy-led.rules). Unplugged, the
# node plays on and reconnects when it comes back; "sim" draws a strip instead.
output = "serial"
port = "/dev/convoy-led"

[sync]
# "auto": the bikes elect their leader (highest fleet.priority, then a bike with tracks
# to play, then the highest id; docs/fleet.md) and follow it, with no address to type.
# Fixed roles instead: role = "leader" on one bike, role = "follower" and
# leader = "10.42.0.1:9123" on the others.
role = "auto"

[osc]
# The control port for TouchOSC and DAWs; every address starts with the secret below.
enabled = true

[node]
# This bike's vehicle id on the fleet network. Empty: the host name and a short hash of
# /etc/machine-id, so bikes flashed from one image still differ. Set a name you like.
id = ""

[security]
# The fleet key: /etc/convoy/fleet.key (root only), handed to the service by systemd's
# LoadCredential= (convoy.service). Every bike of a fleet needs the same key file.
key_file = "/run/credentials/convoy.service/fleet.key"

[security.control]
# OSC control (TouchOSC, DAWs) must start every address with this secret:
# /$secret/convoy/play. Generated by the installer.
secret = "$secret"

[web]
# The phone web app's PIN (the app is off until enabled = true). Generated by the installer.
pin = "$pin"
EOF
# Mode 600: the file holds the web PIN and the OSC control secret. The service reads it
# as a credential (LoadCredential=, like the fleet key); a user runs `sudo convoy …`.
fresh_config=0
if keep "$tmp/convoy.toml" /etc/convoy/convoy.toml 600; then
  restart=1
  fresh_config=1
elif [[ -f $root/etc/convoy/convoy.toml && $(stat -c %a "$root/etc/convoy/convoy.toml") != 600 ]]; then
  # A file kept from an older install (mode 644) keeps its content, not its mode.
  say "tighten /etc/convoy/convoy.toml to mode 600 (it holds the web PIN and control secret)"
  ((dry)) || chmod 600 "$root/etc/convoy/convoy.toml"
  restart=1
fi

# The fleet key: --key, else the one already installed, else a new one.
fresh_key=0
if [[ -n $key ]]; then
  tr -d ' \t\r\n' <"$key" >"$tmp/fleet.key"
  echo >>"$tmp/fleet.key"
  put "$tmp/fleet.key" /etc/convoy/fleet.key 600 && restart=1
else
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$tmp/fleet.key"
  echo >>"$tmp/fleet.key"
  if keep "$tmp/fleet.key" /etc/convoy/fleet.key 600; then
    restart=1
    fresh_key=1
  fi
fi
cat >"$tmp/convoy.env" <<'EOF'
# Arguments of `convoy node` for the service (see `convoy node --help`), e.g. the track a
# leader plays. A reinstall never overwrites this file.
CONVOY_NODE_ARGS="--track demo --status-every 5"
EOF
keep "$tmp/convoy.env" /etc/convoy/convoy.env 644 && restart=1

render "$here/convoy.service" "$tmp/convoy.service"
put "$tmp/convoy.service" /etc/systemd/system/convoy.service 644 && unit_changed=1

put "$here/99-convoy-led.rules" /etc/udev/rules.d/99-convoy-led.rules 644 && udev_changed=1

nm_changed=0
case "$net" in
  wifi)
    # A stable UUID (from the profile's name and interface) keeps reinstalls identical.
    uuid=$(printf 'convoy-adhoc %s' "$iface" | md5sum |
      sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
    render "$here/convoy-adhoc.nmconnection" "$tmp/adhoc"
    # NetworkManager ignores keyfiles readable by others.
    put "$tmp/adhoc" /etc/NetworkManager/system-connections/convoy-adhoc.nmconnection 600 &&
      nm_changed=1
    ;;
  mesh)
    put "$here/mesh.sh" "$libdir/mesh.sh" 755 || true
    render "$here/convoy-mesh.service" "$tmp/convoy-mesh.service"
    put "$tmp/convoy-mesh.service" /etc/systemd/system/convoy-mesh.service 644 && unit_changed=1
    freq=$((2407 + 5 * channel))
    printf '# Written by tools/pi/install.sh --mesh.\nMESH_IFACE=%s\nMESH_SSID=%s\nMESH_FREQ=%s\nMESH_ADDRESS=%s\n' \
      "$iface" "$ssid" "$freq" "$address" >"$tmp/mesh.env"
    put "$tmp/mesh.env" /etc/convoy/mesh.env 644 || true
    printf '# Written by tools/pi/install.sh --mesh: convoy-mesh.service owns %s.\n[keyfile]\nunmanaged-devices=interface-name:%s\n' \
      "$iface" "$iface" >"$tmp/nm-mesh.conf"
    put "$tmp/nm-mesh.conf" /etc/NetworkManager/conf.d/90-convoy-mesh.conf 644 && nm_changed=1
    printf 'batman-adv\n' >"$tmp/modules"
    put "$tmp/modules" /etc/modules-load.d/convoy-mesh.conf 644 || true
    ;;
esac

# --- the running system --------------------------------------------------------------------
if [[ $net == mesh ]]; then
  missing=()
  for p in batctl iw; do command -v "$p" >/dev/null || missing+=("$p"); done
  if ((${#missing[@]})); then
    system apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "unchanged packages batctl iw"
  fi
fi
if ((udev_changed)); then
  system udevadm control --reload-rules
  system udevadm trigger --subsystem-match=tty --action=change
fi
if ((nm_changed)); then
  if [[ $net == wifi ]]; then
    system nmcli connection reload
  else
    system systemctl reload NetworkManager
  fi
fi
((unit_changed)) && system systemctl daemon-reload
enable=(convoy.service)
[[ $net == mesh ]] && enable+=(convoy-mesh.service)
for u in "${enable[@]}"; do
  if ((!staging && !dry)) && systemctl is-enabled --quiet "$u" 2>/dev/null; then
    echo "unchanged $u enabled"
  elif ((staging)) && [[ -L $root/etc/systemd/system/multi-user.target.wants/$u ]]; then
    echo "unchanged $u enabled"
  elif ((staging && !dry)); then
    # systemctl --root enables without a running systemd; fall back to the symlink it makes.
    echo "enable $u"
    systemctl --root="$root" enable "$u" >/dev/null 2>&1 ||
      { mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
        ln -sfn "/etc/systemd/system/$u" "$root/etc/systemd/system/multi-user.target.wants/$u"; }
  else
    system systemctl enable "$u"
  fi
done
if ((!staging)); then
  if [[ $net == mesh ]]; then
    if ((!dry)) && systemctl is-active --quiet convoy-mesh.service 2>/dev/null; then
      echo "unchanged convoy-mesh.service running"
    else
      system systemctl start convoy-mesh.service
    fi
  fi
  if ((!dry)) && systemctl is-active --quiet convoy.service 2>/dev/null; then
    if ((restart || unit_changed)); then system systemctl restart convoy.service
    else echo "unchanged convoy.service running"; fi
  else
    system systemctl start convoy.service
  fi
fi

# --- what the rider needs to know, once ---------------------------------------------------
if ((!dry)); then
  if ((fresh_key)); then
    echo "fleet key: new key in /etc/convoy/fleet.key; every bike of this fleet needs the same one:"
    echo "  copy it to the others and install them with --key fleet.key"
  fi
  if ((fresh_config)); then
    echo "web PIN: $pin (web.pin in /etc/convoy/convoy.toml)"
    echo "OSC control secret: $secret (address /$secret/convoy/play; security.control.secret)"
  fi
fi
