#!/usr/bin/env bash
# bench/retention.sh: the benchmarks of issue 5 ("Speed"), each a ratio
# against a baseline measured in the same run.  docs/benchmarks-retention.md
# explains each number.
#
#   a. retention   CALL custos.apply_retention() cutting RB_EVENTS/2 expired
#                  events out of RB_EVENTS vs DELETE of the same rows from a
#                  plain table with the same columns, data and indexes
#                  (target <= 1x)
#   b. anonymise   CALL custos.anonymize() of the remaining RB_EVENTS/2
#                  events vs UPDATE of one column (personal = NULL) of the
#                  same rows of the plain table (target <= 1x)
#   c. appends     pgbench, RB_CLIENTS clients of custos.log(), while a
#                  retention run cuts another RB_EVENTS/2 events vs the same
#                  without it (target >= 0.8x)
#
# Each destructive measurement runs once (the data is gone after it); the
# machine is shared, so rerun for a second opinion.  Throwaway cluster under
# build/bench-retention (its own port and socket directory), removed at exit.
# Uses the installed extension: run it holding the make lock after make
# install, with -o so that the cluster does not inherit the lock:
#   flock -o /tmp/custos-make.lock bench/retention.sh
#
# Environment (defaults in brackets):
#   RB_EVENTS    events loaded; half expire in (a), half in (c) [2000000]
#   RB_TENANTS   tenants [8]
#   RB_ACTORS    actors per tenant [1000]
#   RB_SUBJECTS  data subjects per tenant (a third of the events name one) [1000]
#   RB_BATCH     batch_size of the jobs [10000]
#   RB_CLIENTS   pgbench clients in (c) [4]
#   RB_PAUSE     custos.job_batch_pause of the run in (c), in ms [0]
#   RB_SECONDS   seconds of each pgbench run in (c), at most [10]
#   RB_PORT      port of the throwaway cluster [54331]
#   RB_KEEP=1    leave the cluster running at exit
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
source "$(dirname "$0")/common.sh"

EVENTS=${RB_EVENTS:-2000000}
TENANTS=${RB_TENANTS:-8}
ACTORS=${RB_ACTORS:-1000}
SUBJECTS=${RB_SUBJECTS:-1000}
BATCH=${RB_BATCH:-10000}
PAUSE=${RB_PAUSE:-0}
CLIENTS=${RB_CLIENTS:-4}
SECS=${RB_SECONDS:-10}
PORT=${RB_PORT:-54331}
BENCH=$TOP/bench
DIR=$TOP/build/bench-retention
DATA=$DIR/data
RESULTS=$TOP/build/bench-retention-results.txt
DB=bench
HALF=$((EVENTS / 2))
job_pid=

cleanup() {
  local rc=$?
  [ -n "$job_pid" ] && kill "$job_pid" 2>/dev/null || true
  if [ -z "${RB_KEEP:-}" ]; then
    [ -f "$DATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
  else
    echo "cluster kept: psql -h $DIR -p $PORT $DB"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$TOP"

sql() {	# sql [psql args...]
  as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -d "$DB" "$@"
}

# milliseconds one statement takes, client-side (\timing)
timed() {	# timed SQL
  sql -c '\timing on' -c "$1" | grep '^Time: ' | tail -1 | awk '{print $2}'
}


# quiet both tables, flush, then measure
settle() {
  sql -c "VACUUM ANALYZE custos.event_log" -c "VACUUM ANALYZE plain_log" -c "VACUUM ANALYZE custos.data_key" \
      -c CHECKPOINT
}

pgbench_tps() {	# pgbench_tps SECONDS
  as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -c "$CLIENTS" -j 2 -T "$1" -M prepared \
    -D ntenants="$TENANTS" -D nactors=50 -f "$BENCH/append_custos_prepared.sql" "$DB" 2>&1 |
    awk '/^tps = / {printf "%.0f\n", $3}'
}

# load N: N events (a multiple of 1000) in log_batch calls, 2 clients
load() {
  as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -c 2 -j 2 -t $(($1 / 2000)) -M simple \
    -D ntenants="$TENANTS" -D nactors="$ACTORS" -D nsubjects="$SUBJECTS" \
    -f "$BENCH/retention_load.sql" "$DB" >"$DIR/load.log" 2>&1 || { cat "$DIR/load.log" >&2; exit 1; }
}

seal_all() {
  local i
  for ((i = 0; i < 1000; i++)); do
    [ "$(sql -c "SELECT custos.seal(); SELECT pending FROM custos.status()" | tail -1)" = 0 ] && return 0
  done
  echo "could not seal the backlog" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------
# autovacuum off: each side is vacuumed by hand before it is measured, so
# neither gets a vacuum the other does not
bench_cluster 'custos' <<EOF
shared_buffers = 2GB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
autovacuum = off
EOF
as_pg "$PGBIN/psql" -X -q -h "$DIR" -p "$PORT" -d postgres -c "CREATE DATABASE $DB"
sql -c "SET client_min_messages = warning" -c "CREATE EXTENSION custos CASCADE"

say "custos retention benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
  "$(sql -c 'SHOW server_version' | sed 's/ .*//')"
say "custos $(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'custos'")," \
  "git $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$TOP" diff --quiet HEAD -- extension sql 2>/dev/null || echo ' (extension/ or sql/ modified)')," \
  "custos.so of $(date -u -d "@$(stat -c %Y "$("$PG_CONFIG" --pkglibdir)/custos.so")" '+%Y-%m-%d %H:%M UTC')"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "$EVENTS events, $TENANTS tenants, $ACTORS actors and $SUBJECTS subjects per tenant, job batch_size $BATCH"

# ---------------------------------------------------------------------------
# data: phase 1 (expires in a), T1, phase 2 (anonymised in b, expires in c), T2
# ---------------------------------------------------------------------------
sql -c "SELECT custos.create_tenant('tenant-' || t) FROM generate_series(1, $TENANTS) t" \
    -c "SELECT custos.set_retention_policy('tenant-' || t, 30, 1) FROM generate_series(1, $TENANTS) t" >/dev/null
t0=$(date +%s.%N)
load "$HALF"
T1=$(sql -c "SELECT clock_timestamp()")
load "$HALF"
T2=$(sql -c "SELECT clock_timestamp()")
t1=$(date +%s.%N)
seal_all
t2=$(date +%s.%N)
say "loaded $(sql -c "SELECT count(*) FROM custos.event_log") events in $(calc %.0f "$t1 - $t0")s," \
  "sealed in $(calc %.0f "$t2 - $t1")s more; $(sql -c "SELECT count(*) FROM custos.data_key") data keys"

# the baseline: the same columns, rows and indexes, no custos
sql -c "CREATE TABLE plain_log AS SELECT * FROM custos.event_log ORDER BY id" -c "
DO \$mirror\$
DECLARE
	def text;
BEGIN
	FOR def IN SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
				WHERE i.indrelid = 'custos.event_log'::regclass ORDER BY i.indexrelid LOOP
		def := replace(def, ' ON custos.event_log ', ' ON public.plain_log ');
		def := regexp_replace(def, '^CREATE (UNIQUE )?INDEX (\S+) ', 'CREATE \1INDEX plain_\2 ');
		EXECUTE def;
	END LOOP;
END
\$mirror\$;"
say "indexes: custos.event_log: $(sql -c "SELECT string_agg(regexp_replace(indexdef, '.* USING ', ''), ', ' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'custos' AND tablename = 'event_log'");" \
  "plain_log: $(sql -c "SELECT string_agg(regexp_replace(indexdef, '.* USING ', ''), ', ' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'plain_log'")"

# ---------------------------------------------------------------------------
# a. retention of phase 1 vs DELETE
# ---------------------------------------------------------------------------
settle
expired=$(sql -c "SELECT count(*) FROM plain_log WHERE recorded_at < '$T1'")
ms_delete=$(timed "DELETE FROM plain_log WHERE recorded_at < '$T1'")
settle
ms_retention=$(timed "CALL custos.apply_retention(as_of => '$T1'::timestamptz + interval '30 days', batch_size => $BATCH)")
cut=$(sql -c "SELECT sum(events_deleted) FROM custos.job_run WHERE job = 'retention'")
left=$(sql -c "SELECT count(*) FROM custos.event_log")
ok=$(sql -c "SELECT count(*) FILTER (WHERE ok) || '/' || count(*) FROM custos.verify()")
ratio=$(calc %.2f "$ms_retention / $ms_delete")
say ""
say "== a. retention: $cut of $((left + cut)) events cut (the plain DELETE: $expired rows)"
say "   DELETE FROM plain_log WHERE recorded_at < T1   ms: $ms_delete"
say "   CALL custos.apply_retention(...)                ms: $ms_retention  ($(calc %.0f "$cut / ($ms_retention / 1000)") events/s)"
say "   ratio ${ratio}x DELETE time (target <= 1x)  $(verdict "$ratio <= 1")   verify after: $ok ok"

# ---------------------------------------------------------------------------
# b. anonymisation of phase 2 vs UPDATE of one column
# ---------------------------------------------------------------------------
settle
rows=$(sql -c "SELECT count(*) FROM plain_log")
ms_update=$(timed "UPDATE plain_log SET personal = NULL")
settle
live=$(sql -c "SELECT count(*) FROM custos.data_key WHERE key IS NOT NULL")
ms_anon=$(timed "CALL custos.anonymize(as_of => now() + interval '2 days', batch_size => $BATCH)")
destroyed=$(sql -c "SELECT sum(keys_destroyed) FROM custos.job_run WHERE job = 'anonymization'")
clear=$(sql -c "SELECT count(*) FROM custos.event_log e JOIN custos.data_key k ON k.key_id = e.actor_key_id WHERE k.key IS NOT NULL")
ok=$(sql -c "SELECT count(*) FILTER (WHERE ok) || '/' || count(*) FROM custos.verify()")
ratio=$(calc %.3f "$ms_anon / $ms_update")
say ""
say "== b. anonymisation: the $left remaining events ($destroyed of $live live data keys destroyed; $clear events still with a live actor key)"
say "   UPDATE plain_log SET personal = NULL ($rows rows)   ms: $ms_update"
say "   CALL custos.anonymize(...)                        ms: $ms_anon"
say "   ratio ${ratio}x UPDATE time (target <= 1x)  $(verdict "$ratio <= 1")   verify after: $ok ok"

# ---------------------------------------------------------------------------
# c. appends during a retention run (of phase 2) vs without
# ---------------------------------------------------------------------------
# as long as the retention of (a) took, at most RB_SECONDS, at least 3s
secs=$(calc %.0f "$ms_retention / 1000 * 0.8")
[ "$secs" -gt "$SECS" ] && secs=$SECS
[ "$secs" -lt 3 ] && secs=3
sql -c CHECKPOINT
tps_alone=$(pgbench_tps "$secs")
sql -c CHECKPOINT
r0=$(date +%s.%N)
PGOPTIONS="-c custos.job_batch_pause=${PAUSE}ms" \
  sql -c "CALL custos.apply_retention(as_of => '$T2'::timestamptz + interval '30 days', batch_size => $BATCH)" &
job_pid=$!
sleep 0.3
tps_during=$(pgbench_tps "$secs")
p1=$(date +%s.%N)
still=no
kill -0 "$job_pid" 2>/dev/null && still=yes
wait "$job_pid"
job_pid=
r1=$(date +%s.%N)
cut2=$(sql -c "SELECT sum(events_deleted) FROM custos.job_run WHERE job = 'retention'")
ratio=$(calc %.2f "$tps_during / $tps_alone")
say ""
say "== c. appends: pgbench $CLIENTS clients of custos.log(), ${secs}s each, alone vs during a retention run" \
  "(custos.job_batch_pause = ${PAUSE}ms)"
say "   alone           tps: $tps_alone"
say "   during retention tps: $tps_during  (the run cut $((cut2 - cut)) events in $(calc %.1f "$r1 - $r0")s;" \
  "still running when pgbench ended: $still)"
say "   ratio ${ratio}x (target >= 0.8x)  $(verdict "$ratio >= 0.8")"
say "   verify after: $(sql -c "SELECT count(*) FILTER (WHERE ok) || '/' || count(*) FROM custos.verify()") ok"
say ""
say "results in $RESULTS"
