"""The worker autoscaling policy, checked on every rendering (check_deploy.py).

Not magic numbers: each value is derived from the rendered sluice.toml and
the rendering itself.

- The backlog query reads Sluice's job-backlog metrics (jobs ready in every
  job queue, packs counted as their jobs, plus the jobs workers hold), of
  the rendering's own namespace only.
- The threshold per worker is the jobs one worker works on at once
  (max_batch_size x batches_in_flight).
- Hosts are fully qualified (KEDA's operator runs in another namespace).
- A fallback holds a replica count between the min and the max while the
  metric cannot be read.
- The max does not exceed what the providers' request budget can feed.
- While the providers answer 429, the fleet holds its size (a formula on a
  throttle trigger), rather than scale on a backlog it cannot serve.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlparse

BACKLOG_METRICS = ("sluice_queue_ready_jobs", "sluice_inflight_jobs")
# The trigger the backlog checks apply to (the others feed the hold).
BACKLOG_TRIGGER = "backlog"
PRIORITIES = ("interactive", "standard", "batch")
CALL_SECONDS = "sluice.dev/provider-call-seconds"
# The HPA's External metric served by prometheus-adapter (k8s/README.md).
HPA_METRIC = "sluice_job_backlog"
# Rust defaults (crates/sluice-core/src/config.rs).
DEFAULTS = {"max_batch_size": 32, "batches_in_flight": 8, "fanout_concurrency": 16, "max_concurrency": 64}


def worker_jobs(cfg: dict) -> int:
    """Jobs one worker works on at once: max_batch_size x batches_in_flight."""
    w = cfg.get("worker", {})
    return int(w.get("max_batch_size", DEFAULTS["max_batch_size"])) * int(
        w.get("batches_in_flight", DEFAULTS["batches_in_flight"]))


def replica_cap(cfg: dict, call_seconds: float) -> int | None:
    """The largest fleet the providers' request budgets can feed: per provider,
    requests_per_minute x mean call seconds / 60 calls in flight fleet-wide,
    over the calls one worker keeps in flight to it. None when a provider
    has no budget (nothing to derive a cap from)."""
    w = cfg.get("worker", {})
    per_worker_batches = int(w.get("batches_in_flight", DEFAULTS["batches_in_flight"])) * int(
        w.get("fanout_concurrency", DEFAULTS["fanout_concurrency"]))
    total = 0.0
    providers = cfg.get("providers", [])
    if not providers:
        return None
    for p in providers:
        rpm = p.get("requests_per_minute")
        if not rpm:
            return None
        per_worker = min(int(p.get("max_concurrency", DEFAULTS["max_concurrency"])), per_worker_batches)
        total += rpm * call_seconds / 60 / per_worker
    return math.ceil(total)


def fully_qualified(host: str | None) -> bool:
    """A name KEDA's operator resolves from its own namespace."""
    if not host:
        return False
    if host.endswith(".svc.cluster.local"):
        return True
    return host.count(".") >= 2 and not host.endswith(".svc")


def selectors(query: str, metric: str) -> list[str]:
    return re.findall(rf"\b{metric}\{{([^}}]*)\}}", query) + (
        [""] if re.search(rf"\b{metric}\b(?!\{{)", query) else [])


def query_problems(where: str, query: str, namespace: str) -> list[str]:
    p = []
    for metric in BACKLOG_METRICS:
        found = selectors(query, metric)
        if not found:
            p.append(f"{where}: the backlog query does not read {metric}")
        for sel in found:
            if f'namespace="{namespace}"' not in sel:
                p.append(f"{where}: {metric}{{{sel}}} is not limited to namespace=\"{namespace}\"")
    for sel in selectors(query, "sluice_queue_ready_jobs"):
        m = re.search(r'queue=~?"([^"]*)"', sel)
        if m and not all(re.fullmatch(m.group(1), q) for q in PRIORITIES):
            p.append(f"{where}: the backlog query leaves out some of the queues {PRIORITIES}")
    if "or vector(0)" not in query:
        p.append(f"{where}: the backlog query has no `or vector(0)`: a side with no series would blank the sum")
    return p


def namespace_problems(where: str, trigger: str, query: str, namespace: str) -> list[str]:
    """Every Sluice metric a query reads is limited to the namespace."""
    p = []
    for metric in sorted(set(re.findall(r"\b(sluice_\w+)", query))):
        for sel in selectors(query, metric):
            if f'namespace="{namespace}"' not in sel:
                p.append(f"{where}: trigger {trigger} reads {metric}{{{sel}}} beyond namespace=\"{namespace}\"")
    return p


def hold_problems(where: str, spec: dict, cfg: dict) -> list[str]:
    """The fleet is held while the providers answer 429: a trigger on
    `rate_limited` errors, one on the workers running, and a formula that
    keeps workers x target while the 429s last, else scales on the backlog."""
    p = []
    names = {t.get("name") for t in spec.get("triggers", [])}
    by_name = {t.get("name"): t.get("metadata", {}).get("query", "") for t in spec.get("triggers", [])}
    mods = spec.get("advanced", {}).get("scalingModifiers")
    if not mods:
        return [f"{where}: no scalingModifiers: scaling on the backlog during 429s adds load to a saturated limit"]
    formula = mods.get("formula", "")
    used = set(re.findall(r"[A-Za-z_]\w*", formula)) - {"true", "false"}
    for unknown in sorted(used - names):
        p.append(f"{where}: the formula names {unknown}, which is no trigger")
    if BACKLOG_TRIGGER not in used:
        p.append(f"{where}: the formula does not scale on the {BACKLOG_TRIGGER} trigger")
    throttled = [n for n, q in by_name.items() if 'kind="rate_limited"' in q and "sluice_provider_errors_total" in q]
    workers = [n for n, q in by_name.items() if re.search(r"\bcount\(sluice_inflight_jobs\b", q)]
    if not throttled or not any(n in used for n in throttled):
        p.append(f"{where}: the formula does not hold the fleet on provider 429s (sluice_provider_errors_total, kind=rate_limited)")
    if not workers or not any(n in used for n in workers):
        p.append(f"{where}: the formula does not hold the fleet at the workers running (count(sluice_inflight_jobs))")
    if cfg:
        target = str(worker_jobs(cfg))
        if mods.get("target") != target:
            p.append(f"{where}: scalingModifiers target {mods.get('target')} is not the jobs a worker works on at once ({target})")
        held = re.search(r"\b(\w+)\s*\*\s*(\d+)", formula)
        if not held or held.group(1) not in workers or held.group(2) != target:
            p.append(f"{where}: the hold is not workers x {target} (the fleet as it is, over the target)")
    return p


def scaledobject_problems(name: str, so: dict, cfg: dict, namespace: str) -> tuple[list[str], list[str]]:
    """Problems, and the PromQL queries to parse."""
    p: list[str] = []
    where = f"{name}: ScaledObject/{so['metadata']['name']}"
    spec = so["spec"]
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    queries = []
    proms = [t for t in spec.get("triggers", []) if t.get("type") == "prometheus"]
    if not proms:
        p.append(f"{where}: no prometheus trigger on the job backlog")
    for t in spec.get("triggers", []):
        meta = t.get("metadata", {})
        for field in ("serverAddress", "host"):
            if field in meta and not fully_qualified(urlparse(meta[field]).hostname):
                p.append(f"{where}: {field} {meta[field]} is not a fully qualified host")
    backlog = [t for t in proms if t.get("name") == BACKLOG_TRIGGER] or proms[:1]
    for t in proms:
        meta = t["metadata"]
        queries.append(meta.get("query", ""))
        if t not in backlog:
            p += namespace_problems(where, t.get("name", "?"), meta.get("query", ""), namespace)
            continue
        p += query_problems(where, meta.get("query", ""), namespace)
        if cfg and meta.get("threshold") != str(worker_jobs(cfg)):
            p.append(f"{where}: threshold {meta.get('threshold')} is not the jobs a worker works on at once "
                     f"(max_batch_size x batches_in_flight = {worker_jobs(cfg)})")
    p += hold_problems(where, spec, cfg)
    fb = spec.get("fallback")
    if not fb:
        p.append(f"{where}: no fallback for when the backlog cannot be read")
    elif not (isinstance(fb.get("replicas"), int) and lo <= fb["replicas"] <= hi and fb.get("failureThreshold", 0) >= 1):
        p.append(f"{where}: fallback {fb} is not within minReplicaCount..maxReplicaCount ({lo}..{hi})")
    try:
        call_s = float(so["metadata"].get("annotations", {})[CALL_SECONDS])
    except (KeyError, ValueError):
        p.append(f"{where}: no numeric {CALL_SECONDS} annotation to derive the replica cap from")
        return p, queries
    cap = replica_cap(cfg, call_s) if cfg else None
    if cap is None:
        if name == "prod":
            p.append(f"{where}: a provider in the rendered sluice.toml has no requests_per_minute, so no replica "
                     "cap can be derived from the budget")
    elif hi > cap:
        p.append(f"{where}: maxReplicaCount {hi} exceeds what the provider budget can feed ({cap})")
    return p, queries


def hpa_problems(name: str, hpa: dict, cfg: dict) -> list[str]:
    p = []
    for m in hpa["spec"].get("metrics", []):
        if m["type"] != "External":
            continue
        metric = m["external"]["metric"].get("name")
        if metric != HPA_METRIC:
            p.append(f"{name}: worker HPA reads {metric}, not the job backlog {HPA_METRIC}")
        target = m["external"]["target"].get("averageValue")
        if cfg and str(target) != str(worker_jobs(cfg)):
            p.append(f"{name}: worker HPA target {target} is not the jobs a worker works on at once ({worker_jobs(cfg)})")
    return p


def secret_host_problems(name: str, secrets: list[dict]) -> list[str]:
    """Connection URLs in a rendered Secret name fully qualified hosts."""
    p = []
    for s in secrets:
        for k, v in (s.get("stringData") or {}).items():
            if k.endswith("_URL") and "REPLACE_ME" not in v:
                host = urlparse(v).hostname
                if not fully_qualified(host):
                    p.append(f"{name}: Secret {s['metadata']['name']} {k} host {host} is not fully qualified")
    return p


def autoscaling_problems(name: str, by_kind: dict[str, dict[str, dict]], cfg: dict) -> tuple[list[str], list[str]]:
    p: list[str] = []
    queries: list[str] = []
    namespaces = {d["metadata"].get("namespace") for kind in by_kind.values() for d in kind.values()} - {None}
    namespace = next(iter(namespaces), "")
    for so in by_kind.get("ScaledObject", {}).values():
        problems, qs = scaledobject_problems(name, so, cfg, namespace)
        p += problems
        queries += qs
    worker_hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("sluice-worker")
    if worker_hpa:
        p += hpa_problems(name, worker_hpa, cfg)
    if not by_kind.get("ScaledObject") and not worker_hpa:
        p.append(f"{name}: nothing scales the workers")
    p += secret_host_problems(name, list(by_kind.get("Secret", {}).values()))
    return p, queries
