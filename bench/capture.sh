#!/usr/bin/env bash
# bench/capture.sh: the capture benchmark of issue 4, printed as ratios
# against an untracked baseline measured in the same run.
#
#   1. update   pgbench, 8 clients, UPDATE of one row by key on a 100k-row
#               table: untracked (baseline), custos.track(), the generic jsonb
#               audit trigger (supa_audit pattern), pgaudit with
#               pgaudit.log = 'write'.  Target: custos >= 0.85x, and above both.
#   2. bulk     one UPDATE of all 100k rows, tracked vs untracked.  Target <= 2x.
#
# The background sealer runs (custos chains the events as in production);
# synchronous_commit and fsync are on.  Runs alternate the workloads' order
# and report medians.  A throwaway cluster under build/bench-capture, removed
# at exit.  Uses the installed extension: run it under the make lock
# (flock /tmp/custos-make.lock bench/capture.sh) on a shared machine.
#
# Environment: BENCH_SECONDS [10], BENCH_ROUNDS [5], BENCH_CLIENTS [8],
# BENCH_BULK_ROUNDS [3], BENCH_PORT [54331], BENCH_KEEP=1 keeps the cluster.
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
source "$(dirname "$0")/common.sh"

SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-5}
CLIENTS=${BENCH_CLIENTS:-8}
BULK_ROUNDS=${BENCH_BULK_ROUNDS:-3}
PORT=${BENCH_PORT:-54331}
BENCH=$TOP/bench
DIR=$TOP/build/bench-capture
DATA=$DIR/data
RESULTS=$TOP/build/bench-capture-results.txt
DB=bench

cleanup() {
  local rc=$?
  if [ -z "${BENCH_KEEP:-}" ]; then
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

# wait until the sealer has sealed everything (so runs start alike)
drain() {
  for ((i = 0; i < 600; i++)); do
    [ "$(sql -c "SELECT pending FROM custos.status()")" = 0 ] && return 0
    sleep 0.1
  done
  echo "the sealer did not catch up" >&2
  return 1
}

pgbench_run() {	# pgbench_run WORKLOAD: prints tps and server CPU us per transaction
  local user=$PGUSER_OS out t0 t1
  [ "$1" = pgaudit ] && user=bench_pgaudit
  drain
  sql -c CHECKPOINT
  t0=$(cluster_ticks)
  out=$(as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -U "$user" -c "$CLIENTS" -j 2 -T "$SECS" \
    -M prepared -f "$BENCH/capture_update_$1.sql" "$DB" 2>&1) || { echo "$out" >&2; return 1; }
  sleep 0.3	# let the postmaster reap the backends
  drain		# the sealer's work for these events counts too
  t1=$(cluster_ticks)
  awk -v d=$((t1 - t0)) -v hz="$HZ" '
    /^number of transactions actually processed/ {n = $NF}
    /^tps = / {tps = $3}
    END {printf "%.0f %.1f\n", tps, d / hz * 1e6 / n}' <<<"$out"
}

# ---------------------------------------------------------------------------
bench_cluster "custos,pgaudit" <<EOF
shared_buffers = 1GB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
EOF
as_pg "$PGBIN/psql" -X -q -h "$DIR" -p "$PORT" -d postgres -c "CREATE DATABASE $DB"
sql -c "SET client_min_messages = warning" -f "$BENCH/capture_setup.sql" >/dev/null
for ((i = 0; ; i++)); do
  sql -c "SELECT 'ok' FROM custos.status() WHERE preloaded AND sealer_pid IS NOT NULL" | grep -q ok && break
  ((i == 100)) && { echo "the custos sealer is not running; see $DIR/server.log" >&2; exit 1; }
  sleep 0.1
done

say "custos capture benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "$(sql -c 'SHOW server_version' | sed 's/ .*//'), custos $(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'custos'")," \
  "git $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo '?')"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "pgbench: $CLIENTS clients, -M prepared, ${SECS}s per run, $ROUNDS rounds; sealer on; fsync, synchronous_commit on"

# ---------------------------------------------------------------------------
# 1. single-row UPDATEs
# ---------------------------------------------------------------------------
WORKLOADS=(plain custos jsonb pgaudit)
for w in "${WORKLOADS[@]}"; do	# warm-up: caches, data keys, the day's keys
  SECS=3 pgbench_run "$w" >/dev/null
done
declare -A tps cpu ratios
for ((r = 0; r < ROUNDS; r++)); do
  order=("${WORKLOADS[@]}")
  ((r % 2 == 1)) && order=(pgaudit jsonb custos plain)
  declare -A this=()
  for w in "${order[@]}"; do
    read -r t c <<<"$(pgbench_run "$w")"
    this[$w]=$t
    tps[$w]="${tps[$w]:-} $t"
    cpu[$w]="${cpu[$w]:-} $c"
  done
  for w in custos jsonb pgaudit; do
    ratios[$w]="${ratios[$w]:-} $(calc %.3f "${this[$w]} / ${this[plain]}")"
  done
done
say ""
say "== UPDATE one row by key, 100k-row table ($CLIENTS clients, ${SECS}s x $ROUNDS)"
for w in "${WORKLOADS[@]}"; do
  say "   $(printf '%-8s' "$w") tps:${tps[$w]}  median $(median ${tps[$w]})"
done
for w in custos jsonb pgaudit; do
  say "   $(printf '%-8s' "$w")/plain per round:${ratios[$w]}  median $(calc %.2f "$(median ${ratios[$w]})")"
done
for w in "${WORKLOADS[@]}"; do
  say "   $(printf '%-8s' "$w") server CPU us/transaction (sealer included):${cpu[$w]}  median $(median ${cpu[$w]})"
done
mpc=$(median ${cpu[plain]})
say "   CPU ratio plain/x (a throughput ratio if CPU-bound): custos $(calc %.2f "$mpc / $(median ${cpu[custos]})")," \
  "jsonb $(calc %.2f "$mpc / $(median ${cpu[jsonb]})"), pgaudit $(calc %.2f "$mpc / $(median ${cpu[pgaudit]})")"
rc=$(median ${ratios[custos]})
rj=$(median ${ratios[jsonb]})
rp=$(median ${ratios[pgaudit]})
say "   custos $(calc %.2f "$rc") (target >= 0.85: $(verdict "$rc >= 0.85"));" \
  "beats jsonb trigger $(calc %.2f "$rj"): $(verdict "$rc > $rj"); beats pgaudit $(calc %.2f "$rp"): $(verdict "$rc > $rp")"
say "   events recorded by custos: $(sql -c "SELECT count(*) FROM custos.event_log WHERE resource_type = 'OBJECT'")," \
  "by the jsonb trigger: $(sql -c "SELECT count(*) FROM bench_audit_record")," \
  "pgaudit lines: $(grep -c 'AUDIT: SESSION' "$DIR/server.log" || true)"

# ---------------------------------------------------------------------------
# 2. one UPDATE of 100k rows
# ---------------------------------------------------------------------------
bulk_ms() {	# bulk_ms TABLE: milliseconds of one UPDATE of every row
  drain
  sql -c "VACUUM bench_bulk_$1" -c CHECKPOINT
  sql -c '\timing on' -c "UPDATE bench_bulk_$1 SET value = value + 1, updated_at = now()" |
    awk '/^Time: / {print $2}'
}
bp=() bc=() br=()
for ((r = 0; r < BULK_ROUNDS; r++)); do
  p=$(bulk_ms plain)
  c=$(bulk_ms custos)
  bp+=("$p") bc+=("$c") br+=("$(calc %.2f "$c / $p")")
done
mr=$(median "${br[@]}")
say ""
say "== one UPDATE of 100k rows"
say "   untracked ms: ${bp[*]}  median $(median "${bp[@]}")"
say "   tracked   ms: ${bc[*]}  median $(median "${bc[@]}")"
say "   tracked/untracked per round: ${br[*]}  median $(calc %.2f "$mr") (target <= 2: $(verdict "$mr <= 2"))"
say ""
say "results in $RESULTS"
