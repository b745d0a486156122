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
