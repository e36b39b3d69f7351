#!/usr/bin/env bash
# Prints the path of a Python that has the official `openai` SDK, making
# one if needed:
#
#   scripts/openai-sdk.sh
#
# A virtualenv in the cache ($SLUICE_TOOLS_CACHE, default
# ~/.cache/sluice-openai-sdk) with `openai` from PyPI, installed on first
# use (nothing else on the machine changes). Exits 1, saying why on stderr,
# when none can be made. Used by scripts/test.sh for the end-to-end test
# that drives Sluice with the SDK unchanged (tests/tests/openai_sdk.rs).
set -euo pipefail

CACHE="${SLUICE_TOOLS_CACHE:-${HOME}/.cache/sluice-openai-sdk}"
VENV="${CACHE}/venv"
PYTHON="${VENV}/bin/python"
# The SDK's major version; the test reads its exceptions and types.
SPEC='openai>=1.50,<3'

if [[ -x "$PYTHON" ]] && "$PYTHON" -c 'import openai' >/dev/null 2>&1; then
    echo "$PYTHON"
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "openai-sdk.sh: no python3 to make a virtualenv with" >&2
    exit 1
fi
mkdir -p "$CACHE"
echo "openai-sdk.sh: installing ${SPEC} into ${VENV}" >&2
python3 -m venv "$VENV" >&2
if ! "$VENV/bin/pip" install --quiet "$SPEC" >&2; then
    echo "openai-sdk.sh: pip could not install ${SPEC} (is PyPI reachable?)" >&2
    exit 1
fi
echo "$PYTHON"
