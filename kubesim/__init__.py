"""kubesim: a Kubernetes API server emulator for development, the demo and tests (DESIGN §7).

It serves the real REST paths and JSON over plain HTTP, so kubectl and
kubernetes-asyncio use it unchanged, and simulates the Deployment controller
and a node whose pods serve Prometheus metrics shaped by per-image rules.

Modules, one concept each:

    sim.py          KubeSim: wiring, start/stop, kubeconfig
    workqueue.py    what each controller looks at on its next pass
    api.py          the REST API: routing and the verbs
    targets.py      what a resource path names
    admission.py    what a write must pass: body, identity, namespace, defaults, validation
    responses.py    JSON, Tables and metadata-only answers
    subresources.py the scale and log subresources
    tokens.py       service accounts' token subresource (TokenRequest), signed tokens
    watch.py        watch streams
    discovery.py    /version, /api, /apis, resource lists, OpenAPI v3
    openapi_v2.py   OpenAPI v2 (protobuf) for older kubectl
    protobuf.py     protobuf request bodies (kubectl ≥ 1.32's `create`), decoded to JSON
    protoschema.py  their schema, generated from Kubernetes' .proto files
                    (scripts/gen_kubesim_protoschema.py)
    store.py        objects, resourceVersion, generation, watch history, cascading delete
    resources.py    the served kinds (built-in, Istio, custom, CRDs)
    patches.py      merge, JSON and strategic merge patch, chosen by media type
    apply.py        server-side apply and managedFields
    validation.py   defaulting and 422 validation of built-in kinds
    selectors.py    label and field selectors
    tables.py       server-side printing for `kubectl get`
    deployments.py  the Deployment controller (ReplicaSets, rollouts, status, deadline)
    replicasets.py  the ReplicaSet controller (pods)
    namespaces.py   the namespace controller (terminating namespaces)
    kubelet.py      pod lifecycle: running, ready after a delay, never ready, crash loop
    metrics.py      per-pod /metrics and the traffic generator
    rules.py        image rules: readiness, error rate, latency, request rate
    access.py       forbidden rules (403)
    admin.py        /kubesim/targets, /kubesim/images, /kubesim/forbidden
    errors.py       Status errors
    testing.py      a kubectl runner and `eventually` for tests
"""

from kubesim.access import ForbiddenRule
from kubesim.resources import CustomKind
from kubesim.rules import ImageRule, ImageRules, load_rules_file
from kubesim.sim import KubeSim

__all__ = ["CustomKind", "ForbiddenRule", "ImageRule", "ImageRules", "KubeSim", "load_rules_file"]
