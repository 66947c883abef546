#!/usr/bin/env bash
# One database host: its etcd member (the consensus store Patroni keeps the leader key in)
# and Patroni, which runs PostgreSQL as primary or standby. Either one ending ends the
# container, so the engine (or a person) restarts the host whole.
#   HOST   this host's name, as the others reach it (db1)
#   PEERS  every member: db1=http://db1:2380,db2=http://db2:2380,db3=http://db3:2380
set -euo pipefail
: "${HOST:?set HOST}" "${PEERS:?set PEERS}"
etcd --name "$HOST" --data-dir /var/lib/etcd/data \
    --listen-peer-urls http://0.0.0.0:2380 --listen-client-urls http://0.0.0.0:2379 \
    --initial-advertise-peer-urls "http://$HOST:2380" --advertise-client-urls "http://$HOST:2379" \
    --initial-cluster "$PEERS" --initial-cluster-state new --initial-cluster-token rinha-ha \
    --heartbeat-interval 100 --election-timeout 1000 --enable-v2=true --logger zap --log-level warn &
etcd_pid=$!
export PATRONI_NAME=$HOST
export PATRONI_RESTAPI_CONNECT_ADDRESS=$HOST:8008
export PATRONI_POSTGRESQL_CONNECT_ADDRESS=$HOST:5432
patroni /etc/rinha/patroni.yml &
patroni_pid=$!
trap 'kill -TERM "$patroni_pid" "$etcd_pid" 2>/dev/null; wait' TERM INT
wait -n
kill -TERM "$patroni_pid" "$etcd_pid" 2>/dev/null || true
exit 1
