#!/bin/sh
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d/): compose mounts this directory, and
# deploy/kubernetes/ mounts it from the ConfigMap kustomize generates from it.
#
# `slipway migrate` creates the roles Slipway's processes log in as, but without
# passwords, which is fine on a loopback sandbox and useless over TCP. This
# creates them first, with their passwords: the services' role (slipway_app,
# SLIPWAY_APP_PASSWORD), the projector's (slipway_projector,
# SLIPWAY_PROJECTOR_PASSWORD) and the API's (slipway_api, SLIPWAY_API_PASSWORD).
# The migration then finds them and only grants them their rights (none may
# rewrite the log; only the projector may CREATE; only the API reads the
# console's secrets).
# It is safe to run again: an existing role just gets the password.
set -e

require() { # $1: a variable's name, $2: its value
  if [ -z "$2" ]; then
    echo "10-slipway-app-role.sh: $1 is not set (the password of a Slipway database role)" >&2
    exit 1
  fi
}
require SLIPWAY_APP_PASSWORD "${SLIPWAY_APP_PASSWORD:-}"
require SLIPWAY_PROJECTOR_PASSWORD "${SLIPWAY_PROJECTOR_PASSWORD:-}"
require SLIPWAY_API_PASSWORD "${SLIPWAY_API_PASSWORD:-}"

create_role() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set role="$1" --set password="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'password') \gexec
SQL
}

create_role "${SLIPWAY_APP_ROLE:-slipway_app}" "$SLIPWAY_APP_PASSWORD"
create_role "${SLIPWAY_PROJECTOR_ROLE:-slipway_projector}" "$SLIPWAY_PROJECTOR_PASSWORD"
create_role "${SLIPWAY_API_ROLE:-slipway_api}" "$SLIPWAY_API_PASSWORD"
# The read-only role of query paths (`slipway analysis rejudge`, audits) is
# optional: it can log in over TCP only once it has a password.
if [ -n "${SLIPWAY_READER_PASSWORD:-}" ]; then
  create_role "${SLIPWAY_READER_ROLE:-slipway_reader}" "$SLIPWAY_READER_PASSWORD"
fi
