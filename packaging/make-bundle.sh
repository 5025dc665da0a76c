#!/usr/bin/env bash
# `make bundle`: the signed offline bundle, built by the `aami` binary from dist/.
#
#   packaging/make-bundle.sh        (normally through `make bundle`, after `make binaries`)
#
# Environment:
#   AAMI_RELEASE_KEY     the release private key (PEM; docs/install.md "The release key").
#                        Unset: a development key is generated once under
#                        build/dev-release-key/ and a warning says the bundle is not a
#                        release: nodes must never pin that key.
#   AAMI_TRUSTED_KEYS    optional folder of publisher *.pub keys nodes will trust
#   AAMI_BUNDLE_SCRIPTS  optional folder of *.signed.json scripts to carry (`make bundle`
#                        passes the signed check catalog, build/catalog: `make catalog`)
#   AAMI_BUNDLE_POLICIES optional policy YAML to carry (`make bundle` passes
#                        examples/policies/gpu-nodes.yaml with the catalog)
#   AAMI_BUNDLE_VERSION  default: the version in pyproject.toml
#   DIST                 where the binaries are (default: dist/)
#   BUNDLE_OUT           where the bundle goes (default: DIST)
# Writes OUT/aami-bundle-VERSION.tar.gz and OUT/release.pub (the key's public half,
# to hand to installers by another channel) and prints the key id to compare.
# Exit codes: 0 built, 1 build failed, 2 usage error.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
DIST=${DIST:-$ROOT/dist}
DEV_KEYS=$ROOT/build/dev-release-key
OUT=${BUNDLE_OUT:-$DIST}
AAMI=$DIST/aami

fail() { printf 'make-bundle.sh: %s\n' "$*" >&2; exit "${2:-1}"; }

[[ -x $AAMI ]] || fail "$AAMI is missing: run make binaries first" 2
version=${AAMI_BUNDLE_VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n1)}
[[ $version =~ ^[A-Za-z0-9._+-]+$ ]] || fail "AAMI_BUNDLE_VERSION: expected a version like 1.2.0, got '$version'" 2

key=${AAMI_RELEASE_KEY:-}
if [[ -n $key ]]; then
    [[ -r $key ]] || fail "AAMI_RELEASE_KEY: cannot read $key" 2
else
    key=$DEV_KEYS/release.key
    if [[ ! -f $key ]]; then
        "$AAMI" keys generate --out "$DEV_KEYS" --name release >/dev/null
    fi
    {
        printf '%s\n' "****************************************************************"
        printf '%s\n' "WARNING: AAMI_RELEASE_KEY is not set: signing with the DEVELOPMENT"
        printf '%s\n' "key $key. This bundle is for tests only; never"
        printf '%s\n' "pin this key on a real node (docs/install.md, The release key)."
        printf '%s\n' "****************************************************************"
    } >&2
fi

mkdir -p -- "$OUT"
out=$OUT/aami-bundle-$version.tar.gz
args=(bundle build --key "$key" --out "$out" --dist "$DIST" --version "$version" --quiet)
[[ -z ${AAMI_TRUSTED_KEYS:-} ]] || args+=(--trusted-keys "$(realpath -- "$AAMI_TRUSTED_KEYS")")
if [[ -n ${AAMI_BUNDLE_SCRIPTS:-} ]]; then
    [[ -d $AAMI_BUNDLE_SCRIPTS ]] || fail "AAMI_BUNDLE_SCRIPTS: no folder $AAMI_BUNDLE_SCRIPTS" 2
    args+=(--scripts "$(realpath -- "$AAMI_BUNDLE_SCRIPTS")")
fi
if [[ -n ${AAMI_BUNDLE_POLICIES:-} ]]; then
    [[ -r $AAMI_BUNDLE_POLICIES ]] || fail "AAMI_BUNDLE_POLICIES: cannot read $AAMI_BUNDLE_POLICIES" 2
    args+=(--policies "$(realpath -- "$AAMI_BUNDLE_POLICIES")")
fi
# Run from an empty directory: the binary must find what it packs inside itself,
# not in a project tree that happens to be the working directory.
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
(cd "$work" && "$AAMI" "${args[@]}")
tar -xzOf "$out" "aami-bundle-$version/release.pub" >"$OUT/release.pub.tmp"
mv -f -- "$OUT/release.pub.tmp" "$OUT/release.pub"
printf 'release key id: %s\n' \
    "$(openssl pkey -pubin -in "$OUT/release.pub" -outform DER | tail -c 32 | sha256sum | cut -d' ' -f1)"
