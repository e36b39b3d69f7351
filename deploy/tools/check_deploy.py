#!/usr/bin/env python3
"""Offline checks of deploy/ and k8s/, run by scripts/check-deploy.sh.

The shell script installs the tools (into a cached venv, or from Debian
packages) and passes their paths here; each check prints one line:

    ok    NAME: what was checked
    FAIL  NAME: what is wrong
    skip  NAME: why it could not run here

and the exit status is 1 when any check failed. Needs PyYAML; uses
kubernetes-validate, check-jsonschema, hadolint, promtool and kustomize
(or kubectl kustomize) when they are given.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_metrics import check_live_metrics  # noqa: E402
from k8s_autoscaling import autoscaling_problems  # noqa: E402
from k8s_backing import check_backing  # noqa: E402
from k8s_release import check_releases, shutdown_problems  # noqa: E402
from checks import DEPLOY, FAILED, K8S, ROOT, fail, first_lines, ok, rel, run, skip  # noqa: E402
from containers import check_compose, check_dockerfile  # noqa: E402
from observability import check_grafana, check_prometheus, promql_check  # noqa: E402

# --- sluice.toml ------------------------------------------------------------

# The keys crates/sluice-core/src/config.rs accepts (it denies unknown ones).
CONFIG_KEYS = {
    "": {"providers", "models", "worker", "api", "jobs", "metrics"},
    "providers": {"name", "kind", "base_url", "api_key_env", "timeout_s", "max_concurrency", "latency_target_ms",
                  "breaker_failures", "breaker_cool_down_s", "requests_per_minute", "tokens_per_minute",
                  "limits_window_ms", "headers", "prompt_cache_key",
                  "keep_alive"},
    "models": {"name", "providers", "upstream_model"},
    "worker": {
        "max_batch_size", "max_batch_tokens", "max_wait_ms", "batches_in_flight",
        "fanout_concurrency", "prefix_chars", "provider_attempts", "provider_backoff_ms",
        "delivery_limit", "drain_timeout_s", "fair",
    },
    "max_wait_ms": {"interactive", "standard", "batch"},
    "fair": {"enabled", "hold_jobs", "window_calls", "slot_lease_s"},
    "api": {"max_body_bytes", "max_batch_jobs", "max_wait_s"},
    "jobs": {"retention_s"},
    "metrics": {"tenant_label"},
}
PROVIDER_KINDS = {"openai"}


def config_problems(cfg: dict) -> list[str]:
    """What Config::load would refuse, as far as a structural check can tell."""
    problems = []
    unknown = set(cfg) - CONFIG_KEYS[""]
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)}")
    names = set()
    for i, p in enumerate(cfg.get("providers", [])):
        unknown = set(p) - CONFIG_KEYS["providers"]
        if unknown:
            problems.append(f"providers[{i}]: unknown keys {sorted(unknown)}")
        for key in ("name", "kind", "base_url"):
            if key not in p:
                problems.append(f"providers[{i}]: missing {key}")
        if p.get("kind") not in PROVIDER_KINDS:
            problems.append(f"providers[{i}]: kind {p.get('kind')!r} is not one of {sorted(PROVIDER_KINDS)}")
        url = urlparse(str(p.get("base_url", "")))
        if url.scheme not in ("http", "https") or not url.hostname:
            problems.append(f"providers[{i}]: base_url {p.get('base_url')!r} is not an http(s) URL with a host")
        if p.get("name") in names:
            problems.append(f"providers[{i}]: duplicate name {p.get('name')!r}")
        names.add(p.get("name"))
    models = set()
    for i, m in enumerate(cfg.get("models", [])):
        unknown = set(m) - CONFIG_KEYS["models"]
        if unknown:
            problems.append(f"models[{i}]: unknown keys {sorted(unknown)}")
        if m.get("name") in models:
            problems.append(f"models[{i}]: duplicate name {m.get('name')!r}")
        models.add(m.get("name"))
        if not m.get("providers"):
            problems.append(f"models[{i}]: no providers")
        for p in m.get("providers", []):
            if p not in names:
                problems.append(f"models[{i}]: unknown provider {p!r}")
    for section in ("worker", "api", "jobs", "metrics"):
        unknown = set(cfg.get(section, {})) - CONFIG_KEYS[section]
        if unknown:
            problems.append(f"[{section}]: unknown keys {sorted(unknown)}")
    for table in ("max_wait_ms", "fair"):
        unknown = set(cfg.get("worker", {}).get(table, {})) - CONFIG_KEYS[table]
        if unknown:
            problems.append(f"[worker.{table}]: unknown keys {sorted(unknown)}")
    if prefetch(cfg) > 65535:
        problems.append("worker: max_batch_size x batches_in_flight must stay under 65536")
    return problems


def prefetch(cfg: dict) -> int:
    w = cfg.get("worker", {})
    return int(w.get("max_batch_size", 32)) * int(w.get("batches_in_flight", 8))


def check_configs(sluice_bin: str | None) -> None:
    files = [DEPLOY / "sluice.toml", K8S / "base" / "sluice.toml", K8S / "overlays" / "dev" / "sluice.toml"]
    for f in files:
        name = f"config {rel(f)}"
        try:
            cfg = tomllib.loads(f.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            fail(name, f"does not parse: {e}")
            continue
        problems = config_problems(cfg)
        if problems:
            fail(name, "; ".join(problems))
        else:
            ok(name, f"TOML parses; {len(cfg.get('providers', []))} providers, "
                     f"{len(cfg.get('models', []))} routes, known keys only")
    if not sluice_bin:
        skip("config (sluice binary)", "no target/{release,debug}/sluice built; the structural check above stands alone")
        return
    # The worker loads the config before it connects anywhere; a database URL
    # that cannot even be parsed makes it stop right after that load.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    for f in files:
        name = f"config {rel(f)} (sluice binary)"
        try:
            r = subprocess.run(
                [sluice_bin, "worker", "--config", str(f),
                 "--database-url", "postgres://check@127.0.0.1:1/check?sslmode=check-deploy"],
                capture_output=True, text=True, timeout=30, env=env, check=False)
        except subprocess.TimeoutExpired:
            skip(name, "the binary did not stop within 30 s; inconclusive")
            continue
        err = r.stderr
        if "error: config " in err or "cannot read config file" in err or "no config file" in err:
            fail(name, first_lines(err, 4))
        elif "cannot connect to PostgreSQL" in err:
            ok(name, f"{rel(Path(sluice_bin))} loaded and validated it (then stopped at the dummy database, as intended)")
        else:
            skip(name, f"inconclusive: {first_lines(err, 2)}")


# --- Kubernetes ---------------------------------------------------------------------

CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}


def render(kustomize: list[str], path: Path) -> tuple[list[dict] | None, str]:
    r = run(kustomize + [str(path)])
    if r.returncode != 0:
        return None, first_lines(r.stderr or r.stdout)
    return [d for d in yaml.safe_load_all(r.stdout) if d], ""


def renderings(kustomize: list[str], tmp: Path) -> dict[str, list[dict]]:
    out = {}
    for name, path in (("base", K8S / "base"), ("dev", K8S / "overlays" / "dev"), ("prod", K8S / "overlays" / "prod")):
        docs, err = render(kustomize, path)
        if docs is None:
            fail(f"kustomize {name}", err)
        else:
            kinds = sorted({d["kind"] for d in docs})
            ok(f"kustomize {name}", f"renders {len(docs)} objects ({', '.join(kinds)})")
            out[name] = docs
    # The documented variant: dev with both optional components switched on
    # (a copy of k8s/ with the commented `components:` lines uncommented).
    copy = tmp / "k8s"
    shutil.copytree(K8S, copy)
    kfile = copy / "overlays" / "dev" / "kustomization.yaml"
    text = kfile.read_text()
    text2 = re.sub(r"^# (components:|  - \.\./\.\./components/.*)$", r"\1", text, flags=re.M)
    if text2 == text:
        fail("kustomize dev+components", "no commented `components:` block found in overlays/dev/kustomization.yaml")
    else:
        kfile.write_text(text2)
        docs, err = render(kustomize, copy / "overlays" / "dev")
        if docs is None:
            fail("kustomize dev+components", err)
        else:
            kinds = {d["kind"] for d in docs}
            left = kinds & CRD_KINDS
            hpas = [d["metadata"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
            if left or "sluice-worker" not in hpas:
                fail("kustomize dev+components", f"CRD objects left: {sorted(left)}; HPAs: {hpas}")
            else:
                ok("kustomize dev+components", f"renders {len(docs)} objects, no CRD kinds, worker HPA present")
                out["dev+components"] = docs
    return out


def check_k8s_schemas(renders: dict[str, list[dict]], versions: list[str]) -> None:
    try:
        import kubernetes_validate
        from kubernetes_validate import utils as kv_utils
    except ImportError:
        skip("k8s schemas", "kubernetes-validate could not be installed")
        return
    if not versions:
        versions = ["1.27.0", kv_utils.latest_version()]
    for version in versions:
        problems = []
        count = 0
        for name, docs in renders.items():
            for d in docs:
                if d["kind"] in CRD_KINDS:
                    continue
                count += 1
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(str(p) for p in e.path)
                    problems.append(f"{name}: {d['kind']}/{d['metadata']['name']} at {path}: {e.message}")
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as e:
                    problems.append(f"{name}: {d['kind']}/{d['metadata']['name']}: {e.message}")
        if problems:
            fail(f"k8s schemas {version}", "; ".join(problems[:8]))
        else:
            ok(f"k8s schemas {version}", f"{count} objects (base, overlays, components) valid, strict "
                                       f"(kubernetes-validate {kubernetes_validate.__version__})")


def expect(problems: list[str], cond: bool, msg: str) -> None:
    if not cond:
        problems.append(msg)


def crd_problems(d: dict) -> list[str]:
    """Structural checks of the CRD objects, whose schemas are not available offline."""
    p: list[str] = []
    kind, spec = d["kind"], d.get("spec", {})
    name = f"{kind}/{d['metadata']['name']}"
    if kind == "ScaledObject":
        expect(p, d["apiVersion"] == "keda.sh/v1alpha1", f"{name}: apiVersion {d['apiVersion']}")
        expect(p, bool(spec.get("scaleTargetRef", {}).get("name")), f"{name}: no scaleTargetRef.name")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        expect(p, isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi, f"{name}: replica bounds {lo}..{hi}")
        for t in spec.get("triggers", []):
            meta = t.get("metadata", {})
            expect(p, all(isinstance(v, str) for v in meta.values()), f"{name}: trigger metadata values must be strings")
            if t.get("type") == "prometheus":
                expect(p, {"serverAddress", "query", "threshold"} <= set(meta),
                       f"{name}: prometheus trigger needs serverAddress, query and threshold")
            if t.get("type") == "rabbitmq":
                expect(p, meta.get("mode") in ("QueueLength", "MessageRate"), f"{name}: rabbitmq mode {meta.get('mode')}")
                expect(p, meta.get("protocol", "auto") in ("auto", "amqp", "http"), f"{name}: rabbitmq protocol")
                expect(p, bool(meta.get("queueName")), f"{name}: rabbitmq trigger without queueName")
                expect(p, "host" in meta or "hostFromEnv" in meta or "authenticationRef" in t,
                       f"{name}: rabbitmq trigger with no host, hostFromEnv or authenticationRef")
        expect(p, bool(spec.get("triggers")), f"{name}: no triggers")
        allowed = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod",
                   "idleReplicaCount", "initialCooldownPeriod", "advanced", "triggers", "fallback"}
        expect(p, set(spec) <= allowed, f"{name}: unknown spec fields {sorted(set(spec) - allowed)}")
    elif kind == "TriggerAuthentication":
        expect(p, d["apiVersion"] == "keda.sh/v1alpha1", f"{name}: apiVersion {d['apiVersion']}")
        for ref in spec.get("secretTargetRef", []):
            expect(p, {"parameter", "name", "key"} <= set(ref), f"{name}: secretTargetRef needs parameter, name, key")
    elif kind == "ServiceMonitor":
        expect(p, d["apiVersion"] == "monitoring.coreos.com/v1", f"{name}: apiVersion {d['apiVersion']}")
        expect(p, "selector" in spec, f"{name}: no selector")
        for e in spec.get("endpoints", []):
            expect(p, "port" in e or "targetPort" in e, f"{name}: endpoint without port")
            expect(p, set(e) <= {"port", "targetPort", "path", "interval", "scrapeTimeout", "scheme",
                                 "relabelings", "metricRelabelings", "honorLabels"},
                   f"{name}: unknown endpoint fields {sorted(set(e))}")
        expect(p, bool(spec.get("endpoints")), f"{name}: no endpoints")
    elif kind == "PrometheusRule":
        expect(p, d["apiVersion"] == "monitoring.coreos.com/v1", f"{name}: apiVersion {d['apiVersion']}")
        expect(p, set(spec) <= {"groups"}, f"{name}: unknown spec fields")
    return p


def selects(selector: dict, labels: dict) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        val = labels.get(e["key"])
        if e["operator"] == "In" and val not in e["values"]:
            return False
        if e["operator"] == "NotIn" and val in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
    return True


# The autoscalers' PromQL, collected by policy_problems for promtool.
AUTOSCALER_QUERIES: dict[str, str] = {}


def rendered_config(by_kind: dict[str, dict[str, dict]]) -> dict:
    """The rendered sluice.toml (the sluice-config ConfigMap), parsed; {} if none."""
    cm = next((cm["data"] for n, cm in by_kind.get("ConfigMap", {}).items() if n.startswith("sluice-config")), {})
    try:
        return tomllib.loads(cm.get("sluice.toml", ""))
    except tomllib.TOMLDecodeError:
        return {}


def policy_problems(name: str, docs: list[dict]) -> list[str]:
    """What the brief asks of every rendering, and the references between objects."""
    p: list[str] = []
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind.get("Deployment", {})
    configmaps = set(by_kind.get("ConfigMap", {}))
    secrets = set(by_kind.get("Secret", {}))
    external_secret_ok = name == "prod"
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    expect(p, len(namespaces) == 1 and None not in namespaces, f"{name}: objects span namespaces {namespaces}")

    workloads = list(deployments.values()) + list(by_kind.get("Job", {}).values())
    for w in workloads:
        wn = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        expect(p, psc.get("runAsNonRoot") is True, f"{name}: {wn}: runAsNonRoot not set")
        expect(p, pod.get("automountServiceAccountToken") is False, f"{name}: {wn}: service account token mounted")
        for c in pod["containers"]:
            csc = c.get("securityContext", {})
            expect(p, csc.get("readOnlyRootFilesystem") is True, f"{name}: {wn}: root filesystem writable")
            expect(p, csc.get("allowPrivilegeEscalation") is False, f"{name}: {wn}: privilege escalation allowed")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                expect(p, {"cpu", "memory"} <= set(res.get(part, {})), f"{name}: {wn}: {part} lack cpu or memory")
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    expect(p, ref["configMapRef"]["name"] in configmaps, f"{name}: {wn}: ConfigMap {ref['configMapRef']['name']} missing")
                if "secretRef" in ref and not external_secret_ok:
                    expect(p, ref["secretRef"]["name"] in secrets, f"{name}: {wn}: Secret {ref['secretRef']['name']} missing")
        for v in pod.get("volumes", []):
            if "configMap" in v:
                expect(p, v["configMap"]["name"] in configmaps, f"{name}: {wn}: ConfigMap volume {v['configMap']['name']} missing")
        if w["kind"] == "Deployment":
            sel = w["spec"]["selector"]
            expect(p, selects(sel, w["spec"]["template"]["metadata"]["labels"]), f"{name}: {wn}: selector misses its pods")

    for role, port, paths in (("sluice-api", "http", {"/healthz", "/readyz"}), ("sluice-worker", "metrics", {"/healthz", "/readyz"})):
        d = deployments.get(role)
        if not d:
            p.append(f"{name}: no Deployment {role}")
            continue
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        if role == "sluice-api":
            expect(p, pod.get("terminationGracePeriodSeconds") == 90, f"{name}: {role}: terminationGracePeriodSeconds is not 90")
        else:
            # The drain covers the longest provider call; the grace period, the drain.
            p += shutdown_problems(f"{name}: {role}", rendered_config(by_kind), pod.get("terminationGracePeriodSeconds"))
        expect(p, "replicas" not in d["spec"], f"{name}: {role}: sets replicas, which fights its autoscaler")
        seen = set()
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c.get(probe, {}).get("httpGet")
            expect(p, get is not None and get.get("port") == port, f"{name}: {role}: {probe} not an httpGet on port {port}")
            if get:
                seen.add(get.get("path"))
        expect(p, seen == paths, f"{name}: {role}: probes hit {sorted(seen)}, expected {sorted(paths)}")
        ports = {pp["name"] for pp in c.get("ports", [])}
        expect(p, port in ports, f"{name}: {role}: no container port named {port}")

    for svc in by_kind.get("Service", {}).values():
        sel = svc["spec"].get("selector", {})
        expect(p, any(selects({"matchLabels": sel}, d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values()),
               f"{name}: Service/{svc['metadata']['name']} selects no pods")
    for kind in ("PodDisruptionBudget",):
        for pdb in by_kind.get(kind, {}).values():
            expect(p, any(selects(pdb["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values()),
                   f"{name}: {kind}/{pdb['metadata']['name']} selects no pods")
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        expect(p, hpa["spec"]["scaleTargetRef"]["name"] in deployments, f"{name}: HPA/{hpa['metadata']['name']} targets a missing Deployment")
    for so in by_kind.get("ScaledObject", {}).values():
        expect(p, so["spec"]["scaleTargetRef"]["name"] in deployments, f"{name}: ScaledObject targets a missing Deployment")
        for t in so["spec"].get("triggers", []):
            ref = (t.get("authenticationRef") or {}).get("name")
            if ref:
                expect(p, ref in by_kind.get("TriggerAuthentication", {}), f"{name}: TriggerAuthentication {ref} missing")
    for ta in by_kind.get("TriggerAuthentication", {}).values():
        for ref in ta["spec"].get("secretTargetRef", []):
            if not external_secret_ok:
                expect(p, ref["name"] in secrets, f"{name}: TriggerAuthentication reads missing Secret {ref['name']}")
    for sm in by_kind.get("ServiceMonitor", {}).values():
        selected = [s for s in by_kind.get("Service", {}).values() if selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        names = sorted(s["metadata"]["name"] for s in selected)
        want = ["sluice-api", "sluice-webhooks", "sluice-worker"]
        expect(p, names == want, f"{name}: ServiceMonitor selects {names}, expected {want}")
        ports = {pp.get("name") for s in selected for pp in s["spec"]["ports"]}
        for e in sm["spec"]["endpoints"]:
            expect(p, e.get("port") in ports, f"{name}: ServiceMonitor endpoint port {e.get('port')} is on no selected Service")

    # The autoscaler's backlog query, threshold, hosts, fallback and cap.
    cfg = rendered_config(by_kind)
    if cfg:
        problems = config_problems(cfg)
        expect(p, not problems, f"{name}: rendered sluice.toml: {problems}")
    problems, queries = autoscaling_problems(name, by_kind, cfg)
    p += problems
    AUTOSCALER_QUERIES.update({f"{name}:{i}": q for i, q in enumerate(queries)})

    text = yaml.safe_dump_all(docs)
    if name != "base":
        expect(p, "REPLACE_ME" not in text, f"{name}: placeholder REPLACE_ME values left in the rendering")
    if name == "prod":
        expect(p, not secrets, f"{name}: prod renders a Secret; it must come from outside the manifests")
        images = {c["image"] for w in workloads for c in w["spec"]["template"]["spec"]["containers"]}
        expect(p, all(":" in i and not i.endswith(":latest") and not i.endswith(":dev") for i in images),
               f"{name}: images {sorted(images)} are not pinned to a release tag")
    return p


def check_k8s(kustomize: list[str] | None, versions: list[str], promtool: str | None) -> None:
    if not kustomize:
        skip("kustomize", "neither kustomize nor kubectl (with built-in kustomize) is available")
        return
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        renders = renderings(kustomize, Path(tmp))
        check_releases(lambda path: render(kustomize, path), K8S, Path(tmp), ok, fail)
        check_backing(lambda path: render(kustomize, path), K8S / "examples" / "backing-services", ok, fail)
    if not renders:
        return
    check_k8s_schemas(renders, versions)

    problems = []
    count = 0
    for name, docs in renders.items():
        for d in docs:
            if d["kind"] in CRD_KINDS:
                count += 1
                problems += [f"{name}: {x}" for x in crd_problems(d)]
    if problems:
        fail("k8s CRD objects", "; ".join(problems))
    else:
        ok("k8s CRD objects", f"{count} ScaledObject/TriggerAuthentication/ServiceMonitor/PrometheusRule objects structurally sound "
                              f"(their CRD schemas are not available offline)")

    problems = []
    for name, docs in renders.items():
        problems += policy_problems(name, docs)
    if promtool and AUTOSCALER_QUERIES:
        err = promql_check(promtool, AUTOSCALER_QUERIES)
        if err:
            problems.append(f"autoscaler queries do not parse: {err}")
    if problems:
        fail("k8s policy", "; ".join(problems))
    else:
        ok("k8s policy", "non-root, read-only root fs, resources, probes, api grace 90 s, worker drain covers the longest provider "
                         "timeout and its grace the drain; Services, PDBs, autoscalers, "
                         "ServiceMonitor, Secret and ConfigMap references resolve; the worker autoscaler reads the job backlog of its "
                         "namespace (PromQL parses), threshold = max_batch_size x batches_in_flight, FQDN hosts, a fallback "
                         "within min..max, max within the provider budget, the fleet held while providers answer 429")

    # The PrometheusRule carries deploy/prometheus/alerts.yml verbatim.
    base = renders.get("base", [])
    rule = next((d for d in base if d["kind"] == "PrometheusRule"), None)
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    if rule is None:
        fail("k8s PrometheusRule", "base renders no PrometheusRule")
    elif rule["spec"] != alerts:
        fail("k8s PrometheusRule", "spec differs from deploy/prometheus/alerts.yml; regenerate it (k8s/README.md, 'Alert rules')")
    elif promtool:
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            yaml.safe_dump(rule["spec"], f)
        r = run([promtool, "check", "rules", f.name])
        os.unlink(f.name)
        if r.returncode == 0:
            ok("k8s PrometheusRule", "spec.groups equals deploy/prometheus/alerts.yml and passes promtool check rules")
        else:
            fail("k8s PrometheusRule", first_lines(r.stdout + r.stderr))
    else:
        ok("k8s PrometheusRule", "spec.groups equals deploy/prometheus/alerts.yml (promtool unavailable)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--promtool")
    ap.add_argument("--hadolint")
    ap.add_argument("--check-jsonschema")
    ap.add_argument("--kustomize", help="the render command, e.g. 'kubectl kustomize' or 'kustomize build'")
    ap.add_argument("--sluice-bin")
    ap.add_argument("--k8s-versions", default="", help="space-separated; default: 1.27.0 and the newest bundled")
    args = ap.parse_args()

    check_configs(args.sluice_bin)
    check_dockerfile(args.hadolint)
    check_compose(args.check_jsonschema)
    check_prometheus(args.promtool)
    check_grafana(args.promtool)
    check_k8s(args.kustomize.split() if args.kustomize else None, args.k8s_versions.split(), args.promtool)
    check_live_metrics(args.sluice_bin, args.promtool, ROOT / "docs" / "metrics.md", ok, fail, skip)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
