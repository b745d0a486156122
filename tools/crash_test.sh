#!/usr/bin/env bash
# tools/crash_test.sh DIR: crash recovery test of custos.
#
# Starts a cluster in DIR (custos preloaded, background sealer every 50ms,
# fsync and synchronous_commit on), lets 8 psql clients append events in
# autocommit, and kill -9s the postmaster while they write and the sealer
# seals.  After crash recovery:
#   - every id a client saw returned (psql prints it only once the statement
#     has committed) is in custos.event_log, and is the event that client
#     sent with that counter;
#   - each client's events are a gapless prefix of what it sent, at most one
#     more than it saw (the statement in flight may have committed);
#   - the background sealer is back and catches up; after custos.seal()
#     custos.verify() is ok for every tenant, nothing is pending, and the
#     blocks hold exactly as many events as custos.event_log has rows.
# Prints a summary; exits 0 only if every check passed.  Run by tools/test.sh
# (as root: the cluster runs as "postgres"); also usable on its own.
set -uo pipefail
source "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
CLIENTS=8
EVENTS=25000			# per client: far more than they append before the kill
TENANTS=3
WAIT=30					# bound, in seconds, of every wait for the cluster

pg_dir "$1"
DIR=$(cd "$1" && pwd)
DATA=$DIR/data
# no TCP (listen_addresses = ''): the port only names the socket in DIR
PORT=$((5600 + RANDOM % 300))
CLIENT_PIDS=()
FAILURES=()

say() { echo "crash test: $*"; }
fail() { FAILURES+=("$*"); say "FAIL: $*"; }
die() { fail "$*"; exit 1; }

# psql as the cluster's superuser over the socket in DIR.  Run as the
# calling user (root too): only the server refuses to run as root.
sql() {
  "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" \
    -U "$PGUSER_OS" -d postgres "$@"
}

# pids of the processes of this cluster: postgres chdirs to its data directory
cluster_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/cwd" 2>/dev/null)" = "$DATA" ] && echo "${p#/proc/}"
  done
  return 0
}

# wait_gone SECONDS PID...: true once none of the pids is alive
wait_gone() {
  local bound=$1 i p alive
  shift
  for ((i = 0; i < bound * 10; i++)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  return 1
}

cleanup() {
  local rc=$? p
  trap - EXIT
  for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [ -f "$DATA/postmaster.pid" ] && kill -0 "$(head -1 "$DATA/postmaster.pid")" 2>/dev/null; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t "$WAIT" stop >/dev/null 2>&1 ||
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t "$WAIT" stop >/dev/null 2>&1
  fi
  for p in $(cluster_pids); do kill -9 "$p" 2>/dev/null; done
  if [ $rc -eq 0 ]; then
    rm -rf "$DATA" "$DIR"/client-*.sql
  else
    say "FAILED; logs and data kept in $DIR"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# a fresh cluster
# ---------------------------------------------------------------------------
[ ${#DIR} -lt 90 ] || die "DIR is too long for a unix socket path: $DIR"
if [ -f "$DATA/postmaster.pid" ]; then
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t "$WAIT" stop >/dev/null 2>&1
fi
[ -z "$(cluster_pids)" ] || die "processes of an earlier cluster in $DATA are still running"
rm -rf "$DATA" "$DIR"/client-* "$DIR"/server-*.log "$DIR"/seen.csv
pg_dir "$DIR"

# --no-sync: skips only initdb's final fsync; a killed postmaster loses no
# page cache, and the server itself runs with fsync = on
as_pg "$PGBIN/initdb" -D "$DATA" --auth=trust --no-sync >"$DIR/initdb.log" 2>&1 ||
  die "initdb failed (see $DIR/initdb.log)"
cat >>"$DATA/postgresql.conf" <<EOF

# tools/crash_test.sh
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 40
shared_preload_libraries = 'custos'
custos.database = 'postgres'
custos.sealer = on
custos.seal_interval = '50ms'
fsync = on
synchronous_commit = on
full_page_writes = on
EOF

start() {	# start LOGFILE
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$1" -w -t "$WAIT" start >/dev/null 2>&1
}
pg_dir "$DIR"
start "$DIR/server-1.log" || die "the cluster did not start (see $DIR/server-1.log)"
sql -c "CREATE EXTENSION custos CASCADE" >/dev/null 2>"$DIR/create.err" ||
  die "CREATE EXTENSION failed: $(cat "$DIR/create.err")"

# ---------------------------------------------------------------------------
# clients: each appends event after event in autocommit; resource_id
# "c<client>-<counter>", counter = line number of the printed id - 1
# ---------------------------------------------------------------------------
for ((c = 1; c <= CLIENTS; c++)); do
  awk -v c=$c -v n=$EVENTS -v t=$TENANTS 'BEGIN {
    q = sprintf("%c", 39)
    for (i = 0; i < n; i++)
      printf "SELECT custos.log(%s{\"tenant\": \"crash-%d\", \"action\": \"CREATE\", \"actor\": \"client-%d\", %s\"resource_id\": \"c%d-%d\"}%s);\n",
        q, (c + i) % t, c, (i % 5 == 0 ? "\"subject\": \"s" (i % 7) "\", " : ""), c, i, q
  }' >"$DIR/client-$c.sql"
done
for ((c = 1; c <= CLIENTS; c++)); do
  sql -f "$DIR/client-$c.sql" >"$DIR/client-$c.out" 2>"$DIR/client-$c.err" &
  CLIENT_PIDS+=($!)
done

# crash only once every client is writing and the sealer has sealed
for ((i = 0; i < WAIT * 10; i++)); do
  state=$(sql -c "SELECT count(DISTINCT split_part(resource_id, '-', 1)), count(*),
                         (SELECT sealed_total FROM custos.status())
                    FROM custos.event_log" 2>/dev/null)
  IFS='|' read -r writers rows sealed <<<"${state:-0|0|0}"
  [ "${writers:-0}" -eq $CLIENTS ] && [ "${rows:-0}" -ge $((CLIENTS * 100)) ] && [ "${sealed:-0}" -gt 0 ] && break
  sleep 0.1
done
[ "${writers:-0}" -eq $CLIENTS ] && [ "${sealed:-0}" -gt 0 ] ||
  die "load did not start within ${WAIT}s: $writers of $CLIENTS clients writing, $rows events, $sealed sealed"
for ((c = 1; c <= CLIENTS; c++)); do
  kill -0 "${CLIENT_PIDS[c - 1]}" 2>/dev/null ||
    die "client $c stopped before the crash: $(head -3 "$DIR/client-$c.err")"
done
sleep 0.$((RANDOM % 10))	# a less predictable moment within the load

# ---------------------------------------------------------------------------
# crash
# ---------------------------------------------------------------------------
PM=$(head -1 "$DATA/postmaster.pid")
before=$(cluster_pids | wc -l)
kill -9 "$PM" || die "could not kill the postmaster ($PM)"
say "killed postmaster $PM ($before cluster processes) during the load"

# psql exits when its backend goes; backends and the sealer go when they
# notice the postmaster is gone
wait_gone $WAIT "${CLIENT_PIDS[@]}" || fail "clients still running ${WAIT}s after the crash"
# the postmaster's pid must be gone too (reaped), or the restart takes the
# lock file for a live postmaster
leftover="$PM $(cluster_pids | tr '\n' ' ')"
if [ -n "$leftover" ]; then
  wait_gone $WAIT $leftover ||
    fail "cluster processes still running ${WAIT}s after the postmaster died: $(cluster_pids | tr '\n' ' ')"
fi
for p in $(cluster_pids); do kill -9 "$p" 2>/dev/null; done
interrupted=0
for ((c = 1; c <= CLIENTS; c++)); do
  wait "${CLIENT_PIDS[c - 1]}"
  rc=$?
  if [ $rc -eq 0 ]; then
    fail "client $c sent all $EVENTS events before the crash: raise EVENTS"
  elif grep -qiE 'terminat|connection|server closed' "$DIR/client-$c.err"; then
    interrupted=$((interrupted + 1))
  else
    fail "client $c failed, not by the crash (exit $rc): $(head -3 "$DIR/client-$c.err")"
  fi
done
CLIENT_PIDS=()

# ---------------------------------------------------------------------------
# recovery
# ---------------------------------------------------------------------------
start "$DIR/server-2.log" || die "the cluster did not restart after the crash (see $DIR/server-2.log)"
grep -q "automatic recovery in progress" "$DIR/server-2.log" ||
  fail "the restart did not run crash recovery (see $DIR/server-2.log)"

# what the clients saw committed: "client,counter,id" for every printed line
bad=0
for ((c = 1; c <= CLIENTS; c++)); do
  awk -v c=$c '{ if ($0 ~ /^[0-9]+$/) print c "," NR - 1 "," $0; else { bad++ } }
               END { exit bad > 0 }' "$DIR/client-$c.out" >>"$DIR/seen.csv" || bad=$((bad + 1))
done
[ $bad -eq 0 ] || fail "client output has lines that are not event ids"
seen=$(wc -l <"$DIR/seen.csv")
[ "$seen" -gt 0 ] || die "no client saw any event committed"

checks=$(sql 2>&1 <<EOF
CREATE TEMP TABLE seen (client int, n int, id bigint);
\copy seen FROM '$DIR/seen.csv' WITH (FORMAT csv)
WITH ev AS (
       SELECT substr(split_part(resource_id, '-', 1), 2)::int AS client,
              split_part(resource_id, '-', 2)::int AS n
         FROM custos.event_log WHERE tenant LIKE 'crash-%'),
     present AS (
       SELECT client, count(*) AS events, count(DISTINCT n) AS distinct_n, max(n) AS max_n
         FROM ev GROUP BY client),
     saw AS (SELECT client, count(*) AS events, max(n) AS max_n FROM seen GROUP BY client)
SELECT (SELECT count(*) FROM seen),
       (SELECT count(DISTINCT id) FROM seen),
       (SELECT count(*) FROM seen s WHERE NOT EXISTS (SELECT 1 FROM custos.event_log e WHERE e.id = s.id)),
       (SELECT count(*) FROM seen s JOIN custos.event_log e USING (id)
         WHERE e.resource_id <> 'c' || s.client || '-' || s.n),
       (SELECT count(*) FROM saw s LEFT JOIN present p USING (client)
         WHERE p.events IS NULL OR p.events <> p.max_n + 1 OR p.distinct_n <> p.events
            OR p.max_n NOT IN (s.max_n, s.max_n + 1)),
       (SELECT count(*) FROM custos.event_log),
       (SELECT count(*) FROM custos.event_log WHERE tenant NOT LIKE 'crash-%');
EOF
)
IFS='|' read -r n_seen n_distinct n_missing n_wrong n_bad_clients n_rows n_foreign <<<"$checks"
[[ "$n_rows" =~ ^[0-9]+$ ]] || die "checking the events failed: $checks"
[ "$n_seen" -eq "$seen" ] || fail "loaded $n_seen of $seen seen ids"
[ "$n_distinct" -eq "$n_seen" ] || fail "clients saw $((n_seen - n_distinct)) ids twice"
[ "$n_missing" -eq 0 ] || fail "$n_missing events that clients saw committed are gone after recovery"
[ "$n_wrong" -eq 0 ] || fail "$n_wrong ids hold another event than the one the client sent"
[ "$n_bad_clients" -eq 0 ] ||
  fail "$n_bad_clients clients' events are not a gapless prefix ending at what they saw (+1)"
[ "$n_foreign" -eq 0 ] || fail "$n_foreign events nobody sent"

# the background sealer must come back and catch up on its own
for ((i = 0; i < WAIT * 10; i++)); do
  state=$(sql -c "SELECT sealer_pid IS NOT NULL, pending FROM custos.status()" 2>/dev/null)
  [ "$state" = "t|0" ] && break
  sleep 0.1
done
[ "$state" = "t|0" ] || fail "the background sealer did not catch up within ${WAIT}s after recovery (status: $state)"

sealed_now=$(sql -c "SELECT custos.seal()" 2>&1)
[[ "$sealed_now" =~ ^[0-9]+$ ]] || fail "custos.seal() failed: $sealed_now"
verify=$(sql -c "SELECT count(*), count(*) FILTER (WHERE ok), coalesce(sum(pending), 0), coalesce(sum(size), 0),
                        coalesce(string_agg(tenant || ': ' || failure || ' at ' || failed_seq || ' ' || detail, '; ')
                                   FILTER (WHERE NOT ok), '')
                   FROM custos.verify()" 2>&1)
IFS='|' read -r n_tenants n_ok n_pending n_size failures <<<"$verify"
[[ "$n_tenants" =~ ^[0-9]+$ ]] || die "custos.verify() failed: $verify"
[ "$n_tenants" -eq $TENANTS ] || fail "verify saw $n_tenants tenants, not $TENANTS"
[ "$n_ok" -eq "$n_tenants" ] || fail "verify failed for $((n_tenants - n_ok)) tenants: $failures"
[ "$n_pending" -eq 0 ] || fail "$n_pending events still pending after custos.seal()"
[ "$n_size" -eq "$n_rows" ] || fail "the chains hold $n_size events, custos.event_log has $n_rows rows"
blocks=$(sql -c "SELECT coalesce(sum(event_count), 0), (SELECT sealed_total FROM custos.status()) FROM custos.block")
IFS='|' read -r n_in_blocks n_sealed_total <<<"$blocks"
[ "$n_in_blocks" -eq "$n_rows" ] || fail "blocks hold $n_in_blocks events, custos.event_log has $n_rows rows"
[ "$n_sealed_total" -eq "$n_rows" ] || fail "sealer_state counts $n_sealed_total sealed events for $n_rows rows"

say "$CLIENTS clients ($interrupted cut off by the crash) saw $n_seen events committed;" \
  "after recovery $n_rows are present, $n_missing of the seen missing"
say "sealed $n_in_blocks in blocks ($sealed_now by the final custos.seal()); verify: $n_ok of $n_tenants tenants ok, $n_pending pending"
if [ ${#FAILURES[@]} -gt 0 ]; then
  say "FAILED (${#FAILURES[@]} checks)"
  exit 1
fi
say "ok"
exit 0
