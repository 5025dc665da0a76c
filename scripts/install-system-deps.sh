#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium for the web UI tests,
# systemd-analyze for the unit files, nix for flake evaluation. Idempotent.
set -euo pipefail
want=(chromium systemd nix-bin)
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
