"""`promtool check metrics` on a live /metrics, run by check_deploy.py.

Starts `sluice dev` (every role in one process, in memory, no services),
runs one job through it so that the labelled metrics have series, scrapes
/metrics and pipes it through promtool; then checks that every sluice_*
family it serves is in the catalog, docs/metrics.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

Report = Callable[[str, str], None]


def catalog_names(doc: Path) -> set[str]:
    return set(re.findall(r"^\| `(sluice_[a-z_]+)` \|", doc.read_text(), re.M))


def _request(url: str, key: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def check_live_metrics(sluice_bin: str | None, promtool: str | None, doc: Path,
                       ok: Report, fail: Report, skip: Report) -> None:
    name = "live metrics"
    if not sluice_bin:
        skip(name, "no target/{release,debug}/sluice built")
        return
    if not promtool:
        skip(name, "promtool not available")
        return
    proc = subprocess.Popen([sluice_bin, "dev", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base = key = None
        deadline = time.monotonic() + 30
        while (base is None or key is None) and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            if m := re.search(r"api on (http://[0-9.:]+)", line):
                base = m.group(1)
            if m := re.match(r"api key: (\S+)", line):
                key = m.group(1)
        if base is None or key is None:
            fail(name, "sluice dev did not print its address and key")
            return
        job = _request(f"{base}/v1/jobs", key, {"body": {
            "model": "mock-small", "messages": [{"role": "user", "content": "metrics"}]}})
        done = _request(f"{base}/v1/jobs/{job['id']}?wait=20", key)
        if done.get("status") != "succeeded":
            fail(name, f"the job through sluice dev did not succeed: {done.get('status')}")
            return
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            text = r.read().decode()
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60, check=False)
        if r.returncode != 0:
            fail(name, f"promtool check metrics: {(r.stdout + r.stderr).strip()[:400]}")
            return
        served = set(re.findall(r"^# TYPE (sluice_[a-z_]+) ", text, re.M))
        missing = sorted(served - catalog_names(doc))
        if missing:
            fail(name, f"served but not in docs/metrics.md: {missing}")
            return
        ok(name, f"sluice dev's /metrics ({len(served)} sluice_* families, after one job) "
                 f"passes promtool check metrics; each family is in docs/metrics.md")
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        fail(name, f"{type(e).__name__}: {e}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
