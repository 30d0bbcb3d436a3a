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

# --- The demo's variant (`slipway up` / `slipway demo`) -------------------------------
#
# The same layout, with what one machine and a few minutes need: each environment in
# its own namespace of one kubesim (the seed's dev and prd are separate clusters), and
# waits measured in seconds. The query names the canary's pods explicitly (kubesim
# labels each pod's targets with its namespace, `job` = the pod's `app` label, and the
# variant label as `pipecd_dev_variant`), through the analysis stage's `appArgs`.
# `failureLimit: 0`: the first look that sees the bad image's errors fails it.
#
# Placeholders: the template takes `{interval}` and `{window}`; configs take `{name}`,
# `{env}`, and the prd one `{service}`, `{canary}` and `{duration}`.

DEMO_ANALYSIS_TEMPLATE: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: AnalysisTemplate
spec:
  metrics:
    grpc_error_rate:
      strategy: THRESHOLD
      interval: {interval}
      provider: prometheus
      failureLimit: 0
      # A look before Prometheus has two samples of a new canary is not a failure.
      skipOnNoData: true
      expected:
        max: 0.01
      query: |
        sum(rate(grpc_server_handled_total{{grpc_code!="OK",
          namespace="{{{{ .AppCustomArgs.namespace }}}}", job="{{{{ .AppCustomArgs.service }}}}",
          pipecd_dev_variant="canary"}}[{window}]))
        /
        sum(rate(grpc_server_handled_total{{
          namespace="{{{{ .AppCustomArgs.namespace }}}}", job="{{{{ .AppCustomArgs.service }}}}",
          pipecd_dev_variant="canary"}}[{window}]))
"""

DEMO_DEV_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: {env}
  input:
    namespace: {env}
    autoCreateNamespace: true
"""

DEMO_EVENT_WATCHER: Final = """\
  eventWatcher:
    - matcher:
        name: image-update
        labels: {{app: {service}}}
      handler:
        type: GIT_UPDATE
        config:
          replacements:
            - file: manifests.yaml
              yamlField: $.spec.template.spec.containers[0].image
            - file: ../{next}/manifests.yaml
              yamlField: $.spec.template.spec.containers[0].image
  postSync:
    chain:
      applications:
        - name: {service}-{next}
"""
"""Appended to dev's config in `slipway demo --event-watcher`: CI's image event writes the
image into dev's and `{next}`'s manifests in one commit; that commit deploys dev, and
when dev succeeds its chain deploys `{next}`."""

DEMO_CHAINED: Final = """\
  trigger:
    onCommit:
      disabled: true
    onChain:
      disabled: false
"""
"""Appended to the chained environment's config: only a chain deploys it, never a commit."""

DEMO_PRD_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: {env}
  input:
    namespace: {env}
    autoCreateNamespace: true
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with:
          replicas: {canary}
      - name: ANALYSIS
        id: analysis
        with:
          duration: {duration}
          metrics:
            - template:
                name: grpc_error_rate
                appArgs:
                  namespace: {env}
                  service: {service}
      - name: K8S_PRIMARY_ROLLOUT
      - name: K8S_CANARY_CLEAN
"""

DEMO_PRD_CONFIG_WITHOUT_ANALYSIS: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: {env}
  input:
    namespace: {env}
    autoCreateNamespace: true
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with:
          replicas: {canary}
      - name: WAIT
        with:
          duration: {duration}
      - name: K8S_PRIMARY_ROLLOUT
      - name: K8S_CANARY_CLEAN
"""
"""Used only while the analysis service is absent: the pipeline, with a WAIT in its place."""
