#!/usr/bin/env bash
# Prints the bin directory of a Python virtualenv with one tool from PyPI,
# making it if needed:
#
#   scripts/pyvenv.sh NAME SPEC      e.g. scripts/pyvenv.sh openai-sdk 'openai>=1.50,<3'
#
# The virtualenv lives in the cache ($SLUICE_TOOLS_CACHE, default
# ~/.cache/sluice-tools/NAME) and is made on first use (nothing else on the
# machine changes). Exits 1, saying why on stderr, when it cannot be made.
# Used by scripts/test.sh for the end-to-end tests that run the official
# `openai` SDK (tests/tests/openai_sdk.rs) and schemathesis
# (tests/tests/openapi_fuzz.rs).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: scripts/pyvenv.sh NAME SPEC" >&2
    exit 2
fi
NAME="$1"
SPEC="$2"
VENV="${SLUICE_TOOLS_CACHE:-${HOME}/.cache/sluice-tools}/${NAME}"
# The spec it was made with: a changed spec makes it again.
STAMP="${VENV}/.spec"

if [[ -x "${VENV}/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" ]]; then
    echo "${VENV}/bin"
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "pyvenv.sh: no python3 to make a virtualenv with" >&2
    exit 1
fi
echo "pyvenv.sh: installing ${SPEC} into ${VENV}" >&2
rm -rf "$VENV"
python3 -m venv "$VENV" >&2
if ! "${VENV}/bin/pip" install --quiet "$SPEC" >&2; then
    echo "pyvenv.sh: pip could not install ${SPEC} (is PyPI reachable?)" >&2
    exit 1
fi
echo "$SPEC" > "$STAMP"
echo "${VENV}/bin"
