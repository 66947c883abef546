#!/usr/bin/env bash
# Run once by Patroni on the host that initialises the cluster: the API's role and database,
# and db/init.sql (schema and the five clients). Standbys copy it all from there.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d postgres \
    -c "CREATE ROLE rinha LOGIN PASSWORD 'rinha'" -c "CREATE DATABASE rinha OWNER rinha"
psql -v ON_ERROR_STOP=1 -q -h /var/run/postgresql -U rinha -d rinha -f /etc/rinha/init.sql
