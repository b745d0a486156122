# bench/common.sh: what the benchmark scripts share.  Sourced after
# tools/common.sh, with DIR, DATA, RESULTS, PORT and DB set.

# bench_cluster [PRELOAD]: a fresh throwaway cluster in $DATA, started.
# Whatever ran there before is stopped and removed, and $RESULTS emptied.
# Every benchmark measures durable commits (fsync and synchronous_commit
# on) with the background sealer running, as in production; settings of
# the benchmark's own (memory, WAL, autovacuum) come on standard input.
bench_cluster() {
  local preload=${1:-custos}
  if [ -f "$DATA/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
  pg_dir "$DIR"
  mkdir -p "$(dirname "$RESULTS")"
  : >"$RESULTS"
  as_pg "$PGBIN/initdb" -D "$DATA" -A trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || {
    cat "$DIR/initdb.log" >&2
    exit 1
  }
  {
    cat <<CONF

# $(basename "$0")
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DIR'
shared_preload_libraries = '$preload'
custos.database = '$DB'
custos.sealer = on
synchronous_commit = on
fsync = on
max_connections = 50
CONF
    cat
  } >>"$DATA/postgresql.conf"
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w start >/dev/null
}

# The reporting helpers every benchmark prints its lines with.
median() {	# median NUMBERS...
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
    if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

calc() { awk "BEGIN { printf \"$1\", $2 }"; }	# calc FORMAT EXPR

say() { echo "$*" | tee -a "$RESULTS"; }

verdict() {	# verdict OK-EXPR: MET or MISSED
  if awk "BEGIN { exit !($1) }"; then echo MET; else echo MISSED; fi
}

# CPU clock ticks the cluster in $DATA has used so far: the postmaster's own
# and its reaped children's (cutime, cstime: backends that have exited),
# plus its live children's (sealer, walwriter, checkpointer ...).
cluster_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$(head -1 "$DATA/postmaster.pid")" '
    { pid = $1; sub(/.*\) /, "") }	# now $2 is the parent, $12.. the times
    pid == pm { s += $12 + $13 + $14 + $15 }
    $2 == pm { s += $12 + $13 }
    END { print s }'
}
HZ=$(getconf CLK_TCK)
