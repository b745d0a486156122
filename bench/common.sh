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
