#!/usr/bin/env bash
# Build (once) the Debian 12 minbase root that tests/system boots with systemd-nspawn,
# as a tar archive reused by every container of every run (see docs/install.md and
# tests/system/README.md). Kept outside the repository clone so that CI reuses it.
#
#   tests/system/make-rootfs.sh [ARCHIVE]   (default /var/cache/aami-systemd-root/rootfs.tar)
#
# Rebuilt only when the archive is missing or was made from another package list
# (the list's digest is stored next to it). A lock keeps concurrent runs from
# building it twice; the archive is written to a temporary name and renamed.
# Exit codes: 0 ready, 1 build failed.
set -euo pipefail

ARCHIVE=${1:-/var/cache/aami-systemd-root/rootfs.tar}
# systemd as PID 1; openssl + curl for the installers; sudo for `sudo -u aami` as the docs
# say; procps for pgrep in the tests; haproxy for the two-server deployment
# (docs/scaling.md), started only where a test configures it.
INCLUDE=systemd,systemd-sysv,dbus,ca-certificates,curl,openssl,sudo,procps,haproxy
STAMP="$ARCHIVE.include"
DIR=$(dirname -- "$ARCHIVE")

mkdir -p -- "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [[ -f $ARCHIVE && -f $STAMP && $(cat -- "$STAMP") == "$INCLUDE" ]]; then
    exit 0
fi
for tool in debootstrap systemd-nspawn; do
    command -v "$tool" >/dev/null || { echo "make-rootfs.sh: $tool is missing (scripts/install-system-deps.sh)" >&2; exit 1; }
done
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d "$DIR/.build.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
started=$SECONDS
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$WORK/root" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
# Containers share the host network: no services of their own that would listen.
rm -f -- "$WORK/root/etc/hostname" "$WORK/root/etc/systemd/system/multi-user.target.wants/haproxy.service"
tar -C "$WORK/root" --numeric-owner -cf "$WORK/rootfs.tar" .
mv -f -- "$WORK/rootfs.tar" "$ARCHIVE"
printf '%s\n' "$INCLUDE" >"$STAMP.tmp" && mv -f -- "$STAMP.tmp" "$STAMP"
echo "make-rootfs.sh: $ARCHIVE built in $((SECONDS - started))s" >&2
