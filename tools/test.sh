#!/usr/bin/env bash
# tools/test.sh: every test of custos, each suite on a throwaway cluster:
# pg_regress (regress/schedule), isolation specs (regress/isolation_schedule)
# and the crash test.  Ends with one line "custos: N passed, N failed".
#
# For work on a few tests: CUSTOS_TEST_OUT=dir (default build/test),
# REGRESS="a b" and ISOLATION="c" run just those (an empty value skips the
# suite), SKIP_CRASH=1 skips the crash and dump/restore tests, SKIP_GATEWAY=1
# the gateway's HTTP tests, SKIP_BROWSER=1 the audit-log page's browser test.
set -uo pipefail
source "$(dirname "$0")/common.sh"

PGXS_DIR=$(dirname "$($PG_CONFIG --pgxs)")/..
OUT=${CUSTOS_TEST_OUT:-$TOP/build/test}
rm -rf "$OUT"
pg_dir "$OUT"
passed=0
failed=0

count() {	# count() LOG: add pg_regress' ok/FAILED lines to the totals
  local p f
  p=$(grep -cE '\.\.\. ok' "$1" || true)
  f=$(grep -cE '\.\.\. (FAILED|failed)' "$1" || true)
  passed=$((passed + p))
  failed=$((failed + f))
}

run_suite() {	# run_suite NAME BINARY SCHEDULE [TESTS...]
  local name=$1 bin=$2 schedule=$3
  shift 3
  local dir=$OUT/$name
  local which=(--schedule="$TOP/regress/$schedule")
  [ $# -gt 0 ] && which=("$@")
  pg_dir "$dir"
  echo "== $name"
  as_pg "$bin" \
    --temp-instance="$dir/tmp_check" \
    --temp-config="$TOP/regress/custos.conf" \
    --inputdir="$TOP/regress" \
    --outputdir="$dir" \
    --bindir="$PGBIN" \
    --dbname=custos_regress \
    "${which[@]}" 2>&1 | tee "$dir/run.log"
  local rc=${PIPESTATUS[0]}
  count "$dir/run.log"
  # a suite that could not run at all counts as one failure
  if [ "$rc" -ne 0 ] && ! grep -qE '\.\.\. (FAILED|failed)' "$dir/run.log"; then
    echo "-- $name: the suite did not run (exit $rc)"
    failed=$((failed + 1))
  fi
  if [ -s "$dir/regression.diffs" ]; then
    echo "-- $name: differences (first 200 lines of $dir/regression.diffs):"
    head -200 "$dir/regression.diffs"
  fi
}

if [ -z "${REGRESS+set}" ]; then
  run_suite regress "$PGXS_DIR/test/regress/pg_regress" schedule
elif [ -n "$REGRESS" ]; then
  run_suite regress "$PGXS_DIR/test/regress/pg_regress" schedule $REGRESS
fi
if [ -z "${ISOLATION+set}" ]; then
  run_suite isolation "$PGXS_DIR/test/isolation/pg_isolation_regress" isolation_schedule
elif [ -n "$ISOLATION" ]; then
  run_suite isolation "$PGXS_DIR/test/isolation/pg_isolation_regress" isolation_schedule $ISOLATION
fi

script_test() {	# script_test NAME SCRIPT: a shell test on its own cluster
  echo "== $1"
  if "$2" "$OUT/$1"; then
    passed=$((passed + 1))
    echo "ok $1 test"
  else
    failed=$((failed + 1))
    echo "FAILED $1 test"
  fi
}

if [ -z "${SKIP_CRASH:-}" ]; then
  script_test crash "$TOP/tools/crash_test.sh"
  script_test retention_crash "$TOP/tools/retention_crash_test.sh"
  script_test dump "$TOP/tools/dump_test.sh"
fi

# the gateway's HTTP tests count one by one: add their own tally
if [ -z "${SKIP_GATEWAY:-}" ]; then
  echo "== gateway"
  "$TOP/tools/gateway_test.sh" "$OUT/gateway" 2>&1 | tee "$OUT/gateway.log"
  line=$(grep -E '^gateway: [0-9]+ passed, [0-9]+ failed$' "$OUT/gateway.log" | tail -1)
  if [[ "$line" =~ ^gateway:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
  else
    echo "-- gateway: the suite did not run to the end"
    failed=$((failed + 1))
  fi
fi

# the audit-log page end to end in headless Chromium
if [ -z "${SKIP_BROWSER:-}" ]; then
  script_test browser "$TOP/tools/browser_test.sh"
fi

echo
echo "custos: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
