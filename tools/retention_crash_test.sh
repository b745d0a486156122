#!/usr/bin/env bash
# tools/retention_crash_test.sh DIR: the retention jobs survive kill -9.
#
# Starts a cluster in DIR (custos preloaded, fsync on, socket only), loads
# RCT_EVENTS events over 3 tenants in two phases separated by a moment T
# (3/4 before T, 1/4 after), puts one data subject of one tenant on legal
# hold, seals everything, then:
#
#   retention   CALL custos.apply_retention(as_of => T + 30 days) with the
#               tenants' 30-day period, i.e. a cutoff of exactly T, in small
#               batches; once its job_run row shows deleted events, the
#               backend is caught inside its next batch (another session
#               holds the run's job_run row, so the batch waits there with
#               its deletions done but not committed; a CHECKPOINT puts them
#               on disk) and killed with SIGKILL (the postmaster then
#               restarts every process: crash recovery).  Checks: the run reads
#               "interrupted" in custos.job_status; every chain verifies
#               right after the crash (a partial cut); custos.events reads;
#               the rerun finishes; exactly the events recorded after T and
#               the held subject's events remain; the job_run counts add up
#               to what is gone; job_status "ok"; verify ok.
#   anonymize   CALL custos.anonymize(as_of => now + 8 days) (7-day period:
#               every key of today is past it), killed the same way once some
#               keys are destroyed.  Checks: "interrupted"; verify ok; the
#               events read (keys zeroed by the killed batch included); an
#               actor whose key the killed batch zeroed can log again and is
#               readable; the rerun leaves no live key of a day before the
#               cut except those custos.kept_keys() keeps for the hold, and
#               every one of those live; no zeroed key is left looking live;
#               job_status "ok"; verify ok.
#
# Prints a summary; exits 0 only if every check passed.  Run as root (the
# cluster runs as "postgres") or as the cluster's user.  Environment:
# RCT_EVENTS [200000], RCT_BATCH (retention batch) [2000], RCT_KEY_BATCH
# (anonymisation batch) [50].
set -uo pipefail
source "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
EVENTS=${RCT_EVENTS:-200000}
BATCH=${RCT_BATCH:-2000}
KEY_BATCH=${RCT_KEY_BATCH:-50}
TENANTS=3
ACTORS=4000			# per tenant: the anonymisation has keys to destroy in many batches
WAIT=60				# bound, in seconds, of every wait

pg_dir "$1"
DIR=$(cd "$1" && pwd)
DATA=$DIR/data
PORT=$((5900 + RANDOM % 300))
JOB_PID=
FAILURES=()

say() { echo "retention crash test: $*"; }
fail() { FAILURES+=("$*"); say "FAIL: $*"; }
die() { fail "$*"; exit 1; }

sql() {
  "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" \
    -U "$PGUSER_OS" -d postgres "$@"
}

# check NAME GOT WANT: one check, by string equality
check() {
  if [ "$2" = "$3" ]; then
    say "ok: $1"
  else
    fail "$1: got '$2', expected '$3'"
  fi
}

cluster_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/cwd" 2>/dev/null)" = "$DATA" ] && echo "${p#/proc/}"
  done
  return 0
}

cleanup() {
  local rc=$? p
  trap - EXIT
  [ -n "$JOB_PID" ] && kill "$JOB_PID" 2>/dev/null
  if [ -f "$DATA/postmaster.pid" ] && kill -0 "$(head -1 "$DATA/postmaster.pid")" 2>/dev/null; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t "$WAIT" stop >/dev/null 2>&1 ||
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t "$WAIT" stop >/dev/null 2>&1
  fi
  for p in $(cluster_pids); do kill -9 "$p" 2>/dev/null; done
  if [ $rc -eq 0 ]; then
    rm -rf "$DATA"
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
rm -rf "$DATA" "$DIR"/*.log "$DIR"/*.out "$DIR"/*.err
pg_dir "$DIR"
as_pg "$PGBIN/initdb" -D "$DATA" --auth=trust --no-sync >"$DIR/initdb.log" 2>&1 ||
  die "initdb failed (see $DIR/initdb.log)"
# the background sealer is off: the test seals when it needs to, so that
# what "sealed" covers is known exactly
cat >>"$DATA/postgresql.conf" <<EOF

# tools/retention_crash_test.sh
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 20
shared_preload_libraries = 'custos'
custos.database = 'postgres'
custos.sealer = off
fsync = on
synchronous_commit = on
full_page_writes = on
restart_after_crash = on
max_wal_size = 4GB
EOF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t "$WAIT" start >/dev/null 2>&1 ||
  die "the cluster did not start (see $DIR/server.log)"
sql -c "CREATE EXTENSION custos CASCADE" >/dev/null 2>"$DIR/create.err" ||
  die "CREATE EXTENSION failed: $(cat "$DIR/create.err")"

# ---------------------------------------------------------------------------
# events: phase 1 (to expire) before T, phase 2 after; resource_id says
# which.  In tenant rct-1 some events are about, and some by, "sam", whom a
# legal hold keeps.
# ---------------------------------------------------------------------------
load() {	# load PHASE COUNT
  local t
  for ((t = 0; t < TENANTS; t++)); do
    sql -c "SELECT count(custos.log(jsonb_strip_nulls(jsonb_build_object(
              'tenant', 'rct-$t', 'action', 'VIEW',
              'actor', CASE WHEN $t = 1 AND i % 200 = 7 THEN 'sam' ELSE 'user-' || (i % $ACTORS) END,
              'subject', CASE WHEN $t = 1 AND i % 50 = 3 THEN 'sam'
                              WHEN i % 3 = 0 THEN 'subj-' || (i % 1000) END,
              'description', 'event ' || i,
              'resource_id', 'p$1-' || i))))
            FROM generate_series(1, $2) i" >/dev/null || die "loading phase $1 of rct-$t failed"
  done
}
t0=$(date +%s)
per1=$((EVENTS * 3 / 4 / TENANTS))
per2=$((EVENTS / 4 / TENANTS))
sql -c "SELECT custos.create_tenant('rct-' || t) FROM generate_series(0, $((TENANTS - 1))) t" \
    -c "SELECT custos.set_retention_policy('rct-' || t, 30, 7) FROM generate_series(0, $((TENANTS - 1))) t" \
    >/dev/null || die "setting up the tenants failed"
load 1 $per1
T=$(sql -c "SELECT clock_timestamp()")
load 2 $per2
sql -c "SELECT custos.place_legal_hold('rct-1', 'sam', 'retention crash test')" >/dev/null ||
  die "placing the legal hold failed"
for ((i = 0; i < 100; i++)); do
  [ "$(sql -c "SELECT custos.seal(); SELECT pending FROM custos.status()" | tail -1)" = 0 ] && break
done
[ "$(sql -c "SELECT pending FROM custos.status()")" = 0 ] || die "could not seal the events"
loaded=$(sql -c "SELECT count(*) FROM custos.event_log WHERE tenant LIKE 'rct-%'")
held_p1=$(sql -c "SELECT count(*) FROM custos.events WHERE tenant = 'rct-1' AND resource_id LIKE 'p1-%'
                    AND (actor = 'sam' OR subject = 'sam')")
# what the cut must remove: every event recorded before T (the tenants'
# own creation and policy events too) except the held subject's
expired=$(sql -c "SELECT count(*) FROM custos.events WHERE tenant LIKE 'rct-%' AND recorded_at < '$T'
                    AND NOT (tenant = 'rct-1' AND 'sam' IN (actor, coalesce(subject, '')))")
sam_total=$(sql -c "SELECT count(*) FROM custos.events WHERE tenant = 'rct-1' AND (actor = 'sam' OR subject = 'sam')")
say "loaded $loaded events ($per1 + $per2 per tenant) in $(($(date +%s) - t0))s; T = $T;" \
  "$expired to expire, $held_p1 held"
[ "$held_p1" -gt 0 ] || die "no held events"

# ---------------------------------------------------------------------------
# crash helpers
# ---------------------------------------------------------------------------

# start_job SQL NAME: the job in a background psql
start_job() {
  sql -c "$1" >"$DIR/$2.out" 2>"$DIR/$2.err" &
  JOB_PID=$!
}

# kill_mid_batch JOB COLUMN: once the running run of JOB has COLUMN > 0
# (batches have committed), catch it inside a batch and kill -9 its backend;
# prints "run_id pid COLUMN".  Inside a batch, deterministically: another
# session locks the run's job_run row, so the batch, having done its work,
# waits to count it there; a CHECKPOINT then writes its uncommitted work
# (deleted tuples, keys zeroed in place) to disk before the kill.
kill_mid_batch() {
  local state run pid n i
  for ((i = 0; i < WAIT * 50; i++)); do
    state=$(sql -c "SELECT run_id, pid, $2 FROM custos.job_run
                     WHERE job = '$1' AND outcome = 'running' AND $2 > 0
                     ORDER BY run_id DESC LIMIT 1" 2>/dev/null)
    [ -n "$state" ] && break
    kill -0 "$JOB_PID" 2>/dev/null || return 1
    sleep 0.02
  done
  [ -n "$state" ] || return 1
  IFS='|' read -r run pid n <<<"$state"
  sql -c "BEGIN" -c "SELECT 1 FROM custos.job_run WHERE run_id = $run FOR UPDATE" \
      -c "SELECT pg_sleep($WAIT)" >/dev/null 2>&1 &
  for ((i = 0; i < WAIT * 50; i++)); do
    [ "$(sql -c "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid" 2>/dev/null)" = Lock ] && break
    kill -0 "$JOB_PID" 2>/dev/null || return 1
    sleep 0.02
  done
  sql -c CHECKPOINT >/dev/null
  n=$(sql -c "SELECT $2 FROM custos.job_run WHERE run_id = $run")
  kill -9 "$pid" || die "could not kill backend $pid"
  echo "$run $pid $n"
}

# wait for the job's psql to go and the cluster to be back from recovery
recover() {	# recover NAME
  local i
  wait "$JOB_PID"
  local rc=$?
  JOB_PID=
  [ $rc -ne 0 ] || fail "$1: the job's psql exited 0, it was not killed"
  grep -qiE 'terminat|connection|server closed' "$DIR/$1.err" ||
    fail "$1: the job failed, not by the kill: $(head -3 "$DIR/$1.err")"
  for ((i = 0; i < WAIT * 10; i++)); do
    [ "$(sql -c "SELECT NOT pg_is_in_recovery()" 2>/dev/null)" = t ] && return 0
    sleep 0.1
  done
  die "$1: the cluster did not come back within ${WAIT}s of the kill (see $DIR/server.log)"
}

verify_all() {	# "ok tenants/tenants, failures"
  sql -c "SELECT count(*) FILTER (WHERE ok) || '/' || count(*) ||
                 coalesce(' ' || string_agg(tenant || ': ' || failure || ' ' || detail, '; ') FILTER (WHERE NOT ok), '')
            FROM custos.verify() WHERE tenant LIKE 'rct-%'" 2>&1
}

# ---------------------------------------------------------------------------
# retention, killed
# ---------------------------------------------------------------------------
crashes=$(grep -c "terminated by signal 9" "$DIR/server.log")
start_job "CALL custos.apply_retention(as_of => '$T'::timestamptz + interval '30 days', batch_size => $BATCH)" retention
killed=$(kill_mid_batch retention events_deleted) ||
  die "the retention run finished before it could be killed (raise RCT_EVENTS or lower RCT_BATCH)"
read -r run pid n <<<"$killed"
say "killed backend $pid of retention run $run after $n deleted events"
recover retention
check "the postmaster saw the backend die and restarted" \
  "$(($(grep -c "terminated by signal 9" "$DIR/server.log") - crashes))" 1
grep -q "all server processes terminated; reinitializing" "$DIR/server.log" ||
  fail "no crash restart in the server log"

r=$(sql -c "SELECT s.last_outcome FROM custos.job_status s JOIN custos.job_run j ON j.tenant = s.tenant
             WHERE j.run_id = $run AND s.job = 'retention' AND s.last_run_id = $run")
check "job_status shows the killed retention run as interrupted" "$r" interrupted
check "every chain verifies right after the crash (partial cut)" "$(verify_all)" "$TENANTS/$TENANTS"
gone=$(sql -c "SELECT $loaded - count(*) FROM custos.event_log WHERE tenant LIKE 'rct-%'")
check "the cut so far is partial" \
  "$(sql -c "SELECT $gone > 0 AND $gone < $expired")" t
check "job_run counts what is gone" \
  "$(sql -c "SELECT sum(events_deleted) FROM custos.job_run WHERE job = 'retention' AND tenant LIKE 'rct-%'")" "$gone"
r=$(sql -c "SELECT count(*), count(actor) FILTER (WHERE personal_data = 'clear')
              FROM custos.events WHERE tenant LIKE 'rct-%'" 2>&1)
check "the events read after the crash" "$r" "$((loaded - gone))|$((loaded - gone))"

sql -c "CALL custos.apply_retention(as_of => '$T'::timestamptz + interval '30 days', batch_size => $BATCH)" 2>&1 ||
  fail "the retention rerun failed"
check "every chain verifies after the rerun" "$(verify_all)" "$TENANTS/$TENANTS"
r=$(sql -c "SELECT count(*) FILTER (WHERE resource_id LIKE 'p1-%'),
                   count(*) FILTER (WHERE resource_id LIKE 'p1-%' AND (actor = 'sam' OR subject = 'sam') AND tenant = 'rct-1'),
                   count(*) FILTER (WHERE resource_id LIKE 'p2-%')
              FROM custos.events WHERE tenant LIKE 'rct-%'")
check "left: the held phase-1 events and every phase-2 event" "$r" "$held_p1|$held_p1|$((per2 * TENANTS))"
r=$(sql -c "SELECT count(*) FROM custos.event_log WHERE tenant LIKE 'rct-%' AND recorded_at < '$T'
               AND NOT (tenant = 'rct-1' AND id IN (SELECT id FROM custos.events WHERE actor = 'sam' OR subject = 'sam'))")
check "no unheld event recorded before the cutoff is left" "$r" 0
check "job_run counts every deleted event once" \
  "$(sql -c "SELECT sum(events_deleted) FROM custos.job_run WHERE job = 'retention' AND tenant LIKE 'rct-%'")" \
  "$expired"
check "job_status: the last retention run of every tenant ok" \
  "$(sql -c "SELECT string_agg(last_outcome, ',' ORDER BY tenant) FROM custos.job_status
              WHERE job = 'retention' AND tenant LIKE 'rct-%'")" "ok,ok,ok"

# ---------------------------------------------------------------------------
# anonymisation, killed
# ---------------------------------------------------------------------------
sql -c "SELECT custos.seal()" >/dev/null
cut_day=$(sql -c "SELECT custos.day_of(now() + interval '8 days' - interval '7 days')")
start_job "CALL custos.anonymize(as_of => now() + interval '8 days', batch_size => $KEY_BATCH)" anonymize
killed=$(kill_mid_batch anonymization keys_destroyed) ||
  die "the anonymisation run finished before it could be killed (lower RCT_KEY_BATCH)"
read -r run pid n <<<"$killed"
say "killed backend $pid of anonymisation run $run after $n destroyed keys"
recover anonymize
r=$(sql -c "SELECT s.last_outcome FROM custos.job_status s JOIN custos.job_run j ON j.tenant = s.tenant
             WHERE j.run_id = $run AND s.job = 'anonymization' AND s.last_run_id = $run")
check "job_status shows the killed anonymisation run as interrupted" "$r" interrupted
check "every chain verifies after the second crash" "$(verify_all)" "$TENANTS/$TENANTS"
left=$(sql -c "SELECT count(*) FROM custos.event_log WHERE tenant LIKE 'rct-%'")
r=$(sql -c "SELECT count(*), count(actor) FROM custos.events WHERE tenant LIKE 'rct-%'" 2>&1)
check "the events read after the crash (partly destroyed keys)" "$r" "$left|$left"
r=$(sql -c "SELECT count(*) FILTER (WHERE key IS NULL) > 0,
                   count(*) FILTER (WHERE key IS NOT NULL AND period < $cut_day) > 0
              FROM custos.data_key WHERE tenant LIKE 'rct-%'")
check "the anonymisation is partial" "$r" "t|t"
# the killed batch zeroed its keys in place (not undone by the abort) but
# its "key = NULL" was rolled back
zeroed=$(sql -c "SELECT count(*) FROM custos.data_key WHERE key = '\\x$(printf '0%.0s' {1..64})'::bytea")
check "the killed batch left keys zeroed in place, not recorded destroyed" "$(sql -c "SELECT $zeroed > 0")" t
say "$zeroed zeroed keys; their events read as (personal_data, description readable, count):" \
  "$(sql -c "SELECT string_agg(format('%s, %s, %s', personal_data, readable, n), '; ') FROM (
               SELECT v.personal_data, v.description IS NOT NULL AS readable, count(*) AS n
                 FROM custos.events v JOIN custos.event_log e USING (id) JOIN custos.data_key k ON k.key_id = e.actor_key_id
                WHERE k.key = '\\x$(printf '0%.0s' {1..64})'::bytea GROUP BY 1, 2) x")"
# an actor of a zeroed key (or, failing that, of a live key due to go) logs
# again: a fresh key, readable
victim=$(sql -c "WITH a AS MATERIALIZED (
                   SELECT t, 'user-' || i AS v, custos.scope_ref(t, 'actor', 'user-' || i) AS ref
                     FROM generate_series(0, $ACTORS - 1) i, unnest(ARRAY['rct-0', 'rct-1', 'rct-2']) t)
                 SELECT a.v, k.tenant FROM custos.data_key k
                   JOIN a ON k.tenant = a.t AND k.scope = 'actor' AND k.scope_ref = a.ref
                  WHERE k.key IS NOT NULL AND k.period < $cut_day
                  ORDER BY k.key = '\\x$(printf '0%.0s' {1..64})'::bytea DESC, k.key_id LIMIT 1")
IFS='|' read -r vactor vtenant <<<"$victim"
if [ -n "$vactor" ]; then
  id=$(sql -c "SELECT custos.log(jsonb_build_object('tenant', '$vtenant', 'action', 'LOGIN', 'actor', '$vactor'))" 2>&1)
  r=$(sql -c "SELECT actor, personal_data FROM custos.events WHERE id = '$id'" 2>&1)
  check "an actor whose key the kill left half-destroyed logs again, readable" "$r" "$vactor|clear"
fi

rerun_at=$(sql -c "SELECT clock_timestamp()")
sql -c "CALL custos.anonymize(as_of => now() + interval '8 days', batch_size => $KEY_BATCH)" 2>&1 ||
  fail "the anonymisation rerun failed"
check "every chain verifies after the anonymisation rerun" "$(verify_all)" "$TENANTS/$TENANTS"
# (the run's own events, recorded after it destroyed a tenant's keys, have
# fresh ones)
r=$(sql -c "SELECT count(*) FROM custos.data_key k
             WHERE k.tenant LIKE 'rct-%' AND k.key IS NOT NULL AND k.period < $cut_day
               AND k.created_at < '$rerun_at' AND k.key_id <> ALL (custos.kept_keys(k.tenant))")
check "no live key of a day before the cut is left but the kept ones" "$r" 0
r=$(sql -c "SELECT count(*) > 0, count(*) FILTER (WHERE k.key IS NULL) FROM custos.data_key k
             WHERE k.tenant = 'rct-1' AND k.key_id = ANY (custos.kept_keys('rct-1'))")
check "the keys the hold needs are all live" "$r" "t|0"
r=$(sql -c "SELECT count(*) FROM custos.data_key WHERE key = '\\x$(printf '0%.0s' {1..64})'::bytea")
check "no zeroed key is left looking live" "$r" 0
check "the held subject's events all stay readable" \
  "$(sql -c "SELECT count(*) FROM custos.events WHERE tenant = 'rct-1' AND personal_data = 'clear'
               AND (actor = 'sam' OR subject = 'sam')")" "$sam_total"
check "job_status: the last anonymisation run of every tenant ok" \
  "$(sql -c "SELECT string_agg(last_outcome, ',' ORDER BY tenant) FROM custos.job_status
              WHERE job = 'anonymization' AND tenant LIKE 'rct-%'")" "ok,ok,ok"

if [ ${#FAILURES[@]} -gt 0 ]; then
  say "FAILED (${#FAILURES[@]} checks)"
  exit 1
fi
say "ok"
exit 0
