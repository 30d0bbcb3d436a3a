"""The deploy layer: the shipped artefacts stay true - the Dockerfile, docker-compose.yml,
deploy/kubernetes and deploy/README.md refer to what exists and run every service with the
settings its code requires (docker, kubectl and the Kubernetes schemas where installed).
"""
