"""The seed's config repository layout (DESIGN §1), as file templates.

One folder per service, one sub-folder per environment (`dev` quick-syncs,
`prd` runs canary → analysis → primary → clean), and a shared
`.pipe/analysis-template.yaml` with a `grpc_error_rate` metric. Tests, the
GitOps benchmark and the demo build their config repositories from these.

Placeholders: configs take `{name}`; manifests take `{service}`, `{tag}`,
`{replicas}` and `{registry}`.
"""

from __future__ import annotations

from typing import Final

ANALYSIS_TEMPLATE: Final = """\
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

DEV_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: dev
"""

PRD_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
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

MANIFESTS: Final = """\
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
          image: {registry}/{service}:{tag}
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
