#!/usr/bin/env python3
"""Validates nlpd's deployment files: deploy/kubernetes (plain manifests and the kustomize
renders), compose.yaml and its configs in deploy/compose.

Run by crates/cli/tests/deploy_manifests.rs with the test venv's interpreter (.venv-test, made by
scripts/test-venv.sh from tests/python/requirements.txt):

    .venv-test/bin/python tests/deploy/check_manifests.py --nlpd target/debug/nlpd [--ci]

What is checked, and against what:
  * every Kubernetes object, as written and as rendered by `kubectl kustomize` (the HPA variant and
    the KEDA one), against the Kubernetes OpenAPI schemas of kubernetes-validate, strict (an unknown
    field fails), for the oldest and the newest Kubernetes version in K8S_VERSIONS;
  * the KEDA ScaledObject against KEDA's CRD (v2.16, as the pydantic models of
    cloudcoil.models.keda), strict as well; the trigger `metadata` maps, which the CRD leaves
    free-form, by a structural check of the keys KEDA's prometheus and cpu scalers require;
  * consistency: probe paths and ports, Service / PDB / HPA / ScaledObject targets and selectors,
    the drain budget (terminationGracePeriodSeconds >= preStop + NLPD_SHUTDOWN_DELAY +
    NLPD_SHUTDOWN_TIMEOUT + 10 s, and compose's stop_grace_period likewise), every NLPD_* key
    being an env var of a real `nlpd serve` flag (parsed from `nlpd serve --help`), the
    prometheus-adapter rule serving the metric the HPA asks for, metric names nlpd exports;
  * compose.yaml against the Compose specification JSON schema (the copy check-jsonschema
    vendors), after Compose-style variable interpolation, plus structural rules the schema cannot
    express (health checks, limits, depends_on conditions, mounts of the other deploy/ files);
    the nlpd health check command itself is run against a real `nlpd serve` (ready, draining,
    gone);
  * `haproxy -c` on deploy/compose/haproxy.cfg and `promtool check config` on
    deploy/compose/prometheus.yml (with the rule files it loads).
Each strict validator is also fed a deliberately broken copy, which must fail (so a validator that
silently accepts everything is caught).

Missing tools (kubectl, haproxy, promtool) are skipped loudly, or fail with --ci. Exit status 0
when every check passed.
"""

from __future__ import annotations

import argparse
import copy
import importlib.resources
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema
import yaml
from kubernetes_validate import utils as kv

# The oldest Kubernetes the manifests support (the preStop `sleep` action is on by default from
# 1.30; 1.32 is the oldest minor still commonly supported) and the newest whose schemas
# kubernetes-validate ships.
K8S_MIN = "1.32.0"
K8S_VERSIONS = [K8S_MIN, kv.latest_version()]

NAMESPACE = "nlpd"
# The container images of the Deployment, overridable through kustomize `images:`.
IMAGES = {"nlpd", "nlpd-models"}
# The image's user (Dockerfile: USER 10001:10001).
IMAGE_UID = 10001
# Measured with the default pack (docs/OPERATIONS.md, "Sizing"): the highest RSS seen (2.23 GiB,
# 8 concurrent large batches) plus a full 256 MiB L1 cache. The memory limit must exceed it.
MEASURED_PEAK_MIB = 2540
# The drain's final stage: the prediction log flush waits at most this long (nlpd serve --help).
FLUSH_S = 10


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------
class Report:
    def __init__(self, ci: bool):
        self.ci = ci
        self.passed = 0
        self.failed: list[str] = []
        self.skipped: list[str] = []

    def ok(self, name: str, cond: bool, detail: str = "") -> bool:
        if cond:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed.append(f"{name}: {detail}" if detail else name)
            print(f"FAIL  {name}{': ' + detail if detail else ''}")
        return cond

    def fail(self, name: str, detail: str) -> None:
        self.ok(name, False, detail)

    def missing_tool(self, name: str, tool: str, fix: str) -> None:
        """A check whose tool is missing: fails under --ci, is skipped loudly otherwise."""
        if self.ci:
            self.fail(name, f"{tool} not found (required under CI): {fix}")
        else:
            self.skipped.append(name)
            print(f"!!! SKIPPING {name}: {tool} not found; {fix} !!!")

    def skip(self, name: str, why: str) -> None:
        self.skipped.append(name)
        print(f"!!! SKIPPING {name}: {why} !!!")

    def section(self, title: str) -> None:
        print(f"\n== {title}")

    def finish(self) -> int:
        total = self.passed + len(self.failed)
        print()
        if self.skipped:
            print(f"check_manifests: skipped {len(self.skipped)}: " + "; ".join(self.skipped))
        if self.failed:
            print(f"check_manifests: {len(self.failed)} of {total} checks FAILED:")
            for f in self.failed:
                print(f"  FAIL {f}")
            return 1
        print(f"check_manifests: all {total} checks passed")
        return 0


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def load_yaml_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kname(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def parse_duration(value: Any) -> float:
    """Seconds in a duration as nlpd, Compose and Kubernetes write them: `5s`, `500ms`, `1m30s`,
    `1h`, or a bare number of seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    s = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h|d)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"not a duration: {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource quantity in base units (bytes, cores): `2`, `500m`, `1536Mi`, `3Gi`."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value).strip())
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    mult = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return float(m.group(1)) * mult[m.group(2)]


def compose_memory(value: Any) -> float:
    """Compose memory sizes (`2G`, `512M`, `1536m`) are binary units."""
    s = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgBKMG]?)[bB]?", s)
    if not m:
        raise ValueError(f"not a Compose size: {value!r}")
    return float(m.group(1)) * {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]


def serve_env_vars(nlpd: Path) -> tuple[set[str], dict[str, str]]:
    """The NLPD_* variables of `nlpd serve`'s flags, and their defaults, from its --help."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLPD_")}
    out = subprocess.run([str(nlpd), "serve", "--help"], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout
    # `[env: NLPD_X=]`, or `[env: NLPD_X]` for flags that hide their values (secrets).
    names = set(re.findall(r"\[env: (NLPD_[A-Z0-9_]+)[=\]]", out))
    defaults: dict[str, str] = {}
    for m in re.finditer(r"\[env: (NLPD_[A-Z0-9_]+)(?:=[^\]]*)?\](?: \[default: ([^\]]*)\])?", out):
        if m.group(2) is not None:
            defaults[m.group(1)] = m.group(2)
    return names, defaults


def nlpd_metric_names(repo: Path) -> set[str]:
    """Metric names nlpd exports: the string constants of its metrics module."""
    src = (repo / "crates/runtime/src/metrics.rs").read_text()
    return set(re.findall(r'"(nlpd_[a-z0-9_]+)"', src))


def diff_paths(given: Any, kept: Any, path: str = "") -> list[str]:
    """Where `given` (the input) differs from `kept` (what a model kept of it): unknown fields,
    values coerced to another type."""
    out: list[str] = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for k, v in given.items():
            p = f"{path}.{k}" if path else k
            if k not in kept:
                out.append(f"unknown field {p}")
            else:
                out += diff_paths(v, kept[k], p)
    elif isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        for i, (a, b) in enumerate(zip(given, kept)):
            out += diff_paths(a, b, f"{path}[{i}]")
    elif given != kept or type(given) is not type(kept):
        out.append(f"{path}: {given!r} read as {kept!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Schema validation
# ---------------------------------------------------------------------------------------------
def k8s_errors(obj: dict, version: str) -> list[str]:
    try:
        kv.validate(obj, version, strict=True)
        return []
    except kv.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "(root)"
        return [f"{where}: {e.message}"]
    except kv.SchemaNotFoundError as e:
        return [e.message]


_keda = None


def keda_models():
    global _keda
    if _keda is None:
        from cloudcoil.models.keda import v1alpha1
        _keda = v1alpha1
    return _keda


def keda_errors(obj: dict) -> list[str]:
    """A keda.sh/v1alpha1 object against KEDA's CRD (cloudcoil's models of it), strictly."""
    models = keda_models()
    cls = getattr(models, obj.get("kind", ""), None)
    if cls is None:
        return [f"no KEDA model for kind {obj.get('kind')}"]
    try:
        parsed = cls.model_validate(obj)
    except Exception as e:  # pydantic.ValidationError
        return [str(e).replace("\n", " | ")]
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return diff_paths(obj, kept)


def keda_trigger_errors(obj: dict) -> list[str]:
    """KEDA leaves each trigger's `metadata` a free string map; these are the keys its scalers
    require (a structural check, not KEDA's own code)."""
    errs = []
    for i, t in enumerate(obj.get("spec", {}).get("triggers", [])):
        md = t.get("metadata", {})
        kind = t.get("type")
        if kind == "prometheus":
            for key in ("serverAddress", "query", "threshold"):
                if not md.get(key):
                    errs.append(f"triggers[{i}] (prometheus): metadata.{key} is required")
            if md.get("threshold") is not None:
                try:
                    float(md["threshold"])
                except ValueError:
                    errs.append(f"triggers[{i}]: threshold {md['threshold']!r} is not a number")
            if not re.match(r"^https?://", md.get("serverAddress", "")):
                errs.append(f"triggers[{i}]: serverAddress must be an http(s) URL")
            if t.get("metricType", "AverageValue") not in ("AverageValue", "Value"):
                errs.append(f"triggers[{i}]: metricType {t.get('metricType')} is not for prometheus")
        elif kind in ("cpu", "memory"):
            if t.get("metricType") not in ("Utilization", "AverageValue"):
                errs.append(f"triggers[{i}] ({kind}): metricType must be Utilization or AverageValue")
            if "value" not in md:
                errs.append(f"triggers[{i}] ({kind}): metadata.value is required")
            if "type" in md:
                errs.append(f"triggers[{i}] ({kind}): metadata.type is deprecated, use metricType")
        else:
            errs.append(f"triggers[{i}]: unexpected trigger type {kind!r}")
    return errs


def validate_objects(r: Report, objs: Iterable[dict], where: str) -> None:
    for obj in objs:
        name = f"{where}: {kname(obj)}"
        if obj.get("apiVersion", "").startswith("keda.sh/"):
            errs = keda_errors(obj)
            r.ok(f"{name} matches KEDA's CRD schema (v2.16, strict)", not errs, "; ".join(errs))
            errs = keda_trigger_errors(obj)
            r.ok(f"{name} triggers carry the metadata KEDA's scalers need (structural)", not errs,
                 "; ".join(errs))
            continue
        for version in K8S_VERSIONS:
            errs = k8s_errors(obj, version)
            r.ok(f"{name} valid for Kubernetes {version} (strict)", not errs, "; ".join(errs))


def negative_controls(r: Report, deployment: dict, scaled: dict | None, compose_doc: dict,
                      compose_schema: dict) -> None:
    """Each validator must reject a broken copy, or its passes mean nothing."""
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {"httpGet": {"path": "/"}}
    r.ok("negative control: strict Kubernetes validation rejects an unknown field",
         bool(k8s_errors(bad, K8S_MIN)), "a Deployment with `livenessprobe` passed")
    bad = copy.deepcopy(deployment)
    bad["spec"]["replicas"] = "three"
    r.ok("negative control: Kubernetes validation rejects a wrong type",
         bool(k8s_errors(bad, K8S_MIN)), "replicas: 'three' passed")
    if scaled is not None:
        bad = copy.deepcopy(scaled)
        bad["spec"]["minReplicaCout"] = 1
        r.ok("negative control: the KEDA check rejects an unknown field", bool(keda_errors(bad)),
             "a ScaledObject with `minReplicaCout` passed")
        bad = copy.deepcopy(scaled)
        del bad["spec"]["triggers"][0]["metadata"]["query"]
        r.ok("negative control: the KEDA trigger check rejects a prometheus trigger without query",
             bool(keda_trigger_errors(bad)), "passed")
    bad = copy.deepcopy(compose_doc)
    bad["services"]["nlpd"]["helthcheck"] = {"test": ["CMD", "true"]}
    validator = jsonschema.validators.validator_for(compose_schema)(compose_schema)
    r.ok("negative control: the Compose schema rejects an unknown service key",
         any(True for _ in validator.iter_errors(bad)), "`helthcheck` passed")


# ---------------------------------------------------------------------------------------------
# Kubernetes consistency
# ---------------------------------------------------------------------------------------------
def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def one(r: Report, objs: list[dict], kind: str, where: str) -> dict | None:
    found = by_kind(objs, kind)
    if r.ok(f"{where}: exactly one {kind}", len(found) == 1, f"found {len(found)}"):
        return found[0]
    return None


def subset(a: dict, b: dict) -> bool:
    return all(b.get(k) == v for k, v in a.items())


def resolve_port(port: Any, container: dict) -> int | None:
    for p in container.get("ports", []):
        if port == p.get("name") or port == p.get("containerPort"):
            return p.get("containerPort")
    return None


def prestop_seconds(container: dict) -> float | None:
    pre = container.get("lifecycle", {}).get("preStop")
    if pre is None:
        return 0.0
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = pre.get("exec", {}).get("command", [])
    text = " ".join(cmd)
    m = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else None


def check_kubernetes(r: Report, objs: list[dict], where: str, serve_env: set[str],
                     serve_defaults: dict[str, str], metrics: set[str], adapter_metric: str | None,
                     rendered: bool) -> None:
    dep = one(r, objs, "Deployment", where)
    cm = one(r, objs, "ConfigMap", where)
    sec = one(r, objs, "Secret", where)
    svc = one(r, objs, "Service", where)
    pdb = one(r, objs, "PodDisruptionBudget", where)
    if not (dep and cm and sec and svc and pdb):
        return
    tpl = dep["spec"]["template"]
    pod = tpl["spec"]
    pod_labels = tpl["metadata"].get("labels", {})
    containers = {c["name"]: c for c in pod["containers"]}
    c = containers.get("nlpd")
    if not r.ok(f"{where}: the Deployment has a container `nlpd`", c is not None):
        return
    cfg = cm.get("data", {})

    # Names and images.
    r.ok(f"{where}: Deployment selector matches its pod labels",
         subset(dep["spec"]["selector"]["matchLabels"], pod_labels))
    images = {x["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
              for x in pod["containers"] + pod.get("initContainers", [])}
    r.ok(f"{where}: container images are {sorted(IMAGES)}", images == IMAGES, f"got {sorted(images)}")
    if rendered:
        ns = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
        r.ok(f"{where}: every namespaced object is in namespace {NAMESPACE}", ns == {NAMESPACE},
             f"got {ns}")
        tags = {x["image"] for x in pod["containers"] + pod.get("initContainers", [])}
        r.ok(f"{where}: images rendered as nlpd:latest and nlpd-models:latest",
             tags == {"nlpd:latest", "nlpd-models:latest"}, f"got {sorted(tags)}")

    # Ports and probes.
    port = resolve_port("http", c)
    r.ok(f"{where}: container port `http` is 8080", port == 8080, f"got {port}")
    r.ok(f"{where}: NLPD_PORT equals the container port", str(cfg.get("NLPD_PORT")) == str(port),
         f"NLPD_PORT={cfg.get('NLPD_PORT')}")
    for probe, path in (("startupProbe", "/health/ready"), ("readinessProbe", "/health/ready"),
                        ("livenessProbe", "/health/live")):
        p = c.get(probe)
        if not r.ok(f"{where}: {probe} present", p is not None):
            continue
        get = p.get("httpGet", {})
        r.ok(f"{where}: {probe} GETs {path}", get.get("path") == path, f"path {get.get('path')}")
        r.ok(f"{where}: {probe} port is the container port",
             resolve_port(get.get("port"), c) == port, f"port {get.get('port')}")
    startup = c.get("startupProbe", {})
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    r.ok(f"{where}: startupProbe allows >= 60 s for --preload", budget >= 60, f"{budget} s")

    # Service, PDB.
    r.ok(f"{where}: Service selector matches the pod labels", subset(svc["spec"]["selector"], pod_labels))
    sp = svc["spec"]["ports"]
    r.ok(f"{where}: Service port 8080 is named http",
         any(p.get("port") == 8080 and p.get("name") == "http" for p in sp), f"{sp}")
    r.ok(f"{where}: Service targetPort resolves to the container port",
         all(resolve_port(p.get("targetPort", p.get("port")), c) == port for p in sp))
    r.ok(f"{where}: PDB selector matches the pod labels",
         subset(pdb["spec"]["selector"]["matchLabels"], pod_labels))
    r.ok(f"{where}: PDB selects exactly the Deployment's pods",
         pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"])
    r.ok(f"{where}: PDB leaves room to evict (maxUnavailable >= 1 or minAvailable < replicas)",
         pdb["spec"].get("maxUnavailable", 0) not in (0, "0", "0%")
         or int(pdb["spec"].get("minAvailable", 0)) < dep["spec"]["replicas"])

    # Drain budget.
    grace = pod.get("terminationGracePeriodSeconds", 30)
    pre = prestop_seconds(c)
    delay = parse_duration(cfg.get("NLPD_SHUTDOWN_DELAY", serve_defaults.get("NLPD_SHUTDOWN_DELAY", "5s")))
    timeout = parse_duration(cfg.get("NLPD_SHUTDOWN_TIMEOUT", serve_defaults.get("NLPD_SHUTDOWN_TIMEOUT", "20s")))
    if r.ok(f"{where}: preStop is a sleep (action or exec)", pre is not None, f"{c.get('lifecycle')}"):
        need = pre + delay + timeout + FLUSH_S
        r.ok(f"{where}: terminationGracePeriodSeconds {grace} >= preStop {pre:g} + delay {delay:g} + "
             f"timeout {timeout:g} + flush {FLUSH_S}", grace >= need, f"needs {need:g}")
    req_timeout = parse_duration(cfg.get("NLPD_REQUEST_TIMEOUT", serve_defaults.get("NLPD_REQUEST_TIMEOUT", "30")))
    r.ok(f"{where}: NLPD_SHUTDOWN_TIMEOUT >= NLPD_REQUEST_TIMEOUT (no admitted request is cut off)",
         timeout >= req_timeout, f"{timeout:g} < {req_timeout:g}")

    # Configuration sources.
    refs = [(e.get("configMapRef") or e.get("secretRef")) for e in c.get("envFrom", [])]
    names_cm = {o["metadata"]["name"] for o in by_kind(objs, "ConfigMap")}
    names_sec = {o["metadata"]["name"] for o in by_kind(objs, "Secret")}
    r.ok(f"{where}: envFrom uses the ConfigMap and the Secret",
         any(e.get("configMapRef", {}).get("name") == cm["metadata"]["name"] for e in c.get("envFrom", []))
         and any(e.get("secretRef", {}).get("name") == sec["metadata"]["name"] for e in c.get("envFrom", [])))
    r.ok(f"{where}: every envFrom reference exists",
         all((e.get("configMapRef") and e["configMapRef"]["name"] in names_cm)
             or (e.get("secretRef") and e["secretRef"]["name"] in names_sec)
             for e in c.get("envFrom", [])), f"{refs}")
    keys = set(cfg) | set(sec.get("stringData", {})) | set(sec.get("data", {}))
    keys |= {e["name"] for x in pod["containers"] + pod.get("initContainers", []) for e in x.get("env", [])}
    nlpd_keys = {k for k in keys if k.startswith("NLPD_")}
    unknown = sorted(nlpd_keys - serve_env)
    r.ok(f"{where}: every NLPD_* key ({len(nlpd_keys)}) is an env var of a `nlpd serve` flag",
         not unknown, f"not flags of `nlpd serve`: {unknown}")
    for key in ("NLPD_REDIS_URL", "NLPD_DATABASE_URL", "NLPD_API_KEYS"):
        r.ok(f"{where}: {key} comes from the Secret, not the ConfigMap",
             key in sec.get("stringData", {}) or key in sec.get("data", {}), "missing in the Secret")
        r.ok(f"{where}: {key} is absent from the ConfigMap", key not in cfg)
    placeholders = [k for k, v in sec.get("stringData", {}).items() if "CHANGE-ME" not in str(v)]
    r.ok(f"{where}: every Secret value is a marked placeholder (CHANGE-ME)", not placeholders,
         f"not marked: {placeholders}")
    r.ok(f"{where}: NLPD_PRELOAD is on (readiness waits for the models)",
         str(cfg.get("NLPD_PRELOAD", "")).lower() in ("true", "1", "yes", "on"))

    # Volumes: models read-only and filled by the initContainer, data on an emptyDir.
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    models_dir, data_dir = cfg.get("NLPD_MODELS_DIR"), cfg.get("NLPD_DATA_DIR")
    mm = mounts.get(models_dir)
    if r.ok(f"{where}: NLPD_MODELS_DIR ({models_dir}) is a mounted volume", mm is not None):
        r.ok(f"{where}: the models volume is mounted read-only", mm.get("readOnly") is True)
        fillers = [ic for ic in pod.get("initContainers", [])
                   if any(m["name"] == mm["name"] for m in ic.get("volumeMounts", []))]
        r.ok(f"{where}: an initContainer fills the models volume", len(fillers) == 1)
        if fillers:
            cmd = fillers[0].get("command", [])
            cf = (Path(__file__).resolve().parents[2] / "deploy/kubernetes/models/Containerfile").read_text()
            src = next((a for a in cmd if a.startswith("/pack")), None)
            r.ok(f"{where}: the initContainer copies the pack image's /pack (models/Containerfile)",
                 src is not None and re.search(r"^COPY \. /pack/?$", cf, re.M) is not None, f"{cmd}")
    dm = mounts.get(data_dir)
    if r.ok(f"{where}: NLPD_DATA_DIR ({data_dir}) is a mounted volume", dm is not None):
        r.ok(f"{where}: the data volume is a writable emptyDir",
             "emptyDir" in vols.get(dm["name"], {}) and not dm.get("readOnly"))

    # Security: restricted Pod Security Standard essentials.
    psc = pod.get("securityContext", {})
    r.ok(f"{where}: pod runs as non-root uid {IMAGE_UID}",
         psc.get("runAsNonRoot") is True and psc.get("runAsUser") == IMAGE_UID)
    r.ok(f"{where}: seccomp RuntimeDefault", psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
    for x in pod["containers"] + pod.get("initContainers", []):
        sc = x.get("securityContext", {})
        r.ok(f"{where}: container {x['name']} is read-only, unprivileged, drops ALL capabilities",
             sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
             and sc.get("capabilities", {}).get("drop") == ["ALL"], f"{sc}")
    r.ok(f"{where}: no service account token in the pods", pod.get("automountServiceAccountToken") is False)

    # Resources.
    res = c.get("resources", {})
    req, lim = res.get("requests", {}), res.get("limits", {})
    if r.ok(f"{where}: nlpd has cpu and memory requests and limits",
            all(k in req and k in lim for k in ("cpu", "memory")), f"{res}"):
        r.ok(f"{where}: limits >= requests", all(parse_quantity(lim[k]) >= parse_quantity(req[k])
                                                 for k in ("cpu", "memory")))
        r.ok(f"{where}: memory limit >= the measured peak ({MEASURED_PEAK_MIB} MiB)",
             parse_quantity(lim["memory"]) >= MEASURED_PEAK_MIB * 2**20, lim["memory"])

    # Metrics scraping.
    ann = tpl["metadata"].get("annotations", {})
    r.ok(f"{where}: prometheus.io annotations point at the container port and /metrics",
         ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
         and ann.get("prometheus.io/path", "/metrics") == "/metrics", f"{ann}")

    # Autoscalers: HPA or KEDA, never both.
    hpas, scaled = by_kind(objs, "HorizontalPodAutoscaler"), by_kind(objs, "ScaledObject")
    if rendered:
        r.ok(f"{where}: exactly one autoscaler (an HPA or a KEDA ScaledObject, never both)",
             len(hpas) + len(scaled) == 1, f"{len(hpas)} HPA, {len(scaled)} ScaledObject")
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        r.ok(f"{where}: HPA targets the Deployment `{dep['metadata']['name']}`",
             ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}, f"{ref}")
        r.ok(f"{where}: HPA minReplicas equals the Deployment's replicas",
             h["spec"].get("minReplicas") == dep["spec"]["replicas"])
        ms = h["spec"].get("metrics", [])
        r.ok(f"{where}: HPA scales on CPU utilization",
             any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in ms))
        pods_metrics = [m["pods"]["metric"]["name"] for m in ms if m["type"] == "Pods"]
        r.ok(f"{where}: HPA scales on a Pods metric for queue depth", pods_metrics == ["nlpd_queue_depth"],
             f"{pods_metrics}")
        for pm in pods_metrics:
            r.ok(f"{where}: the HPA's Pods metric `{pm}` is the one prometheus-adapter serves",
                 pm == adapter_metric, f"adapter serves {adapter_metric}")
    for s in scaled:
        ref = s["spec"]["scaleTargetRef"]
        r.ok(f"{where}: ScaledObject targets the Deployment `{dep['metadata']['name']}`",
             ref.get("name") == dep["metadata"]["name"] and ref.get("kind", "Deployment") == "Deployment")
        r.ok(f"{where}: ScaledObject minReplicaCount equals the Deployment's replicas",
             s["spec"].get("minReplicaCount") == dep["spec"]["replicas"])
        kinds = [t["type"] for t in s["spec"]["triggers"]]
        r.ok(f"{where}: ScaledObject scales on queue depth (prometheus) and CPU", sorted(kinds) == ["cpu", "prometheus"])
        for t in s["spec"]["triggers"]:
            if t["type"] == "prometheus":
                used = set(re.findall(r"\bnlpd_[a-z0-9_]+", t["metadata"]["query"]))
                r.ok(f"{where}: the KEDA query uses metrics nlpd exports", bool(used) and used <= metrics,
                     f"unknown: {sorted(used - metrics)}")
                r.ok(f"{where}: the KEDA query selects namespace {NAMESPACE}",
                     f'namespace="{NAMESPACE}"' in t["metadata"]["query"])
    if hpas or scaled:
        r.ok(f"{where}: CPU autoscaling has a CPU request to measure against", "cpu" in req)


def check_same_bounds(r: Report, hpa: dict, scaled: dict) -> None:
    """The two alternatives scale alike."""
    r.ok("HPA and ScaledObject: same min/max replicas",
         (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
         == (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]))
    cpu = next(m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource")
    q = next(m["pods"]["target"]["averageValue"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    kcpu = next(t["metadata"]["value"] for t in scaled["spec"]["triggers"] if t["type"] == "cpu")
    kq = next(t["metadata"]["threshold"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus")
    r.ok("HPA and ScaledObject: same CPU and queue-depth targets", (str(cpu), str(q)) == (str(kcpu), str(kq)),
         f"HPA {cpu}/{q}, KEDA {kcpu}/{kq}")
    r.ok("HPA and ScaledObject: same scaling behavior",
         hpa["spec"].get("behavior") == scaled["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior"))


def check_adapter(r: Report, path: Path, metrics: set[str]) -> str | None:
    values = yaml.safe_load(path.read_text())
    rules = values.get("rules", {})
    r.ok("prometheus-adapter: the chart's default rules are off", rules.get("default") is False)
    custom = rules.get("custom", [])
    if not r.ok("prometheus-adapter: one custom rule", len(custom) == 1, f"{len(custom)}"):
        return None
    rule = custom[0]
    series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule.get("seriesQuery", ""))
    series_name = series.group(1) if series else None
    r.ok("prometheus-adapter: the rule reads a metric nlpd exports", series_name in metrics, f"{series_name}")
    r.ok("prometheus-adapter: series need namespace and pod labels",
         'namespace!=""' in rule.get("seriesQuery", "") and 'pod!=""' in rule.get("seriesQuery", ""))
    ov = rule.get("resources", {}).get("overrides", {})
    r.ok("prometheus-adapter: namespace and pod labels map to resources",
         ov.get("namespace", {}).get("resource") == "namespace" and ov.get("pod", {}).get("resource") == "pod")
    mq = rule.get("metricsQuery", "")
    r.ok("prometheus-adapter: metricsQuery uses the series, label matchers and grouping",
         all(t in mq for t in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>")), mq)
    name = rule.get("name", {})
    if series_name and name.get("matches"):
        r.ok("prometheus-adapter: name.matches matches the series", re.search(name["matches"], series_name) is not None)
    served = name.get("as") or series_name
    r.ok("prometheus-adapter: url and port set", bool(values.get("prometheus", {}).get("url")))
    return served


# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------
_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e},
    ${VAR?e}, ${VAR:+r}, ${VAR+r}."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        val = env.get(name)
        unset = val is None
        empty = unset or val == ""
        if op in (":-", "-"):
            return interpolate(arg, env) if (empty if op == ":-" else unset) else val
        if op in (":?", "?"):
            if empty if op == ":?" else unset:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return val
        if op in (":+", "+"):
            return interpolate(arg, env) if not (empty if op == ":+" else unset) else ""
        return "" if unset else val

    return _VAR.sub(sub, value)


def compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def env_dict(env: Any) -> dict[str, Any]:
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v if "=" in str(item) else None
        return out
    return dict(env or {})


def bind_mounts(svc: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of the service's bind mounts."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            if parts[0].startswith((".", "/")):
                out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        elif v.get("type") == "bind":
            out.append((v["source"], v["target"], bool(v.get("read_only"))))
    return out


def check_compose(r: Report, repo: Path, serve_env: set[str], serve_defaults: dict[str, str],
                  schema: dict) -> dict | None:
    raw = yaml.safe_load((repo / "compose.yaml").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errs = [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in validator.iter_errors(raw)]
    r.ok("compose.yaml (as written) matches the Compose specification schema", not errs, "; ".join(errs[:5]))
    try:
        doc = interpolate(raw, {})
    except ValueError as e:
        r.fail("compose.yaml interpolates with an empty environment", str(e))
        return None
    errs = [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in validator.iter_errors(doc)]
    r.ok("compose.yaml (interpolated, defaults) matches the Compose specification schema", not errs,
         "; ".join(errs[:5]))

    services = doc.get("services", {})
    r.ok("compose: services nlpd, haproxy, redis, postgres, prometheus, grafana",
         set(services) == {"nlpd", "haproxy", "redis", "postgres", "prometheus", "grafana"}, f"{sorted(services)}")
    for name, svc in services.items():
        hc = svc.get("healthcheck", {})
        test = hc.get("test")
        r.ok(f"compose: {name} has a health check", bool(test) and not hc.get("disable")
             and test not in (["NONE"], "NONE"), f"{hc}")
        lim = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        r.ok(f"compose: {name} has CPU and memory limits", "cpus" in lim and "memory" in lim, f"{lim}")
        if "cpus" in lim and "memory" in lim:
            resv = svc.get("deploy", {}).get("resources", {}).get("reservations", {})
            r.ok(f"compose: {name} reservations <= limits",
                 float(resv.get("cpus", 0)) <= float(lim["cpus"])
                 and compose_memory(resv.get("memory", 0)) <= compose_memory(lim["memory"]))
        for dep, cond in (svc.get("depends_on") or {}).items():
            c = cond.get("condition", "service_started") if isinstance(cond, dict) else "service_started"
            r.ok(f"compose: {name} depends on an existing service {dep}", dep in services)
            if c == "service_healthy":
                r.ok(f"compose: {name} waits for {dep} healthy, which has a health check",
                     bool(services.get(dep, {}).get("healthcheck", {}).get("test")))
        if "image" in svc and "build" not in svc:
            r.ok(f"compose: {name} pins an image tag", ":" in svc["image"] and not svc["image"].endswith(":latest"),
                 svc["image"])
        for src, _, _ in bind_mounts(svc):
            p = (repo / src).resolve()
            if src.rstrip("/") in ("./models",):
                continue  # made by `make models`
            r.ok(f"compose: {name} mounts {src}, which exists", p.exists())
    nlpd = services.get("nlpd")
    if not nlpd:
        return doc
    r.ok("compose: nlpd depends on redis and postgres being healthy",
         all((nlpd.get("depends_on") or {}).get(d, {}).get("condition") == "service_healthy" for d in ("redis", "postgres")))
    r.ok("compose: haproxy waits for healthy nlpd replicas",
         (services["haproxy"].get("depends_on") or {}).get("nlpd", {}).get("condition") == "service_healthy")
    r.ok("compose: grafana waits for a healthy prometheus",
         (services["grafana"].get("depends_on") or {}).get("prometheus", {}).get("condition") == "service_healthy")
    r.ok("compose: three nlpd replicas", nlpd.get("deploy", {}).get("replicas") == 3)
    mem = nlpd.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory", "0")
    r.ok(f"compose: nlpd memory limit >= the measured peak ({MEASURED_PEAK_MIB} MiB)",
         compose_memory(mem) >= MEASURED_PEAK_MIB * 2**20, str(mem))
    build = nlpd.get("build", {})
    r.ok("compose: nlpd builds the Dockerfile's runtime stage as nlpd:latest",
         build.get("target") == "runtime" and nlpd.get("image") == "nlpd:latest"
         and (repo / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file())
    env = env_dict(nlpd.get("environment"))
    keys = {k for k in env if k.startswith("NLPD_")}
    unknown = sorted(keys - serve_env)
    r.ok(f"compose: every NLPD_* variable of nlpd ({len(keys)}) is an env var of a `nlpd serve` flag",
         not unknown, f"not flags of `nlpd serve`: {unknown}")
    port = int(env.get("NLPD_PORT") or serve_defaults.get("NLPD_PORT", 8080))
    delay = parse_duration(env.get("NLPD_SHUTDOWN_DELAY") or serve_defaults.get("NLPD_SHUTDOWN_DELAY", "5s"))
    timeout = parse_duration(env.get("NLPD_SHUTDOWN_TIMEOUT") or serve_defaults.get("NLPD_SHUTDOWN_TIMEOUT", "20s"))
    grace = parse_duration(nlpd.get("stop_grace_period", "10s"))
    r.ok(f"compose: nlpd stop_grace_period {grace:g} s >= delay {delay:g} + timeout {timeout:g} + flush {FLUSH_S}",
         grace >= delay + timeout + FLUSH_S)
    req_timeout = parse_duration(env.get("NLPD_REQUEST_TIMEOUT") or serve_defaults.get("NLPD_REQUEST_TIMEOUT", "30"))
    r.ok("compose: NLPD_SHUTDOWN_TIMEOUT >= NLPD_REQUEST_TIMEOUT", timeout >= req_timeout)
    r.ok("compose: nlpd stops with SIGTERM", nlpd.get("stop_signal", "SIGTERM") == "SIGTERM")
    mounts = {t: (s, ro) for s, t, ro in bind_mounts(nlpd)}
    models_dir = env.get("NLPD_MODELS_DIR", "/models")
    r.ok(f"compose: ./models is mounted read-only at NLPD_MODELS_DIR ({models_dir})",
         mounts.get(models_dir) == ("./models", True), f"{mounts}")
    data_dir = env.get("NLPD_DATA_DIR", "/data")
    writable = {v["target"] for v in nlpd.get("volumes", []) if isinstance(v, dict) and v.get("type") == "volume"
                and not v.get("read_only")}
    writable |= {t.split(":")[0] for t in (nlpd.get("tmpfs") or [])}
    r.ok("compose: nlpd's root filesystem is read-only, with NLPD_DATA_DIR and /tmp writable mounts",
         nlpd.get("read_only") is True and {data_dir, "/tmp"} <= writable, f"writable {writable}")
    r.ok("compose: nlpd uses Redis and PostgreSQL services",
         "@postgres:" in str(env.get("NLPD_DATABASE_URL")) and "//redis:" in str(env.get("NLPD_REDIS_URL")))
    r.ok("compose: nlpd publishes no host port (only through haproxy)", not nlpd.get("ports"))

    # HAProxy config mounted and consistent.
    hap = {t: s for s, t, _ in bind_mounts(services["haproxy"])}
    cfg_src = hap.get("/usr/local/etc/haproxy/haproxy.cfg")
    r.ok("compose: haproxy mounts deploy/compose/haproxy.cfg", cfg_src == "./deploy/compose/haproxy.cfg")
    cfg = (repo / "deploy/compose/haproxy.cfg").read_text()
    r.ok("haproxy.cfg: checks GET /health/ready", re.search(r"^\s*option httpchk GET /health/ready\s*$", cfg, re.M) is not None)
    r.ok("haproxy.cfg: expects 200 from the check", re.search(r"^\s*http-check expect status 200\s*$", cfg, re.M) is not None)
    tmpl = re.search(r"^\s*server-template\s+\S+\s+\S+\s+([a-z0-9_-]+):(\d+)", cfg, re.M)
    r.ok("haproxy.cfg: server-template targets the nlpd service and port",
         bool(tmpl) and tmpl.group(1) == "nlpd" and int(tmpl.group(2)) == port, f"{tmpl and tmpl.groups()}")
    m = re.search(r"^\s*timeout server\s+(\S+)", cfg, re.M)
    r.ok("haproxy.cfg: `timeout server` exceeds NLPD_REQUEST_TIMEOUT",
         bool(m) and parse_duration(m.group(1)) > req_timeout)
    inter = re.search(r"\binter (\S+).*\bfall (\d+)", cfg)
    if r.ok("haproxy.cfg: default-server sets inter and fall", inter is not None):
        out_after = parse_duration(inter.group(1)) * int(inter.group(2))
        r.ok(f"haproxy.cfg: a draining replica is out ({out_after:g} s) before its drain delay ends ({delay:g} s)",
             out_after < delay)
    mon = re.search(r"^\s*monitor-uri\s+(\S+)", cfg, re.M)
    hc = " ".join(services["haproxy"].get("healthcheck", {}).get("test", []))
    r.ok("compose: haproxy's health check GETs its monitor-uri", bool(mon) and mon.group(1) in hc, hc)

    # Prometheus config and rules mounted and consistent.
    prom = {t: s for s, t, _ in bind_mounts(services["prometheus"])}
    r.ok("compose: prometheus mounts deploy/compose/prometheus.yml",
         prom.get("/etc/prometheus/prometheus.yml") == "./deploy/compose/prometheus.yml")
    pcfg = yaml.safe_load((repo / "deploy/compose/prometheus.yml").read_text())
    rule_dirs = {str(Path(g).parent) for g in pcfg.get("rule_files", [])}
    r.ok("compose: prometheus mounts deploy/prometheus/rules where rule_files looks",
         rule_dirs and all(prom.get(d) == "./deploy/prometheus/rules" for d in rule_dirs), f"{rule_dirs} {prom}")
    jobs = {j["job_name"]: j for j in pcfg.get("scrape_configs", [])}
    job = jobs.get("nlpd", {})
    dns = (job.get("dns_sd_configs") or [{}])[0]
    r.ok("prometheus.yml: job `nlpd` scrapes every replica of the nlpd service (DNS, its port)",
         dns.get("names") == ["nlpd"] and dns.get("port") == port and dns.get("type") == "A")
    r.ok("prometheus.yml: haproxy's exporter is scraped on its stats port",
         jobs.get("haproxy", {}).get("static_configs", [{}])[0].get("targets") == ["haproxy:8404"])

    # Grafana provisioning (deploy/grafana) mounted where it expects to be.
    graf = {t: s for s, t, _ in bind_mounts(services["grafana"])}
    r.ok("compose: grafana mounts deploy/grafana/provisioning at /etc/grafana/provisioning",
         graf.get("/etc/grafana/provisioning") == "./deploy/grafana/provisioning")
    providers_files = sorted((repo / "deploy/grafana/provisioning/dashboards").glob("*.y*ml"))
    paths = [p.get("options", {}).get("path") for f in providers_files
             for p in (yaml.safe_load(f.read_text()) or {}).get("providers", [])]
    r.ok("compose: grafana mounts deploy/grafana/dashboards where the dashboard provider reads",
         bool(paths) and all(graf.get(p) == "./deploy/grafana/dashboards" for p in paths), f"providers {paths}, mounts {graf}")
    ds_files = sorted((repo / "deploy/grafana/provisioning/datasources").glob("*.y*ml"))
    urls = [d.get("url") for f in ds_files for d in (yaml.safe_load(f.read_text()) or {}).get("datasources", [])]
    r.ok("compose: grafana's provisioned datasource is the prometheus service",
         bool(urls) and all(re.match(r"^https?://prometheus:9090/?$", str(u)) for u in urls), f"{urls}")
    return doc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_healthcheck(test: list[str], port: int) -> int:
    """Runs a Compose CMD health check here, as the container would (NLPD_PORT set)."""
    assert test[0] == "CMD", test
    env = dict(os.environ, NLPD_PORT=str(port))
    return subprocess.run(test[1:], env=env, capture_output=True, timeout=10).returncode


def check_compose_healthcheck(r: Report, doc: dict, nlpd: Path, models_dir: Path) -> None:
    """The nlpd health check of compose.yaml against a real `nlpd serve`: passes when ready, fails
    while it drains (503) and once it is gone."""
    test = doc["services"]["nlpd"]["healthcheck"]["test"]
    if not shutil.which(test[1]):
        r.missing_tool("compose nlpd health check against a live nlpd", test[1], "install it")
        return
    model = models_dir / "all-MiniLM-L6-v2"
    if not (model / "config.json").is_file():
        r.missing_tool("compose nlpd health check against a live nlpd", f"model {model}", "run `make models`")
        return
    port = free_port()
    closed = run_healthcheck(test, port)
    r.ok("compose nlpd health check fails with nothing listening", closed != 0, f"exit {closed}")
    with tempfile.TemporaryDirectory(prefix="nlpd-hc-") as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NLPD_")}
        env["NLPD_DATA_DIR"] = data
        proc = subprocess.Popen(
            [str(nlpd), "serve", "--host", "127.0.0.1", "--port", str(port), "--database-url", "off",
             "--model", f"minilm={model}", "--shutdown-delay", "3s", "--shutdown-timeout", "5s"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 60
            rc = 1
            while time.time() < deadline and proc.poll() is None:
                rc = run_healthcheck(test, port)
                if rc == 0:
                    break
                time.sleep(0.2)
            r.ok("compose nlpd health check passes against a ready nlpd serve", rc == 0,
                 f"exit {rc}; nlpd {'exited ' + str(proc.returncode) if proc.poll() is not None else 'running'}")
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            rc = run_healthcheck(test, port)
            r.ok("compose nlpd health check fails while nlpd drains (503)", rc != 0 and proc.poll() is None,
                 f"exit {rc}, nlpd running: {proc.poll() is None}")
            status = proc.wait(timeout=30)
            r.ok("nlpd serve exits 0 after the drain", status == 0, f"exit {status}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


# ---------------------------------------------------------------------------------------------
# External tools
# ---------------------------------------------------------------------------------------------
def find_kubectl() -> str | None:
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file() and os.access(venv_kubectl, os.X_OK):
        return str(venv_kubectl)
    return shutil.which("kubectl")


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}")
                                       if os.access(p, os.X_OK)), None)


def kustomize(r: Report, kubectl: str, path: Path, name: str) -> list[dict] | None:
    p = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if not r.ok(f"kubectl kustomize {name} renders", p.returncode == 0, p.stderr.strip()[-500:]):
        return None
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def check_haproxy(r: Report, repo: Path) -> None:
    haproxy = find_tool("haproxy")
    if not haproxy:
        r.missing_tool("haproxy -c deploy/compose/haproxy.cfg", "haproxy", "run scripts/deploy-deps.sh")
        return
    p = subprocess.run([haproxy, "-c", "-f", str(repo / "deploy/compose/haproxy.cfg")],
                       capture_output=True, text=True, timeout=60)
    out = (p.stdout + p.stderr).strip()
    r.ok("haproxy -c -f deploy/compose/haproxy.cfg: valid", p.returncode == 0 and "valid" in out, out[-800:])
    r.ok("haproxy -c: no warnings", "[WARNING]" not in out, out[-800:])


def check_promtool(r: Report, repo: Path) -> None:
    promtool = find_tool("promtool")
    if not promtool:
        r.missing_tool("promtool check config deploy/compose/prometheus.yml", "promtool",
                       "run scripts/deploy-deps.sh")
        return
    cfg = yaml.safe_load((repo / "deploy/compose/prometheus.yml").read_text())
    rules = repo / "deploy/prometheus/rules"
    found = sorted(rules.glob("*.yml"))
    r.ok("deploy/prometheus/rules has rule files for compose's Prometheus to load", bool(found))
    # The container paths of rule_files, pointed at the repository's copies.
    cfg["rule_files"] = [str(rules / Path(g).name) for g in cfg.get("rule_files", [])]
    with tempfile.TemporaryDirectory(prefix="nlpd-prom-") as d:
        path = Path(d) / "prometheus.yml"
        path.write_text(yaml.safe_dump(cfg))
        p = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=120)
    out = (p.stdout + p.stderr).strip()
    r.ok(f"promtool check config deploy/compose/prometheus.yml (+ {len(found)} rule files)",
         p.returncode == 0, out[-800:])


# ---------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nlpd", required=True, type=Path, help="the nlpd binary (for `serve --help`)")
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    ap.add_argument("--models-dir", type=Path, default=None, help="the model pack (default: REPO/models)")
    ap.add_argument("--ci", action="store_true", help="a missing tool is a failure, not a skip")
    args = ap.parse_args()
    repo = args.repo.resolve()
    models_dir = (args.models_dir or repo / "models").resolve()
    r = Report(args.ci)
    kdir = repo / "deploy/kubernetes"

    r.section("nlpd serve flags and metrics")
    serve_env, serve_defaults = serve_env_vars(args.nlpd)
    r.ok(f"`nlpd serve --help` lists NLPD_* env vars ({len(serve_env)})", len(serve_env) > 20)
    for key in ("NLPD_SHUTDOWN_DELAY", "NLPD_SHUTDOWN_TIMEOUT"):
        r.ok(f"`nlpd serve` has {key}", key in serve_env)
    metrics = nlpd_metric_names(repo)
    r.ok("nlpd exports nlpd_queue_depth", "nlpd_queue_depth" in metrics)

    r.section("Kubernetes manifests as written (kubernetes-validate, strict; KEDA CRD)")
    plain: list[dict] = []
    for f in sorted(kdir.rglob("*.yaml")):
        rel = f.relative_to(repo)
        if f.name == "kustomization.yaml" or "prometheus-adapter" in f.parts:
            continue
        docs = load_yaml_docs(f)
        r.ok(f"{rel}: every document is a Kubernetes object",
             bool(docs) and all(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name")
                                for d in docs))
        validate_objects(r, docs, str(rel))
        plain += docs
    r.ok("deploy/kubernetes: object names are unique per kind",
         len({kname(o) for o in plain}) == len(plain))

    r.section("prometheus-adapter rules")
    adapter_metric = check_adapter(r, kdir / "prometheus-adapter/values.yaml", metrics)

    r.section("Kubernetes consistency (as written)")
    check_kubernetes(r, plain, "manifests", serve_env, serve_defaults, metrics, adapter_metric, rendered=False)
    hpa = next(iter(by_kind(plain, "HorizontalPodAutoscaler")), None)
    scaled = next(iter(by_kind(plain, "ScaledObject")), None)
    if r.ok("an HPA and a KEDA ScaledObject are both provided", hpa is not None and scaled is not None):
        check_same_bounds(r, hpa, scaled)
    for k in ("", "keda"):
        kust = yaml.safe_load((kdir / k / "kustomization.yaml").read_text())
        listed = set(kust.get("resources", []))
        r.ok(f"deploy/kubernetes/{k + '/' if k else ''}kustomization.yaml builds on the base",
             ("base" if not k else "../base") in listed)
    base = yaml.safe_load((kdir / "base/kustomization.yaml").read_text())
    r.ok("base kustomization lists the images for users to override",
         {i["name"] for i in base.get("images", [])} == IMAGES)
    on_disk = {p.name for p in (kdir / "base").glob("*.yaml")} - {"kustomization.yaml"}
    r.ok("base kustomization lists every manifest in base/", set(base.get("resources", [])) == on_disk,
         f"listed {sorted(base.get('resources', []))}, on disk {sorted(on_disk)}")

    r.section("kustomize renders (kubectl kustomize), validated again")
    kubectl = find_kubectl()
    if not kubectl:
        r.missing_tool("kubectl kustomize deploy/kubernetes{,/keda}", "kubectl",
                       "run scripts/test-venv.sh (the venv ships kubectl on Linux) or install kubectl")
    else:
        ver = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout.split("\n")
        print(f"   using {kubectl}: {' / '.join(v.strip() for v in ver if v.strip())}")
        for name, path in (("deploy/kubernetes (HPA)", kdir), ("deploy/kubernetes/keda", kdir / "keda")):
            objs = kustomize(r, kubectl, path, name)
            if objs is None:
                continue
            validate_objects(r, objs, f"render {name}")
            check_kubernetes(r, objs, f"render {name}", serve_env, serve_defaults, metrics, adapter_metric,
                             rendered=True)

    r.section("compose.yaml")
    schema = compose_schema()
    compose_doc = check_compose(r, repo, serve_env, serve_defaults, schema)
    if compose_doc:
        check_compose_healthcheck(r, compose_doc, args.nlpd, models_dir)

    r.section("negative controls")
    dep = next(iter(by_kind(plain, "Deployment")), None)
    if dep and compose_doc:
        negative_controls(r, dep, scaled, yaml.safe_load((repo / "compose.yaml").read_text()), schema)

    r.section("balancer and Prometheus configs of compose")
    check_haproxy(r, repo)
    check_promtool(r, repo)

    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
