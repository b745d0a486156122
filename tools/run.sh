#!/usr/bin/env bash
# tools/run.sh start|stop|status: the local custos cluster of `make run`.
#
# A PostgreSQL 15 cluster under .run/ (data, log, socket), listening on
# 127.0.0.1 only, with custos and pg_cron preloaded, a database "custos"
# with the extension, and a small demo.  Idempotent: `make run` on a running
# cluster reloads the demo only if it is missing.
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
  psql_run -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" 2>/dev/null
  if [ "$(psql_run -d "$DB" -tAc "SELECT count(*) FROM custos.tenant WHERE id = 'demo-acme'")" = "0" ]; then
    # the demo tokens are secrets: kept in a file only the owner can read
    (umask 077; psql_run -d "$DB" -f "$TOP/tools/demo.sql" | grep -E "^[a-z_]+=cst_" > "$RUN/demo-tokens.txt")
  fi
  cat <<MSG

custos is running: PostgreSQL 15 on 127.0.0.1:$PORT (socket in $RUN), database "$DB",
with custos and pg_cron preloaded; the background sealer seals every 200 ms.

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

As the superuser (the DBA: psql -h 127.0.0.1 -p $PORT -U postgres $DB):
  SELECT * FROM custos.verify();
  SELECT custos.digest('demo-acme');

Log: $LOG.  Stop with: make stop
MSG
}

stop() {
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
