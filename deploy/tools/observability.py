"""The Prometheus config, alert rules and their tests, and the Grafana
dashboards (provisioning, metric names, the namespace variable, PromQL),
for check_deploy.py."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import yaml

from checks import DEPLOY, ROOT, fail, first_lines, ok, run, skip


# --- Prometheus and Grafana -------------------------------------------------------

# Metrics the dashboard and alerts already use that other work declares:
# the webhooks role's. Remove each
# name here once crates/sluice-core/src/metrics.rs declares it.
PENDING_METRICS: set[str] = set()


def metric_names_in_code() -> set[str]:
    text = (ROOT / "crates" / "sluice-core" / "src" / "metrics.rs").read_text()
    return set(re.findall(r'"(sluice_[a-z_]+)"', text)) | PENDING_METRICS


def sluice_metric_refs(text: str) -> set[str]:
    refs = set()
    for m in re.findall(r"\b(sluice_[a-z_]+)", text):
        refs.add(re.sub(r"_(bucket|sum|count)$", "", m))
    return refs


def check_prometheus(promtool: str | None) -> None:
    pdir = DEPLOY / "prometheus"
    known = metric_names_in_code()
    refs = sluice_metric_refs((pdir / "alerts.yml").read_text())
    unknown = sorted(refs - known)
    if unknown:
        fail("alerts metric names", f"not defined in crates/sluice-core/src/metrics.rs: {unknown}")
    else:
        ok("alerts metric names", f"{len(refs)} sluice_* metrics used, all defined in crates/sluice-core/src/metrics.rs")
    if not promtool:
        skip("prometheus config", "promtool not available (Debian package prometheus)")
        skip("prometheus rules", "promtool not available")
        skip("prometheus rule tests", "promtool not available")
        return
    version = run([promtool, "--version"]).stdout.splitlines()[0]
    r = run([promtool, "check", "config", "prometheus.yml"], cwd=pdir)
    if r.returncode == 0:
        ok("prometheus config", f"deploy/prometheus/prometheus.yml valid ({version})")
    else:
        fail("prometheus config", first_lines(r.stdout + r.stderr))
    r = run([promtool, "check", "rules", "alerts.yml"], cwd=pdir)
    if r.returncode == 0:
        found = re.search(r"(\d+) rules found", r.stdout)
        ok("prometheus rules", f"deploy/prometheus/alerts.yml: {found.group(1) if found else '?'} rules valid")
    else:
        fail("prometheus rules", first_lines(r.stdout + r.stderr))
    check_alert_links_and_tests(pdir)
    r = run([promtool, "test", "rules", "alerts.test.yml"], cwd=pdir)
    if r.returncode == 0:
        tests = len(yaml.safe_load((pdir / "alerts.test.yml").read_text()).get("tests", []))
        ok("prometheus rule tests", f"deploy/prometheus/alerts.test.yml: {tests} test groups pass")
    else:
        fail("prometheus rule tests", first_lines(r.stdout + r.stderr, 20))


def check_alert_links_and_tests(pdir: Path) -> None:
    """Every alert links to an existing section of docs/runbook.md and has a
    unit test in which it fires."""
    rules = [r for g in yaml.safe_load((pdir / "alerts.yml").read_text())["groups"] for r in g["rules"] if "alert" in r]
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbook, flags=re.M)}
    tests = yaml.safe_load((pdir / "alerts.test.yml").read_text()).get("tests", [])
    fired = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
    problems = []
    for r in rules:
        url = r.get("annotations", {}).get("runbook_url", "")
        path, _, anchor = url.partition("#")
        if path != "docs/runbook.md" or anchor not in anchors:
            problems.append(f"{r['alert']}: runbook_url {url!r} names no section of docs/runbook.md")
        if r["alert"] not in fired:
            problems.append(f"{r['alert']}: no unit test in which it fires")
    if problems:
        fail("alert runbooks and tests", "; ".join(problems))
    else:
        ok("alert runbooks and tests", f"{len(rules)} alerts: each links to a docs/runbook.md section and fires in a unit test")


def promql_check(promtool: str, exprs: dict[str, str]) -> str | None:
    """Runs the expressions through promtool as recording rules; the error, if any."""
    groups = {"groups": [{"name": "check", "rules": [
        {"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs.values())]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(groups, f)
    try:
        r = run([promtool, "check", "rules", f.name])
    finally:
        os.unlink(f.name)
    if r.returncode == 0:
        return None
    labels = list(exprs)
    msg = r.stdout + r.stderr
    for m in re.finditer(r"expr_(\d+)", msg):
        msg = msg.replace(m.group(0), labels[int(m.group(1))])
    return first_lines(msg)


def check_grafana(promtool: str | None) -> None:
    gdir = DEPLOY / "grafana"
    problems = []
    ds = yaml.safe_load((gdir / "provisioning" / "datasources" / "prometheus.yml").read_text())
    ds_uids = {d.get("uid") for d in ds.get("datasources", [])}
    prov = yaml.safe_load((gdir / "provisioning" / "dashboards" / "sluice.yml").read_text())
    paths = [p.get("options", {}).get("path") for p in prov.get("providers", [])]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"].get("volumes", [])
    for p in paths:
        if not any(isinstance(m, str) and m.split(":")[1] == p for m in mounts):
            problems.append(f"dashboard provider path {p} is not mounted in the grafana service")
    exprs: dict[str, str] = {}
    dashboards = sorted((gdir / "dashboards").glob("*.json"))
    known = metric_names_in_code()
    for path in dashboards:
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}: not JSON: {e}")
            continue
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in dash:
                problems.append(f"{path.name}: no {key}")
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        if "namespace" not in variables:
            problems.append(f"{path.name}: no namespace variable (one Grafana for several installs)")
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            problems.append(f"{path.name}: duplicate panel ids")
        for panel in dash.get("panels", []):
            title = panel.get("title", "?")
            uid = (panel.get("datasource") or {}).get("uid", "")
            var = re.fullmatch(r"\$\{?(\w+)\}?", uid or "")
            resolved = variables.get(var.group(1), {}).get("current", {}).get("value") if var else uid
            if resolved not in ds_uids:
                problems.append(f"{path.name}: panel {title!r} uses data source {uid!r}, not a provisioned uid {sorted(ds_uids)}")
            if not panel.get("targets"):
                problems.append(f"{path.name}: panel {title!r} has no queries")
            for t in panel.get("targets", []):
                # Grafana's interval variables, as Prometheus would see them.
                expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", t.get("expr", ""))
                exprs[f"{path.name}:{title}:{t.get('refId')}"] = expr
                if "$namespace" not in t.get("expr", ""):
                    problems.append(f"{path.name}: panel {title!r} query {t.get('refId')} ignores $namespace")
                unknown = sluice_metric_refs(expr) - known
                if unknown:
                    problems.append(f"{path.name}: panel {title!r} uses undefined metrics {sorted(unknown)}")
    if problems:
        fail("grafana", "; ".join(problems))
    else:
        ok("grafana", f"{len(dashboards)} dashboard(s), {len(exprs)} queries: JSON, data source uid, "
                      f"provisioning paths, metric names and the namespace variable consistent")
    if not promtool:
        skip("grafana promql", "promtool not available to parse the queries")
        return
    err = promql_check(promtool, exprs)
    if err:
        fail("grafana promql", err)
    else:
        ok("grafana promql", f"all {len(exprs)} dashboard queries parse as PromQL (promtool)")
