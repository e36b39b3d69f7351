#!/usr/bin/env bash
# Prints the path of a promtool, fetching one if needed:
#
#   scripts/promtool.sh
#
# promtool on the PATH if there is one; else the one unpacked from Debian's
# `prometheus` package into the cache ($CHECK_DEPLOY_CACHE, default
# ~/.cache/sluice-check-deploy), downloaded there on first use with
# `apt-get download` (nothing is installed, no daemon is started). Exits 1,
# saying why on stderr, when none can be had. Used by scripts/test.sh (for
# the end-to-end test that checks live /metrics) and scripts/check-deploy.sh.
set -euo pipefail

CACHE="${CHECK_DEPLOY_CACHE:-${HOME}/.cache/sluice-check-deploy}"
UNPACKED="${CACHE}/prometheus-deb"
PROMTOOL="${UNPACKED}/usr/bin/promtool"

if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    exit 0
fi
if [[ -x "$PROMTOOL" ]]; then
    echo "$PROMTOOL"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool.sh: no promtool on the PATH, and no apt-get to fetch Debian's prometheus package" >&2
    exit 1
fi

download() { (cd "$1" && apt-get download prometheus >/dev/null 2>&1); }

dl="${CACHE}/deb"
mkdir -p "$dl"
if ! download "$dl"; then
    # The package lists may be missing or stale; only root can refresh them.
    if [[ "$(id -u)" -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    fi
    if ! download "$dl"; then
        echo "promtool.sh: apt-get download prometheus failed (try apt-get update as root)" >&2
        exit 1
    fi
fi
deb="$(find "$dl" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)"
if [[ -z "$deb" ]]; then
    echo "promtool.sh: apt-get download left no prometheus_*.deb in ${dl}" >&2
    exit 1
fi
rm -rf "$UNPACKED"
dpkg-deb -x "$deb" "$UNPACKED"
rm -f "$deb"
if [[ ! -x "$PROMTOOL" ]]; then
    echo "promtool.sh: the prometheus package holds no usr/bin/promtool" >&2
    exit 1
fi
echo "$PROMTOOL"
