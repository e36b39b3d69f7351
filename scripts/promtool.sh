#!/usr/bin/env bash
# Prints the path of a promtool, fetching one if needed:
#
#   scripts/promtool.sh
#
# promtool on the PATH if there is one; else the one unpacked from Debian's
# `prometheus` package into the cache ($CHECK_DEPLOY_CACHE, default
# ~/.cache/sluice-check-deploy) by scripts/deb.sh on first use (nothing is
# installed, no daemon is started). Exits 1, saying why on stderr, when
# none can be had. Used by scripts/test.sh (for
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
"$(dirname "${BASH_SOURCE[0]}")/deb.sh" prometheus "$UNPACKED"
if [[ ! -x "$PROMTOOL" ]]; then
    echo "promtool.sh: the prometheus package holds no usr/bin/promtool" >&2
    exit 1
fi
echo "$PROMTOOL"
