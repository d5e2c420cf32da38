"""deploy/kubernetes/ as its users' tools see it: `kubectl kustomize` builds each overlay, kubernetes-validate
accepts every core object against Kubernetes 1.32, the PrometheusRule is what scripts/kubernetes_rules.py
generates from deploy/monitoring/rules, and every pod runs non-root on a read-only root filesystem."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["staging", "production"]
CRDS = {"ServiceMonitor", "PrometheusRule"}  # not in the Kubernetes schemas; their shape is checked below


def build(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed"
    done = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_every_object_validates(overlay: str) -> None:
    objects = build(overlay)
    for obj in objects:
        if obj["kind"] in CRDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(obj, "1.32.0", strict=True)
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    for group in rule["spec"]["groups"]:
        assert group["name"]
        assert group["rules"]
        for r in group["rules"]:
            assert ("record" in r) != ("alert" in r), r
            assert r["expr"], r


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_with_a_read_only_root_filesystem(overlay: str) -> None:
    for obj in build(overlay):
        spec = obj.get("spec", {})
        template = spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template")
        if not template:
            continue
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert ":" in c["image"].rsplit("/", 1)[-1], c["image"]
            assert not c["image"].endswith(":latest"), c["image"]
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_prometheusrule_is_generated_from_the_monitoring_rules() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "kubernetes_rules.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
