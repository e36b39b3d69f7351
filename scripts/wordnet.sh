#!/usr/bin/env bash
# Prints the path of a WordNet database, the semantic cache's lexicon,
# fetching one if needed:
#
#   scripts/wordnet.sh
#
# WordNet 3.0 from Debian's `wordnet-base` package (its `index.*`,
# `data.*` and `*.exc` files), unpacked by scripts/deb.sh into the tools
# cache (~/.cache/sluice-tools/wordnet) on first use; nothing is installed.
# Exits 1, saying why on stderr, when it cannot be had. Use it as
#
#   [cache.semantic]
#   lexicon = "<the printed path>"
#
# or for the semantic-cache quality bench:
#
#   sluice-bench cache --semantic --embedder "$(scripts/embedder.sh)" --lexicon "$(scripts/wordnet.sh)"
set -euo pipefail

UNPACKED="${HOME}/.cache/sluice-tools/wordnet"
DICT="${UNPACKED}/usr/share/wordnet"

if [[ ! -f "${DICT}/index.noun" ]]; then
    "$(dirname "${BASH_SOURCE[0]}")/deb.sh" wordnet-base "$UNPACKED"
fi
if [[ ! -f "${DICT}/index.noun" || ! -f "${DICT}/data.noun" ]]; then
    echo "wordnet.sh: the wordnet-base package holds no ${DICT}/index.noun" >&2
    exit 1
fi
echo "$DICT"
