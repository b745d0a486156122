#!/usr/bin/env bash
# bench/run.sh: the benchmarks of issue 2 ("Speed"), each printed as a ratio
# against a baseline measured in the same run.  `make bench` runs it after
# `make install`; docs/benchmarks.md explains each number.
#
#   1. append    custos.log() vs a plain INSERT of the same event, pgbench
#                8 clients, synchronous_commit on; one tenant and 8 tenants
#   2. sealer    custos.seal() of a backlog, events/s (absolute target), with
#                a COPY of the same rows in the sealer's order for reference
#   3. verify    custos.verify() of BENCH_EVENTS sealed events vs
#                COPY (SELECT * FROM custos.event_log) TO '/dev/null'
#   4. delay     background sealer at its default interval, 8 clients
#                appending flat out: sealed_at - recorded_at per event
#
# Measurements alternate baseline and candidate (the machine is shared and
# noisy) and report medians.  Everything runs on a throwaway cluster under
# build/bench (its own port and socket directory), removed at exit.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS  duration of each pgbench run [12]
#   BENCH_ROUNDS   baseline/candidate pairs per append variant [6]
#   BENCH_EVENTS   sealed events for the verify benchmark [1000000]
#   BENCH_CHUNKS   backlogs the events are loaded and sealed in [4]
#   BENCH_VERIFY_ROUNDS  COPY/verify pairs [3]
#   BENCH_CLIENTS  pgbench clients [8]
#   BENCH_ACTORS   distinct actors per tenant in the append runs [50]
#   BENCH_PROTOCOL pgbench -M for the append runs: prepared or simple [prepared]
#   BENCH_WARMUP   seconds of unmeasured appends before the append runs [5]
#   BENCH_ONLY     subset of "append sealer verify delay" [all]
#   BENCH_PORT     port of the throwaway cluster [54329]
#   BENCH_KEEP=1   leave the cluster running at exit (for profiling)
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
source "$(dirname "$0")/common.sh"

SECS=${BENCH_SECONDS:-12}
ROUNDS=${BENCH_ROUNDS:-6}
EVENTS=${BENCH_EVENTS:-1000000}
CHUNKS=${BENCH_CHUNKS:-4}
VROUNDS=${BENCH_VERIFY_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-8}
ACTORS=${BENCH_ACTORS:-50}
PROTOCOL=${BENCH_PROTOCOL:-prepared}
WARMUP=${BENCH_WARMUP:-5}
case $PROTOCOL in
  prepared) SUFFIX=_prepared ;;
  simple) SUFFIX= ;;
  *) echo "BENCH_PROTOCOL must be prepared or simple" >&2; exit 2 ;;
esac
ONLY=${BENCH_ONLY:-append sealer verify delay}
PORT=${BENCH_PORT:-54329}
BENCH=$TOP/bench
DIR=$TOP/build/bench
DATA=$DIR/data
RESULTS=$TOP/build/bench-results.txt
DB=bench		# custos.database: the background sealer runs here
BULK=bench_bulk	# sealer and verify benchmarks: sealed by custos.seal() only

started=$(date +%s)
probe_pid=

cleanup() {
  local rc=$?
  [ -n "$probe_pid" ] && kill "$probe_pid" 2>/dev/null || true
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

cd "$TOP"	# a directory the cluster user can read

# psql on the benchmark cluster; -X: no ~/.psqlrc
sql() {	# sql DB [psql args...]
  local db=$1
  shift
  as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -d "$db" "$@"
}

# Milliseconds one statement takes, client-side (\timing); its output
# (tuples) goes to the file named by $2 when given.
timed() {	# timed DB OUTFILE SQL
  local out
  out=$(sql "$1" -c '\timing on' -c "$3")
  [ -n "$2" ] && grep -v '^Time: ' <<<"$out" >"$2"
  grep '^Time: ' <<<"$out" | tail -1 | awk '{print $2}'
}

set_sealer() {	# set_sealer on|off
  sql "$DB" -c "ALTER SYSTEM SET custos.sealer = $1" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5
}

# pgbench run of append_{plain,custos}; prints its tps (excluding connection
# time) and the cluster's CPU time per transaction in microseconds
pgbench_run() {	# pgbench_run plain|custos TENANTS
  local out t0 t1
  sql "$DB" -c CHECKPOINT
  t0=$(cluster_ticks)
  out=$(as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -c "$CLIENTS" -j 2 -T "$SECS" \
    -M "$PROTOCOL" -D ntenants="$2" -D nactors="$ACTORS" -f "$BENCH/append_$1$SUFFIX.sql" "$DB" 2>&1) || {
    echo "$out" >&2
    return 1
  }
  sleep 0.3	# let the postmaster reap the backends
  t1=$(cluster_ticks)
  awk -v d=$((t1 - t0)) -v hz="$HZ" '
    /^number of transactions actually processed/ {n = $NF}
    /^tps = / {tps = $3}
    END {printf "%.0f %.1f\n", tps, d / hz * 1e6 / n}' <<<"$out"
}

# ---------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------

bench_cluster 'custos' <<EOF
shared_buffers = 1GB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
EOF
sql postgres -c "CREATE DATABASE $DB" -c "CREATE DATABASE $BULK"
sql "$DB" -c "SET client_min_messages = warning" -f "$BENCH/setup.sql"
sql "$BULK" -c "SET client_min_messages = warning" -c "CREATE EXTENSION custos CASCADE" \
  -c "SELECT custos.set_taxonomy_mode('open')"
# the sealer worker retries every second until database $DB exists
for ((i = 0; ; i++)); do
  sql "$DB" -c "SELECT 'ok' FROM custos.status() WHERE preloaded AND sealer_pid IS NOT NULL" | grep -q ok && break
  if ((i == 100)); then
    echo "custos is not preloaded or its sealer is not running; see $DIR/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

say "custos benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
  "$(sql postgres -c 'SHOW server_version' | sed 's/ .*//')"
so=$("$PG_CONFIG" --pkglibdir)/custos.so
so_stamp=$(stat -c %Y "$so")
say "custos $(sql "$DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'custos'")," \
  "git $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$TOP" diff --quiet HEAD -- extension sql 2>/dev/null || echo ' (extension/ or sql/ modified)')," \
  "custos.so of $(date -u -d "@$so_stamp" '+%Y-%m-%d %H:%M UTC')"
say "baseline bench_plain indexes: $(sql "$DB" -c "SELECT string_agg(regexp_replace(indexdef, '.* USING ', ''), ', ' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'bench_plain'");" \
  "custos.event_log: $(sql "$DB" -c "SELECT string_agg(regexp_replace(indexdef, '.* USING ', ''), ', ' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'custos' AND tablename = 'event_log'")"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine adds noise)"
say "pgbench: $CLIENTS clients, -M $PROTOCOL, ${SECS}s per run, $ROUNDS rounds, $ACTORS actors per tenant; events for verify: $EVENTS"

want() { [[ " $ONLY " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------
# 1. Append throughput
# ---------------------------------------------------------------------------

if want append; then
  set_sealer on
  # warm-up, not measured: creates the day's data keys of every actor (a
  # running system has them) and fills both tables' first pages
  SECS=$WARMUP pgbench_run plain 8 >/dev/null
  SECS=$WARMUP pgbench_run custos 8 >/dev/null
  for tenants in 1 8; do
    plain=() custos=() plain_cpu=() custos_cpu=() pairs=()
    for ((r = 0; r < ROUNDS; r++)); do
      # alternate the order so drift hits both sides alike
      if ((r % 2 == 0)); then
        p=$(pgbench_run plain $tenants)
        c=$(pgbench_run custos $tenants)
      else
        c=$(pgbench_run custos $tenants)
        p=$(pgbench_run plain $tenants)
      fi
      read -r tp cp <<<"$p"
      read -r tc cc <<<"$c"
      plain+=("$tp") custos+=("$tc") plain_cpu+=("$cp") custos_cpu+=("$cc")
      pairs+=("$(calc %.2f "$tc / $tp")")
    done
    mp=$(median "${plain[@]}")
    mc=$(median "${custos[@]}")
    ratio=$(median "${pairs[@]}")
    mpc=$(median "${plain_cpu[@]}")
    mcc=$(median "${custos_cpu[@]}")
    say ""
    say "== append, $tenants tenant(s): custos.log() vs plain INSERT ($CLIENTS clients, ${SECS}s x $ROUNDS)"
    say "   plain INSERT   tps: ${plain[*]}  median $(calc %.0f "$mp")"
    say "   custos.log()   tps: ${custos[*]}  median $(calc %.0f "$mc")"
    say "   custos/plain per round: ${pairs[*]}"
    say "   ratio $(calc %.2f "$ratio") (median of rounds; of medians $(calc %.2f "$mc / $mp"))" \
      "(target >= 0.85)  $(verdict "$ratio >= 0.85")"
    say "   server CPU per event, us: plain ${plain_cpu[*]} (median $mpc);" \
      "custos ${custos_cpu[*]} (median $mcc); plain/custos $(calc %.2f "$mpc / $mcc")"
    spread=$(for side in "${plain[*]}" "${custos[*]}"; do
      printf '%s\n' $side | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {print hi / lo}'
    done | sort -g | awk '{s = $1} END {printf "%.1f", s}')
    if awk "BEGIN { exit !($spread > 1.5) }"; then
      say "   NOISY: throughput varied ${spread}x across runs (other load on the machine);" \
        "the ratio is not reliable, the CPU per event is steadier"
    fi
  done
fi

# ---------------------------------------------------------------------------
# 2. Sealer throughput and 3. verify speed, on one loaded backlog
# ---------------------------------------------------------------------------

if want sealer || want verify; then
  set_sealer off
  per_chunk=$((EVENTS / CHUNKS / 1000))	# log_batch calls of 1000 events
  ((per_chunk >= 2)) || per_chunk=2
  rates=()
  refs=()
  loaded=0
  say ""
  say "== sealer: custos.seal() of a backlog of $((per_chunk * 1000)) events over 8 tenants, $CHUNKS times"
  for ((c = 1; c <= CHUNKS; c++)); do
    lo=$(sql "$BULK" -c "SELECT watermark FROM custos.status()")
    t0=$(date +%s.%N)
    as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -c 2 -j 2 -t $((per_chunk / 2)) \
      -f "$BENCH/load_batch.sql" "$BULK" >"$DIR/load.log" 2>&1 || {
      cat "$DIR/load.log" >&2
      exit 1
    }
    t1=$(date +%s.%N)
    hi=$(sql "$BULK" -c "SELECT last_value + 1 FROM custos.event_id_seq")
    sql "$BULK" -c CHECKPOINT
    # reference: the rows the sealer reads, in its order (warmed once)
    ref_sql="COPY (SELECT id, tenant, occurred_at, recorded_at, actor_type, category, action,
      resource_type, resource_id, resource_name, target_level, target_name, outcome,
      request_id, access, actor_key_id, subject_key_id, personal FROM custos.event_log
      WHERE id >= $lo AND id < $hi ORDER BY tenant, id) TO '/dev/null'"
    timed "$BULK" "" "$ref_sql" >/dev/null
    ref_ms=$(timed "$BULK" "" "$ref_sql")
    seal_ms=$(timed "$BULK" "$DIR/sealed" "SELECT custos.seal()")
    n=$(cat "$DIR/sealed")
    loaded=$((loaded + n))
    rates+=("$(calc %.0f "$n / ($seal_ms / 1000)")")
    refs+=("$ref_ms")
    say "   backlog $c: loaded $n events in $(calc %.1f "$t1 - $t0")s" \
      "($(calc %.0f "$n / ($t1 - $t0)") events/s via log_batch, 2 clients);" \
      "seal ${seal_ms} ms = ${rates[-1]} events/s; COPY of the same rows ${ref_ms} ms"
  done
  if want sealer; then
    mr=$(median "${rates[@]}")
    say "   seal rate median $(calc %.0f "$mr") events/s (target >= 50000)  $(verdict "$mr >= 50000")"
  fi

  if want verify; then
    sql "$BULK" -c "VACUUM (ANALYZE) custos.event_log" -c "VACUUM (ANALYZE) custos.block" -c CHECKPOINT
    copy_sql="COPY (SELECT * FROM custos.event_log) TO '/dev/null'"
    verify_sql="SELECT tenant, ok, events_checked, blocks_checked, failure FROM custos.verify()"
    timed "$BULK" "" "$copy_sql" >/dev/null	# warm the cache
    copies=()
    verifies=()
    for ((r = 1; r <= VROUNDS; r++)); do
      if ((r % 2)); then
        copies+=("$(timed "$BULK" "" "$copy_sql")")
        verifies+=("$(timed "$BULK" "$DIR/verify.out" "$verify_sql")")
      else
        verifies+=("$(timed "$BULK" "$DIR/verify.out" "$verify_sql")")
        copies+=("$(timed "$BULK" "" "$copy_sql")")
      fi
    done
    checked=$(awk -F'|' '{s += $3} END {print s}' "$DIR/verify.out")
    bad=$(awk -F'|' '$2 != "t"' "$DIR/verify.out")
    mcopy=$(median "${copies[@]}")
    mver=$(median "${verifies[@]}")
    ratio=$(calc %.2f "$mver / $mcopy")
    say ""
    say "== verify: custos.verify() of $checked sealed events vs COPY (SELECT * FROM custos.event_log) TO '/dev/null'"
    say "   COPY           ms: ${copies[*]}  median $mcopy"
    say "   custos.verify  ms: ${verifies[*]}  median $mver  ($(calc %.0f "$checked / ($mver / 1000)") events/s)"
    say "   ratio ${ratio}x COPY time (target <= 2x)  $(verdict "$ratio <= 2")"
    [ -z "$bad" ] || say "   VERIFY FAILED: $bad"
  fi
fi

# ---------------------------------------------------------------------------
# 4. Seal delay under load
# ---------------------------------------------------------------------------

if want delay; then
  set_sealer on
  interval=$(sql "$DB" -c "SHOW custos.seal_interval")
  lo=$(sql "$DB" -c "SELECT coalesce(max(id), 0) + 1 FROM custos.event_log")
  sql "$DB" -c "TRUNCATE bench_probe_result"
  sql "$DB" -c "CALL bench_probe($SECS)" &
  probe_pid=$!
  c=$(pgbench_run custos 8)
  read -r tps _ <<<"$c"
  wait "$probe_pid" || true
  probe_pid=
  # let the sealer drain what is left, then measure
  for ((i = 0; i < 100; i++)); do
    [ "$(sql "$DB" -c "SELECT pending FROM custos.status()")" = 0 ] && break
    sleep 0.1
  done
  read -r n p50 p99 pmax unsealed < <(sql "$DB" -F ' ' -c "
    WITH d AS (
      SELECT extract(epoch FROM b.sealed_at - e.recorded_at) AS s
        FROM custos.block b, unnest(b.event_ids) AS u(id)
        JOIN custos.event_log e USING (id)
       WHERE b.id_hi > $lo AND e.id >= $lo AND e.tenant <> 'probe')
    SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 3),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 3),
           round(max(s)::numeric, 3),
           (SELECT count(*) FROM custos.event_log WHERE id >= $lo AND tenant <> 'probe') - count(*)
      FROM d")
  read -r pn pp50 pp99 ppmax < <(sql "$DB" -F ' ' -c "
    SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_s)::numeric, 3),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY wait_s)::numeric, 3),
           round(max(wait_s)::numeric, 3)
      FROM bench_probe_result")
  say ""
  say "== seal delay: background sealer (seal_interval $interval), $CLIENTS clients appending, 8 tenants, ${SECS}s at $(calc %.0f "$tps") tps"
  say "   sealed_at - recorded_at over $n events: p50 ${p50}s  p99 ${p99}s  max ${pmax}s" \
    "(target p99 < 1s)  $(verdict "$p99 < 1")"
  say "   probe, commit to sealed as a client sees it, $pn events: p50 ${pp50}s  p99 ${pp99}s  max ${ppmax}s"
  [ "$unsealed" = 0 ] || say "   $unsealed events still unsealed 10s after the run"
fi

say ""
[ "$(stat -c %Y "$so")" = "$so_stamp" ] ||
  say "WARNING: custos.so was reinstalled during the run; later results may come from another build"
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "total time $(($(date +%s) - started))s; results also in $RESULTS"
