"""Checks of what a redeploy and a shutdown need, for check_deploy.py.

- Redeploys: every overlay is rendered twice, with two different image
  tags, as two consecutive releases would be. For every object both
  renderings share (same kind, namespace and name), the fields Kubernetes
  refuses to change must be equal, or the second `kubectl apply -k` would
  fail; the migration Job must therefore be a new object per release.
- Shutdown: the worker's drain covers the longest provider call, and the
  grace period (Kubernetes or compose) covers the drain plus a margin.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Callable

# Rust defaults (crates/sluice-core/src/config.rs) for keys a file omits.
DEFAULT_PROVIDER_TIMEOUT_S = 120
DEFAULT_DRAIN_TIMEOUT_S = 130
# Time after the last provider call answers to store results, write the
# ledger and ack: the drain must leave at least this much.
STORE_MARGIN_S = 10
# Time after the drain bound to close the connection and exit before SIGKILL.
GRACE_MARGIN_S = 15

# Fields a later `kubectl apply` cannot change on an existing object.
IMMUTABLE = {
    "Job": [("spec", "template"), ("spec", "selector"), ("spec", "completions")],
    "Deployment": [("spec", "selector")],
    "StatefulSet": [("spec", "selector"), ("spec", "serviceName"), ("spec", "volumeClaimTemplates")],
    "DaemonSet": [("spec", "selector")],
    "Service": [("spec", "clusterIP")],
}
MIGRATE_JOB = "sluice-migrate"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def dig(d: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def key(d: dict) -> tuple[str, str, str]:
    return (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])


def image_tag(image: str) -> str:
    """The tag of `name:tag` (registry ports and digests are refused elsewhere)."""
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"


def second_release(kfile: Path, tag: str) -> bool:
    """Rewrites the `newTag` of the sluice image in an overlay's kustomization."""
    text = kfile.read_text()
    new, n = re.subn(r'(^\s*newTag:\s*)"?[^"\s]+"?', rf'\g<1>"{tag}"', text, count=1, flags=re.M)
    kfile.write_text(new)
    return n == 1


def release_problems(name: str, first: list[dict], second: list[dict]) -> list[str]:
    """What would make the second of two consecutive applies fail."""
    p: list[str] = []
    jobs = {}
    for docs in (first, second):
        images = {c["image"] for d in docs if d["kind"] == "Deployment"
                  for c in d["spec"]["template"]["spec"]["containers"]}
        migrate = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].startswith(MIGRATE_JOB)]
        if len(migrate) != 1:
            p.append(f"{name}: renders {len(migrate)} migration Jobs, expected 1")
            return p
        job = migrate[0]["metadata"]["name"]
        tags = {image_tag(i) for i in images}
        want = f"{MIGRATE_JOB}-{next(iter(tags))}" if len(tags) == 1 else None
        if job != want:
            p.append(f"{name}: migration Job is {job}, expected {want} (the image tag of {sorted(images)})")
        if len(job) > 63 or not DNS_LABEL.match(job):
            p.append(f"{name}: migration Job name {job!r} is not a valid name of at most 63 characters "
                     "(use a plain tag: no registry port, no digest)")
        jobs[id(docs)] = job
    if jobs[id(first)] == jobs[id(second)]:
        p.append(f"{name}: the migration Job keeps its name {jobs[id(first)]} across releases")
    later = {key(d): d for d in second}
    shared = 0
    for d in first:
        other = later.get(key(d))
        if other is None:
            continue
        shared += 1
        for path in IMMUTABLE.get(d["kind"], []):
            if dig(d, path) != dig(other, path):
                p.append(f"{name}: {d['kind']}/{d['metadata']['name']}: {'.'.join(path)} changes between "
                         "releases and cannot be updated in place")
        if d["kind"] in ("ConfigMap", "Secret") and d.get("immutable") and d.get("data") != other.get("data"):
            p.append(f"{name}: immutable {d['kind']}/{d['metadata']['name']} changes between releases")
    return p


def check_releases(render: Callable[[Path], tuple[list[dict] | None, str]], k8s: Path, tmp: Path,
                   ok: Callable, fail: Callable) -> None:
    problems, count = [], 0
    for overlay in ("dev", "prod"):
        copy = tmp / f"release-{overlay}" / "k8s"
        shutil.copytree(k8s, copy)
        first, err = render(copy / "overlays" / overlay)
        if first is None:
            problems.append(f"{overlay}: {err}")
            continue
        if not second_release(copy / "overlays" / overlay / "kustomization.yaml", "check-next-release"):
            problems.append(f"{overlay}: no `newTag:` in its kustomization to change")
            continue
        second, err = render(copy / "overlays" / overlay)
        if second is None:
            problems.append(f"{overlay} (second release): {err}")
            continue
        count += 1
        problems += release_problems(overlay, first, second)
    if problems:
        fail("k8s redeploy", "; ".join(problems))
    else:
        ok("k8s redeploy", f"{count} overlays rendered for two releases: the migration Job is "
                           "sluice-migrate-<tag>, a new Job per release; no immutable field of a shared object changes")


# --- shutdown ---------------------------------------------------------------------

def drain_and_timeout(cfg: dict) -> tuple[int, int]:
    drain = int(cfg.get("worker", {}).get("drain_timeout_s", DEFAULT_DRAIN_TIMEOUT_S))
    timeouts = [int(p.get("timeout_s", DEFAULT_PROVIDER_TIMEOUT_S)) for p in cfg.get("providers", [])]
    return drain, max(timeouts, default=DEFAULT_PROVIDER_TIMEOUT_S)


def shutdown_problems(where: str, cfg: dict, grace_s: int | None) -> list[str]:
    """The provider timeout, the drain and the grace period, consistent."""
    drain, longest = drain_and_timeout(cfg)
    p = []
    if drain < longest + STORE_MARGIN_S:
        p.append(f"{where}: drain_timeout_s {drain} does not cover the longest provider timeout_s "
                 f"({longest}) + {STORE_MARGIN_S} s to store and ack")
    if grace_s is None or grace_s < drain + GRACE_MARGIN_S:
        p.append(f"{where}: grace period {grace_s} s does not cover drain_timeout_s ({drain}) + {GRACE_MARGIN_S} s")
    return p


def duration_s(text: str) -> int | None:
    """A compose duration such as `150s` or `2m30s`, in seconds."""
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(text).strip())
    if not m or not any(m.groups()):
        return None
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def check_compose_shutdown(compose: dict, config_path: Path, ok: Callable, fail: Callable) -> None:
    cfg = tomllib.loads(config_path.read_text())
    grace = duration_s(compose["services"].get("worker", {}).get("stop_grace_period", ""))
    problems = shutdown_problems("compose worker", cfg, grace)
    if problems:
        fail("compose shutdown", "; ".join(problems))
    else:
        drain, longest = drain_and_timeout(cfg)
        ok("compose shutdown", f"worker: provider timeout {longest} s + {STORE_MARGIN_S} <= drain {drain} s; "
                               f"drain + {GRACE_MARGIN_S} <= stop_grace_period {grace} s")
