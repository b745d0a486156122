#!/usr/bin/env bash
# tools/deps.sh: install the Debian packages custos needs, only those missing.
# Runs apt-get only when something is missing, so a prepared machine needs
# neither root nor the network.
set -euo pipefail

pkgs=(
  postgresql-15 postgresql-server-dev-15 postgresql-contrib
  postgresql-15-cron postgresql-15-pgaudit
  libmicrohttpd-dev libjansson-dev libpq-dev libssl-dev
  make gcc pkg-config python3 clang libclang-rt-14-dev
  chromium fonts-dejavu-core nodejs
)
# the browser test (tools/browser_test.sh) drives chromium with playwright-core from npm
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

# tests/browser/node_modules: playwright-core, exactly as package-lock.json says (no browser download)
browser_test_modules() {
  local bt
  bt=$(cd "$(dirname "$0")/../tests/browser" && pwd)
  [ -d "$bt/node_modules/playwright-core" ] ||
    (cd "$bt" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  browser_test_modules
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "custos needs these Debian packages: ${missing[*]}" >&2
  echo "Install them as root (apt-get install ${missing[*]}) or run make as root." >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
browser_test_modules
