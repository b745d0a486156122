#!/usr/bin/env bash
# tools/run.sh start|stop|status: the local custos cluster of `make run`.
#
# A PostgreSQL 15 cluster under .run/ (data, log, socket), listening on
# 127.0.0.1 only, with custos and pg_cron preloaded, a database "custos"
# with the extension, a small demo, and custos-gateway on 127.0.0.1
# (role custos_gateway: no superuser, owns nothing).  Idempotent: `make run`
# on a running cluster loads the demo only if it is missing.
set -euo pipefail
source "$(dirname "$0")/common.sh"

RUN=$TOP/.run
DATA=$RUN/data
LOG=$RUN/postgres.log
DB=custos

free_port() {	# the first free TCP port on loopback from $1
  local p=$1
  while (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

running() { [ -f "$DATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_run() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" "$@"; }

start() {
  pg_dir "$RUN"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    PORT=$(free_port 5432)
    as_pg "$PGBIN/initdb" -D "$DATA" -A trust -U postgres --no-sync >/dev/null
    cat >> "$DATA/postgresql.conf" <<CONF

# custos (tools/run.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
shared_preload_libraries = 'custos,pg_cron'
custos.database = '$DB'
cron.database_name = '$DB'
CONF
    [ "$(id -u)" -eq 0 ] && chown "$PGUSER_OS" "$DATA/postgresql.conf"
  fi
  PORT=$(sed -n "s/^port = \([0-9]*\)$/\1/p" "$DATA/postgresql.conf" | tail -1)
  if ! running; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null
  fi
  if ! psql_run -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    psql_run -d postgres -c "CREATE DATABASE $DB"
  fi
  psql_run -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS custos CASCADE" 2>/dev/null
  psql_run -d "$DB" -c "ALTER EXTENSION custos UPDATE" >/dev/null
  psql_run -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" 2>/dev/null
  # retention and anonymisation nightly (03:17 GMT), as in production
  psql_run -d "$DB" -tAc "SELECT custos.schedule_jobs()" >/dev/null
  if [ "$(psql_run -d "$DB" -tAc "SELECT count(*) FROM custos.tenant WHERE id = 'demo-acme'")" = "0" ]; then
    # the demo tokens are secrets: kept in a file only the owner can read
    (umask 077; psql_run -d "$DB" -f "$TOP/tools/demo.sql" | grep -E "^[a-z_]+=cst_" > "$RUN/demo-tokens.txt")
    # seed 003: 180 days' retention, shown anonymously after 30
    psql_run -d "$DB" -tAc "SELECT custos.set_retention_policy('demo-acme', 180, 30)" >/dev/null
  fi
  start_gateway
  cat <<MSG

custos is running: PostgreSQL 15 on 127.0.0.1:$PORT (socket in $RUN), database "$DB",
with custos and pg_cron preloaded; the background sealer seals every 200 ms.
Retention and anonymisation run nightly from pg_cron (SELECT * FROM cron.job;);
by hand: CALL custos.run_jobs();  status: SELECT * FROM custos.job_status;

Demo: reseller "demo-reseller" manages "demo-acme" (in privacy mode) and
"demo-desk".  Tokens of the demo principals (also in $RUN/demo-tokens.txt):

$(sed 's/^/  /' "$RUN/demo-tokens.txt")

Try each view as the ordinary login custos_demo (a superuser would bypass
row-level security, as always in PostgreSQL):

  psql -h 127.0.0.1 -p $PORT -U custos_demo $DB

  BEGIN;
  SELECT custos.authenticate('<token>');
  SELECT custos.access_info();
  SELECT tenant, action, resource_type, actor, actor_name, personal_data FROM custos.events ORDER BY id;
  SELECT * FROM demo.images;
  COMMIT;
As the reseller, demo-acme's images and personal fields are hidden; as Walter
(works council) the acme log is readable; the camera app sees its own events.

The audit-log page: http://127.0.0.1:$GW_PORT/ (sign in with a token above)

Over HTTP (custos-gateway on 127.0.0.1:$GW_PORT, log in $RUN/gateway.log):
  curl -s -H "Authorization: Bearer <token>" http://127.0.0.1:$GW_PORT/v1/access-info
  curl -s -H "Authorization: Bearer <token>" 'http://127.0.0.1:$GW_PORT/v1/events?limit=5&order=desc'
  curl -s -H "Authorization: Bearer <token>" -H 'Accept: text/csv' http://127.0.0.1:$GW_PORT/v1/events/export
  curl -s http://127.0.0.1:$GW_PORT/v1/openapi.yaml

As the superuser (the DBA: psql -h 127.0.0.1 -p $PORT -U postgres $DB):
  SELECT * FROM custos.verify();
  SELECT custos.digest('demo-acme');

Log: $LOG.  Stop with: make stop
MSG
}

gateway_running() { [ -f "$RUN/gateway.pid" ] && kill -0 "$(cat "$RUN/gateway.pid")" 2>/dev/null; }

start_gateway() {
  if ! gateway_running; then
    psql_run -d "$DB" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'custos_gateway') THEN
      CREATE ROLE custos_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT; END IF; END \$\$"
    GW_PORT=$(free_port 8080)
    echo "$GW_PORT" > "$RUN/gateway.port"
    nohup "$TOP/gateway/custos-gateway" --listen "127.0.0.1:$GW_PORT" \
      --db "host=$RUN port=$PORT dbname=$DB user=custos_gateway" \
      >> "$RUN/gateway.log" 2>&1 &
    echo $! > "$RUN/gateway.pid"
    for _ in $(seq 50); do
      (exec 3<>/dev/tcp/127.0.0.1/$GW_PORT) 2>/dev/null && break
      sleep 0.1
    done
  fi
  GW_PORT=$(cat "$RUN/gateway.port")
}

stop() {
  if gateway_running; then
    kill "$(cat "$RUN/gateway.pid")" && rm -f "$RUN/gateway.pid"
    echo "custos-gateway stopped"
  fi
  if running; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -w -m fast stop >/dev/null
    echo "custos cluster stopped (data kept in $DATA)"
  else
    echo "custos cluster is not running"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) running && echo running || echo stopped ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
