"""Checks of the example backing services (k8s/examples/backing-services)
for check_deploy.py: they render, their plain objects pass the Kubernetes
schemas, their operator objects are structurally sound (the CRD schemas are
not available offline), and together they keep the contract k8s/README.md
states: RabbitMQ on three nodes or more, Redis with AOF and noeviction,
PostgreSQL behind a pooler whose server pool fits max_connections, in a
pooling mode sqlx's prepared statements survive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

OPERATOR_KINDS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "Pooler"),
}
# Connections PostgreSQL keeps beyond the pooler's (superuser, replication,
# the operator, migrations run directly).
ADMIN_HEADROOM = 20


def redis_conf(docs: list[dict]) -> dict[str, str]:
    for d in docs:
        if d["kind"] == "ConfigMap" and "redis.conf" in d.get("data", {}):
            conf = {}
            for line in d["data"]["redis.conf"].splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2 and not parts[0].startswith("#"):
                    conf[parts[0]] = parts[1].strip()
            return conf
    return {}


def backing_problems(docs: list[dict]) -> list[str]:
    p: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    rabbits = by_kind.get("RabbitmqCluster", [])
    if not rabbits:
        p.append("no RabbitmqCluster")
    for r in rabbits:
        if r.get("spec", {}).get("replicas", 1) < 3:
            p.append(f"RabbitmqCluster/{r['metadata']['name']}: fewer than 3 replicas (quorum queues would not replicate)")
    conf = redis_conf(docs)
    if conf.get("appendonly") != "yes":
        p.append("redis.conf: appendonly is not yes")
    if conf.get("maxmemory-policy") != "noeviction":
        p.append(f"redis.conf: maxmemory-policy {conf.get('maxmemory-policy')!r}, not noeviction")
    clusters = {c["metadata"]["name"]: c for c in by_kind.get("Cluster", [])}
    poolers = by_kind.get("Pooler", [])
    if not poolers:
        p.append("no Pooler in front of PostgreSQL")
    for pooler in poolers:
        name = f"Pooler/{pooler['metadata']['name']}"
        spec = pooler.get("spec", {})
        cluster = clusters.get(spec.get("cluster", {}).get("name"))
        if cluster is None:
            p.append(f"{name}: its cluster {spec.get('cluster')} is not in the example")
            continue
        bouncer = spec.get("pgbouncer", {})
        params = bouncer.get("parameters", {})
        if bouncer.get("poolMode") == "transaction" and int(params.get("max_prepared_statements", "0")) <= 0:
            p.append(f"{name}: transaction pooling without max_prepared_statements breaks sqlx's prepared statements")
        server = int(params.get("default_pool_size", "20")) * int(spec.get("instances", 1))
        max_conn = int(cluster.get("spec", {}).get("postgresql", {}).get("parameters", {}).get("max_connections", "100"))
        if server + ADMIN_HEADROOM > max_conn:
            p.append(f"{name}: {server} server connections + {ADMIN_HEADROOM} for admin exceed max_connections {max_conn}")
    for d in docs:
        if (d.get("apiVersion"), d["kind"]) in OPERATOR_KINDS:
            if not d.get("spec"):
                p.append(f"{d['kind']}/{d['metadata']['name']}: no spec")
        elif "." in d.get("apiVersion", "").split("/")[0] and d["kind"] not in ("StatefulSet",):
            p.append(f"{d['kind']}/{d['metadata']['name']}: an operator kind the check does not know")
    return p


def check_backing(render: Callable[[Path], tuple[list[dict] | None, str]], path: Path,
                  ok: Callable[[str, str], None], fail: Callable[[str, str], None]) -> None:
    docs, err = render(path)
    if docs is None:
        fail("k8s backing services", err)
        return
    problems = backing_problems(docs)
    plain = [d for d in docs if (d.get("apiVersion"), d["kind"]) not in OPERATOR_KINDS]
    validated = ""
    try:
        import kubernetes_validate
        from kubernetes_validate import utils as kv_utils
        version = kv_utils.latest_version()
        for d in plain:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = "/".join(str(x) for x in e.path)
                problems.append(f"{d['kind']}/{d['metadata']['name']} at {where}: {e.message}")
        validated = f", {len(plain)} plain objects valid against Kubernetes {version}"
    except ImportError:
        validated = ", plain objects not schema-checked (kubernetes-validate missing)"
    if problems:
        fail("k8s backing services", "; ".join(problems))
    else:
        ok("k8s backing services", f"{path.relative_to(path.parents[2])}: {len(docs)} objects render; "
                                   f"RabbitMQ 3+ nodes, Redis AOF + noeviction, PostgreSQL behind a pooler "
                                   f"that fits max_connections{validated}")
