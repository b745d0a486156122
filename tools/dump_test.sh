#!/usr/bin/env bash
# tools/dump_test.sh DIR: pg_dump/pg_restore round trip of custos.
#
# Starts a cluster in DIR (custos preloaded, background sealer on, working in
# database "src"), appends a few hundred events of three tenants with actors,
# subjects and personal fields, seals them and keeps, per tenant, a digest,
# and a checksum of every column of custos.events (personal fields
# decrypted).  Then dumps "src" with pg_dump -Fc and restores it into a new
# database "dst" with the procedure of docs/operations.md ("Backup and
# restore").  The background sealer works in "src" only, so it cannot touch
# "dst" during the restore.  In "dst":
#   - custos.verify() is ok for every tenant, and every kept digest verifies;
#   - custos.events has the same checksum: every event, chain position and
#     decrypted personal field is back, so the installation secret and the
#     data keys survived;
#   - the installation secret in force is the source's, and an append for a
#     known actor finds that actor's restored day key;
#   - the watermark and id sequence carried over: a new event appends,
#     custos.seal() seals exactly it, and the chain still verifies, against
#     the kept digests too.
# Prints a summary; exits 0 only if every check passed.
set -uo pipefail
source "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
TENANTS=3
EVENTS=300				# in all, spread over the tenants
WAIT=30					# bound, in seconds, of every wait for the cluster

pg_dir "$1"
DIR=$(cd "$1" && pwd)
DATA=$DIR/data
# no TCP (listen_addresses = ''): the port only names the socket in DIR
PORT=$((5600 + RANDOM % 300))
FAILURES=()

say() { echo "dump test: $*"; }
fail() { FAILURES+=("$*"); say "FAIL: $*"; }
die() { fail "$*"; exit 1; }

# psql as the cluster's superuser over the socket in DIR: sql DB [psql args]
sql() {
  local db=$1
  shift
  "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" \
    -U "$PGUSER_OS" -d "$db" "$@"
}

# pids of the processes of this cluster: postgres chdirs to its data directory
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
  if [ -f "$DATA/postmaster.pid" ] && kill -0 "$(head -1 "$DATA/postmaster.pid")" 2>/dev/null; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t "$WAIT" stop >/dev/null 2>&1 ||
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t "$WAIT" stop >/dev/null 2>&1
  fi
  for p in $(cluster_pids); do kill -9 "$p" 2>/dev/null; done
  if [ $rc -eq 0 ]; then
    rm -rf "$DATA" "$DIR"/src.dump
  else
    say "FAILED; logs, dump and data kept in $DIR"
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
rm -rf "$DATA" "$DIR"/*.log "$DIR"/*.err "$DIR"/src.dump
pg_dir "$DIR"

as_pg "$PGBIN/initdb" -D "$DATA" --auth=trust --no-sync -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1 ||
  die "initdb failed (see $DIR/initdb.log)"
cat >>"$DATA/postgresql.conf" <<EOF

# tools/dump_test.sh
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'custos'
custos.database = 'src'
custos.sealer = on
custos.seal_interval = '50ms'
fsync = off
EOF
pg_dir "$DIR"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t "$WAIT" start >/dev/null 2>&1 ||
  die "the cluster did not start (see $DIR/server.log)"

# ---------------------------------------------------------------------------
# the source: events of three tenants, sealed, digests and a checksum kept
# ---------------------------------------------------------------------------
sql postgres -c "CREATE DATABASE src" || die "CREATE DATABASE src failed"
sql src -c "CREATE EXTENSION custos CASCADE" 2>"$DIR/create.err" ||
  die "CREATE EXTENSION failed: $(cat "$DIR/create.err")"

# Every column of custos.events, personal fields decrypted, in id order.
CHECKSUM="SELECT count(*) || ' ' || md5(string_agg(e::text, E'\n' ORDER BY e.id)) FROM custos.events e"

sql src >/dev/null 2>"$DIR/append.err" <<EOF || die "appending to src failed: $(head -3 "$DIR/append.err")"
SELECT count(custos.log(jsonb_build_object(
         'tenant', 'dump-' || n % $TENANTS,
         'action', (ARRAY['LOGIN', 'UPDATE', 'READ', 'EXPORT'])[1 + n % 4],
         'category', 'user',
         'resource_type', 'USER', 'resource_id', n,
         'actor', 'u-' || n % 7,
         'actor_name', 'Person ' || n % 7,
         'source_ip', '198.51.100.' || n % 250,
         'user_agent', 'agent/' || n % 3,
         'description', 'event number ' || n || ' with ümlauts',
         'new_state', jsonb_build_object('n', n),
         'metadata', jsonb_build_array(n, 'x'))
         || CASE WHEN n % 3 = 0 THEN jsonb_build_object('subject', 's-' || n % 11) ELSE '{}' END))
  FROM generate_series(1, $EVENTS - 10) n;
SELECT count(*) FROM custos.log_batch((
  SELECT jsonb_agg(jsonb_build_object('tenant', 'dump-' || n % $TENANTS, 'action', 'IMPORT',
                                      'actor', 'u-' || n % 7, 'subject', 's-' || n,
                                      'previous_state', jsonb_build_object('v', n)))
    FROM generate_series(1, 10) n));
EOF
sealed=$(sql src -c "SELECT custos.seal()" 2>&1)
[[ "$sealed" =~ ^[0-9]+$ ]] || die "custos.seal() in src failed: $sealed"

src_state=$(sql src -c "SELECT count(*), count(*) FILTER (WHERE ok), coalesce(sum(pending), 0), coalesce(sum(size), 0)
                          FROM custos.verify()" 2>&1)
IFS='|' read -r n_tenants n_ok n_pending n_size <<<"$src_state"
[[ "$n_tenants" =~ ^[0-9]+$ ]] || die "custos.verify() in src failed: $src_state"
[ "$n_tenants" -eq $TENANTS ] && [ "$n_ok" -eq $TENANTS ] && [ "$n_pending" -eq 0 ] && [ "$n_size" -eq $EVENTS ] ||
  die "src before the dump: $n_ok of $n_tenants tenants ok, $n_pending pending, $n_size sealed (want $TENANTS tenants, $EVENTS events)"
sql src -c "SELECT custos.digest(tenant) FROM (SELECT DISTINCT tenant FROM custos.event_log) t ORDER BY 1" \
  >"$DIR/digests.jsonl" 2>"$DIR/digest.err" || die "custos.digest() failed: $(cat "$DIR/digest.err")"
[ "$(wc -l <"$DIR/digests.jsonl")" -eq $TENANTS ] || die "expected $TENANTS digests, got $(wc -l <"$DIR/digests.jsonl")"
src_sum=$(sql src -c "$CHECKSUM" 2>&1) || die "reading custos.events in src failed: $src_sum"
src_status=$(sql src -c "SELECT watermark, sealed_total FROM custos.status()")
src_secret=$(sql src -c "SELECT md5(secret) FROM custos.installation ORDER BY created_at, secret LIMIT 1")
src_keys=$(sql src -c "SELECT count(*) FROM custos.data_key")
src_size_1=$(sql src -c "SELECT size FROM custos.verify('dump-1')")

# ---------------------------------------------------------------------------
# dump, and restore into a new database as docs/operations.md says
# ---------------------------------------------------------------------------
"$PGBIN/pg_dump" -h "$DIR" -p "$PORT" -U "$PGUSER_OS" -Fc -d src -f "$DIR/src.dump" 2>"$DIR/dump.err" ||
  die "pg_dump failed: $(head -3 "$DIR/dump.err")"
"$PGBIN/createdb" -h "$DIR" -p "$PORT" -U "$PGUSER_OS" -E UTF8 -T template0 dst 2>"$DIR/createdb.err" ||
  die "createdb dst failed: $(cat "$DIR/createdb.err")"
# the guard's triggers refuse the restore's COPY: skip them for this session
PGOPTIONS='-c session_replication_role=replica' \
  "$PGBIN/pg_restore" -h "$DIR" -p "$PORT" -U "$PGUSER_OS" -d dst \
  --single-transaction --exit-on-error "$DIR/src.dump" 2>"$DIR/restore.err" ||
  die "pg_restore failed: $(head -5 "$DIR/restore.err")"
[ -s "$DIR/restore.err" ] && say "pg_restore said: $(head -5 "$DIR/restore.err")"

# ---------------------------------------------------------------------------
# checks in the restored database
# ---------------------------------------------------------------------------
dst_state=$(sql dst -c "SELECT count(*), count(*) FILTER (WHERE ok), coalesce(sum(pending), 0), coalesce(sum(size), 0),
                               coalesce(string_agg(tenant || ': ' || failure || ' ' || detail, '; ') FILTER (WHERE NOT ok), '')
                          FROM custos.verify()" 2>&1)
IFS='|' read -r n_tenants n_ok n_pending n_size failures <<<"$dst_state"
if [[ "$n_tenants" =~ ^[0-9]+$ ]]; then
  [ "$n_tenants" -eq $TENANTS ] || fail "verify in dst saw $n_tenants tenants, not $TENANTS"
  [ "$n_ok" -eq "$n_tenants" ] || fail "verify in dst failed for $((n_tenants - n_ok)) tenants: $failures"
  [ "$n_pending" -eq 0 ] || fail "$n_pending events pending in dst"
  [ "$n_size" -eq $EVENTS ] || fail "the chains in dst hold $n_size events, not $EVENTS"
else
  fail "custos.verify() in dst failed: $dst_state"
fi

# check_digests WHEN: every kept digest must verify in dst; sets digests_ok
check_digests() {
  local d out
  digests_ok=0
  while IFS= read -r d; do
    out=$(sql dst -v kept="$d" 2>&1 <<'EOF'
SELECT ok, coalesce(failure, '') || ' ' || coalesce(detail, '') FROM custos.verify(digest => :'kept');
EOF
)
    if [ "${out%%|*}" = "t" ]; then
      digests_ok=$((digests_ok + 1))
    else
      fail "$1: a kept digest does not verify in dst: $d: $out"
    fi
  done <"$DIR/digests.jsonl"
}
check_digests "after the restore"
digests_restored=$digests_ok

dst_sum=$(sql dst -c "$CHECKSUM" 2>&1)
[ "$dst_sum" = "$src_sum" ] || fail "custos.events differs after the restore: src $src_sum, dst $dst_sum"
clear=$(sql dst -c "SELECT count(*) FILTER (WHERE personal_data = 'clear' AND actor LIKE 'u-%'
                                            AND coalesce(description, subject) IS NOT NULL)
                    FROM custos.events" 2>&1)
[ "$clear" = "$EVENTS" ] || fail "$clear of $EVENTS events decrypt in dst"
dst_status=$(sql dst -c "SELECT watermark, sealed_total FROM custos.status()" 2>&1)
[ "$dst_status" = "$src_status" ] || fail "sealer state differs: src $src_status, dst $dst_status"
dst_secret=$(sql dst -c "SELECT md5(secret) FROM custos.installation ORDER BY created_at, secret LIMIT 1" 2>&1)
[ "$dst_secret" = "$src_secret" ] || fail "the installation secret in force in dst is not the source's"
dst_keys=$(sql dst -c "SELECT count(*) FROM custos.data_key" 2>&1)
[ "$dst_keys" = "$src_keys" ] || fail "dst has $dst_keys data keys, src had $src_keys"

# a new event: appends, finds the restored key of a known actor (same day),
# and is sealed, alone, into a chain that still verifies
src_max_key=$(sql src -c "SELECT coalesce(max(key_id), 0) FROM custos.data_key")
new=$(sql dst -v src_max_key="$src_max_key" 2>&1 <<'EOF'
CREATE TEMP TABLE n AS
SELECT custos.log('{"tenant": "dump-1", "action": "RESTORE", "actor": "u-1", "actor_name": "Person 1"}') AS id;
SELECT n.id > (SELECT max(id) FROM custos.event_log WHERE id <> n.id),
       -- the same scope reference as the restored keys of u-1: same secret
       EXISTS (SELECT 1 FROM custos.data_key o
                WHERE o.key_id <= :src_max_key AND o.tenant = k.tenant
                  AND o.scope = 'actor' AND o.scope_ref = k.scope_ref),
       -- and, on the same day, the very key the dump brought
       k.key_id <= :src_max_key
         OR k.period > (SELECT max(period) FROM custos.data_key WHERE key_id <= :src_max_key),
       custos.seal()
  FROM n JOIN custos.event_log e USING (id) JOIN custos.data_key k ON k.key_id = e.actor_key_id;
EOF
)
IFS='|' read -r new_id_ok same_ref key_reused new_sealed <<<"$new"
[ "$new_id_ok" = "t" ] || fail "appending in dst failed or drew an old id: $new"
[ "$same_ref" = "t" ] || fail "the append in dst derived another scope reference for a known actor (the tenant keys changed): $new"
[ "$key_reused" = "t" ] || fail "the append in dst created a new key for a known actor on the same day: $new"
[ "$new_sealed" = "1" ] || fail "custos.seal() in dst sealed ${new_sealed:-nothing}, not the one new event: $new"
new_row=$(sql dst -c "SELECT concat_ws(' ', personal_data, actor, actor_name, sealed, seq)
                       FROM custos.events WHERE action = 'RESTORE'" 2>&1)
# sealed at the next position of its tenant's chain
[ "$new_row" = "clear u-1 Person 1 t $src_size_1" ] || fail "the new event in dst reads back as: $new_row"
after=$(sql dst -c "SELECT count(*) FILTER (WHERE ok), coalesce(sum(size), 0) FROM custos.verify()" 2>&1)
[ "$after" = "$TENANTS|$((EVENTS + 1))" ] || fail "verify in dst after the new event: $after (want $TENANTS|$((EVENTS + 1)))"
check_digests "after a new event"

say "src: $EVENTS events of $TENANTS tenants sealed, $TENANTS digests kept, checksum ${src_sum#* }"
say "dst: verify $n_ok of $n_tenants tenants ok, $digests_restored of $TENANTS kept digests ok;" \
  "custos.events $([ "$dst_sum" = "$src_sum" ] && echo identical || echo DIFFERENT), $clear events decrypt"
say "dst: new event appended and sealed ($new_sealed); verify after it: $after; digests still ok: $digests_ok"
if [ ${#FAILURES[@]} -gt 0 ]; then
  say "FAILED (${#FAILURES[@]} checks)"
  exit 1
fi
say "ok"
exit 0
