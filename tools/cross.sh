#!/usr/bin/env bash
# Cross-compile Convoy for the Raspberry Pi (docs/cross.md) and, with --test, run the
# library's unit tests under qemu-user.
#
#   tools/cross.sh [aarch64|armv7|all] [--variant both|cpal|nocpal] [--test]
#
# Idempotent: installs what it needs from Debian (sudo when not root) and skips what is
# there. Per target it builds (release profile)
#   DIST/convoy-TARGET          --no-default-features --features cpal-output: the cpal (ALSA)
#                               output, when libasound2-dev:ARCH installs (--variant cpal falls
#                               back to nocpal when it does not)
#   DIST/convoy-TARGET-nocpal   --no-default-features (no ALSA; what the qemu tests use)
# plus stripped copies (*.stripped), DIST = ${CARGO_TARGET_DIR:-target}/cross-dist.
# Neither has the `rig` feature (src/rig: `demo`, `tool scenario`, `tool impair`): a bike
# carries only what it runs.
# --test runs the library's unit tests (--no-default-features, release profile, so they
# reuse the release build's dependencies) under qemu-user.
#
# The Rust standard library for the target comes from, in this order (CONVOY_CROSS_RUST
# forces one: rustup | debian | build-std):
#   rustup     the target is installed in rustup (or `rustup target add` works);
#   debian     Debian's rustc-web + libstd-rust-web-dev:ARCH (multiarch);
#   build-std  Debian's rustc-web + rust-web-src, std built from source (-Zbuild-std),
#              for when the multiarch std is not installable.
# The Debian modes use their own target dir (${CARGO_TARGET_DIR:-target}/cross-MODE) so
# they never invalidate the native build.
set -euo pipefail
cd "$(dirname "$0")/.."

which=all
run_tests=0
variant=both
while (($#)); do
  case "$1" in
    aarch64|armv7|all) which=$1; shift ;;
    --test) run_tests=1; shift ;;
    --variant)
      [[ ${2:-} =~ ^(both|cpal|nocpal)$ ]] ||
        { echo "cross: --variant must be both, cpal or nocpal, got '${2:-}'" >&2; exit 2; }
      variant=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "cross: unknown argument $1" >&2; exit 2 ;;
  esac
done

sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo
target_root=${CARGO_TARGET_DIR:-$PWD/target}
dist=$target_root/cross-dist
mkdir -p "$dist"
updated=0

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_update() {
  if ((!updated)); then
    # A mirror with one stale index (seen for bookworm-security armhf) makes `apt-get
    # update` fail while every other index is fine: carry on, the install will tell.
    $sudo apt-get update -qq || echo "cross: apt-get update reported errors; continuing" >&2
    updated=1
  fi
}
# Install packages that are missing; returns non-zero (without exiting) if apt refuses.
apt_install() {
  local missing=()
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  apt_update
  echo "cross: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

build_target() {
  local name=$1 triple debarch gnu qemu
  case "$name" in
    aarch64) triple=aarch64-unknown-linux-gnu debarch=arm64 gnu=aarch64-linux-gnu qemu=qemu-aarch64 ;;
    armv7) triple=armv7-unknown-linux-gnueabihf debarch=armhf gnu=arm-linux-gnueabihf qemu=qemu-arm ;;
  esac
  local env_triple=${triple//-/_}
  echo "== $triple" >&2

  apt_install pkg-config "gcc-$gnu" "libc6-dev-$debarch-cross" qemu-user
  if ! dpkg --print-foreign-architectures | grep -qx "$debarch"; then
    $sudo dpkg --add-architecture "$debarch"
    updated=0
  fi

  # The Rust standard library for the target.
  local mode=${CONVOY_CROSS_RUST:-auto} cargo=(cargo) zflags=()
  if [[ $mode == auto ]]; then
    if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
      mode=rustup
    elif installed rustc-web && installed "libstd-rust-web-dev:$debarch"; then
      mode=debian
    elif command -v rustup >/dev/null && timeout 120 rustup target add "$triple" >/dev/null 2>&1; then
      mode=rustup
    elif apt_install rustc-web cargo-web "libstd-rust-web-dev:$debarch"; then
      mode=debian
    else
      mode=build-std
    fi
  fi
  local tdir=$target_root
  case "$mode" in
    rustup) rustup target list --installed | grep -qx "$triple" || rustup target add "$triple" ;;
    debian)
      apt_install rustc-web cargo-web "libstd-rust-web-dev:$debarch"
      cargo=(env RUSTC=/usr/bin/rustc /usr/bin/cargo)
      tdir=$target_root/cross-debian ;;
    build-std)
      apt_install rustc-web cargo-web rust-web-src
      # -Zbuild-std on a stable compiler: RUSTC_BOOTSTRAP unlocks it for this build only.
      cargo=(env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo)
      zflags=(-Zbuild-std)
      tdir=$target_root/cross-build-std ;;
    *) echo "cross: CONVOY_CROSS_RUST must be rustup, debian or build-std" >&2; exit 2 ;;
  esac
  echo "cross: $triple: Rust std from $mode (target dir $tdir)" >&2

  # cpal needs ALSA for the target (alsa-sys finds it with pkg-config).
  local with_cpal=0 with_nocpal=0
  [[ $variant != nocpal ]] && with_cpal=1
  [[ $variant != cpal ]] && with_nocpal=1
  if ((with_cpal)) && ! apt_install "libasound2-dev:$debarch"; then
    echo "cross: libasound2-dev:$debarch is not installable here; building without cpal only" >&2
    with_cpal=0 with_nocpal=1
  fi
  export PKG_CONFIG_ALLOW_CROSS=1
  export "PKG_CONFIG_LIBDIR_${env_triple}=/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
  export "PKG_CONFIG_SYSROOT_DIR_${env_triple}=/"

  local out=$tdir/$triple/release/convoy
  if ((with_cpal)); then
    CARGO_TARGET_DIR=$tdir "${cargo[@]}" build "${zflags[@]}" --release --locked --target "$triple" \
      --no-default-features --features cpal-output --bin convoy
    cp "$out" "$dist/convoy-$name"
    # The target's libasound comes from multiarch; libc stays the cross one (see above).
    "$qemu" -L "/usr/$gnu" -E "LD_LIBRARY_PATH=/usr/$gnu/lib:/usr/lib/$gnu" "$dist/convoy-$name" --version
  fi
  if ((with_nocpal)); then
    CARGO_TARGET_DIR=$tdir "${cargo[@]}" build "${zflags[@]}" --release --locked --target "$triple" \
      --no-default-features --bin convoy
    cp "$out" "$dist/convoy-$name-nocpal"
    "$qemu" -L "/usr/$gnu" -E "LD_LIBRARY_PATH=/usr/$gnu/lib" "$dist/convoy-$name-nocpal" --version
  fi
  for f in "$dist/convoy-$name" "$dist/convoy-$name-nocpal"; do
    [[ -f $f ]] || continue
    "$gnu-strip" -o "$f.stripped" "$f"
  done

  if ((run_tests)); then
    # The runner (qemu-user with the target's libc) is set in .cargo/config.toml.
    CARGO_TARGET_DIR=$tdir "${cargo[@]}" test "${zflags[@]}" --release --locked --lib \
      --target "$triple" --no-default-features
  fi
}

case "$which" in
  all) build_target aarch64; build_target armv7 ;;
  *) build_target "$which" ;;
esac
echo "cross: binaries in $dist:" >&2
ls -l "$dist" >&2
