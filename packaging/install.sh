#!/usr/bin/env bash
# AAMI offline bundle installer (USB install, upgrade, rollback). See docs/install.md.
#
#   ./install.sh --key /media/usb/release.pub      # first install, from the unpacked bundle
#   ./install.sh                                   # upgrade: verifies with /etc/aami/release.pub
#   ./install.sh --rollback                        # back to the previous release
#
# Order of trust: nothing is written until the bundle has been verified.
#   1. the release key comes from --key or from the previous install, never from
#      the bundle itself (a forged bundle would carry a forged key);
#   2. MANIFEST.sha256 and its raw Ed25519 signature are copied to a private
#      staging directory and the signature is checked there (openssl);
#   3. every manifest path is checked to be a plain relative path (no "..", no
#      absolute paths, no duplicates: path traversal), every file of the bundle
#      must be listed and no symlinks are allowed (smuggled files);
#   4. the listed files are copied to staging and hashed there (sha256sum -c), so
#      the bytes installed are the bytes verified, even if the medium changes;
#   5. only then is the release copied under /opt/aami/releases and activated by
#      swapping symlinks; configuration (/etc/aami) and state (/var/lib/aami-*)
#      are never overwritten. The previous release stays for --rollback.
# Exit codes: 0 done, 1 verification or installation failed, 2 usage error.
set -Eeuo pipefail
umask 022

PROGRAMS=(aami-agent aami-server aami)
SERVICES=(aami-agent aami-server)
MANIFEST=MANIFEST.sha256
SIGNATURE=MANIFEST.sha256.sig
ENVELOPE=MANIFEST.dsse.json
PAYLOAD_TYPE=application/vnd.aami.bundle-manifest+sha256sum

DESTDIR=${DESTDIR:-}
BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KEY=""
ROLLBACK=0
START=0
QUIET=0
STAGING=""

usage() {
    cat <<'EOF'
usage: install.sh [--bundle DIR] [--key RELEASE.pub] [--destdir DIR] [--start] [--quiet]
       install.sh --rollback [--destdir DIR] [--quiet]
  --bundle DIR    unpacked bundle (default: the directory holding this script)
  --key FILE      release public key (default: DESTDIR/etc/aami/release.pub from a
                  previous install; required the first time)
  --destdir DIR   install under DIR instead of / (also the DESTDIR variable), made
                  if missing; no systemctl or systemd-sysusers calls are made then
  --start         enable and start aami-server after installing (not with --destdir)
  --rollback      switch back to the previous release
  --quiet         print only errors and the final summary
EOF
}

say() { ((QUIET)) || printf '%s\n' "$*"; }
fail() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }
cleanup() { [[ -n $STAGING ]] && rm -rf -- "$STAGING"; return 0; }
trap cleanup EXIT

parse_args() {
    while (($#)); do
        case $1 in
            --bundle) [[ $# -ge 2 ]] || usage_error "--bundle needs a directory"; BUNDLE=$2; shift ;;
            --key) [[ $# -ge 2 ]] || usage_error "--key needs a file"; KEY=$2; shift ;;
            --destdir) [[ $# -ge 2 ]] || usage_error "--destdir needs a directory"; DESTDIR=$2; shift ;;
            --rollback) ROLLBACK=1 ;;
            --start) START=1 ;;
            --quiet) QUIET=1 ;;
            -h|--help) usage; exit 0 ;;
            *) usage_error "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
    DESTDIR=${DESTDIR%/}
    if [[ -n $DESTDIR ]]; then
        [[ -d $DESTDIR || ! -e $DESTDIR ]] || usage_error "--destdir: $DESTDIR is not a directory"
        mkdir -p -- "$DESTDIR" || usage_error "--destdir: cannot create $DESTDIR"
        if ((START)); then
            say "--start is ignored with --destdir: nothing is started in $DESTDIR" >&2
        fi
    fi
    for tool in openssl sha256sum; do
        command -v "$tool" >/dev/null || fail "$tool is required to verify the bundle"
    done
}

root_path() { printf '%s%s' "$DESTDIR" "$1"; }

# --- verification (reads the bundle, writes only to a private staging dir) ---

check_manifest_paths() {  # $1: manifest file; prints the listed paths
    local line hash path
    declare -A seen=()
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^([0-9a-f]{64})\ \ (.+)$ ]] || fail "$MANIFEST: malformed line: $line"
        hash=${BASH_REMATCH[1]} path=${BASH_REMATCH[2]}
        case "/$path/" in
            *"/../"*|*"/./"*|*//*) fail "$MANIFEST: unsafe path: $path" ;;
        esac
        [[ $path != /* && $path != MANIFEST.* ]] || fail "$MANIFEST: unsafe path: $path"
        [[ -z ${seen[$path]:-} ]] || fail "$MANIFEST: listed twice: $path"
        seen[$path]=$hash
        printf '%s\n' "$path"
    done <"$1"
}

verify_signature() {  # $1: dir holding the manifest and its signature
    [[ -f $1/$SIGNATURE ]] || fail "$SIGNATURE is missing: the bundle is not signed"
    openssl pkeyutl -verify -pubin -inkey "$KEY" -rawin \
        -in "$1/$MANIFEST" -sigfile "$1/$SIGNATURE" >/dev/null 2>&1 \
        || fail "$MANIFEST: signature does not verify with $KEY"
}

key_id() {  # DSSE key id: hex SHA-256 of the raw 32-byte Ed25519 public key
    openssl pkey -pubin -in "$KEY" -outform DER 2>/dev/null | tail -c 32 | sha256sum | cut -d' ' -f1
}

verify_envelope() {  # $1: dir holding the manifest and its DSSE envelope
    local dir=$1 sig payload keyid
    [[ -f $dir/$ENVELOPE ]] || fail "$ENVELOPE is missing: the bundle is incomplete"
    # The envelope has two accepted spellings (docs/install.md: compact, or
    # json.dumps indent=2), rebuilt here from the manifest and the key and compared
    # byte for byte: any other byte, anywhere, is refused.
    sig=$(grep -o '"sig": *"[A-Za-z0-9+/=]*"' "$dir/$ENVELOPE" | head -n1 | sed 's/.*"\([^"]*\)"$/\1/')
    payload=$(base64 -w0 <"$dir/$MANIFEST")
    keyid=$(key_id)
    if ! cmp -s "$dir/$ENVELOPE" <(printf '{"payloadType":"%s","payload":"%s","signatures":[{"keyid":"%s","sig":"%s"}]}\n' \
            "$PAYLOAD_TYPE" "$payload" "$keyid" "$sig") \
        && ! cmp -s "$dir/$ENVELOPE" <(printf '{\n  "payloadType": "%s",\n  "payload": "%s",\n  "signatures": [\n    {\n      "keyid": "%s",\n      "sig": "%s"\n    }\n  ]\n}\n' \
            "$PAYLOAD_TYPE" "$payload" "$keyid" "$sig"); then
        fail "$ENVELOPE: not the release key's envelope over $MANIFEST"
    fi
    # DSSE signs PAE(type, body) = "DSSEv1 LEN(type) type LEN(body) body".
    { printf 'DSSEv1 %d %s %d ' "${#PAYLOAD_TYPE}" "$PAYLOAD_TYPE" "$(wc -c <"$dir/$MANIFEST")"
      cat -- "$dir/$MANIFEST"; } >"$dir/.pae"
    base64 -d <<<"$sig" >"$dir/.pae.sig" 2>/dev/null || fail "$ENVELOPE: signature is not base64"
    openssl pkeyutl -verify -pubin -inkey "$KEY" -rawin -in "$dir/.pae" -sigfile "$dir/.pae.sig" \
        >/dev/null 2>&1 || fail "$ENVELOPE: signature does not verify with $KEY"
    rm -f -- "$dir/.pae" "$dir/.pae.sig"
}

stage_bundle() {  # copies the verified manifest, then the listed files, to $STAGING
    local path listed unlisted
    [[ -d $BUNDLE ]] || usage_error "--bundle: $BUNDLE is not a directory"
    [[ -f $BUNDLE/$MANIFEST ]] || fail "$BUNDLE: no $MANIFEST (not an AAMI bundle?)"
    STAGING=$(mktemp -d "${TMPDIR:-/tmp}/aami-install.XXXXXX")
    cp -- "$BUNDLE/$MANIFEST" "$STAGING/$MANIFEST"
    [[ -f $BUNDLE/$SIGNATURE ]] && cp -- "$BUNDLE/$SIGNATURE" "$STAGING/$SIGNATURE"
    [[ -f $BUNDLE/$ENVELOPE ]] && cp -- "$BUNDLE/$ENVELOPE" "$STAGING/$ENVELOPE"
    verify_signature "$STAGING"
    verify_envelope "$STAGING"
    say "verified: $MANIFEST signed by the release key ($(key_id | cut -c1-16))"

    listed=$(check_manifest_paths "$STAGING/$MANIFEST")
    grep -qx VERSION <<<"$listed" || fail "$MANIFEST: VERSION is not listed"
    if [[ -n $(find "$BUNDLE" -type l -print -quit) ]]; then
        fail "$BUNDLE: contains symbolic links; a bundle holds regular files only"
    fi
    unlisted=$(find "$BUNDLE" -type f ! -path "$BUNDLE/$MANIFEST" ! -path "$BUNDLE/$SIGNATURE" \
        ! -path "$BUNDLE/$ENVELOPE" -printf '%P\n' | { grep -vxF -f <(printf '%s\n' "$listed") || true; })
    [[ -z $unlisted ]] || fail "$BUNDLE: file not in $MANIFEST: $(head -n1 <<<"$unlisted")"

    while IFS= read -r path; do
        [[ -f $BUNDLE/$path ]] || fail "$BUNDLE: listed file is missing: $path"
        mkdir -p -- "$STAGING/release/$(dirname -- "$path")"
        cp -- "$BUNDLE/$path" "$STAGING/release/$path"
        # Modes are set here, not taken from the medium (FAT sticks have none).
        case $path in
            bin/*|*.sh) chmod 0755 "$STAGING/release/$path" ;;
            *) chmod 0644 "$STAGING/release/$path" ;;
        esac
    done <<<"$listed"
    cp -- "$STAGING"/MANIFEST.* "$STAGING/release/"
    local bad
    bad=$(cd "$STAGING/release" && sha256sum --check --strict --quiet "$MANIFEST" 2>/dev/null \
        | sed -n 's/: FAILED.*$//p' | head -n1) || true
    (cd "$STAGING/release" && sha256sum --check --strict --status "$MANIFEST") \
        || fail "$MANIFEST: checksum mismatch: ${bad:-a listed file}"
    say "verified: $(wc -l <"$STAGING/$MANIFEST") files match $MANIFEST"
}

# --- installation (only after verification) ---

atomic_copy() {  # $1 source, $2 destination, $3 mode
    local tmp
    mkdir -p -- "$(dirname -- "$2")"
    tmp=$(mktemp "$(dirname -- "$2")/.$(basename -- "$2").XXXXXX")
    cp -- "$1" "$tmp" && chmod "$3" "$tmp" && sync -- "$tmp" && mv -f -- "$tmp" "$2"
}

atomic_symlink() {  # $1 target, $2 link path
    local tmp
    tmp="$(dirname -- "$2")/.$(basename -- "$2").new.$$"
    ln -sfn -- "$1" "$tmp" && mv -fT -- "$tmp" "$2"
}

release_id() {  # version plus a digest of the manifest: same content, same id
    local version digest
    version=$(tr -cd 'A-Za-z0-9._+-' <"$1/VERSION")
    [[ -n $version ]] || fail "VERSION is empty"
    digest=$(sha256sum "$1/$MANIFEST" | cut -c1-12)
    printf '%s-%s' "$version" "$digest"
}

store_release() {  # $1 release id; copies the staged release under /opt/aami/releases
    local releases dir
    releases=$(root_path /opt/aami/releases)
    dir=$releases/$1
    mkdir -p -- "$releases"
    if [[ -d $dir ]]; then
        say "release $1 is already stored; reactivating it"
        return
    fi
    rm -rf -- "$releases/.partial-$1"
    cp -a -- "$STAGING/release" "$releases/.partial-$1"
    find "$releases/.partial-$1" -type f -exec sync -- {} +
    mv -T -- "$releases/.partial-$1" "$dir"
}

activate() {  # $1 release id: point current at it, refresh links, units, docs
    local dir=/opt/aami/releases/$1 prog unit
    atomic_symlink "releases/$1" "$(root_path /opt/aami/current)"
    mkdir -p -- "$(root_path /usr/bin)"
    for prog in "${PROGRAMS[@]}"; do
        if [[ -f $(root_path "$dir/bin/$prog") ]]; then
            atomic_symlink "/opt/aami/current/bin/$prog" "$(root_path "/usr/bin/$prog")"
        fi
    done
    for unit in "${SERVICES[@]}"; do
        if [[ -f $(root_path "$dir/systemd/$unit.service") ]]; then
            atomic_copy "$(root_path "$dir/systemd/$unit.service")" \
                "$(root_path "/usr/lib/systemd/system/$unit.service")" 0644
        fi
        if [[ -f $(root_path "$dir/systemd/$unit.sysusers.conf") ]]; then
            atomic_copy "$(root_path "$dir/systemd/$unit.sysusers.conf")" \
                "$(root_path "/usr/lib/sysusers.d/$unit.conf")" 0644
        fi
    done
    if [[ -f $(root_path "$dir/docs/install.md") ]]; then
        atomic_copy "$(root_path "$dir/docs/install.md")" "$(root_path /usr/share/doc/aami/install.md)" 0644
    fi
}

install_config() {  # first install only: release key, trusted keys, default server.yaml
    local etc key name target
    etc=$(root_path /etc/aami)
    mkdir -p -- "$etc/trusted-keys"
    [[ -f $etc/release.pub ]] || atomic_copy "$KEY" "$etc/release.pub" 0644
    # trusted-keys/ is the documented place; keys/trusted/ is accepted too.
    for key in "$STAGING"/release/trusted-keys/*.pub "$STAGING"/release/keys/trusted/*.pub; do
        [[ -f $key ]] || continue
        name=$(basename -- "$key") target=$etc/trusted-keys/$name
        if [[ ! -e $target ]]; then
            atomic_copy "$key" "$target" 0644
            say "trusted publisher key added: $name"
        elif ! cmp -s "$key" "$target"; then
            printf 'install.sh: warning: %s differs from the bundle; kept yours\n' "$target" >&2
        fi
    done
    if [[ ! -e $etc/server.yaml ]]; then
        local tmp
        tmp=$(mktemp "$etc/.server.yaml.XXXXXX")
        cat >"$tmp" <<'EOF'
# AAMI config server settings (written by install.sh once; upgrades keep it).
server:
  listen: 127.0.0.1:8080
  # tls_cert: /etc/aami/tls/server.crt    # readable by group aami
  # tls_key: /etc/aami/tls/server.key
database:
  url: sqlite:////var/lib/aami-server/aami.db
compat:
  legacy_checks: false
retention:
  executions: 30d
EOF
        chmod 0640 "$tmp" && sync -- "$tmp" && mv -f -- "$tmp" "$etc/server.yaml"
    fi
    config_group "$etc/server.yaml"
}

service_gid() {  # the gid of group `aami` in the target tree, empty if it has none yet
    local group
    group=$(root_path /etc/group)
    [[ -f $group ]] && awk -F: '$1 == "aami" { print $3; exit }' "$group"
    return 0
}

config_group() {  # $1 server.yaml: root:aami 0640, so that the service (User=aami) reads it
    local gid
    if [[ -z $DESTDIR ]] && command -v systemd-sysusers >/dev/null; then
        systemd-sysusers  # the aami group must exist before the file can be given to it
    fi
    gid=$(service_gid)
    if [[ -z $gid ]]; then
        printf 'install.sh: warning: no group aami in %s yet: after systemd-sysusers, run chgrp aami %s\n' \
            "$(root_path /etc/group)" "${1#"$DESTDIR"}" >&2
        return 0
    fi
    # Only a file still owned by group root is changed: a site's own choice is kept.
    if [[ $(stat -c %g -- "$1") == 0 ]]; then
        chgrp "$gid" -- "$1"
        chmod g+r -- "$1"
    fi
}

current_release() {  # prints the release id `current` (or $1 link) points at, if any
    local link
    link=$(root_path "/opt/aami/${1:-current}")
    [[ -L $link ]] && basename -- "$(readlink -- "$link")"
    return 0
}

system_refresh() {  # a real system only: users, unit files, running services
    [[ -z $DESTDIR ]] || return 0
    command -v systemd-sysusers >/dev/null && systemd-sysusers
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
        systemctl try-restart "${SERVICES[@]/%/.service}"
        ((START)) && systemctl enable --now aami-server.service
    elif ((START)); then
        printf 'install.sh: warning: --start: systemd is not running here; aami-server not started\n' >&2
    fi
    return 0
}

do_install() {
    local id previous
    if [[ -z $KEY ]]; then
        KEY=$(root_path /etc/aami/release.pub)
        [[ -f $KEY ]] || usage_error "--key: no release key given and none installed at $KEY"
    fi
    [[ -r $KEY ]] || usage_error "--key: cannot read $KEY"
    stage_bundle
    id=$(release_id "$STAGING/release")
    previous=$(current_release)
    store_release "$id"
    trap 'rollback_on_error "$previous"' ERR
    activate "$id"
    if [[ -n $previous && $previous != "$id" ]]; then
        atomic_symlink "releases/$previous" "$(root_path /opt/aami/previous)"
    fi
    install_config
    trap - ERR
    prune_releases "$id" "$previous"
    system_refresh
    printf 'aami %s installed under %s (release %s%s)\n' "$(cat "$STAGING/release/VERSION")" \
        "${DESTDIR:-/}" "$id" "${previous:+; previous $previous kept for --rollback}"
}

prune_releases() {  # keep the current and the previous release only
    local dir name
    for dir in "$(root_path /opt/aami/releases)"/*; do
        name=$(basename -- "$dir")
        [[ -d $dir && $name != "$1" && $name != "${2:-}" ]] || continue
        rm -rf -- "$dir"
        say "removed old release $name"
    done
}

rollback_on_error() {  # put the old release back if activation failed half way
    printf 'install.sh: installation failed; restoring %s\n' "${1:-nothing}" >&2
    [[ -n $1 ]] && activate "$1"
    exit 1
}

do_rollback() {
    local current previous dir
    current=$(current_release current)
    previous=$(current_release previous)
    [[ -n $previous ]] || fail "no previous release to roll back to"
    dir=$(root_path "/opt/aami/releases/$previous")
    [[ -d $dir ]] || fail "previous release $previous is missing from /opt/aami/releases"
    # The stored release is checked again before it runs: disk rot or tampering.
    KEY=$(root_path /etc/aami/release.pub)
    verify_signature "$dir"
    (cd "$dir" && sha256sum --check --strict --status "$MANIFEST") \
        || fail "release $previous no longer matches its manifest"
    activate "$previous"
    atomic_symlink "releases/$current" "$(root_path /opt/aami/previous)"
    system_refresh
    printf 'aami rolled back to release %s (release %s kept as previous)\n' "$previous" "$current"
}

main() {
    parse_args "$@"
    if ((ROLLBACK)); then do_rollback; else do_install; fi
}

main "$@"
