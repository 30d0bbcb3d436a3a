#!/bin/sh
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d/): compose mounts this directory, and
# deploy/kubernetes/ mounts it from the ConfigMap kustomize generates from it.
#
# `slipway migrate` creates the role Slipway's services log in as, but without
# a password, which is fine on a loopback sandbox and useless over TCP. This
# creates it first, with the password from SLIPWAY_APP_PASSWORD; the migration
# then finds it and only grants it its rights (it may not UPDATE or DELETE events).
# It is safe to run again: an existing role just gets the password.
set -e

if [ -z "${SLIPWAY_APP_PASSWORD:-}" ]; then
  echo "10-slipway-app-role.sh: SLIPWAY_APP_PASSWORD is not set (the password of the services' role)" >&2
  exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  --set role="${SLIPWAY_APP_ROLE:-slipway_app}" \
  --set password="$SLIPWAY_APP_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'password') \gexec
SQL
