#!/usr/bin/env bash
# AAMI node installer, served by the config server (see docs/install.md):
#
#   bash install-agent.sh --server https://config:8443 --token TOKEN \
#       --ca-file site-ca.pem --release-key release.pub
#
# (docs/install.md section 3 fetches this file and checks it against the signed
# release manifest before running it.)
#
# Downloads, from SERVER/downloads/, the release manifest (MANIFEST.sha256) and
# its signature, then the agent binary, its systemd unit and the trusted
# publisher keys the manifest lists. Checks:
#   - the manifest signature, with openssl, against the release key the operator
#     pinned: --release-key FILE, or --release-key-sha256 HEX (the key id; the key
#     itself is then downloaded from the release and must hash to HEX), or
#     /etc/aami/release.pub if the node has one. Without a pinned key the installer
#     refuses: a server that chose the key would choose which publishers the node
#     trusts. --insecure-trust-server overrides that, loudly (TLS alone vouches);
#   - every downloaded file against its SHA-256 in the manifest;
# and writes nothing before all of it has passed. Then installs the binary, the
# unit, /etc/aami/agent.yaml (kept if present), the bootstrap token (0600) and
# the keys, and enables the agent (unless --no-start or --destdir).
# Exit codes: 0 done, 1 download or verification failed, 2 usage error.
set -euo pipefail
umask 022

MANIFEST=MANIFEST.sha256
SIGNATURE=MANIFEST.sha256.sig

SERVER=${AAMI_SERVER:-}
TOKEN=${AAMI_TOKEN:-}
CA_FILE=""
RELEASE_KEY=""
RELEASE_KEY_SHA256=""
INSECURE=0
HOSTNAME_OVERRIDE=""
MIGRATE_CRON=0
START=1
DYNAMIC=0
AGENT_PATH=bin/aami-agent
DESTDIR=${DESTDIR:-}
WORK=""

usage() {
    cat <<'EOF'
usage: install-agent.sh --server URL --token TOKEN [--ca-file FILE]
                        (--release-key FILE | --release-key-sha256 HEX | --insecure-trust-server)
                        [--hostname NAME] [--migrate-cron] [--no-start] [--destdir DIR]
  --server URL        config server base URL (or AAMI_SERVER)
  --token TOKEN       bootstrap token (or AAMI_TOKEN); not needed when re-run on a
                      node that already has /etc/aami/agent.yaml
  --ca-file FILE      site CA (PEM): used for the downloads and pinned in agent.yaml
  --release-key FILE  release public key that signed the server's manifest
                      (default /etc/aami/release.pub when present)
  --release-key-sha256 HEX
                      the release key's id (SHA-256 of the raw Ed25519 key, as
                      docs/install.md shows); the key is fetched from the release
  --insecure-trust-server
                      no pinned release key: trust whatever the server hands out
                      (keys included), on TLS alone. Not for production
  --hostname NAME     register under NAME instead of the host name
  --migrate-cron      then disable the old cron runner (aami-agent migrate-cron)
  --no-start          install only; do not enable or start the service
  --dynamic           install the glibc build (bin/aami-agent) even when the release
                      carries the static agent, which is preferred: it runs on any
                      Linux of the same architecture, whatever its glibc
  --destdir DIR       install under DIR (also DESTDIR); systemctl is not called
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf 'install-agent.sh: warning: %s\n' "$*" >&2; }
fail() { printf 'install-agent.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'install-agent.sh: %s\n' "$*" >&2; exit 2; }
cleanup() { [[ -n $WORK ]] && rm -rf -- "$WORK"; return 0; }
trap cleanup EXIT
root_path() { printf '%s%s' "$DESTDIR" "$1"; }

parse_args() {
    while (($#)); do
        case $1 in
            --server|--token|--ca-file|--release-key|--release-key-sha256|--hostname|--destdir)
                [[ $# -ge 2 ]] || usage_error "$1 needs a value"
                case $1 in
                    --server) SERVER=$2 ;; --token) TOKEN=$2 ;; --ca-file) CA_FILE=$2 ;;
                    --release-key) RELEASE_KEY=$2 ;; --hostname) HOSTNAME_OVERRIDE=$2 ;;
                    --release-key-sha256) RELEASE_KEY_SHA256=$2 ;;
                    --destdir) DESTDIR=$2 ;;
                esac
                shift ;;
            --insecure-trust-server) INSECURE=1 ;;
            --migrate-cron) MIGRATE_CRON=1 ;;
            --no-start) START=0 ;;
            --dynamic) DYNAMIC=1 ;;
            -h|--help) usage; exit 0 ;;
            *) usage_error "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
    DESTDIR=${DESTDIR%/}
    SERVER=${SERVER%/}
    [[ -n $SERVER ]] || usage_error "--server is required"
    # Quoted into YAML below: only plain URL characters are accepted.
    [[ $SERVER =~ ^https?://[A-Za-z0-9.:@%_~+-]+(\[[0-9a-fA-F:]+\](:[0-9]+)?)?(/[A-Za-z0-9._~/-]*)?$ ]] \
        || usage_error "--server: expected a URL like https://config:8443, got '$SERVER'"
    if [[ -n $TOKEN && ! $TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
        usage_error "--token: unexpected characters in the token"
    fi
    if [[ -z $TOKEN && ! -f $(root_path /etc/aami/agent.yaml) ]]; then
        usage_error "--token is required on a node without /etc/aami/agent.yaml"
    fi
    [[ -z $CA_FILE || -r $CA_FILE ]] || usage_error "--ca-file: cannot read $CA_FILE"
    [[ -z $RELEASE_KEY || -r $RELEASE_KEY ]] || usage_error "--release-key: cannot read $RELEASE_KEY"
    [[ -z $HOSTNAME_OVERRIDE || $HOSTNAME_OVERRIDE =~ ^[A-Za-z0-9._-]+$ ]] \
        || usage_error "--hostname: expected a host name, got '$HOSTNAME_OVERRIDE'"
    if [[ -n $RELEASE_KEY_SHA256 ]]; then
        RELEASE_KEY_SHA256=${RELEASE_KEY_SHA256,,}
        [[ $RELEASE_KEY_SHA256 =~ ^[0-9a-f]{64}$ ]] \
            || usage_error "--release-key-sha256: expected 64 hex digits, got '$RELEASE_KEY_SHA256'"
        [[ -z $RELEASE_KEY ]] || usage_error "--release-key-sha256: give it or --release-key, not both"
    fi
    [[ -z $DESTDIR || -d $DESTDIR ]] || usage_error "--destdir: $DESTDIR is not a directory"
    for tool in curl sha256sum; do
        command -v "$tool" >/dev/null || fail "$tool is required"
    done
    if [[ -z $RELEASE_KEY && -z $RELEASE_KEY_SHA256 && -f $(root_path /etc/aami/release.pub) ]]; then
        RELEASE_KEY=$(root_path /etc/aami/release.pub)
    fi
    if [[ -n $RELEASE_KEY || -n $RELEASE_KEY_SHA256 ]]; then
        command -v openssl >/dev/null || fail "openssl is required to check the release signature"
    elif ((INSECURE)); then
        insecure_banner
    else
        usage_error "no release key pinned: give --release-key FILE or --release-key-sha256 HEX" \
            "(docs/install.md section 3), or --insecure-trust-server to trust the server blindly"
    fi
    if [[ $SERVER == http://* ]]; then warn "$SERVER is plain HTTP: use https in production"; fi
}

insecure_banner() {
    warn "*************************************************************************"
    warn "--insecure-trust-server: NO release key is pinned. Whoever answers at"
    warn "$SERVER chooses the agent binary and the publisher keys this node trusts."
    warn "*************************************************************************"
}

key_id() {  # $1 PEM public key: hex SHA-256 of the raw 32-byte Ed25519 key (DSSE key id)
    openssl pkey -pubin -in "$1" -outform DER 2>/dev/null | tail -c 32 | sha256sum | cut -d' ' -f1
}

pin_release_key() {  # --release-key-sha256: fetch release.pub, keep it only if it hashes to HEX
    local got
    fetch "downloads/release.pub" "$WORK/release.pub" \
        || fail "cannot download $SERVER/downloads/release.pub (needed by --release-key-sha256)"
    got=$(key_id "$WORK/release.pub")
    [[ $got == "$RELEASE_KEY_SHA256" ]] \
        || fail "release.pub from the server has key id ${got:-none}, not the pinned $RELEASE_KEY_SHA256"
    RELEASE_KEY=$WORK/release.pub
}

fetch() {  # $1 path under /downloads/ (or a full URL path), $2 output file
    local args=(-fsS --retry 3 --connect-timeout 10 --max-time 600 -o "$2")
    [[ -n $CA_FILE ]] && args+=(--cacert "$CA_FILE")
    curl "${args[@]}" "$SERVER/$1"
}

manifest_hash() {  # $1 path; prints its SHA-256 from the manifest, or fails
    local hash
    hash=$(awk -v p="$1" 'length($1) == 64 && substr($0, 67) == p { print $1 }' "$WORK/$MANIFEST")
    [[ $hash =~ ^[0-9a-f]{64}$ ]] || fail "$MANIFEST does not list $1"
    printf '%s' "$hash"
}

download_verified() {  # $1 manifest path: fetch to $WORK/files/$1 and check its hash
    local out=$WORK/files/$1 want got
    case "/$1/" in *"/../"*|*"/./"*|*//*) fail "$MANIFEST: unsafe path: $1" ;; esac
    want=$(manifest_hash "$1")
    mkdir -p -- "$(dirname -- "$out")"
    fetch "downloads/$1" "$out" || fail "cannot download $SERVER/downloads/$1"
    got=$(sha256sum "$out" | cut -d' ' -f1)
    [[ $got == "$want" ]] || fail "$1: SHA-256 mismatch (expected $want, got $got)"
}

download_all() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/aami-agent-install.XXXXXX")
    fetch "downloads/$MANIFEST" "$WORK/$MANIFEST" \
        || fail "cannot download $SERVER/downloads/$MANIFEST (is this an AAMI server?)"
    [[ -z $RELEASE_KEY_SHA256 ]] || pin_release_key
    if [[ -n $RELEASE_KEY ]]; then
        fetch "downloads/$SIGNATURE" "$WORK/$SIGNATURE" \
            || fail "cannot download $SERVER/downloads/$SIGNATURE: the release is not signed"
        openssl pkeyutl -verify -pubin -inkey "$RELEASE_KEY" -rawin -in "$WORK/$MANIFEST" \
            -sigfile "$WORK/$SIGNATURE" >/dev/null 2>&1 \
            || fail "$MANIFEST: signature does not verify with $RELEASE_KEY"
        say "verified: release manifest signed by $RELEASE_KEY"
    else
        insecure_banner
    fi
    # The static agent needs no libc from the node (RHEL 8, Ubuntu 20.04 and other
    # older glibc); the dynamic one needs Debian 12's glibc 2.36 or newer.
    AGENT_PATH=bin/aami-agent
    if [[ $DYNAMIC == 0 ]] && grep -q '  bin/aami-agent-static$' "$WORK/$MANIFEST"; then
        AGENT_PATH=bin/aami-agent-static
    fi
    download_verified "$AGENT_PATH"
    download_verified systemd/aami-agent.service
    if grep -q '  systemd/aami-agent.sysusers.conf$' "$WORK/$MANIFEST"; then
        download_verified systemd/aami-agent.sysusers.conf
    fi
    local path
    while IFS= read -r path; do
        [[ $path =~ ^(trusted-keys|keys/trusted)/[A-Za-z0-9._-]+\.pub$ ]] \
            || fail "$MANIFEST: unsafe key path: $path"
        download_verified "$path"
    done < <(awk 'length($1) == 64 && substr($0, 67) ~ /^(trusted-keys|keys\/trusted)\// {
        print substr($0, 67) }' "$WORK/$MANIFEST")
    say "verified: aami-agent, its unit and $(find "$WORK/files" -name '*.pub' | wc -l)" \
        "trusted key(s) match the manifest"
}

atomic_install() {  # $1 source, $2 destination, $3 mode
    local tmp
    mkdir -p -- "$(dirname -- "$2")"
    tmp=$(mktemp "$(dirname -- "$2")/.$(basename -- "$2").XXXXXX")
    cp -- "$1" "$tmp" && chmod "$3" "$tmp" && sync -- "$tmp" && mv -f -- "$tmp" "$2"
}

write_config() {
    local etc config=$WORK/agent.yaml
    etc=$(root_path /etc/aami)
    {
        printf '# Written by install-agent.sh; re-running it keeps this file.\n'
        printf 'server:\n  url: "%s"\n' "$SERVER"
        if [[ -n $CA_FILE ]]; then printf '  ca_file: /etc/aami/ca.pem\n'; fi
        printf 'agent:\n  state_dir: /var/lib/aami-agent\n'
        if [[ -n $HOSTNAME_OVERRIDE ]]; then printf '  hostname: "%s"\n' "$HOSTNAME_OVERRIDE"; fi
        printf 'trust:\n  keys_dir: /etc/aami/trusted-keys\n'
        printf 'executor:\n  run_as: aami-runner\n'
    } >"$config"
    if [[ ! -e $etc/agent.yaml ]]; then
        atomic_install "$config" "$etc/agent.yaml" 0644
    elif ! cmp -s "$config" "$etc/agent.yaml"; then
        atomic_install "$config" "$etc/agent.yaml.new" 0644
        warn "kept $etc/agent.yaml; the settings of this run are in agent.yaml.new"
    fi
    if [[ -n $TOKEN ]]; then
        (umask 077 && printf '%s\n' "$TOKEN" >"$WORK/bootstrap-token")
        atomic_install "$WORK/bootstrap-token" "$etc/bootstrap-token" 0600
    fi
}

install_files() {
    local etc key name
    etc=$(root_path /etc/aami)
    atomic_install "$WORK/files/$AGENT_PATH" "$(root_path /usr/bin/aami-agent)" 0755
    atomic_install "$WORK/files/systemd/aami-agent.service" \
        "$(root_path /usr/lib/systemd/system/aami-agent.service)" 0644
    if [[ -f $WORK/files/systemd/aami-agent.sysusers.conf ]]; then
        atomic_install "$WORK/files/systemd/aami-agent.sysusers.conf" \
            "$(root_path /usr/lib/sysusers.d/aami-agent.conf)" 0644
    fi
    mkdir -p -- "$etc/trusted-keys"
    for key in "$WORK"/files/trusted-keys/*.pub "$WORK"/files/keys/trusted/*.pub; do
        [[ -f $key ]] || continue
        name=$(basename -- "$key")
        if [[ ! -e $etc/trusted-keys/$name ]]; then
            atomic_install "$key" "$etc/trusted-keys/$name" 0644
        elif ! cmp -s "$key" "$etc/trusted-keys/$name"; then
            warn "kept $etc/trusted-keys/$name, which differs from the server's"
        fi
    done
    if [[ -n $RELEASE_KEY && ! -e $etc/release.pub ]]; then
        atomic_install "$RELEASE_KEY" "$etc/release.pub" 0644
    fi
    [[ -z $CA_FILE ]] || atomic_install "$CA_FILE" "$etc/ca.pem" 0644
    write_config
}

start_agent() {
    if [[ -n $DESTDIR ]]; then
        say "installed under $DESTDIR; not starting (systemctl is not called with --destdir)"
        return
    fi
    command -v systemd-sysusers >/dev/null && systemd-sysusers
    if ((START)); then
        systemctl daemon-reload
        systemctl enable aami-agent.service
        systemctl restart aami-agent.service
        say "aami-agent enabled and started"
    else
        say "not started (--no-start): systemctl enable --now aami-agent"
    fi
}

main() {
    parse_args "$@"
    download_all
    install_files
    start_agent
    if ((MIGRATE_CRON)); then
        if ((!START)) || [[ -n $DESTDIR ]]; then
            warn "disabling the cron runner while the agent is not running"
        fi
        # With --destdir the migration works on that tree too (--root), never on this host.
        local migrate=("$(root_path /usr/bin/aami-agent)" migrate-cron
            --config "$(root_path /etc/aami/agent.yaml)")
        [[ -z $DESTDIR ]] || migrate+=(--root "$DESTDIR" --state-dir "$(root_path /var/lib/aami-agent)")
        "${migrate[@]}" || fail "aami-agent migrate-cron failed; the old cron runner is still in place"
    fi
    say "aami-agent installed for $SERVER${DESTDIR:+ under $DESTDIR}"
}

main "$@"
