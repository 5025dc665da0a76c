#!/usr/bin/env bash
# Build the single-file binaries with PyInstaller, and the static agent with staticx.
#
#   packaging/build-binaries.sh [--quiet] [TARGET...]     (normally through `make binaries`)
#
# TARGET is one of venv, aami-agent, aami-server, aami, aami-agent-static, summary
# (default: all of them, in that order). `make binaries` calls it once per target
# whose sources changed, then `summary`, which prints one line per binary: size and
# the wall time of `BINARY version` (best of 3; a single-file binary unpacks itself
# into $TMPDIR at every start, so this is the real start-up cost on a node).
#
# The build venv uses Debian's /usr/bin/python3.11 (PYTHON_BUILD): staticx refuses
# interpreters it cannot make static (pyenv's, for one). It lives in build/venv, the
# PyInstaller work files in build/pyinstaller, logs in build/logs, binaries in dist/.
# staticx needs `patchelf` on PATH (Debian package patchelf; scripts/install-system-deps.sh).
# Exit codes: 0 built, 1 a build step failed (the log's tail is printed), 2 usage error.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON_BUILD=${PYTHON_BUILD:-/usr/bin/python3.11}
BUILD=$ROOT/build
VENV=$BUILD/venv
DIST=${DIST:-$ROOT/dist}
LOGS=$BUILD/logs
SPECS=$ROOT/packaging/pyinstaller
QUIET=0
ALL=(venv aami-agent aami-server aami aami-agent-static summary)

say() { ((QUIET)) || printf '%s\n' "$*"; }
fail() { printf 'build-binaries.sh: %s\n' "$*" >&2; exit 1; }

run_logged() {  # $1 step name, rest: command; output to build/logs/STEP.log
    local log=$LOGS/$1.log started=$SECONDS
    shift
    mkdir -p -- "$LOGS"
    say "building $(basename -- "$log" .log) ..."
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 -- "$log" >&2
        fail "$(basename -- "$log" .log) failed (full log: $log)"
    fi
    say "built $(basename -- "$log" .log) in $((SECONDS - started))s"
}

build_venv() {
    local stamp=$VENV/.installed
    [[ -x $PYTHON_BUILD ]] || fail "$PYTHON_BUILD not found (Debian: apt-get install python3.11-venv)"
    if [[ -f $stamp && $stamp -nt $ROOT/pyproject.toml ]]; then return; fi
    command -v patchelf >/dev/null || fail "patchelf is required by staticx (apt-get install patchelf)"
    run_logged venv make_venv
    touch -- "$stamp"
}

make_venv() {  # run under `if !`, where set -e does not apply: hence the &&
    rm -rf -- "$VENV" &&
        "$PYTHON_BUILD" -m venv "$VENV" &&
        "$VENV/bin/pip" install --quiet --upgrade pip &&
        "$VENV/bin/pip" install --quiet -e "${ROOT}[build]"
}

build_one() {  # $1 binary name = spec name
    build_venv
    run_logged "$1" "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
        --workpath "$BUILD/pyinstaller" --distpath "$DIST" "$SPECS/$1.spec"
}

build_static() {
    build_venv
    [[ -x $DIST/aami-agent ]] || fail "$DIST/aami-agent is missing: build aami-agent first"
    # staticx bundles the dynamic loader and every shared library the binary (and the
    # libraries PyInstaller unpacks) need, so the result runs on any Linux kernel with
    # no files of the host: an empty chroot is enough (tests/binaries).
    # --no-compress: the PyInstaller archive inside is compressed already; xz on top
    # saved 2.3 MiB but doubled the start-up (~0.5 s -> ~1 s, measured on 2 cores).
    run_logged aami-agent-static env PATH="$VENV/bin:$PATH" \
        "$VENV/bin/staticx" --strip --no-compress "$DIST/aami-agent" "$DIST/aami-agent-static.tmp"
    mv -f -- "$DIST/aami-agent-static.tmp" "$DIST/aami-agent-static"
}

startup_ms() {  # best wall time of three `BINARY version` runs, in milliseconds
    local best="" start end ms
    for _ in 1 2 3; do
        start=$(date +%s%N)
        "$1" version >/dev/null 2>&1 || { printf 'fails'; return; }
        end=$(date +%s%N)
        ms=$(((end - start) / 1000000))
        [[ -z $best || $ms -lt $best ]] && best=$ms
    done
    printf '%s ms' "$best"
}

summary() {
    local name path size
    for name in aami-agent aami-agent-static aami-server aami; do
        path=$DIST/$name
        [[ -f $path ]] || { printf '%-18s missing\n' "$name"; continue; }
        size=$(stat -c %s -- "$path")
        # `aami` and `aami-server` have no `version` subcommand; --help is their cheapest start.
        if [[ $name == aami || $name == aami-server ]]; then
            start=$(date +%s%N); "$path" --help >/dev/null; end=$(date +%s%N)
            printf '%-18s %6.1f MiB  start-up %s ms (--help)\n' "$name" \
                "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" $(((end - start) / 1000000))
        else
            printf '%-18s %6.1f MiB  start-up %s (version, best of 3)\n' "$name" \
                "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" "$(startup_ms "$path")"
        fi
    done
}

main() {
    local targets=() target
    while (($#)); do
        case $1 in
            --quiet) QUIET=1 ;;
            -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            venv|aami-agent|aami-server|aami|aami-agent-static|summary) targets+=("$1") ;;
            *) printf 'build-binaries.sh: unknown target or option: %s\n' "$1" >&2; exit 2 ;;
        esac
        shift
    done
    ((${#targets[@]})) || targets=("${ALL[@]}")
    mkdir -p -- "$DIST" "$BUILD"
    # Two builds at once (tests/binaries and tests/system both run `make binaries`)
    # would write the same work files: the second waits for the first.
    exec 9>"$BUILD/.binaries.lock"
    flock 9
    # PyInstaller's binary cache lives in ~/.cache by default, shared with every other
    # checkout on the machine; a concurrent build there corrupted its index once.
    export PYINSTALLER_CONFIG_DIR=${PYINSTALLER_CONFIG_DIR:-$BUILD/pyinstaller-config}
    for target in "${targets[@]}"; do
        case $target in
            venv) build_venv ;;
            aami-agent-static) build_static ;;
            summary) summary ;;
            *) build_one "$target" ;;
        esac
    done
}

main "$@"
