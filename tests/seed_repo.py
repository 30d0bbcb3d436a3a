"""The seed's config repository layout, as files for a real git repository in a test.

One folder per service, one sub-folder per environment (`dev` quick-syncs,
`prd` runs canary → analysis → primary → clean), and the shared
`.pipe/analysis-template.yaml` with a `grpc_error_rate` metric (DESIGN §1).
"""

from __future__ import annotations

ANALYSIS_TEMPLATE = """\
apiVersion: pipecd.dev/v1beta1
kind: AnalysisTemplate
spec:
  metrics:
    grpc_error_rate:
      strategy: THRESHOLD
      interval: 5m
      provider: prometheus
      expected:
        max: 0.01
      query: |
        sum(rate(grpc_server_handled_total{grpc_code!="OK", job="{{ .App.Name }}"}[5m]))
        /
        sum(rate(grpc_server_handled_total{job="{{ .App.Name }}"}[5m]))
"""

DEV_CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {service}-dev
  labels:
    env: dev
"""

PRD_CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {service}-prd
  labels:
    env: prd
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with:
          replicas: 10%
      - name: ANALYSIS
        id: analysis
        with:
          duration: 30m
          metrics:
            - template:
                name: grpc_error_rate
      - name: K8S_PRIMARY_ROLLOUT
      - name: K8S_CANARY_CLEAN
"""

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {service}
  labels:
    app: {service}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {service}
      pipecd.dev/variant: primary
  template:
    metadata:
      labels:
        app: {service}
        pipecd.dev/variant: primary
    spec:
      containers:
        - name: {service}
          image: ghcr.io/bucketeer-io/{service}:{tag}
          args: [server]
          ports:
            - containerPort: 9090
---
apiVersion: v1
kind: Service
metadata:
  name: {service}
spec:
  selector:
    app: {service}
  ports:
    - port: 9090
      targetPort: 9090
"""


def service_files(
    service: str, env: str, *, tag: str = "v1", replicas: int = 2, config: str | None = None
) -> dict[str, str]:
    """The files of `<service>/<env>/`: its `.pipe.yaml` and its manifests."""
    if config is None:
        config = (DEV_CONFIG if env == "dev" else PRD_CONFIG).format(service=service)
    return {
        f"{service}/{env}/.pipe.yaml": config,
        f"{service}/{env}/manifests.yaml": MANIFESTS.format(
            service=service, tag=tag, replicas=replicas
        ),
    }


def seed_files(service: str = "account", *, tag: str = "v1") -> dict[str, str]:
    """A whole config repository: the shared template, and the service in dev and prd."""
    return {
        ".pipe/analysis-template.yaml": ANALYSIS_TEMPLATE,
        **service_files(service, "dev", tag=tag),
        **service_files(service, "prd", tag=tag),
    }


def image_bump(service: str, env: str, tag: str) -> dict[str, str]:
    """The change CI's pull request makes: a new image tag in one environment."""
    return {
        f"{service}/{env}/manifests.yaml": MANIFESTS.format(service=service, tag=tag, replicas=2)
    }
