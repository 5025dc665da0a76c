#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium for the web UI tests,
# systemd-analyze for the unit files, nix for flake evaluation; for `make binaries`
# and tests/binaries: Debian's Python 3.11 with venv (staticx refuses pyenv's), patchelf
# (staticx) and a static busybox (the script interpreter in the empty-root test); for
# tests/system: systemd-container (systemd-nspawn), debootstrap (the Debian 12 root the
# containers boot, cached in /var/cache/aami-systemd-root), openssl and curl; prometheus
# for its promtool (`promtool check metrics` judges our /metrics; the daemon the package
# starts is not wanted and is stopped). Idempotent.
set -euo pipefail
want=(chromium systemd nix-bin python3.11-venv patchelf busybox-static
      systemd-container debootstrap openssl curl prometheus)
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ " ${missing[*]-} " == *" prometheus "* ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
