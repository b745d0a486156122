#!/usr/bin/env bash
# bench/privacy.sh: the benchmarks of issue 3 ("Speed", privacy), each printed
# as a ratio against a baseline measured in the same run.
# docs/benchmarks-privacy.md explains each number.
#
#   auth   SELECT custos.authenticate(<personal token>) vs SELECT 1, pgbench
#          8 clients, -M prepared and -M simple; target >= 0.8x
#   read   select-only pgbench on an accounts table, 8 clients: (i) unaudited,
#          (ii) pgaudit.log = 'read', (iii) the table under custos.protect()
#          read by a role mapped to a principal (every query a READ event,
#          queued and appended by the background sealer), and for reference
#          (iv) a plain RLS policy of the same shape without custos; target:
#          custos' ratio (iii)/(i) >= pgaudit's (ii)/(i).  Also READ events
#          recorded vs queries run, and whether the read queue ever filled.
#   query  100 events of one tenant, one action, a time range, newest first,
#          from a log of BENCH_EVENTS sealed events (as many as the time
#          budget allows): as a principal with audit.read (policies on) vs
#          as the table owner (superuser, no policies), through custos.events
#          and straight on custos.event_log; median latency, target <= 1.2x
#
# Measurements alternate baseline and candidate (the machine is shared and
# noisy) and report medians.  Everything runs on a throwaway cluster under
# build/bench-privacy (its own port, unix socket there, no TCP), removed at
# exit except results.txt, profile-read.txt and the explain-*.txt plans.
# Each throughput and latency figure comes with the cluster's CPU time per
# transaction, which foreign load on the machine disturbs much less.  Runs as
# root (the cluster then belongs to "postgres") or as an ordinary user.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS   duration of each throughput pgbench run [15]
#   BENCH_ROUNDS    rounds of each throughput comparison [3]
#   BENCH_QUERY_SECONDS  duration of each latency run of the query benchmark [5]
#   BENCH_QUERY_ROUNDS   owner/principal rounds per query variant [6]
#   BENCH_CLIENTS   pgbench clients of the auth and read benchmarks [8]
#   BENCH_EVENTS    events of the query benchmark's log [10000000]
#   BENCH_BUDGET    seconds the whole run should take; the event load stops
#                   (at a 500,000-event chunk boundary) when the rest would
#                   overrun it, and the size reached is reported; 0: load all
#                   BENCH_EVENTS whatever it takes [720]
#   BENCH_LOADERS   parallel custos.log_batch() sessions loading the log [2]
#   BENCH_QUERY_PROTOCOL  pgbench -M of the query benchmark: simple (literal
#                   values, a custom plan per query) or prepared [simple]
#   BENCH_ACCOUNTS  rows of the accounts table (over 4 tenants) [1000000]
#   BENCH_ONLY      subset of "auth read query" [all]
#   BENCH_PROFILE   perf profile of one extra custos read run: 1 always,
#                   0 never, auto when custos misses the read target [auto]
#   BENCH_PORT      port of the throwaway cluster [54339]
#   BENCH_KEEP=1    leave the cluster running at exit (for profiling)
set -euo pipefail
source "$(dirname "$0")/../tools/common.sh"
source "$(dirname "$0")/common.sh"

SECS=${BENCH_SECONDS:-15}
QSECS=${BENCH_QUERY_SECONDS:-5}
QROUNDS=${BENCH_QUERY_ROUNDS:-6}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-8}
EVENTS=${BENCH_EVENTS:-10000000}
BUDGET=${BENCH_BUDGET:-720}
LOADERS=${BENCH_LOADERS:-2}
QPROTOCOL=${BENCH_QUERY_PROTOCOL:-simple}
ACCOUNTS=${BENCH_ACCOUNTS:-1000000}
ONLY=${BENCH_ONLY:-auth read query}
PROFILE=${BENCH_PROFILE:-auto}
PORT=${BENCH_PORT:-54339}
BENCH=$TOP/bench
DIR=$TOP/build/bench-privacy
DATA=$DIR/data
RESULTS=$DIR/results.txt
DB=privacy		# custos.database: the background sealer runs here

started=$(date +%s)

cleanup() {
  local rc=$?
  if [ -z "${BENCH_KEEP:-}" ]; then
    [ -f "$DATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    # keep the results, the profile and the plans; drop the cluster and the logs
    find "$DIR" -mindepth 1 -maxdepth 1 ! -name results.txt ! -name 'profile-*.txt' ! -name 'explain-*.txt' \
      -exec rm -rf {} + 2>/dev/null || true
  else
    echo "cluster kept: psql -h $DIR -p $PORT $DB"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$TOP"	# a directory the cluster user can read

sql() {	# sql [-U ROLE] [psql args...]: psql on the benchmark database, no ~/.psqlrc
  as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -d "$DB" "$@"
}

want() { [[ " $ONLY " == *" $1 "* ]]; }

cpu_ticks() {	# cpu_ticks PID: user + system CPU of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# CPU the cluster has used, in clock ticks: exited backends (reaped by the
# postmaster: its cutime + cstime) plus the live processes (sealer, WAL
# writer, ...).  CPU per transaction varies much less than throughput with
# what else the machine is running.
server_ticks() {
  local pm c
  pm=$(head -1 "$DATA/postmaster.pid")
  {
    awk '{print $16 + $17}' "/proc/$pm/stat"
    for c in $(pgrep -P "$pm"); do cpu_ticks "$c"; done
  } | awk '{s += $1} END {print s}'
}

# One pgbench run; its full output goes to $DIR/pgbench-NAME.out (appended).
# Prints "tps transactions aborted_clients queue_full_errors cpu_us", cpu_us
# being the cluster's CPU time per transaction in microseconds.
pgbench_run() {	# pgbench_run NAME ROLE pgbench-args...
  local name=$1 role=$2 out c0 c1
  shift 2
  c0=$(server_ticks)
  out=$(as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -U "$role" "$@" "$DB" 2>&1) || true
  sleep 0.3	# the postmaster reaps the run's backends
  c1=$(server_ticks)
  printf '%s\n' "--- $(date -u +%T) $*" "$out" >>"$DIR/pgbench-$name.out"
  if ! grep -q '^tps = ' <<<"$out"; then
    echo "pgbench $name failed:" >&2
    echo "$out" | tail -20 >&2
    return 1
  fi
  awk -v ticks=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
       /^tps = / {tps = $3}
       /^number of transactions actually processed:/ {n = $6; sub(/\/.*/, "", n)}
       / aborted in command / {ab++}
       /read audit queue is full/ {qf++}
       END {printf "%.0f %d %d %d %.1f\n", tps, n, ab, qf, n ? ticks * 1e6 / hz / n : 0}' <<<"$out"
}

# Median and 95th percentile (ms) of the per-transaction latencies pgbench
# logged under prefix $1 (-l --log-prefix).
latency_stats() {	# latency_stats PREFIX
  cat "$1".* | awk '{print $3 / 1000}' | sort -g | awk '{a[NR]=$1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    p = a[int(NR * 0.95 + 0.5)]
    printf "%.3f %.3f %d\n", m, p, NR }'
  rm -f "$1".*
}

# ---------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------

bench_cluster 'custos,pgaudit' <<EOF
shared_buffers = 1GB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
# the loaded log is analyzed explicitly; a vacuum of it starting in the
# middle of a latency run would only add noise
autovacuum = off
EOF
as_pg "$PGBIN/psql" -X -q -h "$DIR" -p "$PORT" -d postgres -c "CREATE DATABASE $DB"
sql -v accounts="$ACCOUNTS" -f "$BENCH/privacy_setup.sql" >/dev/null
# the sealer worker retries every second until database $DB exists
for ((i = 0; ; i++)); do
  sql -c "SELECT 'ok' FROM custos.status() WHERE preloaded AND sealer_pid IS NOT NULL" | grep -q ok && break
  if ((i == 100)); then
    echo "custos is not preloaded or its sealer is not running; see $DIR/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

so=$(as_pg "$PGBIN/psql" -X -At -h "$DIR" -p "$PORT" -d "$DB" -c "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")/custos.so
rev=$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$TOP" status --porcelain -- extension sql 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
say "custos privacy benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
  "PostgreSQL $(sql -c 'SHOW server_version' | sed 's/ .*//')"
say "extension $(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'custos'")," \
  "source at $rev${dirty:+ with uncommitted changes to $dirty}, installed custos.so md5 $(md5sum "$so" | cut -c1-12)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine adds noise)"
say "pgbench: $CLIENTS clients (-j 2), ${SECS}s per throughput run, $ROUNDS rounds;" \
  "${QSECS}s per latency run, $QROUNDS rounds; medians"

# ---------------------------------------------------------------------------
# 1. authenticate vs SELECT 1
# ---------------------------------------------------------------------------

if want auth; then
  alice=$(sql -c "SELECT id FROM custos.principal WHERE name = 'alice'")
  token=$(sql -c "SELECT token FROM custos.issue_token('$alice', 'personal', '30 days', 'bench')")
  printf '%s\n' "-- generated by bench/privacy.sh: a personal token of a principal of cust-01" \
    "SELECT custos.authenticate('$token');" >"$DIR/auth.sql"
  [ "$(id -u)" -eq 0 ] && chown "$PGUSER_OS" "$DIR/auth.sql"
  # the call works and binds the principal for its transaction
  [ "$(sql -U bench_gateway -c "SELECT custos.authenticate('$token')->>'principal' = '$alice'")" = t ] || {
    echo "custos.authenticate() does not accept the benchmark token" >&2
    exit 1
  }
  for mode in prepared simple; do
    base=()
    cand=()
    cbase=()
    ccand=()
    args=(-c "$CLIENTS" -j 2 -T "$SECS" -M "$mode")
    pgbench_run auth bench_gateway "${args[@]}" -T 3 -f "$DIR/auth.sql" >/dev/null	# warm-up
    for ((r = 1; r <= ROUNDS; r++)); do
      if ((r % 2)); then sides=(base cand); else sides=(cand base); fi
      for side in "${sides[@]}"; do
        if [ "$side" = base ]; then
          read -r t _ _ _ c < <(pgbench_run auth bench_gateway "${args[@]}" -f "$BENCH/privacy_select1.sql")
          [ -n "$t" ] || exit 1
          base+=("$t")
          cbase+=("$c")
        else
          read -r t _ _ _ c < <(pgbench_run auth bench_gateway "${args[@]}" -f "$DIR/auth.sql")
          [ -n "$t" ] || exit 1
          cand+=("$t")
          ccand+=("$c")
        fi
      done
    done
    mb=$(median "${base[@]}")
    mc=$(median "${cand[@]}")
    ratio=$(calc %.3f "$mc / $mb")
    pairs=()
    for ((r = 0; r < ROUNDS; r++)); do pairs+=("$(calc %.2f "${cand[r]} / ${base[r]}")"); done
    say ""
    say "== authenticate, -M $mode: SELECT custos.authenticate(token) vs SELECT 1 ($CLIENTS clients, ${SECS}s x $ROUNDS)"
    say "   SELECT 1              tps: ${base[*]}  median $(calc %.0f "$mb");" \
      "server CPU us/transaction: ${cbase[*]}  median $(median "${cbase[@]}")"
    say "   custos.authenticate   tps: ${cand[*]}  median $(calc %.0f "$mc");" \
      "server CPU us/transaction: ${ccand[*]}  median $(median "${ccand[@]}")"
    say "   throughput: ratio of medians $ratio (target >= 0.8)  $(verdict "$ratio >= 0.8");" \
      "per round: ${pairs[*]} (median $(median "${pairs[@]}"))"
    cr=$(calc %.3f "$(median "${cbase[@]}") / $(median "${ccand[@]}")")
    say "   server CPU per transaction: SELECT 1 / authenticate = $cr  $(verdict "$cr >= 0.8")"
  done
fi

# ---------------------------------------------------------------------------
# 2. read auditing vs pgaudit
# ---------------------------------------------------------------------------

# Drains the read queue and seals (custos.seal()), then counts the READ
# events of relation $2 with an id above $1: "events queries", the queries
# from metadata.queries where the drain merges records, else one per event.
read_events() {	# read_events MIN_ID RELATION
  sql -c "SELECT custos.seal()" >/dev/null
  sql -F ' ' -c "SELECT count(*), coalesce(sum(coalesce((metadata->>'queries')::bigint, 1)), 0)
                   FROM custos.events
                  WHERE id > $1 AND action = 'READ' AND resource_id = '$2'"
}
last_id() { sql -c "SELECT custos.seal()" >/dev/null; sql -c "SELECT coalesce(max(id), 0) FROM custos.event_log"; }

if want read; then
  naid=$((ACCOUNTS / 4))	# t1's rows
  args=(-c "$CLIENTS" -j 2 -T "$SECS" -M prepared -D "naid=$naid")
  declare -A tps=() cpu=() name=()
  name[i]="unaudited          "
  name[ii]="pgaudit.log = read "
  name[iii]="custos protect()   "
  name[iv]="plain RLS policy   "
  run_variant() {	# run_variant i|ii|iii [extra pgbench args]
    local v=$1
    shift
    case $v in
      i) pgbench_run read bench_plain "${args[@]}" "$@" -f "$BENCH/privacy_accounts_open.sql" ;;
      ii) pgbench_run read bench_pgaudit "${args[@]}" "$@" -f "$BENCH/privacy_accounts_open.sql" ;;
      iii) pgbench_run read bench_reader "${args[@]}" "$@" -f "$BENCH/privacy_accounts.sql" ;;
      iv) pgbench_run read bench_rls "${args[@]}" "$@" -f "$BENCH/privacy_accounts_rls.sql" ;;
    esac
  }
  # the mapped role reads t1's rows only, and each read is queued
  [ "$(sql -U bench_reader -c "SELECT count(DISTINCT tenant) || ' ' || count(*) FROM bench_accounts WHERE aid <= 10 OR aid > $ACCOUNTS - 10")" = "1 10" ] || {
    echo "bench_reader does not see exactly t1's rows" >&2
    exit 1
  }
  # warm-up, not measured: both tables' pages, the day's data keys of the
  # READ events, the sealer's plans
  for v in i ii iii iv; do run_variant "$v" -T 3 >/dev/null; done
  id0=$(last_id)
  blocks0=$(sql -c "SELECT count(*) FROM custos.block WHERE tenant = 't1'")
  sealer=$(sql -c "SELECT sealer_pid FROM custos.status()")
  audit0=$(grep -c 'AUDIT: SESSION' "$DIR/server.log" || true)
  ran=0
  ran_ii=0
  aborted=0
  qfull=0
  sealer_ticks=0
  order=(i ii iii iv)
  for ((r = 1; r <= ROUNDS; r++)); do
    for v in "${order[@]}"; do
      s0=$(cpu_ticks "$sealer")
      read -r t n ab qf c < <(run_variant "$v")
      [ -n "$t" ] || exit 1
      tps[$v]="${tps[$v]:-} $t"
      cpu[$v]="${cpu[$v]:-} $c"
      case $v in
        ii) ran_ii=$((ran_ii + n)) ;;
        iii)
          ran=$((ran + n))
          aborted=$((aborted + ab))
          qfull=$((qfull + qf))
          sealer_ticks=$((sealer_ticks + $(cpu_ticks "$sealer") - s0))
          ;;
      esac
    done
    order=("${order[@]:1}" "${order[0]}")	# rotate: each variant runs first once
  done
  read -r ev q < <(read_events "$id0" public.bench_accounts)
  blocks=$(($(sql -c "SELECT count(*) FROM custos.block WHERE tenant = 't1'") - blocks0))
  audit=$(($(grep -c 'AUDIT: SESSION' "$DIR/server.log" || true) - audit0))
  say ""
  say "== read auditing: SELECT abalance FROM accounts WHERE aid = :aid, $ACCOUNTS rows over 4 tenants," \
    "t1's $naid, $CLIENTS clients, -M prepared, ${SECS}s x $ROUNDS"
  declare -A med=() cmed=()
  for v in i ii iii iv; do
    # shellcheck disable=SC2086
    med[$v]=$(median ${tps[$v]})
    # shellcheck disable=SC2086
    cmed[$v]=$(median ${cpu[$v]})
    say "   (${v})$(printf '%*s' $((4 - ${#v})) '')${name[$v]} tps:${tps[$v]}  median $(calc %.0f "${med[$v]}");" \
      "server CPU us/query:${cpu[$v]}  median ${cmed[$v]}"
  done
  rp=$(calc %.3f "${med[ii]} / ${med[i]}")
  rc=$(calc %.3f "${med[iii]} / ${med[i]}")
  rr=$(calc %.3f "${med[iv]} / ${med[i]}")
  say "   pgaudit (ii)/(i) = $rp   custos (iii)/(i) = $rc   (target: custos >= pgaudit)  $(verdict "$rc >= $rp")"
  say "   for reference, row-level security alone (iv)/(i) = $rr"
  cp_=$(calc %.3f "${cmed[i]} / ${cmed[ii]}")
  cc_=$(calc %.3f "${cmed[i]} / ${cmed[iii]}")
  say "   server CPU per query, (i)/(x): pgaudit $cp_, custos $cc_, plain RLS $(calc %.3f "${cmed[i]} / ${cmed[iv]}")" \
    "(target: custos >= pgaudit)  $(verdict "$cc_ >= $cp_")"
  say "   custos runs: $ran queries; READ events recorded for them: $ev events covering" \
    "$q queries ($(verdict "$q == $ran" | sed 's/MET/all recorded/; s/MISSED/MISMATCH/'));" \
    "clients aborted: $aborted; \"read audit queue is full\" errors: $qfull"
  say "   background sealer during the custos runs: $(calc %.0f "$sealer_ticks * 100 / $(getconf CLK_TCK) / ($SECS * $ROUNDS)")% of a core," \
    "$blocks blocks of t1 sealed ($(calc %.0f "$blocks / ($SECS * $ROUNDS)") rounds/s with READ events)"
  say "   pgaudit runs: $ran_ii queries, $audit \"AUDIT: SESSION\" lines in the server log"

  # Where the time goes: one more custos run under perf (root only)
  if [ "$PROFILE" = 1 ] || { [ "$PROFILE" = auto ] && [ "$(verdict "$rc >= $rp")" = MISSED ]; }; then
    if [ "$(id -u)" -eq 0 ] && command -v perf >/dev/null &&
      perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
      perf record -a -g -e cpu-clock -F 999 -o "$DIR/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
      perf_pid=$!
      run_variant iii >"$DIR/profile-run.out" &
      run_pid=$!
      sleep 3
      # this cluster's backends (the other processes on the machine are not ours)
      backends=$(pgrep -d, -P "$(head -1 "$DATA/postmaster.pid")" -f "bench_reader" || true)
      wait "$run_pid" || true
      read -r t n ab qf c <"$DIR/profile-run.out"
      wait "$perf_pid" || true
      prof=$DIR/profile-read.txt
      rep() {	# rep PERF-REPORT-ARGS...: top lines, unresolved addresses left out
        perf report -i "$DIR/perf.data" --stdio -g none "$@" 2>/dev/null |
          grep -v -e '^#' -e '^$' -e '\] 0x0000' | head -"${LINES_MAX:-45}" || true
      }
      {
        echo "perf record -a -g -e cpu-clock during one custos read run ($t tps)"
        echo "sealer pid $sealer; backends $backends"
        echo
        echo "## CPU by process, whole machine (percent of all samples)"
        LINES_MAX=20 rep --no-children --sort pid
        echo
        echo "## backends of bench_reader: inclusive (children) by symbol"
        LINES_MAX=70 rep --children --pid "$backends" --sort sym
        echo
        echo "## backends of bench_reader: self by symbol"
        LINES_MAX=30 rep --no-children --pid "$backends" --sort dso,sym
        echo
        echo "## sealer: inclusive (children) by symbol"
        LINES_MAX=50 rep --children --pid "$sealer" --sort sym
      } >"$prof"
      say "   profile of one more custos run ($t tps): $prof"
    else
      say "   (no profile: needs root and a working perf)"
    fi
  fi
fi

# ---------------------------------------------------------------------------
# 3. Filtered query latency, policies on vs table owner
# ---------------------------------------------------------------------------

if want query; then
  # Load through custos.log_batch() with the background sealer on (it seals
  # while the loaders append), in chunks of 500 calls of 1000 events, until
  # BENCH_EVENTS or the time left for the latency runs is reached.
  chunk=500
  total_calls=$((EVENTS / 1000))
  done_calls=0
  reserve=$((4 * QROUNDS * (QSECS + 1) + 60))	# latency runs, warm-ups, plans, final seal
  t0=$(date +%s.%N)
  while ((done_calls < total_calls)); do
    n=$((total_calls - done_calls < chunk ? total_calls - done_calls : chunk))
    per=$(((n + LOADERS - 1) / LOADERS))
    c0=$(date +%s)
    as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -c "$LOADERS" -j "$LOADERS" -t "$per" \
      -f "$BENCH/privacy_load.sql" "$DB" >"$DIR/load.log" 2>&1 || {
      cat "$DIR/load.log" >&2
      exit 1
    }
    done_calls=$((done_calls + per * LOADERS))
    now=$(date +%s)
    # stop when one more chunk would leave less than the reserve
    if ((BUDGET > 0 && now + (now - c0) + reserve > started + BUDGET)); then
      break
    fi
  done
  t1=$(date +%s.%N)
  sql -c "SELECT custos.seal()" >/dev/null
  t2=$(date +%s.%N)
  sql -c "ANALYZE custos.event_log" -c "ANALYZE custos.block" -c "ANALYZE custos.data_key" -c CHECKPOINT
  t3=$(date +%s.%N)
  loaded=$(sql -c "SELECT count(*) FROM custos.event_log WHERE tenant LIKE 'cust-%'")
  size=$(sql -c "SELECT pg_size_pretty(pg_total_relation_size('custos.event_log'))")
  say ""
  say "== filtered query: 100 events of cust-07, action UPDATE, a 30-day window ending 0-59 days ago," \
    "ORDER BY occurred_at DESC LIMIT 100; 1 client, -M $QPROTOCOL, ${QSECS}s x $QROUNDS per side"
  say "   log: $loaded events ($size with indexes) over 20 tenants under one reseller, 90 days, 5 actions;" \
    "loaded in $(calc %.0f "$t1 - $t0")s ($(calc %.0f "$loaded / ($t1 - $t0)") events/s, $LOADERS log_batch sessions," \
    "background sealer sealing meanwhile), rest sealed in $(calc %.1f "$t2 - $t1")s, analyzed in $(calc %.0f "$t3 - $t2")s"
  if ((loaded < EVENTS)); then
    say "   NOTE: BENCH_EVENTS=$EVENTS asked; the time budget (BENCH_BUDGET=$BUDGET s) allowed $loaded." \
      "BENCH_ONLY=query BENCH_BUDGET=0 loads them all."
  fi
  all_sealed=$(sql -c "SELECT pending FROM custos.status()")
  [ "$all_sealed" = 0 ] || say "   NOTE: $all_sealed events unsealed after custos.seal()"
  matches=$(sql -c "SELECT count(*) FROM custos.event_log WHERE tenant = 'cust-07' AND action = 'UPDATE'
                     AND occurred_at >= now() - interval '30 days'")
  say "   events matching the 30-day window ending now, before the LIMIT: $matches"
  # the principal's view: all 21 tenants, the 100 rows, decrypted
  check=$(sql -U bench_council -c "SELECT count(*), count(*) FILTER (WHERE personal_data = 'clear')
      FROM (SELECT * FROM custos.events WHERE tenant = 'cust-07' AND action = 'UPDATE'
             AND occurred_at >= now() - interval '30 days' ORDER BY occurred_at DESC LIMIT 100) s")
  [ "$check" = "100|100" ] || {
    echo "the works council does not read 100 clear events of cust-07 ($check)" >&2
    exit 1
  }
  for f in events log; do
    for who in bench_council postgres; do
      sql -U "$who" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)
        SELECT * FROM custos.$([ $f = events ] && echo events || echo event_log)
         WHERE tenant = 'cust-07' AND action = 'UPDATE'
           AND occurred_at >= now() - make_interval(days => 40)
           AND occurred_at < now() - make_interval(days => 10)
         ORDER BY occurred_at DESC LIMIT 100" >"$DIR/explain-$f-$who.txt" 2>&1 || true
    done
  done
  for f in events log; do
    for who in bench_council postgres; do	# warm-up
      as_pg "$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -U "$who" -c 1 -j 1 -T 2 -M "$QPROTOCOL" \
        -f "$BENCH/privacy_query_$f.sql" "$DB" >/dev/null 2>&1
    done
  done
  id0=$(last_id)
  declare -A lat=() p95=() qcpu=()
  council_tx=0
  for f in events log; do
    for ((r = 1; r <= QROUNDS; r++)); do
      if ((r % 2)); then whos=(postgres bench_council); else whos=(bench_council postgres); fi
      for who in "${whos[@]}"; do
        pfx=$DIR/lat-$f-$who
        read -r _ _ _ _ c < <(pgbench_run query "$who" -c 1 -j 1 -T "$QSECS" -M "$QPROTOCOL" -l --log-prefix="$pfx" \
          -f "$BENCH/privacy_query_$f.sql")
        [ -n "$c" ] || exit 1
        qcpu[$f-$who]="${qcpu[$f-$who]:-} $(calc %.3f "$c / 1000")"
        read -r m p n < <(latency_stats "$pfx")
        lat[$f-$who]="${lat[$f-$who]:-} $m"
        p95[$f-$who]="${p95[$f-$who]:-} $p"
        [ "$who" = bench_council ] && council_tx=$((council_tx + n))
      done
    done
  done
  read -r ev q < <(read_events "$id0" custos.event_log)
  for f in events log; do
    # shellcheck disable=SC2086
    {
      mo=$(median ${lat[$f-postgres]})
      mp=$(median ${lat[$f-bench_council]})
      po=$(median ${p95[$f-postgres]})
      pp=$(median ${p95[$f-bench_council]})
    }
    ratio=$(calc %.2f "$mp / $mo")
    read -ra lo <<<"${lat[$f-postgres]}"
    read -ra lp <<<"${lat[$f-bench_council]}"
    pairs=()
    for ((r = 0; r < QROUNDS; r++)); do pairs+=("$(calc %.2f "${lp[r]} / ${lo[r]}")"); done
    say "   custos.$([ $f = events ] && echo 'events   ' || echo 'event_log'): table owner (superuser, no policies) median ms:${lat[$f-postgres]}  -> $mo (p95 $po)"
    say "                     principal with audit.read (policies on) median ms:${lat[$f-bench_council]}  -> $mp (p95 $pp)"
    # shellcheck disable=SC2086
    {
      co=$(median ${qcpu[$f-postgres]})
      cp=$(median ${qcpu[$f-bench_council]})
    }
    cratio=$(calc %.2f "$cp / $co")
    if [ $f = events ]; then
      say "                     latency: ratio of medians ${ratio}x (target <= 1.2x)  $(verdict "$ratio <= 1.2");" \
        "per round: ${pairs[*]} (median $(median "${pairs[@]}"))"
      say "                     server CPU ms/query: owner${qcpu[$f-postgres]} (median $co), principal${qcpu[$f-bench_council]}" \
        "(median $cp): ${cratio}x  $(verdict "$cratio <= 1.2")"
    else
      say "                     latency: ratio of medians ${ratio}x (for information); per round: ${pairs[*]} (median $(median "${pairs[@]}"))"
      say "                     server CPU ms/query: owner${qcpu[$f-postgres]} (median $co), principal${qcpu[$f-bench_council]}" \
        "(median $cp): ${cratio}x"
    fi
  done
  say "   principal's queries: $council_tx; AUDIT_LOG READ events appended for them (sealer on):" \
    "$ev events covering $q queries"
  for f in events log; do
    for who in postgres bench_council; do
      say "   plan, custos.$([ $f = events ] && echo events || echo event_log) as $who: $(grep -o -m1 -E '(Index Scan Backward|Index Scan|Index Only Scan|Bitmap Heap Scan|Seq Scan) (using [a-z_]+ )?on event_log' \
        "$DIR/explain-$f-$who.txt" || echo '?')$(grep -q 'Sort Method' "$DIR/explain-$f-$who.txt" && echo ', then Sort' || true)" \
        "($(grep -o 'Execution Time: .*' "$DIR/explain-$f-$who.txt" || echo '?'))"
    done
  done
  say "   plans: $DIR/explain-*.txt"
fi

say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "total time $(($(date +%s) - started))s; results also in $RESULTS"
