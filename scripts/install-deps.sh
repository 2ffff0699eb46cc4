#!/usr/bin/env bash
# Installs the Debian 12 packages KVWorld needs, only those missing. Runs as root (or through sudo).
#   scripts/install-deps.sh            build + test + GUI dependencies
#   scripts/install-deps.sh --minimal  only what the engine and the CLI need
set -euo pipefail
minimal=0
[[ "${1:-}" == "--minimal" ]] && minimal=1

pkgs=(cmake g++ ninja-build pkg-config git nlohmann-json3-dev libopenblas-dev libcli11-dev libstb-dev
      libgtest-dev libgmock-dev)
if [[ $minimal == 0 ]]; then
  pkgs+=(libglfw3-dev libimgui-dev libsdl2-dev libgl-dev libegl-dev libgl1-mesa-dri xvfb xauth
         clang libclang-rt-14-dev ffmpeg python3-numpy python3-matplotlib imagemagick)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
