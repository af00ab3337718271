#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building, testing and serving epsvae.
# Idempotent: each step is skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/lib.sh

apt_pkgs=()
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || apt_pkgs+=(mesa-vulkan-drivers)
[ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ] || apt_pkgs+=(libvulkan1)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "setup: apt-get install ${apt_pkgs[*]}"
  apt_install "${apt_pkgs[@]}"
fi
# The lint and format checks of tools/test.sh.
for c in clippy rustfmt; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
# lavapipe complains about XDG_RUNTIME_DIR when it is unset; any existing folder silences it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
timed "fetch ST-LPIPS weights" bash tools/fetch_lpips.sh
