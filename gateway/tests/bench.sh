#!/usr/bin/env bash
# gateway/tests/bench.sh DIR: the gateway's rate against pgbench running the
# same SQL in the same run, on a throwaway cluster in DIR.
#
#   GET  /v1/events?limit=N   vs  pgbench: custos.authenticate() + custos.query_events(NULL, NULL, N, NULL)
#   POST /v1/events           vs  pgbench: custos.authenticate() + custos.append_events(<event>, NULL)
#
# pgbench sends both statements in one pipeline with one Sync, prepared
# (-M prepared), exactly as the gateway does, so the database does the same
# work for both; the ratio is what HTTP, the gateway and its pool add.
# wrk (apt-get install wrk) drives the gateway.  Both use CLIENTS
# connections for DURATION seconds.  Also prints wrk's p99 latency and the
# gateway's resident memory after each run.  Each comparison is ROUNDS
# rounds of pgbench, gateway, gateway, pgbench, DURATION seconds each.
#
# Environment: CLIENTS (default 32), DURATION (5), ROUNDS (2), LIMIT (100), EVENTS
# (events in the table read, 10000), THREADS and POOL of the gateway (both
# CLIENTS by default: the same database concurrency as pgbench's).
#
# SEALER=off pauses the background sealer during the measurements (with a
# read-audit queue large enough to hold every read).  Every read of the log
# queues a READ record and wakes the sealer, which seals a new block per
# round; custos.events then costs more per row as the tenant's blocks
# multiply, so the database slows down during the run and whichever side runs
# later is at a disadvantage.  With the sealer paused both sides see the
# same database.
set -uo pipefail
source "$(dirname "$0")/../../tools/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}
LIMIT=${LIMIT:-100}
EVENTS=${EVENTS:-10000}
THREADS=${THREADS:-$CLIENTS}
POOL=${POOL:-$CLIENTS}
SEALER=${SEALER:-on}

pg_dir "$1"
DIR=$(cd "$1" && pwd)
DATA=$DIR/data
PORT=$((6100 + RANDOM % 100))
DB=custos_bench
GW_PID=

cleanup() {
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  [ -f "$DATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1
}
trap cleanup EXIT

sql() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U "$PGUSER_OS" -d "$DB" "$@"; }

make -C "$TOP/gateway" >/dev/null || exit 1
SHARE=$($PG_CONFIG --sharedir)/extension
cmp -s "$TOP/sql/custos--0.2--0.3.sql" "$SHARE/custos--0.2--0.3.sql" ||
  install -m 644 "$TOP/sql/custos--0.2--0.3.sql" "$SHARE/" || exit 1

rm -rf "$DATA"
as_pg "$PGBIN/initdb" -D "$DATA" --auth=trust --no-sync -E UTF8 >"$DIR/initdb.log" 2>&1 || exit 1
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 200
shared_buffers = 256MB
shared_preload_libraries = 'custos'
custos.database = '$DB'
custos.sealer = on
custos.read_queue_size = 200000
synchronous_commit = on
jit = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w start >/dev/null || exit 1
"$PGBIN/psql" -X -q -h "$DIR" -p "$PORT" -U "$PGUSER_OS" -d postgres -c "CREATE DATABASE $DB" || exit 1
sql -c "CREATE EXTENSION custos CASCADE" >/dev/null 2>&1
[ "$(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'custos'")" = "0.3" ] ||
  sql -c "ALTER EXTENSION custos UPDATE TO '0.3'" >/dev/null || exit 1
sql -c "SELECT custos.set_taxonomy_mode('open')" >/dev/null 2>&1	# free-form actions (docs/capture.md)
TOKEN=$(sql -v events="$EVENTS" <<'EOF'
CREATE ROLE custos_gateway LOGIN;
SELECT custos.create_tenant('bench', NULL, 'Bench') \gset x_
SELECT custos.create_principal('bench', 'Bench Owner', 'user', 'owner') AS owner \gset
SELECT count(*) AS x_n FROM (
  SELECT custos.log_batch(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'tenant', 'bench', 'action', 'UPDATE', 'category', 'scheme', 'resource_type', 'CAMERA_SETTINGS',
           'resource_id', g::text, 'actor', 'u-' || (g % 50), 'actor_name', 'User ' || (g % 50),
           'source_ip', '198.51.100.7', 'new_state', pg_catalog.jsonb_build_object('value', g))))
    FROM generate_series(1, :events) g GROUP BY g / 1000) b \gset
SELECT custos.seal() \gset x_
SELECT token FROM custos.issue_token(:'owner', 'personal', '1 day', 'bench');
EOF
)
sql -c "VACUUM ANALYZE" >/dev/null

HTTP_PORT=$((21000 + RANDOM % 10000))
"$TOP/gateway/custos-gateway" --listen "127.0.0.1:$HTTP_PORT" \
  --db "host=$DIR port=$PORT dbname=$DB user=custos_gateway" \
  --threads "$THREADS" --pool "$POOL" --rate 0 --expensive-rate 0 \
  --max-connections 1000 >"$DIR/gateway.log" 2>&1 &
GW_PID=$!
sleep 0.5

cat >"$DIR/list.sql" <<EOF
\startpipeline
SELECT custos.authenticate(:token);
SELECT custos.query_events(NULL, NULL, $LIMIT, NULL);
\endpipeline
EOF
EVENT='{"tenant":"bench","action":"UPDATE","category":"scheme","resource_type":"CAMERA_SETTINGS","resource_id":"42","actor_name":"Bench Owner","source_ip":"198.51.100.7","new_state":{"value":"75"}}'
cat >"$DIR/append.sql" <<EOF
\startpipeline
SELECT custos.authenticate(:token);
SELECT custos.append_events(:event, NULL);
\endpipeline
EOF
cat >"$DIR/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$EVENT'
wrk.headers["Content-Type"] = "application/json"
EOF

pgb() {	# pgb SCRIPT SECONDS: transactions per second
  "$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$2" -D token="$TOKEN" -D event="$EVENT" \
    -h "$DIR" -p "$PORT" -U custos_gateway -f "$1" "$DB" 2>&1 | tee -a "$DIR/pgbench.out" |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
wrkrun() {	# wrkrun NAME SECONDS URL [wrk args]: requests per second, p99, non-2xx answers
  local name=$1 secs=$2 url=$3
  shift 3
  wrk -t 2 -c "$CLIENTS" -d "${secs}s" --latency -H "Authorization: Bearer $TOKEN" "$@" "$url" \
    >"$DIR/wrk-last.out" 2>&1
  local rps p99 non2xx
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$DIR/wrk-last.out")
  p99=$(awk '$1 == "99%" {print $2}' "$DIR/wrk-last.out")
  non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$DIR/wrk-last.out")
  { echo "== $name"; cat "$DIR/wrk-last.out"; } >>"$DIR/wrk.out"
  echo "${rps:-0} ${p99:--} ${non2xx:-0}"
}
rss() { awk '/^VmRSS/ {print $2 " " $3}' "/proc/$GW_PID/status"; }

# compare NAME PGBENCH_SCRIPT URL [wrk args]: ROUNDS rounds of pgbench,
# gateway, gateway, pgbench (ABBA: a drift of the database during the run,
# such as its log growing, weighs on both sides alike)
compare() {
  local name=$1 script=$2 url=$3
  shift 3
  local pg_sum=0 gw_sum=0 n=0 p99s="" bad=0 r x
  for ((r = 0; r < ROUNDS; r++)); do
    x=$(pgb "$script" "$DURATION"); pg_sum=$(echo "$pg_sum + $x" | bc -l)
    for _ in 1 2; do
      read -r rps p99 non2xx <<<"$(wrkrun "$name" "$DURATION" "$url" "$@")"
      gw_sum=$(echo "$gw_sum + $rps" | bc -l)
      p99s="$p99s $p99"
      bad=$((bad + non2xx))
    done
    x=$(pgb "$script" "$DURATION"); pg_sum=$(echo "$pg_sum + $x" | bc -l)
    n=$((n + 2))
  done
  printf "%-28s %12.0f %12.0f %8.2f  %-22s %s (non-2xx: %s)\n" "$name" \
    "$(echo "$pg_sum / $n" | bc -l)" "$(echo "$gw_sum / $n" | bc -l)" \
    "$(echo "$gw_sum / $pg_sum" | bc -l)" "$p99s" "$(rss)" "$bad"
}

if [ "$SEALER" = off ]; then
  sql -c "ALTER SYSTEM SET custos.sealer = off" -c "SELECT pg_reload_conf()" >/dev/null
fi
echo "bench: sealer $SEALER, $EVENTS events, $CLIENTS connections, $ROUNDS x ABBA rounds of ${DURATION}s," \
  "gateway --threads $THREADS --pool $POOL, $(nproc) cores shared by everything"
# warm up both paths
wrk -t 1 -c 4 -d 2s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT/v1/events?limit=$LIMIT" >/dev/null 2>&1
pgb "$DIR/list.sql" 2 >/dev/null

printf "%-28s %12s %12s %8s  %-22s %s\n" "" "pgbench tps" "gateway r/s" "ratio" "gateway p99" "gateway RSS"
compare "GET /v1/events?limit=$LIMIT" "$DIR/list.sql" "http://127.0.0.1:$HTTP_PORT/v1/events?limit=$LIMIT"
compare "POST /v1/events" "$DIR/append.sql" "http://127.0.0.1:$HTTP_PORT/v1/events" -s "$DIR/post.lua"
blocks=$(sql -c "SELECT count(*) FROM custos.block WHERE tenant = 'bench'")
echo "bench: tenant \"bench\" has $blocks sealed blocks after the run"
