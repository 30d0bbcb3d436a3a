"""The chaos run's config repository: every service of the workload in the seed's layout, the
`gate` application, and the SCRIPT_RUN applications whose scripts write timed ticks."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from slipway_sandbox.chaos_plan import GATE, Workload
from slipway_sandbox.demo_repo import DemoTiming, initial_files, manifests

__all__ = ["SCRIPT_TICKS", "TIMING", "repository_files"]

TIMING: Final = DemoTiming(analysis_s=8, analysis_interval_s=2, rate_window_s=4, canary="50%")
GATE_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: prd
  input:
    namespace: prd
    autoCreateNamespace: true
  pipeline:
    stages:
      - name: WAIT_APPROVAL
      - name: K8S_PRIMARY_ROLLOUT
"""
SCRIPT_TICKS: Final = 20
"""Ticks each SCRIPT_RUN writes, 0.1 s apart (a run lasts about 2 s)."""
SCRIPT_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: prd
  input:
    namespace: prd
    autoCreateNamespace: true
  pipeline:
    stages:
      - name: SCRIPT_RUN
        id: effect
        with:
          timeout: 1m
          env:
            TICKS: {ticks}
          run: |
            run="$$-$(date +%s%N)"
            i=0
            while [ $i -lt {count} ]; do
              echo "$SR_DEPLOYMENT_ID/effect $run $(date +%s.%N)" >> "$TICKS"
              sleep 0.1
              i=$((i+1))
            done
      - name: K8S_PRIMARY_ROLLOUT
"""
"""SCRIPT_RUN → K8S_PRIMARY_ROLLOUT; the script appends `<deployment>/<stage> <run> <time>`
to a file the run reads back (it runs as `nobody` in a clean environment: only `SR_*` and
its `env` tell it where it is)."""


def repository_files(workload: Workload, ticks: Path) -> dict[str, str]:
    """Every file of the run's repository, each app at v1; scripts append to `ticks`."""
    files: dict[str, str] = {}
    for service in workload.services:
        files |= initial_files(TIMING, tag="v1", service=service)
    files[f"{GATE}/prd/.pipe.yaml"] = GATE_CONFIG.format(name=f"{GATE}-prd")
    files[f"{GATE}/prd/manifests.yaml"] = manifests("v1", TIMING, GATE)
    for app in workload.apps:
        if app.kind == "script":
            files[f"{app.service}/prd/.pipe.yaml"] = SCRIPT_CONFIG.format(
                name=app.name, ticks=ticks, count=SCRIPT_TICKS
            )
            files[f"{app.service}/prd/manifests.yaml"] = manifests("v1", TIMING, app.service)
    return files
