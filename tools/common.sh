# tools/common.sh: shared settings for the scripts in tools/ and bench/.
# Sourced, not run.

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=${PGBIN:-$($PG_CONFIG --bindir)}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# PostgreSQL refuses to run as root: as root, clusters belong to "postgres".
if [ "$(id -u)" -eq 0 ]; then
  PGUSER_OS=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  PGUSER_OS=$(id -un)
  as_pg() { "$@"; }
fi

# A directory the cluster user may write in.
pg_dir() {
  mkdir -p "$1"
  [ "$(id -u)" -eq 0 ] && chown -R "$PGUSER_OS" "$1"
  return 0
}

# free_loopback_port: a TCP port on 127.0.0.1 that nothing listens on.  Racy
# by nature; a server that then loses the race fails loudly when it binds.
# It is taken below the kernel's ephemeral range: the local ports of
# outgoing connections (the earlier tests leave many in TIME_WAIT) live
# there, nothing listens on them, and yet binding to one fails.
free_loopback_port() {
  local p lo=32768 base=10000 span
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  span=$((lo - base))
  [ "$span" -ge 1000 ] || span=20000
  for _ in $(seq 100); do
    p=$((base + RANDOM % span))
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}

# test_cluster DIR PORT DB [CONF...]: the throwaway cluster of the HTTP and
# browser tests, in DIR/data (socket in DIR, no TCP), custos preloaded for
# DB with the sealer every 100 ms, no fsync; started, DB created, custos
# installed.  CONF: more postgresql.conf lines.  On failure says which step
# failed and which log to read, and returns 1.
test_cluster() {
  local dir=$1 port=$2 db=$3
  shift 3
  as_pg "$PGBIN/initdb" -D "$dir/data" --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { echo "initdb failed (see $dir/initdb.log)"; return 1; }
  {
    printf '\n# %s\n' "$(basename "$0")"
    printf '%s\n' "listen_addresses = ''" "port = $port" "unix_socket_directories = '$dir'" \
      "shared_preload_libraries = 'custos'" "custos.database = '$db'" "custos.sealer = on" \
      "custos.seal_interval = '100ms'" "fsync = off" "synchronous_commit = off" "jit = off" "$@"
  } >>"$dir/data/postgresql.conf"
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null 2>&1 ||
    { echo "the cluster did not start (see $dir/server.log)"; return 1; }
  "$PGBIN/psql" -X -q -h "$dir" -p "$port" -U "$PGUSER_OS" -d postgres -c "CREATE DATABASE $db" >/dev/null 2>"$dir/create.err" &&
    "$PGBIN/psql" -X -q -h "$dir" -p "$port" -U "$PGUSER_OS" -d "$db" \
      -c "CREATE EXTENSION custos CASCADE" >/dev/null 2>>"$dir/create.err" ||
    { echo "CREATE DATABASE or EXTENSION failed: $(cat "$dir/create.err")"; return 1; }
}
