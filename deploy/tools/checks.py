"""What every check of check_deploy.py shares: where the tree is, the
one-line report of each check (ok, FAIL, skip) and running a tool."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = ROOT / "k8s"

FAILED: list[str] = []


def report(status: str, name: str, detail: str) -> None:
    print(f"{status:<5} {name}: {detail}", flush=True)
    if status == "FAIL":
        FAILED.append(name)


def ok(name: str, detail: str) -> None:
    report("ok", name, detail)


def fail(name: str, detail: str) -> None:
    report("FAIL", name, detail)


def skip(name: str, detail: str) -> None:
    report("skip", name, detail)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def run(cmd: list[str], cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def first_lines(text: str, n: int = 6) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    out = " | ".join(lines[:n])
    if len(lines) > n:
        out += f" | ... ({len(lines) - n} more lines)"
    return out
