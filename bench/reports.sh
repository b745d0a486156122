#!/usr/bin/env bash
# bench/reports.sh: the subject access report (issue 7) against the obvious
# alternative, measured in the same run and printed as a ratio.
#
#   candidate  custos.subject_report(tenant, subject): finds the subject's
#              data keys by scope reference and the events by key id, and
#              decrypts only the matches
#   baseline   the same events through custos.events with
#              "actor = $1 OR subject = $1": every event of the tenant is
#              decrypted to compare (what a filter on personal fields does)
#
# Both as the same authenticated tenant admin (row-level security on), on a
# log of BENCH_EVENTS events of one tenant over BENCH_PEOPLE actors and
# subjects; runs alternate and the medians are compared.  Also checks that
# both find the same number of events.  A throwaway cluster under
# build/bench-reports (own port, socket there, no TCP), removed at exit except
# results.txt.  Run as root (the cluster belongs to "postgres") or as an
# ordinary user; hold /tmp/custos-make.lock on the shared machine.
#
# Environment: BENCH_EVENTS [200000], BENCH_PEOPLE [1000], BENCH_ROUNDS [5],
# BENCH_PORT [54341].
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"

EVENTS=${BENCH_EVENTS:-200000}
PEOPLE=${BENCH_PEOPLE:-1000}
ROUNDS=${BENCH_ROUNDS:-5}
PORT=${BENCH_PORT:-54341}
DIR=$TOP/build/bench-reports
DATA=$DIR/data
RESULTS=$DIR/results.txt
DB=reports

cleanup() {
  [ -f "$DATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  find "$DIR" -mindepth 1 -maxdepth 1 ! -name results.txt -exec rm -rf {} + 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$DIR"
pg_dir "$DIR"
as_pg "$PGBIN/initdb" -D "$DATA" --auth=trust --no-sync -E UTF8 >/dev/null
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'custos'
custos.database = '$DB'
custos.sealer = on
fsync = off
synchronous_commit = off
jit = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w start >/dev/null
psql_() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U "$PGUSER_OS" "$@"; }
psql_ -d postgres -c "CREATE DATABASE $DB"
psql_ -d "$DB" -c "CREATE EXTENSION custos CASCADE" 2>/dev/null
TOKEN=$(psql_ -d "$DB" <<EOF
SELECT custos.create_tenant('bench', NULL, 'bench') \gset x_
SELECT custos.create_principal('bench', 'Admin', 'user', 'admin') AS admin \gset
SELECT count(*) AS x_n FROM (
  SELECT custos.log_batch(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'tenant', 'bench', 'category', 'booking', 'action', 'UPDATE', 'resource_type', 'BOOKING',
           'resource_id', g::text, 'actor', 'person-' || (g % $PEOPLE),
           'subject', 'person-' || ((g * 7 + 3) % $PEOPLE), 'description', 'booking ' || g,
           'metadata', pg_catalog.jsonb_build_object('purpose', 'bench'))))
    FROM generate_series(0, $EVENTS - 1) g GROUP BY g / 1000) b \gset
SELECT custos.seal() AS x_sealed \gset
VACUUM ANALYZE;
SELECT token FROM custos.issue_token(:'admin', 'personal', '1 day');
EOF
)

# one timed run: method (report|baseline), subject -> "ms events"
run() {
  psql_ -d "$DB" -v tok="$TOKEN" -v subj="$2" -v method="$1" <<'EOF'
BEGIN;
SELECT custos.authenticate(:'tok') IS NOT NULL AS x_auth \gset
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SELECT CASE WHEN :'method' = 'report'
            THEN (SELECT (custos.subject_report('bench', :'subj') -> 'counts' ->> 'events')::bigint)
            ELSE (SELECT pg_catalog.count(*) FROM custos.events e
                   WHERE e.tenant = 'bench' AND (e.actor = :'subj' OR e.subject = :'subj'))
       END AS n \gset
SELECT round(extract(epoch FROM pg_catalog.clock_timestamp() - :'t0'::timestamptz) * 1000, 1) || ' ' || :n;
COMMIT;
EOF
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

rep=()
base=()
nrep=
nbase=
for i in $(seq "$ROUNDS"); do
  s="person-$((i * 37 % PEOPLE))"
  read -r ms n < <(run baseline "$s"); base+=("$ms"); nbase="$nbase $n"
  read -r ms n < <(run report "$s"); rep+=("$ms"); nrep="$nrep $n"
done
mb=$(printf '%s\n' "${base[@]}" | median)
mr=$(printf '%s\n' "${rep[@]}" | median)
{
  echo "custos subject access report benchmark ($(date -u +%FT%TZ))"
  echo "log: $EVENTS events of one tenant, $PEOPLE people as actors and subjects; $ROUNDS rounds, alternating"
  echo "baseline  custos.events, actor = s OR subject = s (decrypts every event): median $mb ms  (runs: ${base[*]})"
  echo "report    custos.subject_report(tenant, s) (key lookup, decrypts matches): median $mr ms  (runs: ${rep[*]})"
  echo "events found, baseline:$nbase"
  echo "events found, report:  $nrep"
  awk -v b="$mb" -v r="$mr" 'BEGIN {printf "ratio report/baseline: %.3f (lower is better)\n", r / b}'
} | tee "$RESULTS"
