#!/usr/bin/env bash
# Installs the Debian packages s3dlio builds and tests with, only when one is
# missing (so a prepared machine does no network work).  Needs root or sudo.
set -euo pipefail

packages=(cmake pkg-config gcc make libcurl4-openssl-dev libssl-dev nginx-light nodejs npm
          zstd lz4 openmpi-bin libopenmpi-dev python3-venv)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$pkg")
done
# A node or npm from elsewhere (nvm, the image) is as good as Debian's.
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs/}")
    missing=("${missing[@]/npm/}")
fi
# python3-venv only matters when the python3 on PATH lacks ensurepip.
if python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing=("${missing[@]/python3-venv/}")
fi
read -r -a missing <<< "${missing[*]}"
if ((${#missing[@]} == 0)); then
    exit 0
fi
echo "installing system packages: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
