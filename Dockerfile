# syntax=docker/dockerfile:1
# One image for every Slipway service: the command picks it, `python -m services.<name>`
# (compose and deploy/kubernetes/ set it per service; the default runs the API).
# `slipway migrate` and `slipway kubesim` run from the same image.

ARG PYTHON_VERSION=3.11

# --- assets: the web console's front-end code from npm, pinned by package-lock.json ---
FROM node:20-bookworm-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# --- build: install the package and its dependencies into a venv we copy whole ---
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/slipway
WORKDIR /src
# Metadata first: the dependency layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir -p shared services kubesim slipway_client slipway_cli \
 && touch shared/__init__.py services/__init__.py kubesim/__init__.py \
          slipway_client/__init__.py slipway_cli/__init__.py \
 && /opt/slipway/bin/pip install . \
 && /opt/slipway/bin/pip uninstall -y slipway
# The runtime only: the services, what they share, the CLI (`slipway migrate`) with its
# API client, and kubesim
# (`slipway kubesim`). The sandbox (tools/sandbox) is a development tool and stays out.
COPY shared ./shared
COPY services ./services
COPY kubesim ./kubesim
COPY slipway_client ./slipway_client
COPY slipway_cli ./slipway_cli
RUN /opt/slipway/bin/pip install --no-deps .

# --- runtime ---
FROM python:${PYTHON_VERSION}-slim-bookworm
# git: gitwatcher, planner, executor and drift keep bare clones of the config repos.
# kubernetes-client: `kubectl kustomize` renders Kustomize applications.
# tini: PID 1 that forwards SIGTERM and reaps SCRIPT_RUN's orphaned children.
# openssh-client: git remotes over ssh.
# safe.directory: mounted config repos belong to the host's uid, not ours; git would refuse them.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates git kubernetes-client openssh-client tini \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*'
RUN groupadd --system --gid 10001 slipway \
 && useradd --system --uid 10001 --gid slipway --home-dir /var/lib/slipway \
      --create-home --shell /usr/sbin/nologin slipway
COPY --from=build /opt/slipway /opt/slipway
# The console serves these (services/api/console/assets.py); never copied into git.
COPY --from=assets /assets/node_modules /opt/slipway/console-assets
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/slipway-healthcheck

# The health server must be reachable from outside the container (probes,
# Prometheus) and on a port known in advance; the settings' defaults are
# loopback and a random port, right for a laptop, wrong here.
ENV PATH=/opt/slipway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SLIPWAY_HEALTH_HOST=0.0.0.0 \
    SLIPWAY_HEALTH_PORT=9000 \
    SLIPWAY_LOG_FORMAT=json \
    SLIPWAY_CONSOLE_ASSETS_DIR=/opt/slipway/console-assets

USER 10001:10001
WORKDIR /var/lib/slipway
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["slipway-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "services.api"]
