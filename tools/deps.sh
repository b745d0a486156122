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
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "custos needs these Debian packages: ${missing[*]}" >&2
  echo "Install them as root (apt-get install ${missing[*]}) or run make as root." >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
