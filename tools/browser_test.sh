#!/usr/bin/env bash
# tools/browser_test.sh DIR: the audit-log page (gateway/static/) end to end
# in headless Chromium, against the real gateway and a real database.
#
# Builds the gateway, starts a throwaway cluster in DIR (socket in DIR, no
# TCP, custos preloaded, the sealer on) with a reseller, two customers (one
# of which will go into privacy mode), owners, a works council member and a
# log with an XSS test event; starts the gateway on a free loopback port;
# runs tests/browser/viewer.test.mjs (playwright-core driving Debian's
# chromium: sign in, filter, page, detail, export, chain status, privacy
# mode hiding the reseller's view, the phone layout, the speed of the first
# screen).  Screenshots and downloads land in DIR/screenshots and
# DIR/downloads.
#
# Needs Debian's chromium and tests/browser/node_modules (tools/deps.sh
# installs both; CHROMIUM=path overrides the browser).  BROWSER_TEST_HOLD=1
# sets everything up and waits (for screenshots by hand, say).  Ends with one line
# "browser: N passed, M failed"; exits non-zero on failure.  Run as root by
# tools/test.sh (the cluster runs as "postgres"), or as the cluster's user.
set -uo pipefail
source "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
WAIT=30
pg_dir "$1"
DIR=$(cd "$1" && pwd)
DATA=$DIR/data
PORT=$((5990 + RANDOM % 9))
DB=custos_browser_test
GW_PID=
failed=0

say() { echo "browser test: $*"; }
die() { echo "FAILED - $*"; echo; echo "browser: 0 passed, 1 failed"; exit 1; }
sql() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U "$PGUSER_OS" -d "$DB" "$@"; }

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

[ ${#DIR} -lt 90 ] || die "DIR is too long for a unix socket path: $DIR"
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[ -n "$CHROMIUM" ] && [ -x "$CHROMIUM" ] || die "Debian's chromium is not installed (tools/deps.sh installs it)"
BT=$TOP/tests/browser
if [ ! -d "$BT/node_modules/playwright-core" ]; then
  (cd "$BT" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >"$DIR/npm.log" 2>&1) ||
    die "npm ci in tests/browser failed (see $DIR/npm.log)"
fi
make -C "$TOP/gateway" >"$DIR/build.log" 2>&1 || die "the gateway does not build (see $DIR/build.log)"

# ---------------------------------------------------------------------------
# a fresh cluster
# ---------------------------------------------------------------------------
rm -rf "$DATA" "$DIR"/*.log "$DIR/tokens.json" "$DIR/screenshots" "$DIR/downloads"
pg_dir "$DIR"
msg=$(test_cluster "$DIR" "$PORT" "$DB" "max_connections = 40") || die "$msg"

# ---------------------------------------------------------------------------
# who is who (seeds 000/003/004): a reseller with two customers; acme's log
# as a works council reads it (2000 events of a video system's settings,
# logins and users, one of them an XSS attempt); clinic's, with personal data
# ---------------------------------------------------------------------------
(umask 077; sql >"$DIR/tokens.json" 2>"$DIR/setup.err" <<'EOF'
CREATE ROLE custos_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
SELECT custos.create_tenant('reseller', NULL, 'Reseller & Installer') \gset x_
SELECT custos.create_tenant('acme', 'reseller', 'ACME Video') \gset x_
SELECT custos.create_tenant('clinic', 'reseller', 'Clinic') \gset x_
SELECT custos.create_principal('reseller', 'Rita Reseller', 'user', 'admin') AS rita \gset
SELECT custos.create_principal('acme', 'Alice Owner', 'user', 'owner') AS alice \gset
SELECT custos.create_principal('acme', 'Walter Works-Council', 'user', 'member') AS walter \gset
SELECT custos.create_principal('clinic', 'Olga Owner', 'user', 'owner') AS olga \gset
SELECT custos.grant_right('acme', :'walter', 'audit.read') \gset x_
SELECT token AS t_rita FROM custos.issue_token(:'rita', 'personal', '1 day', 'test') \gset
SELECT token AS t_alice FROM custos.issue_token(:'alice', 'personal', '1 day', 'test') \gset
SELECT token AS t_walter FROM custos.issue_token(:'walter', 'personal', '1 day', 'test') \gset
SELECT token AS t_olga FROM custos.issue_token(:'olga', 'personal', '1 day', 'test') \gset
-- acme: 2000 events over 20 days, settings changes with previous and new state
SELECT count(*) AS x_n FROM (
  SELECT custos.log_batch(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'tenant', 'acme',
           'occurred_at', pg_catalog.to_char(timestamptz '2026-11-01 08:00:00+00' + g * interval '14 minutes',
                                             'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'category', (ARRAY['scheme', 'login', 'user', 'device'])[1 + g % 4],
           'action', (ARRAY['UPDATE', 'LOGIN', 'CREATE', 'DELETE'])[1 + g % 4],
           'resource_type', (ARRAY['CAMERA_SETTINGS', 'SESSION', 'USER', 'CAMERA'])[1 + g % 4],
           'resource_id', 'r-' || g, 'resource_name', 'camera ' || (g % 12),
           'actor', 'u-' || (g % 7), 'actor_name', 'User ' || (g % 7),
           'source_ip', '198.51.100.' || (g % 200), 'subject', 'employee-' || (g % 30),
           'outcome', (ARRAY['success', 'success', 'success', 'denied', 'failure'])[1 + g % 5],
           'description', 'change number ' || g,
           'previous_state', pg_catalog.jsonb_build_object('brightness', 60, 'contrast', 50, 'mode', 'day'),
           'new_state', pg_catalog.jsonb_build_object('brightness', 60 + g % 20, 'contrast', 50, 'mode', 'night'))))
    FROM generate_series(0, 1999) g GROUP BY g / 500) b \gset
-- the attacker's strings: markup and a spreadsheet formula in every text field
SELECT custos.log(pg_catalog.jsonb_build_object(
  'tenant', 'acme', 'category', 'scheme', 'action', 'UPDATE', 'resource_type', 'CAMERA_SETTINGS',
  'resource_id', 'XSS-1', 'resource_name', '<script>window.__xss=2</script>',
  'actor', 'mallory', 'actor_name', '"><svg onload=window.__xss=3>',
  'description', '<img src=x onerror="window.__xss=1">',
  'previous_state', pg_catalog.jsonb_build_object('<b>k</b>', 'old'),
  'new_state', pg_catalog.jsonb_build_object('<b>k</b>', '<img src=x onerror=window.__xss=4>'))) \gset x_
SELECT custos.log(pg_catalog.jsonb_build_object(
  'tenant', 'acme', 'category', 'scheme', 'action', 'UPDATE', 'resource_type', 'CAMERA_SETTINGS',
  'resource_id', 'XSS-2', 'description', '=HYPERLINK("http://evil.example/","click")')) \gset x_
-- clinic: personal data the reseller sees until privacy mode; a category of
-- the health platform's own, registered as an installation would
SELECT custos.register_category('patient', 'Patient records (health platform)') IS NOT NULL AS registered \gset x_
SELECT custos.log(pg_catalog.jsonb_build_object(
  'tenant', 'clinic', 'category', 'patient', 'action', 'VIEW', 'resource_type', 'CAMERA',
  'resource_id', 'cam-3', 'actor', 'dr-olga', 'actor_name', 'Dr. Olga', 'subject', 'patient-17',
  'description', 'looked at camera 3 (patient-17)')) \gset x_
SELECT pg_catalog.json_build_object(
  'rita', :'t_rita', 'alice', :'t_alice', 'walter', :'t_walter', 'olga', :'t_olga',
  'rita_id', :'rita', 'alice_id', :'alice', 'walter_id', :'walter', 'olga_id', :'olga');
EOF
) || die "setup failed: $(head -5 "$DIR/setup.err")"
sql -c "SELECT custos.seal()" >/dev/null && sql -c "VACUUM ANALYZE" >/dev/null || die "seal/analyze failed"

# ---------------------------------------------------------------------------
# the gateway: default limits, but a freer expensive class, because every
# sign-in of the page checks the chain (verify + digest) and the test signs
# in some 40 times within seconds with one token (the gateway test covers
# the limits themselves)
# ---------------------------------------------------------------------------
HTTP_PORT=$(free_loopback_port) || die "no free port"
"$TOP/gateway/custos-gateway" --listen "127.0.0.1:$HTTP_PORT" \
  --db "host=$DIR port=$PORT dbname=$DB user=custos_gateway" \
  --pool 8 --threads 4 --expensive-rate 20 --expensive-burst 100 >>"$DIR/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$HTTP_PORT) 2>/dev/null && break
  kill -0 "$GW_PID" 2>/dev/null || die "the gateway did not start (see $DIR/gateway.log)"
  sleep 0.05
done

# BROWSER_TEST_HOLD=1: keep the cluster and gateway up for manual work
if [ -n "${BROWSER_TEST_HOLD:-}" ]; then
  say "holding: gateway http://127.0.0.1:$HTTP_PORT, tokens $DIR/tokens.json; Ctrl-C ends"
  while kill -0 "$GW_PID" 2>/dev/null; do sleep 1; done
  exit 0
fi

# ---------------------------------------------------------------------------
# the browser
# ---------------------------------------------------------------------------
GW_URL="http://127.0.0.1:$HTTP_PORT" \
GW_TOKENS="$DIR/tokens.json" \
GW_PSQL="$PGBIN/psql -X -q -At -h $DIR -p $PORT -U $PGUSER_OS -d $DB" \
BROWSER_OUT="$DIR" \
CHROMIUM="$CHROMIUM" \
  node "$BT/viewer.test.mjs" 2>&1 | tee "$DIR/browser.log"
line=$(grep -E '^browser: [0-9]+ passed, [0-9]+ failed$' "$DIR/browser.log" | tail -1)
passed=0
if [[ "$line" =~ ^browser:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  passed=${BASH_REMATCH[1]}
  failed=${BASH_REMATCH[2]}
else
  echo "FAILED - the browser test did not finish (see $DIR/browser.log)"
  failed=1
fi

# no token secret may reach the gateway's log (the page never puts one in a URL)
if grep -q 'cst_' "$DIR/gateway.log"; then
  echo "FAILED - a token secret appears in the gateway's log"
  failed=$((failed + 1))
else
  echo "ok - no token secret in the gateway's log"
  passed=$((passed + 1))
fi
if grep -q 'level=error' "$DIR/gateway.log"; then
  echo "FAILED - the gateway logged errors: $(grep 'level=error' "$DIR/gateway.log" | head -3)"
  failed=$((failed + 1))
fi
echo
echo "browser: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
