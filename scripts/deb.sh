#!/usr/bin/env bash
# Unpacks one of Debian's packages into a directory, installing nothing:
#
#   scripts/deb.sh PACKAGE DIR
#
# `apt-get download PACKAGE` (refreshing the package lists first if they
# are missing or stale and we are root), then `dpkg-deb -x` into DIR
# (replaced). No daemon is started, nothing outside DIR changes. Exits 1,
# saying why on stderr, when it cannot. Used by scripts/promtool.sh and
# scripts/wordnet.sh.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: scripts/deb.sh PACKAGE DIR" >&2
    exit 2
fi
PACKAGE="$1"
DIR="$2"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "deb.sh: no apt-get to fetch Debian's ${PACKAGE} package" >&2
    exit 1
fi

dl="$(mktemp -d)"
trap 'rm -rf "$dl"' EXIT
download() { (cd "$dl" && apt-get download "$PACKAGE" >/dev/null 2>&1); }
if ! download; then
    if [[ "$(id -u)" -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    fi
    if ! download; then
        echo "deb.sh: apt-get download ${PACKAGE} failed (try apt-get update as root)" >&2
        exit 1
    fi
fi
deb="$(find "$dl" -maxdepth 1 -name "${PACKAGE}_*.deb" -print -quit)"
if [[ -z "$deb" ]]; then
    echo "deb.sh: apt-get download left no ${PACKAGE}_*.deb" >&2
    exit 1
fi
rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
dpkg-deb -x "$deb" "$DIR"
