#!/usr/bin/env bash
# tools/gateway_test.sh DIR: tests of custos-gateway over real HTTP on
# loopback against a real database.
#
# Builds the gateway (and, if clang is there, its fuzz target), starts a
# throwaway cluster in DIR (socket in DIR, no TCP, custos preloaded, the
# background sealer on), creates the extension at version 0.6, tenants,
# principals and tokens, and a login role for the gateway that is no
# superuser and owns nothing; starts the gateway on a free loopback port
# and runs gateway/tests/test_gateway.py against it; runs the fuzz target
# for a bounded time; checks a graceful shutdown on SIGTERM.
#
# The suite runs twice, each time on its own cluster: against the -O2 build
# (DIR/plain, with the fuzzing) and against the AddressSanitizer + UBSan build
# (DIR/asan).  GATEWAY_TEST_BINARY=plain or =asan runs one of them only, in
# DIR itself.  GATEWAY_TEST_ROWS sets
# the size of the export whose memory is measured (default 20000);
# GATEWAY_FUZZ_SECONDS bounds the fuzzing (default 10, 0 skips it).
#
# Ends with one line "gateway: N passed, M failed"; exits non-zero on
# failure.  Run as root by tools/test.sh (the cluster runs as "postgres"), or
# as the cluster's user.
set -uo pipefail
source "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
WAIT=30
ROWS=${GATEWAY_TEST_ROWS:-20000}
FUZZ_SECONDS=${GATEWAY_FUZZ_SECONDS:-10}
BINARY=${GATEWAY_TEST_BINARY:-both}

if [ "$BINARY" = both ]; then
  total_p=0
  total_f=0
  for b in plain asan; do
    fuzz=$FUZZ_SECONDS
    [ "$b" = asan ] && fuzz=0
    echo "== gateway tests against the $b build"
    out=$(GATEWAY_TEST_BINARY=$b GATEWAY_FUZZ_SECONDS=$fuzz "$0" "$1/$b" 2>&1 | tee /dev/stderr | tail -1)
    if [[ "$out" =~ ^gateway:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
      total_p=$((total_p + BASH_REMATCH[1]))
      total_f=$((total_f + BASH_REMATCH[2]))
    else
      total_f=$((total_f + 1))
    fi
  done
  echo
  echo "gateway: $total_p passed, $total_f failed"
  [ "$total_f" -eq 0 ] && [ "$total_p" -gt 0 ]
  exit $?
fi

pg_dir "$1"
DIR=$(cd "$1" && pwd)
DATA=$DIR/data
PORT=$((5900 + RANDOM % 90))
DB=custos_gw_test
GW=$TOP/gateway
GW_PID=
passed=0
failed=0

say() { echo "gateway test: $*"; }
ok() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "FAILED - $*"; }
finish() {
  echo
  echo "gateway: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}
die() { fail "$*"; finish; }

sql() {	# sql [psql args...]: as the cluster's superuser over the socket in DIR
  "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U "$PGUSER_OS" -d "$DB" "$@"
}

cleanup() {
  trap - EXIT
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill -TERM "$GW_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GW_PID" 2>/dev/null
  fi
  if [ -f "$DATA/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t "$WAIT" stop >/dev/null 2>&1
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------
[ ${#DIR} -lt 90 ] || die "DIR is too long for a unix socket path: $DIR"
if make -C "$GW" >"$DIR/build.log" 2>&1; then
  ok "the gateway builds with -Wall -Wextra -Werror"
else
  tail -20 "$DIR/build.log"
  die "the gateway does not build (see $DIR/build.log)"
fi
GATEWAY=$GW/custos-gateway
if [ "$BINARY" = asan ]; then
  make -C "$GW" asan >>"$DIR/build.log" 2>&1 || die "the ASan build failed (see $DIR/build.log)"
  GATEWAY=$GW/custos-gateway-asan
fi

# the 0.2 -> 0.3 script must be installed where CREATE EXTENSION finds it
SHARE=$($PG_CONFIG --sharedir)/extension
if ! cmp -s "$TOP/sql/custos--0.2--0.3.sql" "$SHARE/custos--0.2--0.3.sql"; then
  if [ -w "$SHARE" ]; then
    install -m 644 "$TOP/sql/custos--0.2--0.3.sql" "$SHARE/" || die "cannot install custos--0.2--0.3.sql"
  else
    die "$SHARE/custos--0.2--0.3.sql is missing or stale: run make install as root"
  fi
fi

# ---------------------------------------------------------------------------
# a fresh cluster
# ---------------------------------------------------------------------------
if [ -f "$DATA/postmaster.pid" ]; then
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t "$WAIT" stop >/dev/null 2>&1
fi
rm -rf "$DATA" "$DIR"/*.log "$DIR"/tokens.json
pg_dir "$DIR"
msg=$(test_cluster "$DIR" "$PORT" "$DB" "max_connections = 60") || die "$msg"
if [ "$(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'custos'")" != "0.6" ]; then
  sql -c "ALTER EXTENSION custos UPDATE TO '0.6'" 2>"$DIR/update.err" >/dev/null ||
    die "ALTER EXTENSION custos UPDATE TO '0.6' failed: $(cat "$DIR/update.err")"
fi
ok "extension at version 0.6"
# the tests log free-form action names: taxonomy in open mode (docs/capture.md)
sql -c "SELECT custos.set_taxonomy_mode('open')" >/dev/null || die "set_taxonomy_mode failed"

# ---------------------------------------------------------------------------
# who is who (seed 000/004): a reseller with two customers, one in privacy
# mode; owners, a works council member, an app token; the gateway's role
# ---------------------------------------------------------------------------
(umask 077; sql -v rows="$ROWS" >"$DIR/tokens.json" 2>"$DIR/setup.err" <<'EOF'
CREATE ROLE custos_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
SELECT custos.create_tenant('reseller', NULL, 'Reseller & Installer') \gset x_
SELECT custos.create_tenant('acme', 'reseller', 'ACME Video') \gset x_
SELECT custos.create_tenant('desk', 'reseller', 'Desk Booking') \gset x_
SELECT custos.create_tenant('bulk', 'reseller', 'Export volume') \gset x_
SELECT custos.create_tenant('clinic', 'reseller', 'Clinic (privacy mode)') \gset x_
SELECT custos.create_principal('reseller', 'Rita Reseller', 'user', 'admin') AS rita \gset
SELECT custos.create_principal('acme', 'Alice Owner', 'user', 'owner') AS alice \gset
SELECT custos.create_principal('acme', 'Walter Works-Council', 'user', 'member') AS walter \gset
SELECT custos.create_principal('acme', 'Camera App', 'app', 'member') AS camapp \gset
SELECT custos.create_principal('acme', 'Other App', 'app', 'member') AS otherapp \gset
SELECT custos.create_principal('desk', 'Dana Desk', 'user', 'owner') AS dana \gset
SELECT custos.create_principal('desk', 'Hammer', 'user', 'admin') AS hammer \gset
SELECT custos.create_principal('desk', 'Pager', 'user', 'admin') AS pager \gset
SELECT custos.create_principal('desk', 'Writer', 'user', 'admin') AS writer \gset
SELECT custos.create_principal('bulk', 'Bulk Owner', 'user', 'owner') AS bulk \gset
SELECT custos.create_principal('clinic', 'Olga Owner', 'user', 'owner') AS olga \gset
SELECT custos.grant_right('acme', :'walter', 'audit.read') \gset x_
SELECT token AS t_rita FROM custos.issue_token(:'rita', 'personal', '1 day', 'test') \gset
SELECT token AS t_alice FROM custos.issue_token(:'alice', 'personal', '1 day', 'test') \gset
SELECT token AS t_walter FROM custos.issue_token(:'walter', 'personal', '1 day', 'test') \gset
SELECT token AS t_app, token_id AS t_app_id FROM custos.issue_token(:'camapp', 'app', '1 day', 'test') \gset
SELECT token AS t_other_app FROM custos.issue_token(:'otherapp', 'app', '1 day', 'test') \gset
SELECT token AS t_dana FROM custos.issue_token(:'dana', 'personal', '1 day', 'test') \gset
SELECT token AS t_hammer FROM custos.issue_token(:'hammer', 'personal', '1 day', 'test') \gset
SELECT token AS t_pager FROM custos.issue_token(:'pager', 'personal', '1 day', 'test') \gset
SELECT token AS t_writer FROM custos.issue_token(:'writer', 'personal', '1 day', 'test') \gset
SELECT token AS t_bulk FROM custos.issue_token(:'bulk', 'personal', '1 day', 'test') \gset
SELECT token AS t_olga FROM custos.issue_token(:'olga', 'personal', '1 day', 'test') \gset
SELECT token AS t_revoked, token_id AS t_revoked_id FROM custos.issue_token(:'dana', 'personal', '1 day', 'test') \gset
SELECT custos.revoke_token(:'t_revoked_id') \gset x_
-- expired: issued valid for a moment
SELECT token AS t_expired FROM custos.issue_token(:'dana', 'personal', '1 millisecond', 'test') \gset
-- the export volume: events of tenant "bulk", with actors and subjects
SELECT count(*) AS x_bulk FROM (
  SELECT custos.log_batch(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'tenant', 'bulk', 'action', 'BULK', 'resource_id', g::text, 'actor', 'u-' || (g % 50),
           'subject', 's-' || (g % 100), 'description', 'row ' || g)))
    FROM generate_series(0, :rows - 1) g GROUP BY g / 1000) b \gset
-- 64 MB of wide events in the same tenant: the stalled export of the
-- export_cancel test must be larger than every socket buffer between the
-- database and the client (a tuned tcp_wmem reaches 32 MB), or the COPY could
-- finish into the kernel's buffers and the test would prove nothing
SELECT count(*) AS x_wide FROM (
  SELECT custos.log_batch(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'tenant', 'bulk', 'action', 'WIDE', 'resource_id', 'w' || g,
           'description', pg_catalog.repeat(pg_catalog.md5(g::text), 1024))))
    FROM generate_series(0, 1999) g GROUP BY g / 200) b \gset
SELECT pg_catalog.json_build_object(
  'rita', :'t_rita', 'alice', :'t_alice', 'walter', :'t_walter', 'app', :'t_app', 'app_id', :'t_app_id',
  'other_app', :'t_other_app', 'dana', :'t_dana', 'hammer', :'t_hammer', 'pager', :'t_pager',
  'writer', :'t_writer', 'bulk', :'t_bulk', 'olga', :'t_olga', 'olga_id', :'olga', 'revoked', :'t_revoked', 'expired', :'t_expired',
  'alice_id', :'alice', 'walter_id', :'walter', 'rita_id', :'rita', 'dana_id', :'dana',
  'bulk_rows', :rows);
EOF
) || die "setup failed: $(head -5 "$DIR/setup.err")"
sql -c "SELECT custos.seal()" >/dev/null && sql -c "VACUUM ANALYZE" >/dev/null || die "seal/analyze failed"
rolsuper=$(sql -c "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'custos_gateway'")
owned=$(sql -c "SELECT count(*) FROM pg_class WHERE relowner = 'custos_gateway'::regrole")
[ "$rolsuper" = "f" ] && [ "$owned" = "0" ] && ok "the gateway's role is an ordinary role that owns nothing" ||
  fail "the gateway's role is privileged or owns objects"

# ---------------------------------------------------------------------------
# the gateway
# ---------------------------------------------------------------------------
HTTP_PORT=$(free_loopback_port) || die "no free port"
# small limits, so that the tests can reach them
GW_ARGS=(--listen "127.0.0.1:$HTTP_PORT"
         --db "host=$DIR port=$PORT dbname=$DB user=custos_gateway"
         --pool 8 --threads 4 --timeout 2 --max-connections 40
         --rate 50 --burst 100 --expensive-rate 1 --expensive-burst 8
         --max-body 1048576)
start_gateway() {
  "$GATEWAY" "${GW_ARGS[@]}" >>"$DIR/gateway.log" 2>&1 &
  GW_PID=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$HTTP_PORT) 2>/dev/null && return 0
    kill -0 "$GW_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
start_gateway || die "the gateway did not start (see $DIR/gateway.log)"
ok "the gateway listens on 127.0.0.1:$HTTP_PORT"

# ---------------------------------------------------------------------------
# HTTP tests
# ---------------------------------------------------------------------------
GW_URL="http://127.0.0.1:$HTTP_PORT" \
GW_TOKENS="$DIR/tokens.json" \
GW_PID="$GW_PID" \
GW_BINARY="$GATEWAY" \
GW_OPENAPI="$TOP/docs/openapi.yaml" \
GW_PSQL="$PGBIN/psql -X -q -At -h $DIR -p $PORT -U $PGUSER_OS -d $DB" \
GW_PG_STOP="$(declare -f as_pg); as_pg $PGBIN/pg_ctl -D $DATA -m fast -w -t $WAIT stop" \
GW_PG_START="$(declare -f as_pg); as_pg $PGBIN/pg_ctl -D $DATA -l $DIR/server.log -w -t $WAIT start" \
  python3 "$GW/tests/test_gateway.py" 2>&1 | tee "$DIR/http.log"
line=$(grep -E '^http tests: [0-9]+ passed, [0-9]+ failed$' "$DIR/http.log" | tail -1)
if [ -z "$line" ]; then
  fail "the HTTP tests did not finish (see $DIR/http.log)"
else
  p=$(echo "$line" | sed -E 's/^http tests: ([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
  passed=$((passed + p))
  failed=$((failed + f))
fi

# ---------------------------------------------------------------------------
# the log: every request has a line tagged with its id; no secrets in it
# ---------------------------------------------------------------------------
if grep -q 'cst_' "$DIR/gateway.log"; then
  fail "a token secret appears in the gateway's log"
else
  ok "no token secret in the gateway's log"
fi
# the subject of the reports' tests (test_gateway.py, reports()): personal
# data, in neither the gateway's log nor the server's
if grep -Eqi 'anna(@|%40)example' "$DIR/gateway.log" "$DIR/server.log"; then
  fail "a report's subject appears in the gateway's or the server's log"
else
  ok "no report subject in the gateway's or the server's log"
fi
if grep -Eq 'level=error' "$DIR/gateway.log"; then
  fail "the gateway logged errors (500s are bugs): $(grep -E 'level=error' "$DIR/gateway.log" | head -3)"
else
  ok "no error-level log lines (no 500s)"
fi
if [ "$BINARY" = asan ] && grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$DIR/gateway.log"; then
  fail "sanitizer reports in $DIR/gateway.log"
fi

# ---------------------------------------------------------------------------
# graceful shutdown: a request in flight finishes, then the process exits 0
# ---------------------------------------------------------------------------
if kill -0 "$GW_PID" 2>/dev/null; then
  TOKEN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['bulk'])" "$DIR/tokens.json")
  python3 - "$HTTP_PORT" "$TOKEN" >"$DIR/shutdown.out" 2>&1 <<'EOF' &
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
c.request("GET", "/v1/events/export?format=ndjson", headers={"Authorization": "Bearer " + sys.argv[2]})
r = c.getresponse()
body = r.read()
print(r.status, body.count(b"\n"))
EOF
  CLIENT=$!
  # SIGTERM once the export runs in the database
  for _ in $(seq 100); do
    [ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'custos_gateway'
                   AND state = 'active' AND query LIKE 'COPY%'")" = "1" ] && break
    sleep 0.05
  done
  kill -TERM "$GW_PID"
  wait "$GW_PID"
  rc=$?
  wait "$CLIENT"
  GW_PID=
  read -r st lines <"$DIR/shutdown.out"
  if [ "$rc" -eq 0 ] && [ "${st:-}" = "200" ] && [ "${lines:-0}" -ge "$ROWS" ]; then
    ok "SIGTERM: the export in flight finished ($lines rows), then the gateway exited 0"
  else
    fail "SIGTERM: exit $rc, in-flight export got: $(cat "$DIR/shutdown.out" | head -3)"
  fi
  if [ "$BINARY" = asan ] && grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$DIR/gateway.log"; then
    fail "sanitizer reports in $DIR/gateway.log"
  elif [ "$BINARY" = asan ]; then
    ok "AddressSanitizer, LeakSanitizer and UBSan: clean"
  fi
fi

# ---------------------------------------------------------------------------
# fuzzing the request parsing (libFuzzer), bounded
# ---------------------------------------------------------------------------
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  if command -v clang >/dev/null 2>&1; then
    if make -C "$GW" fuzz >>"$DIR/build.log" 2>&1; then
      mkdir -p "$DIR/corpus"
      cp "$GW"/tests/corpus/* "$DIR/corpus/" 2>/dev/null
      if (cd "$DIR" && "$GW/fuzz-request" -max_total_time="$FUZZ_SECONDS" -max_len=4096 \
            -timeout=5 "$DIR/corpus" >"$DIR/fuzz.log" 2>&1); then
        ok "fuzz: $(grep -Eo '#[0-9]+ +DONE.*' "$DIR/fuzz.log" | head -1 || echo "ran ${FUZZ_SECONDS}s") without a crash"
      else
        fail "fuzz: the target crashed (see $DIR/fuzz.log)"
      fi
    else
      fail "the fuzz target does not build (see $DIR/build.log)"
    fi
  else
    say "clang not installed: fuzzing skipped"
  fi
fi

finish
